"""Issue 14's "done when" checks, computed from a result: each goal with its bound, the
observed value, and whether it is met (null when the result has no point or ratio to
judge it by, e.g. a ``--quick`` run has no 1M or 16M point).

Pure functions of the result's ``ratios`` and ``series`` dicts; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SMALL, LARGE = 1_000_000, 16_000_000  # events of the series points the scaling goals compare
SIZE_TOLERANCE = 0.01  # a point "is" the 1M point when its events are within 1% of 1M


@dataclass(frozen=True)
class Goal:
    name: str
    statement: str
    at_most: float | None = None
    at_least: float | None = None

    def judge(self, observed: float | None) -> dict[str, Any]:
        if observed is None:
            met = None
        elif self.at_most is not None:
            met = observed <= self.at_most
        else:
            met = observed >= self.at_least
        bound = {"at_most": self.at_most} if self.at_most is not None else {"at_least": self.at_least}
        return {"goal": self.name, "statement": self.statement, **bound, "observed": observed, "met": met}


GOALS = (
    Goal("fairshelf_vs_bare_at_1m", "fairshelf_vs_bare at most 2.0 at 1M events (both without Spark start-up)",
         at_most=2.0),
    Goal("seconds_per_event_16m_over_1m", "seconds per event at 16M at most that at 1M (observed: their quotient)",
         at_most=1.0),
    Goal("driver_peak_rss_16m_over_1m", "peak driver RSS at 16M at most 1.5x that at 1M (observed: their quotient)",
         at_most=1.5),
    Goal("validation_share", "validation_share at most 0.15", at_most=0.15),
    Goal("privacy_vs_copy", "privacy_vs_copy at most 1.5", at_most=1.5),
    Goal("publish_vs_parquet", "publish_vs_parquet at most 1.2", at_most=1.2),
    Goal("implicit_vs_mllib_speedup", "implicit_vs_mllib_speedup at least 10", at_least=10.0),
)


def point_at(series: list[dict[str, Any]], events: int) -> dict[str, Any] | None:
    """The series point of about ``events`` events (within SIZE_TOLERANCE), or None."""
    near = [p for p in series if abs(p["events"] - events) <= SIZE_TOLERANCE * events]
    return min(near, key=lambda p: abs(p["events"] - events)) if near else None


def seconds_per_event(point: dict[str, Any]) -> float:
    return point["seconds"] / point["events"]


def driver_peak_rss_mb(point: dict[str, Any]) -> float | None:
    return point.get("peak_rss_by_kind_mb", {}).get("driver")


def _quotient(measure, large: dict[str, Any] | None, small: dict[str, Any] | None) -> float | None:
    """measure(large) / measure(small), or None when a point or its measure is missing."""
    if large is None or small is None:
        return None
    top, bottom = measure(large), measure(small)
    return None if top is None or not bottom else round(top / bottom, 4)


def observed_values(ratios: dict[str, float | None], series: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each goal's observed value: ratios as reported, scaling goals from the 1M and 16M points."""
    small, large = point_at(series, SMALL), point_at(series, LARGE)
    bare_at_1m = (small or {}).get("fairshelf_vs_bare") or {}
    return {
        "fairshelf_vs_bare_at_1m": bare_at_1m.get("ratio"),
        "seconds_per_event_16m_over_1m": _quotient(seconds_per_event, large, small),
        "driver_peak_rss_16m_over_1m": _quotient(driver_peak_rss_mb, large, small),
        **{key: ratios.get(key) for key in ("validation_share", "privacy_vs_copy", "publish_vs_parquet",
                                            "implicit_vs_mllib_speedup")},
    }


def evaluate_goals(ratios: dict[str, float | None], series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``goals`` section of a result: one entry per goal of ``GOALS``."""
    observed = observed_values(ratios, series)
    return [goal.judge(observed[goal.name]) for goal in GOALS]
