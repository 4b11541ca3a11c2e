"""The performance harness: ``python -m benchmarks.run`` (default series 1M, 4M, 16M events).

Writes ``benchmarks/results/latest.json`` (DESIGN.md, Interfaces: Benchmarks):

- ``series``: one point per size: whole nightly runs of fairshelf and, interleaved with
  them on the same landing zone, of the bare pipeline (``benchmarks.bare``), each in its
  own process with the peak memory of its process tree (``benchmarks.series``);
- ``ratios``: ``privacy_vs_copy``, ``implicit_vs_mllib_speedup``, ``rerank_vs_topk``,
  ``publish_vs_parquet`` (``benchmarks.ratios``), measured in one Spark process on the
  lakehouse of the largest series point after its run; ``validation_share`` and
  ``fairshelf_vs_bare`` read off that point;
- ``machine``: cores, CPU, memory, Python, Java, library versions, load averages, date;
- ``goals``: issue 14's "done when" checks, observed and met or not (``benchmarks.goals``);
- ``ratio_details`` (every time behind each ratio) and ``notes``.

Every measurement runs at least twice (``--repeats``, ``--ratio-repeats``) and the median
is reported; the machine may be shared, so the load averages are recorded beside them.
``--quick`` is a smoke run on a tiny landing zone that writes ``benchmarks/work/quick.json``.
Scratch lakehouses go to ``benchmarks/work/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

from benchmarks.goals import evaluate_goals
from benchmarks.ratios import RATIO_KEYS, fairshelf_vs_bare, validation_share
from benchmarks.series import REPO, RUN_DATE, bare_worker, benchmark_config, pipeline_worker, run_series_point
from benchmarks.snapshot import WORKING_TREE, snapshot_code, working_tree_changes

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
LATEST = HERE / "results" / "latest.json"
DEFAULT_SIZES = (1_000_000, 4_000_000, 16_000_000)
QUICK_SIZES = (14_000,)
TOP_KEYS = ("ratios", "series", "machine", "goals")
SERIES_KEYS = ("events", "seconds", "peak_rss_mb")
MACHINE_KEYS = ("cores", "memory_gb", "python", "java", "pyspark", "deltalake", "implicit",
                "load_average_start", "load_average_end", "date")
NULL_RATIO_NOTES = {  # why a ratio read off the series may be null
    "validation_share": "validation_share is null: the measured code has no quality stage "
                        "(jobs/stages/quality.py), so there is no validation time to measure.",
    "fairshelf_vs_bare": "fairshelf_vs_bare is null: the largest series point has no run of the bare "
                         "pipeline (benchmarks/bare.py).",
}


class BenchmarkResultError(ValueError):
    """A benchmark result does not have the shape of DESIGN.md (Interfaces: Benchmarks)."""


# --- the ratios, in their own Spark process -------------------------------------------------

def measure_ratios(spark, config, scratch: Path, repeats: int, warmup: bool = True) -> dict[str, Any]:
    """Every measured ratio on ``config``'s lakehouse, which holds a finished run of
    ``RUN_DATE``: ``{key: Pair.as_dict()}``."""
    import numpy as np

    from benchmarks import ratios
    from jobs.lake import tables
    from jobs.recsys.training import InteractionMatrix, fit_model, weighted_interactions
    from jobs.shared.stage import read_silver

    day = RUN_DATE.isoformat()
    found: dict[str, Any] = {}
    found["privacy_vs_copy"] = ratios.privacy_vs_copy(spark, config, RUN_DATE, scratch, repeats, warmup)

    interactions = tables.read_arrow(config.table("silver", "interactions"), filters=[("run_date", "=", day)])
    data = InteractionMatrix.from_arrow(interactions.select(["user_key", "content_id", "confidence"]))
    found["implicit_vs_mllib_speedup"] = ratios.implicit_vs_mllib(spark, data, config.model, repeats, warmup)

    als = dataclasses.replace(config.model, algorithm="als")
    model = fit_model(weighted_interactions(data, als), als)
    scores = np.asarray(model.user_factors) @ np.asarray(model.item_factors).T
    content = tables.read_arrow(config.table("silver", "content"), filters=[("run_date", "=", day)])
    genres_by_id = dict(zip(content.column("content_id").to_pylist(), content.column("genres").to_pylist()))
    genres = ratios.item_genre_matrix([genres_by_id.get(c) for c in data.content_ids])
    catalog = ratios.catalog_arrays_for(data, content, config.rerank)
    found["rerank_vs_topk"] = ratios.rerank_vs_topk(
        scores, genres, repeats, warmup, settings=config.rerank, catalog=catalog, history=data.matrix,
        candidates=config.model.candidates_per_user, k=config.shelf.size,
    )
    del scores

    events = read_silver(spark, config, "silver/events")
    found["publish_vs_parquet"] = ratios.publish_vs_parquet(
        events, scratch, RUN_DATE, repeats, warmup, code_version=config.code_version
    )
    return {key: pair.as_dict() for key, pair in found.items()}


def ratios_worker(lakehouse: Path, out: Path, repeats: int, code_version: str | None) -> None:
    """In its own process: ``measure_ratios`` on ``lakehouse``, JSON to ``out``."""
    from jobs.lake.spark import build_spark

    config = benchmark_config(lakehouse, code_version)
    scratch = lakehouse.parent / f"{lakehouse.name}-ratios"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    spark = build_spark(config, app_name="fairshelf-benchmark-ratios")
    try:
        details = measure_ratios(spark, config, scratch, repeats)
    finally:
        spark.stop()
    out.write_text(json.dumps(details, indent=2))


def run_ratios(lakehouse: Path, work_dir: Path, repeats: int, timeout: float, code_version: str) -> dict[str, Any]:
    out, log = work_dir / "ratios.json", work_dir / "ratios.log"
    out.unlink(missing_ok=True)
    with open(log, "wb") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", "--worker", "ratios", "--lakehouse", str(lakehouse),
             "--out", str(out), "--ratio-repeats", str(repeats), "--code-version", code_version],
            cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout, check=False,
        )
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"the ratio measurements failed (exit {done.returncode}); see {log}")
    return json.loads(out.read_text())


# --- the result --------------------------------------------------------------------------------

def ratios_of(details: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The ``ratios`` object: every contract key, measured (from ``details``) or null."""
    unknown = set(details) - set(RATIO_KEYS)
    if unknown:
        raise BenchmarkResultError(f"not benchmark ratios: {sorted(unknown)}; ratios are {', '.join(RATIO_KEYS)}")
    return {key: (details[key]["ratio"] if key in details else None) for key in RATIO_KEYS}


