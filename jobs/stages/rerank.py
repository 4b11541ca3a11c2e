"""Rerank stage: each user's top-N ``silver/candidates`` -> a diversity-constrained shelf
of ``shelf.size`` titles in ``silver/shelves`` (the re-ranking itself is
``jobs.shared.shelves.rerank_candidates``).

The stage re-checks its shelves with ``shelf_constraint_checks`` and the "recommendations"
Great Expectations suite (ranks, uniqueness, ``unmet_constraints`` = 0; results in
gold/output_quality_results) and fails its ``diversity`` gate, before anything is written,
when a blocking expectation fails.
"""

from __future__ import annotations

import time
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import Config
from jobs.core.errors import GateFailed
from jobs.core.schemas import allowed_columns
from jobs.recsys.diversity import (
    FLAGS,
)
from jobs.shared import expectation_suites
from jobs.shared.shelves import filter_top_k, rerank_candidates, shelf_constraint_checks
from jobs.shared.stage import StageResult, stage_main

# --- the stage ------------------------------------------------------------------------------


def validate_shelves(
    spark: SparkSession, result: StageResult, shelves: DataFrame, checks: DataFrame, size: int
) -> list[str]:
    """The "recommendations" Great Expectations suite (``jobs.shared.expectation_suites``) over the shelves
    with each shelf's ``unmet_constraints``; results go to gold/output_quality_results.
    Returns the failed blocking expectations, one line each."""

    frame = shelves.join(checks.select("user_key", "unmet_constraints"), "user_key", "left")
    outcomes = expectation_suites.validate_frame(
        frame, "recommendations", {"shelf_size": size}, result.config, result.run_id, result.run_date,
        stage=result.stage,
    )
    expectation_suites.record_results(spark, result, outcomes, table="gold/output_quality_results")
    return [line for outcome in outcomes for line in outcome.blocking_failures]


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """silver/candidates, silver/content, silver/interactions -> silver/shelves."""
    day = [run_date.isoformat()]
    result = StageResult("rerank", run_date, run_id, config)
    candidates = result.read(spark, "silver/candidates", day)
    content = result.read(spark, "silver/content", day)
    history = result.read(spark, "silver/interactions", day)
    settings, size = config.rerank, config.shelf.size

    start = time.perf_counter()
    shelves = rerank_candidates(candidates, content, history, settings, size).cache()
    users = shelves.select("user_key").distinct().count()
    rerank_seconds = time.perf_counter() - start
    start = time.perf_counter()
    plain = filter_top_k(candidates, size).cache()
    plain.count()
    topk_seconds = time.perf_counter() - start

    start = time.perf_counter()
    checks = shelf_constraint_checks(shelves, content, history, settings).cache()
    summary = checks.agg(
        F.count(F.lit(1)).alias("shelves"),
        *[F.sum(F.col(f"unmet_{flag}").cast("int")).alias(flag) for flag in FLAGS],
    ).first()
    failures = [
        f"{flag}: {summary[flag]} of {summary['shelves']} shelves violate it without a flag (allowed: 0)"
        for flag in FLAGS if summary[flag]
    ]
    failures += validate_shelves(spark, result, shelves, checks, size)
    validation_seconds = time.perf_counter() - start
    if failures:
        raise GateFailed("diversity", failures)

    result.write(
        shelves.withColumn("run_date", F.lit(day[0])).select(*allowed_columns("silver/shelves")), "silver/shelves"
    )
    per_user = shelves.groupBy("user_key").agg(F.first("constraint_flags", ignorenulls=True).alias("flags"))
    flagged = per_user.select(
        F.avg(F.col("flags").isNotNull().cast("double")).alias("any"),
        *[F.avg(F.coalesce(F.array_contains(F.split("flags", ","), f), F.lit(False)).cast("double")).alias(f) for f in FLAGS],
    ).first()
    titles = shelves.select("content_id").distinct().count()
    plain_titles = plain.select("content_id").distinct().count()
    result.metrics.update(
        shelf_users=users,
        flagged_share=round(flagged["any"] or 0.0, 4),
        flagged_share_by_constraint={f: round(flagged[f] or 0.0, 4) for f in FLAGS},
        explore_rows=shelves.where("explore").count(),
        shelf_titles=titles,
        unconstrained_titles=plain_titles,
        coverage_ratio=round(titles / plain_titles, 3) if plain_titles else None,
        unmet_constraint_shelves=0,
        rerank_seconds=round(rerank_seconds, 2),
        topk_seconds=round(topk_seconds, 2),
        validation_seconds=round(validation_seconds, 2),  # the re-check and the recommendations suite
    )
    for df in (shelves, plain, checks):
        df.unpersist()
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
