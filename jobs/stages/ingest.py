"""Ingest stage: viewing events and the catalog from landing/, checked against their
contract, minimized and pseudonymized.

``landing/viewing_events/date=D/`` -> ``silver/events`` (accepted) and
``quarantine/viewing_events`` (rejected, with a reason code, pseudonymized too);
``landing/catalog/`` -> ``silver/content``. Input rows = accepted + quarantined.

A run for date D ingests D's partition, which must exist, and catches up on every
landing partition of the history window before D that ``silver/events`` does not hold
yet (a first run, an import of past data). All of them land in one commit per table.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs.core.config import Config
from jobs.core.schemas import CATALOG, VIEWING_EVENTS, allowed_columns
from jobs.lake import tables
from jobs.lake.landing import events_path, landing_event_dates, landing_frame, read_landing
from jobs.shared.privacy import erased_user_keys, filter_erased_users, pseudonymize_accounts, with_hour_bucket
from jobs.shared.stage import StageResult, stage_main

# Reason codes, in the order they are checked (a record gets the first that applies).
REASONS = (
    "missing_event_id",
    "missing_account_id",
    "bad_timestamp",
    "outside_run_date",
    "bad_seconds",
    "negative_seconds",
    "absurd_seconds",
    "unknown_content",
    "duplicate_event",
)


def dates_to_ingest(landing_dates: list[str], ingested: set[str], run_date: date, history_days: int) -> list[str]:
    """D itself, and the days of the history window before D not ingested yet."""
    first = (run_date - timedelta(days=history_days - 1)).isoformat()
    day = run_date.isoformat()
    missing = [d for d in landing_dates if first <= d < day and d not in ingested]
    return sorted(missing) + [day]


def with_typed_event_fields(events: DataFrame) -> DataFrame:
    """Parse the landing strings; unparseable values become null (and are judged later)."""
    seconds = F.when(
        F.trim(F.col("seconds_watched")).rlike(r"^-?[0-9]+$"),
        F.col("seconds_watched").cast("long"),
    )
    return events.withColumn("_started", F.col("started_at").cast("timestamp")).withColumn(
        "_seconds", seconds
    )


def with_landing_date(events: DataFrame) -> DataFrame:
    """``landing_date``: the date of the landing partition a record was read from."""
    path = F.col("_metadata.file_path")
    return events.withColumn("landing_date", F.regexp_extract(path, r"date=(\d{4}-\d{2}-\d{2})", 1))


def with_rejection_reason(
    events: DataFrame, catalog_ids: DataFrame, max_watch_seconds: int
) -> DataFrame:
    """Add ``reason``: the first contract rule an event breaks, or null when it is valid.

    ``events`` has the typed ``_started``/``_seconds`` columns and ``landing_date``, the
    day its partition is for; ``catalog_ids`` one ``content_id`` column of known titles.
    """
    known = catalog_ids.select("content_id", F.lit(True).alias("_known")).distinct()
    copies = Window.partitionBy("event_id").orderBy(*[F.col(c) for c in VIEWING_EVENTS.fieldNames()])
    checked = events.join(F.broadcast(known), "content_id", "left").withColumn(
        "_copy", F.row_number().over(copies)
    )
    rules: list[tuple[str, Column]] = [
        ("missing_event_id", F.col("event_id").isNull()),
        ("missing_account_id", F.col("account_id").isNull()),
        ("bad_timestamp", F.col("_started").isNull()),
        ("outside_run_date", F.date_format("_started", "yyyy-MM-dd") != F.col("landing_date")),
        ("bad_seconds", F.col("_seconds").isNull()),
        ("negative_seconds", F.col("_seconds") < 0),
        ("absurd_seconds", F.col("_seconds") > max_watch_seconds),
        ("unknown_content", F.col("_known").isNull()),
        ("duplicate_event", F.col("_copy") > 1),
    ]
    reason = F.when(rules[0][1], F.lit(rules[0][0]))
    for code, rule in rules[1:]:
        reason = reason.when(rule, F.lit(code))
    return checked.withColumn("reason", reason).drop("_known", "_copy")


def build_silver_events(checked: DataFrame, key: bytes) -> DataFrame:
    """Accepted events, pseudonymized and minimized to the silver/events allow-list."""
    accepted = checked.where(F.col("reason").isNull())
    accepted = accepted.withColumn("seconds_watched", F.col("_seconds")).withColumn(
        "started_at", F.col("_started")
    )
    accepted = with_hour_bucket(pseudonymize_accounts(accepted, key))
    return accepted.withColumn("run_date", F.col("landing_date")).select(
        *allowed_columns("silver/events")
    )


def build_quarantine(checked: DataFrame, key: bytes) -> DataFrame:
    """Rejected events with their reason; pseudonymized, no direct identifier kept."""
    rejected = checked.where(F.col("reason").isNotNull())
    rejected = pseudonymize_accounts(rejected, key).withColumn(
        "event_date", F.date_format("_started", "yyyy-MM-dd")
    )
    return rejected.withColumn("run_date", F.col("landing_date")).select(
        *allowed_columns("quarantine/viewing_events")
    )


def build_content(catalog: DataFrame, run_date: date) -> DataFrame:
    """Catalog -> silver/content: typed, one row per content id, primary genre derived."""
    genres = F.split(F.coalesce(F.col("genres"), F.lit("")), r"\|")
    content = (
        catalog.where(F.col("content_id").isNotNull())
        .withColumn("release_year", F.col("release_year").cast("int"))
        .withColumn("duration_seconds", F.col("duration_seconds").cast("long"))
        .withColumn("primary_genre", F.when(genres[0] != "", genres[0]))
    )
    first = Window.partitionBy("content_id").orderBy(F.col("title").asc_nulls_last())
    content = content.withColumn("_n", F.row_number().over(first)).where("_n = 1")
    return content.withColumn("run_date", F.lit(run_date.isoformat())).select(
        *allowed_columns("silver/content")
    )


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """landing viewing events up to ``run_date`` and the catalog -> silver/events,
    silver/content, quarantine/viewing_events."""
    key = config.require_pseudonym_key()
    events_table = config.table("silver", "events")
    days = dates_to_ingest(
        landing_event_dates(config),
        set(tables.partition_values(events_table, "run_date")),
        run_date,
        config.shelf.history_days,
    )
    raw_events = read_landing(spark, [events_path(config, d) for d in days], VIEWING_EVENTS)
    catalog = landing_frame(spark, config, "catalog", CATALOG)

    content = build_content(catalog, run_date).cache()
    checked = with_rejection_reason(
        with_typed_event_fields(with_landing_date(raw_events)),
        content.select("content_id"),
        config.privacy.max_watch_seconds,
    ).cache()

    by_reason = {r["reason"]: r["count"] for r in checked.groupBy("reason").count().collect()}
    accepted = by_reason.pop(None, 0)
    erased = erased_user_keys(spark, config)  # landing may still hold erased users' data
    result = StageResult("ingest", run_date, run_id, config)
    result.write(content, "silver/content")
    result.write(
        filter_erased_users(build_silver_events(checked, key), erased), "silver/events", partitions=days
    )
    result.write(
        filter_erased_users(build_quarantine(checked, key), erased),
        "quarantine/viewing_events",
        partitions=days,
    )
    result.metrics.update(
        ingested_dates=len(days),
        first_ingested_date=days[0],
        input_events=accepted + sum(by_reason.values()),
        accepted_events=accepted,
        quarantined_events=sum(by_reason.values()),
        quarantined_by_reason=dict(sorted(by_reason.items())),
        content_items=content.count(),
        catalog_rows=catalog.count(),
    )
    checked.unpersist()
    content.unpersist()
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