def assemble_result(
    ratio_details: dict[str, dict[str, Any]], series: list[dict[str, Any]], machine: dict[str, Any],
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """latest.json: the contract's ``ratios``, ``series``, ``machine``, then ``goals``,
    ``notes`` and ``ratio_details``. ``validation_share`` and ``fairshelf_vs_bare`` are
    those of the largest series point (where the other ratios are measured too); each
    point also carries its own, and the goals read the 1M point's ``fairshelf_vs_bare``."""
    largest = series[-1] if series else {}
    for key, read_off in (("validation_share", validation_share), ("fairshelf_vs_bare", fairshelf_vs_bare)):
        found = read_off(largest) if largest else None
        if found is not None:
            ratio_details = {**ratio_details, key: found}
    ratios = ratios_of(ratio_details)
    notes = list(notes or [])
    for key, why in NULL_RATIO_NOTES.items():
        if ratios[key] is None:
            notes.insert(0, why)
    result = {"ratios": ratios, "series": series, "machine": machine,
              "goals": evaluate_goals(ratios, series), "notes": notes, "ratio_details": ratio_details}
    check_result(result)
    return result


def check_result(result: dict[str, Any]) -> None:
    """Raise BenchmarkResultError naming every way ``result`` differs from the contract."""
    problems = [f"missing key {k!r}" for k in TOP_KEYS if k not in result]
    ratios = result.get("ratios", {})
    if set(ratios) != set(RATIO_KEYS):
        problems.append(f"ratios has keys {sorted(ratios)}, the contract names {sorted(RATIO_KEYS)}")
    for key, value in ratios.items():
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0):
            problems.append(f"ratios.{key} is {value!r}: a positive number or null")
    for key in NULL_RATIO_NOTES:
        if ratios.get(key) is None and not any(key in n for n in result.get("notes", [])):
            problems.append(f"{key} is null and no note says why")
    goals = result.get("goals")
    if not isinstance(goals, list) or any(not isinstance(g, dict) or "met" not in g for g in goals):
        problems.append("goals is not a list of {goal, statement, observed, met}")
    series = result.get("series")
    if not isinstance(series, list):
        problems.append("series is not a list")
    for i, point in enumerate(series if isinstance(series, list) else []):
        for key in SERIES_KEYS:
            value = point.get(key) if isinstance(point, dict) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                problems.append(f"series[{i}].{key} is {value!r}: a positive number")
    machine = result.get("machine", {})
    problems += [f"machine.{k} is missing" for k in MACHINE_KEYS if machine.get(k) in (None, "")]
    if problems:
        raise BenchmarkResultError("benchmark result does not fit the contract: " + "; ".join(problems))


