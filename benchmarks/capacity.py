"""Capacity on paper: what one night costs for 1M, 10M and 100M accounts, extrapolated
from a recorded benchmark series (``benchmarks/results/*.json``).

Measured: each series point's stage seconds on this machine (``cores`` cores, local
Spark) at its number of events. Extrapolated, and labelled so:

- **stage seconds** at N accounts: a least-squares line (intercept = fixed cost, slope =
  seconds per event) through the series' points for each stage, evaluated at N x the
  series' events per account. Linear in events is what the series shows up to its
  largest point; beyond it, it is an assumption.
- **core-hours** per stage: those seconds x the cores that ran them here, an upper bound
  of the CPU the stage needs (a cluster divides the wall time by its executor cores for
  the stages that run on executors; the model fit does not spread).
- **driver memory** of the train stage, from the sizes of what it holds (the formulas of
  ``driver_bytes``; no measurement at these sizes).
- **largest catalog** per model family for a given driver memory (``largest_catalog``).

``python -m benchmarks.capacity [results.json]`` prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

ACCOUNTS = (1_000_000, 10_000_000, 100_000_000)
KEY_BYTES = 64  # a user key: HMAC-SHA256 as hex
TITLE_BYTES = 16  # a content id, about
FACTORS = 64  # ALS factors, the default
GIB = 1024**3


@dataclass(frozen=True)
class Line:
    """seconds = intercept + slope x events, fitted by least squares."""

    intercept: float
    slope: float

    def at(self, events: float) -> float:
        return self.intercept + self.slope * events


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Line:
    """Least-squares line through (xs, ys); a single point gives a line through the origin."""
    if len(xs) != len(ys) or not xs:
        raise ValueError("fit_line needs as many ys as xs, at least one")
    if len(xs) == 1:
        return Line(0.0, ys[0] / xs[0])
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    return Line(mean_y - slope * mean_x, slope)


def stage_lines(series: Sequence[dict[str, Any]]) -> dict[str, Line]:
    """One line per stage through the series points' ``stage_seconds``."""
    stages = sorted({s for point in series for s in point["stage_seconds"]})
    return {
        stage: fit_line([p["events"] for p in series], [p["stage_seconds"].get(stage, 0.0) for p in series])
        for stage in stages
    }


def events_per_account(series: Sequence[dict[str, Any]]) -> float:
    """Events per account in the series' landing zones (the largest point's)."""
    largest = max(series, key=lambda p: p["events"])
    return largest["events"] / largest["users"]


def driver_bytes(accounts: int, pairs_per_account: float, titles: int, algorithm: str = "ease",
                 factors: int = FACTORS) -> dict[str, float]:
    """What the train stage's driver holds at once: the interactions as Arrow (key, title,
    confidence and offsets per pair), the CSR matrix twice (raw and weighted: 4-byte value
    and index per pair), the sorted user keys (NumPy fixed-width: 4 bytes a character),
    and the model's arrays (EASE: a float32 titles x titles matrix, twice while it is
    inverted; ALS: float32 factors per user and title)."""
    pairs = accounts * pairs_per_account
    parts = {
        "interactions_arrow": pairs * (KEY_BYTES + TITLE_BYTES + 8 + 8),
        "matrix": 2 * pairs * 8,
        "user_keys": accounts * 4 * KEY_BYTES,
        "model": 0.0,
    }
    if algorithm in ("ease", "blend"):
        parts["model"] += 2 * 4 * titles**2
    if algorithm in ("als", "blend"):
        parts["model"] += 4 * factors * (accounts + titles)
    return parts


def largest_catalog(driver_memory_bytes: float, algorithm: str, factors: int = FACTORS) -> int:
    """The most titles the model's arrays alone fit in ``driver_memory_bytes`` (EASE: two
    float32 titles x titles matrices; ALS: float32 factors per title)."""
    if algorithm == "ease":
        return int(math.isqrt(int(driver_memory_bytes // 8)))
    return int(driver_memory_bytes // (4 * factors))


def capacity(series: Sequence[dict[str, Any]], cores: int, accounts: Sequence[int] = ACCOUNTS,
             algorithm: str = "ease") -> dict[str, Any]:
    """Per number of accounts: events, stage seconds and core-hours, the driver's bytes
    and the stage that grows fastest; with the lines they come from."""
    lines = stage_lines(series)
    per_account = events_per_account(series)
    largest = max(series, key=lambda p: p["events"])
    titles = largest["items"]
    pairs_per_account = per_account  # at most one new (user, title) pair per event
    rows = []
    for n in accounts:
        events = n * per_account
        seconds = {stage: max(line.at(events), 0.0) for stage, line in lines.items()}
        memory = driver_bytes(n, pairs_per_account, titles, algorithm)
        rows.append({
            "accounts": n,
            "events": events,
            "stage_seconds": seconds,
            "core_hours": {stage: s * cores / 3600 for stage, s in seconds.items()},
            "total_core_hours": sum(seconds.values()) * cores / 3600,
            "driver_gib": sum(memory.values()) / GIB,
            "driver_parts_gib": {k: v / GIB for k, v in memory.items()},
        })
    return {
        "measured_points": [p["events"] for p in series],
        "events_per_account": per_account,
        "titles": titles,
        "cores": cores,
        "lines": {stage: {"intercept": line.intercept, "slope": line.slope} for stage, line in lines.items()},
        "grows_fastest": max(lines, key=lambda s: lines[s].slope),
        "rows": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    stages = sorted(report["lines"], key=lambda s: -report["lines"][s]["slope"])
    head = "| stage | " + " | ".join(f"{r['accounts']:,} accounts" for r in report["rows"]) + " |"
    lines = [head, "|---|" + "---|" * len(report["rows"])]
    for stage in stages:
        cells = [f"{r['core_hours'][stage]:.1f}" for r in report["rows"]]
        lines.append(f"| {stage} (core-hours) | " + " | ".join(cells) + " |")
    lines.append("| **all stages (core-hours)** | " + " | ".join(f"{r['total_core_hours']:.1f}" for r in report["rows"])
                 + " |")
    lines.append("| train driver memory (GiB) | " + " | ".join(f"{r['driver_gib']:.1f}" for r in report["rows"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=str(Path(__file__).parent / "results" / "latest.json"))
    args = parser.parse_args(argv)
    recorded = json.loads(Path(args.results).read_text())
    report = capacity(recorded["series"], recorded["machine"].get("cores", 2))
    print(markdown(report))
    print(f"\nmeasured at {report['measured_points']} events ({report['events_per_account']:.1f} events per account, "
          f"{report['titles']:,} titles); grows fastest: {report['grows_fastest']}")
    for ease_gib in (16, 64, 256):
        print(f"largest catalog with {ease_gib} GiB for the model: EASE {largest_catalog(ease_gib * GIB, 'ease'):,}, "
              f"ALS {largest_catalog(ease_gib * GIB, 'als'):,} titles")


if __name__ == "__main__":
    main()
