"""Quality stage: Great Expectations gates between features and train.

The suites are Great Expectations 1.x JSON in ``jobs/shared/expectations/`` (run through
``jobs.shared.expectation_suites``), one per table or profile
frame, loaded with GE's own ``ExpectationSuite`` and run against Spark DataFrames through
an ephemeral GE context; nothing here builds an expectation. Values that change per run
(run date bounds, the volume band, configured bounds) are suite parameters
(``{"$PARAMETER": ...}``) supplied at validation time.

Each expectation's severity is GE's own ``severity`` field: ``critical`` is blocking (the
run fails before publish), ``warning`` is recorded only. A GE checkpoint reports failure
without raising; ``raise_on_blocking`` turns blocking failures into ``GateFailed``.

Cost: each table is cached once and validated once as a Spark DataFrame (GE bundles the
aggregate metrics of a suite); checks across groups or runs validate small profile frames
(``jobs.shared.quality_profiles``), each computed in one Spark pass and validated as a
pandas DataFrame (a few rows: a Spark job per metric would cost more than the check).

Every result lands in ``gold/quality_results`` (one commit per run date; a rerun replaces
it), with the observed volume and group shares that later runs compare with, and GE's
Data Docs HTML is built under ``reports/<D>/quality/``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import Config
from jobs.core.dates import days_up_to, utc_now
from jobs.core.schemas import VIEWING_EVENTS
from jobs.lake import tables
from jobs.lake.landing import earlier_landing_counts, read_landing
from jobs.shared import quality_profiles as qp
from jobs.shared.expectation_suites import (
    OBSERVATION,
    Validator,
    outcome_rows,
    raise_on_blocking,
    record_results,
    small_frame,
    validate_identifiers,
)
from jobs.shared.stage import StageResult, stage_main

log = logging.getLogger(__name__)


# -- history: what earlier run dates observed (never "latest" by wall clock) ----------

def previous_observations(
    spark: SparkSession, result: StageResult, config: Config, suite: str
) -> list[tuple[str, str]]:
    """(run_date, observed_value) of ``suite``'s observation rows of successful quality
    runs before the run date, oldest first (one per run date: its last check)."""
    uri = config.table("gold", "quality_results")
    if tables.table_version(uri) is None:
        return []
    day = result.run_date.isoformat()
    rows = (
        result.read(spark, "gold/quality_results")
        .where((F.col("run_date") < day) & (F.col("suite") == suite) & (F.col("severity") == OBSERVATION))
        .where(F.col("success"))
        .select("run_date", "observed_value", "checked_at")
        .collect()
    )
    latest: dict[str, tuple[str, str]] = {}
    for row in rows:
        if row["run_date"] not in latest or row["checked_at"] > latest[row["run_date"]][0]:
            latest[row["run_date"]] = (row["checked_at"], row["observed_value"])
    return [(d, latest[d][1]) for d in sorted(latest)]


def observation_row(
    result: StageResult, suite: str, what: str, value: Any, passed: bool
) -> dict[str, Any]:
    """A gold/quality_results row storing an observed profile for later runs."""
    return {
        "run_id": result.run_id,
        "run_date": result.run_date.isoformat(),
        "stage": result.stage,
        "suite": suite,
        "expectation": what,
        "severity": OBSERVATION,
        "success": passed,
        "observed_value": json.dumps(value, default=str),
        "details": None,
        "checked_at": utc_now().isoformat(),
    }


def volume_band_for(spark: SparkSession, result: StageResult, config: Config, landing_rows: int) -> qp.VolumeBand:
    """The day's landing rows against the previous successful runs' counts or, while
    there are too few of those (a new deployment), the earlier landing days' row counts
    (``jobs.shared.quality_profiles.volume_baseline``)."""
    q = config.quality
    runs = [json.loads(v) for _, v in previous_observations(spark, result, config, "volume")][-q.volume_history_runs:]
    landing = []
    if len(runs) < q.volume_min_history:
        landing = earlier_landing_counts(config, result.run_date.isoformat(), q.volume_history_runs)
    counts, baseline = qp.volume_baseline(runs, landing, q.volume_min_history)
    return qp.volume_band(landing_rows, counts, q.volume_min_history, q.volume_band_low, q.volume_band_high, baseline)


def suite_parameters(config: Config, run_date: date, band: qp.VolumeBand) -> dict[str, Any]:
    """Every ``$PARAMETER`` the quality stage's suites use, for ``run_date``."""
    q = config.quality
    first = run_date - timedelta(days=config.shelf.history_days - 1)
    return {
        "run_date": run_date.isoformat(),
        "first_day": first.isoformat(),
        "max_watch_seconds": config.privacy.max_watch_seconds,
        "landing_key_mostly": q.landing_key_mostly,
        "landing_value_mostly": q.landing_value_mostly,
        # Without enough history the band is [0, unbounded): the warning "trailing_median
        # not null" records that the volume was not compared.
        "volume_min_rows": band.min_rows if band.min_rows is not None else 0,
        "volume_max_rows": band.max_rows,
        "min_group_share": q.min_group_share,
        "max_group_share": q.max_group_share,
        "collapse_fraction": q.collapse_fraction,
        "max_kl_divergence": q.max_kl_divergence,
    }


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """Validate the landing events of D, silver/events (window), user_features, content,
    interactions and the representation/volume/identifier profiles; record every result
    in gold/quality_results and Data Docs; fail on any blocking expectation."""
    from jobs.lake.landing import events_path

    result = StageResult("quality", run_date, run_id, config)
    day = run_date.isoformat()
    started = time.perf_counter()
    landing = read_landing(spark, events_path(config, day), VIEWING_EVENTS).cache()
    content = result.read(spark, "silver/content", [day]).cache()
    events = qp.with_content_in_catalog(
        result.read(spark, "silver/events", days_up_to(run_date, config.shelf.history_days)), content
    ).cache()
    users = result.read(spark, "silver/user_features", [day]).cache()
    interactions = result.read(spark, "silver/interactions", [day]).cache()

    q = config.quality
    band = volume_band_for(spark, result, config, landing.count())
    previous = previous_observations(spark, result, config, "representation")
    previous_shares = spark.createDataFrame(
        [tuple(r) for r in json.loads(previous[-1][1])] if previous else [], qp.SHARES
    )
    profile = qp.with_previous_shares(qp.group_shares(interactions, users, content), previous_shares).cache()
    representation = small_frame(profile)
    parameters = suite_parameters(config, run_date, band)

    docs_dir = str((Path(config.report_dir(day)) / "quality").resolve()) if q.data_docs else None  # GE: absolute
    validator = Validator(docs_dir)
    frames = {
        "landing_events": landing,
        "volume": small_frame(spark.createDataFrame([qp.volume_row(band)], qp.VOLUME)),
        "silver_events": events,
        "user_features": users,
        "content": content,
        "interactions": interactions,
        "representation": representation,
        "representation_drift": small_frame(qp.representation_drift(profile)),
    }
    outcomes = []
    for suite_name, frame in frames.items():
        ge_result, meta = validator.validate(frame, suite_name, parameters)
        outcomes.append(outcome_rows(suite_name, ge_result, meta, "quality", run_id, run_date))
    silver = {name: frames[name] for name in ("silver_events", "user_features", "content", "interactions")}
    outcomes.append(validate_identifiers(silver, config, run_id, run_date, validator=validator))
    validation_seconds = time.perf_counter() - started

    passed = all(o.success for o in outcomes)
    present = representation[representation["group_count"] > 0]
    shares = [[r.population, r.dimension, r.group, float(r.share)] for r in present.itertuples()]
    observations = [
        observation_row(result, "volume", "observed landing_rows", band.landing_rows, passed),
        observation_row(result, "representation", "observed group shares", sorted(shares), passed),
    ]
    record_results(spark, result, outcomes, observations)
    docs = validator.build_docs()
    for frame in (landing, content, events, users, interactions, profile):
        frame.unpersist()

    warnings = [w for o in outcomes for w in o.warnings]
    for line in warnings:
        log.warning("quality warning: %s", line)
    result.metrics.update(
        validation_seconds=round(validation_seconds, 2),
        expectations=sum(len(o.rows) for o in outcomes),
        blocking_failures=sum(len(o.blocking_failures) for o in outcomes),
        warnings=len(warnings),
        warning_messages=warnings[:20],
        suites={o.suite: o.success for o in outcomes},
        landing_rows=band.landing_rows,
        volume_trailing_median=band.trailing_median,
        data_docs=docs,
    )
    raise_on_blocking("quality", outcomes)
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