def java_version() -> str | None:
    java = shutil.which("java")
    if java is None:
        return None
    done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    first = (done.stderr or done.stdout).splitlines()[:1]
    found = re.search(r'"([^"]+)"', first[0]) if first else None
    return found.group(1) if found else (first[0] if first else None)


def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_info(code: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine and software the numbers were measured on (load at the start; the
    caller adds ``load_average_end``). ``code`` says which fairshelf code ran."""
    config = benchmark_config(WORK / "unused")
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "java": java_version(),
        "platform": platform.platform(),
        "pyspark": _version("pyspark"),
        "deltalake": _version("deltalake"),
        "implicit": _version("implicit"),
        "numpy": _version("numpy"),
        "pyarrow": _version("pyarrow"),
        "spark": {"master": config.spark.master, "driver_memory": config.spark.driver_memory,
                  "shuffle_partitions": config.spark.shuffle_partitions,
                  "table_engine": config.spark.table_engine},
        "model": {"algorithm": config.model.algorithm, "factors": config.model.factors,
                  "iterations": config.model.iterations, "candidates_per_user": config.model.candidates_per_user},
        "code": code,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "load_average_end": None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --- the command line ------------------------------------------------------------------------

def summary_table(result: dict[str, Any]) -> str:
    """The result as a few plain-text tables."""
    lines = []
    stages = list(result["series"][0]["stage_seconds"]) if result["series"] else []
    header = (f"{'events':>10} {'seconds':>8} {'s/event':>9} {'peak RSS MB':>12} {'driver MB':>10} "
              + " ".join(f"{s:>9}" for s in stages))
    lines += ["nightly runs (median seconds, max peak RSS of the process tree, the driver's own peak)", header,
              "-" * len(header)]
    for point in result["series"]:
        driver = point.get("peak_rss_by_kind_mb", {}).get("driver")
        lines.append(
            f"{point['events']:>10,} {point['seconds']:>8.1f} {point['seconds_per_event']:>9.2e} "
            f"{point['peak_rss_mb']:>12,.0f} {'-' if driver is None else f'{driver:,.0f}':>10} "
            + " ".join(f"{point['stage_seconds'][s]:>9.1f}" for s in stages)
        )
    phases = list(result["series"][0].get("stage_peak_rss_mb", {})) if result["series"] else []
    if phases:
        header = f"{'events':>10} " + " ".join(f"{p:>11}" for p in phases)
        lines += ["", "peak RSS MB of the process tree while each stage ran", header, "-" * len(header)]
        for point in result["series"]:
            peaks = [point["stage_peak_rss_mb"][p] for p in phases]
            lines.append(f"{point['events']:>10,} " + " ".join("          -" if v is None else f"{v:>11,.0f}" for v in peaks))
    lines += ["", "bare pipeline (benchmarks/bare.py) on the same landing zones, median seconds"]
    for point in result["series"]:
        bare = point.get("bare")
        if bare:
            bare_phases = ", ".join(f"{k} {v:.1f}" for k, v in bare["phase_seconds"].items())
            lines.append(f"{point['events']:>10,} {bare['seconds']:>8.1f} (+{bare['spark_start_seconds']:.1f} Spark "
                         f"start-up; {bare_phases}); fairshelf {point['seconds']:.1f}: "
                         f"fairshelf_vs_bare {point['fairshelf_vs_bare']['ratio']:.2f}")
    lines += ["", "ratios (median / median)"]
    for key, value in result["ratios"].items():
        detail = result.get("ratio_details", {}).get(key)
        how = f"  {detail['numerator']} / {detail['denominator']}" if detail else ""
        lines.append(f"  {key:<28} {'null' if value is None else f'{value:.3f}':>8}{how}")
    machine = result["machine"]
    lines += ["", f"{machine['cores']} cores, {machine['memory_gb']} GB, load {machine['load_average_start']} "
              f"-> {machine['load_average_end']}, {machine['date']}"]
    lines += ["", "goals (issue 14)"]
    for goal in result.get("goals", []):
        met = {True: "met", False: "NOT met", None: "not measured"}[goal["met"]]
        lines.append(f"  {met:<13} {goal['statement']}: observed {goal['observed']}")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--sizes takes comma-separated integers, got {text!r}") from exc
    if not sizes or min(sizes) < 1_000:
        raise argparse.ArgumentTypeError("--sizes needs at least one size, each of at least 1,000 events")
    return sorted(sizes)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=_sizes, default=None,
                        help="events per series point, comma-separated (default 1000000,4000000,16000000)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, written to benchmarks/work/quick.json")
    parser.add_argument("--repeats", type=int, default=None, help="nightly runs per size (default 2, quick 1)")
    parser.add_argument("--ratio-repeats", type=int, default=None, help="timed runs per ratio side (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=None, help="result file (default benchmarks/results/latest.json)")
    parser.add_argument("--timeout", type=float, default=4 * 3600.0, help="seconds a single run may take")
    parser.add_argument("--code", default="HEAD",
                        help="git revision whose jobs/ is measured (default HEAD), or 'working-tree' "
                             "for the checkout as it is, uncommitted edits included")
    parser.add_argument("--work", type=Path, default=WORK, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("pipeline", "bare", "ratios"), help=argparse.SUPPRESS)
    parser.add_argument("--lakehouse", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--code-version", default=None, help=argparse.SUPPRESS)  # set in a snapshot
    args = parser.parse_args(argv)
    args.sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.ratio_repeats = args.ratio_repeats or (1 if args.quick else 3)
    args.out = (args.out or (args.work / "quick.json" if args.quick else LATEST)).resolve()
    args.work = args.work.resolve()
    if args.repeats < 1 or args.ratio_repeats < 1:
        parser.error("--repeats and --ratio-repeats must be at least 1")
    return args


def run_in_snapshot(args: argparse.Namespace, argv: list[str]) -> int:
    """Run this harness again from a snapshot of ``args.code`` (``benchmarks.snapshot``);
    the Spark workers inherit its PYTHONPATH, so they import the snapshot's jobs too."""
    args.work.mkdir(parents=True, exist_ok=True)
    snapshot, commit = snapshot_code(args.code, args.work)
    print(f"measuring jobs/ at {commit[:12]} ({args.code}) from {snapshot}", file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "benchmarks.run", *argv, "--code", WORKING_TREE,
               "--code-version", commit[:12], "--work", str(args.work), "--out", str(args.out)]
    environment = {**os.environ, "PYTHONPATH": str(snapshot)}
    return subprocess.run(command, cwd=snapshot, env=environment, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker == "pipeline":
        pipeline_worker(args.lakehouse, args.out, args.code_version)
        return 0
    if args.worker == "bare":
        bare_worker(args.lakehouse, args.out)
        return 0
    if args.worker == "ratios":
        ratios_worker(args.lakehouse, args.out, args.ratio_repeats, args.code_version)
        return 0
    if args.code != WORKING_TREE:
        return run_in_snapshot(args, argv)

    if args.code_version:  # in a snapshot of a commit
        code = {"commit": args.code_version, "source": f"git archive {args.code_version} jobs"}
    else:  # the checkout as it is
        code = {"commit": None, "source": "working tree", "changes": working_tree_changes()}
        args.code_version = "working-tree"
    args.work.mkdir(parents=True, exist_ok=True)
    machine = machine_info(code)
    series = []
    for events in args.sizes:
        print(f"nightly runs on {events:,} events ({args.repeats}x) ...", file=sys.stderr, flush=True)
        series.append(run_series_point(events, args.work, args.repeats, args.timeout, args.code_version))
    print(f"ratios on the {args.sizes[-1]:,}-event lakehouse ({args.ratio_repeats}x) ...", file=sys.stderr, flush=True)
    details = run_ratios(args.work / series[-1]["lakehouse"], args.work, args.ratio_repeats, args.timeout,
                         args.code_version)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result = assemble_result(details, series, machine, [
        f"series: first nightly runs (all {series[-1]['days']} landing days ingested) of "
        f"jobs.orchestration.pipeline.run_pipeline for {RUN_DATE}, each in its own process; seconds = median of "
        f"{args.repeats} run(s) of run_pipeline (Spark start-up excluded, see spark_start_seconds), "
        "peak_rss_mb = max over those runs of the peak summed RSS of the worker process tree "
        "(driver + Spark JVM + Python workers; pages shared by forked workers count once per process); "
        "peak_rss_by_kind_mb = each kind's own peak (driver = the Python driver process; jvm = the Spark "
        "JVM, which in local mode holds the executors too).",
        f"bare: benchmarks/bare.py on the same landing zone, {args.repeats} run(s) interleaved with "
        "fairshelf's (fairshelf, bare, ...); seconds = its four phases, Spark start-up excluded as for "
        "fairshelf, so fairshelf_vs_bare = fairshelf seconds / bare seconds, both without Spark start-up.",
        f"ratios: measured on the {args.sizes[-1]:,}-event lakehouse, medians of {args.ratio_repeats} "
        "interleaved timed run(s) per side after an untimed warm-up; see ratio_details.",
        "The machine is shared with other jobs: compare load_average_start/end and each run's "
        "load_average before reading small differences.",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary_table(result))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
