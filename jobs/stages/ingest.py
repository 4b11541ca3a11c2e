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

from jobs.core.codes import COUNTRY_CODES, DEVICE_TYPES, LANGUAGE_CODES
from jobs.core.config import Config
from jobs.core.schemas import CATALOG, VIEWING_EVENTS, allowed_columns
from jobs.lake import tables
from jobs.lake.landing import check_landing_contract, events_path, landing_event_dates, landing_frame, read_landing
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
    "bad_device_type",
    "bad_country",
)
# A catalog year outside this range is not a release year (the first films are from the 1880s).
FIRST_RELEASE_YEAR = 1870


def dates_to_ingest(landing_dates: list[str], ingested: set[str], run_date: date, history_days: int) -> list[str]:
    """D itself, and the days of the history window before D not ingested yet."""
    first = (run_date - timedelta(days=history_days - 1)).isoformat()
    day = run_date.isoformat()
    missing = [d for d in landing_dates if first <= d < day and d not in ingested]
    return sorted(missing) + [day]


def with_typed_event_fields(events: DataFrame) -> DataFrame:
    """Parse the landing strings; unparseable values become null (and are judged later).
    Device types are compared in lower case, countries in upper case, both trimmed."""
    seconds = F.when(
        F.trim(F.col("seconds_watched")).rlike(r"^-?[0-9]+$"),
        F.col("seconds_watched").cast("long"),
    )
    return (
        events.withColumn("_started", F.col("started_at").cast("timestamp"))
        .withColumn("_seconds", seconds)
        .withColumn("device_type", F.lower(F.trim("device_type")))
        .withColumn("country", F.upper(F.trim("country")))
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
        ("bad_device_type", F.col("device_type").isNotNull() & ~F.col("device_type").isin(*DEVICE_TYPES)),
        ("bad_country", F.col("country").isNotNull() & ~F.col("country").isin(*sorted(COUNTRY_CODES))),
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


def plain_text(column: str) -> Column:
    """Text with control and format characters (newlines, tabs, zero-width marks) replaced
    by spaces, runs of spaces folded, trimmed: what a title may show in a reason."""
    cleaned = F.regexp_replace(F.col(column), r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+", " ")
    return F.trim(F.regexp_replace(cleaned, r"\s{2,}", " "))


def with_checked_catalog_values(catalog: DataFrame, run_date: date) -> DataFrame:
    """Catalog values outside their domain become null (a title is still watchable without
    them): ``original_language`` not an ISO 639-1 code (compared in lower case),
    ``release_year`` not a year from ``FIRST_RELEASE_YEAR`` to next year,
    ``duration_seconds`` not a positive whole number. Titles become ``plain_text``."""
    year = F.when(F.trim("release_year").rlike(r"^[0-9]{4}$"), F.col("release_year").cast("int"))
    duration = F.when(F.trim("duration_seconds").rlike(r"^[0-9]+$"), F.col("duration_seconds").cast("long"))
    language = F.lower(F.trim("original_language"))
    return (
        catalog.withColumn("title", plain_text("title"))
        .withColumn("original_language", F.when(language.isin(*sorted(LANGUAGE_CODES)), language))
        .withColumn("release_year", F.when(year.between(FIRST_RELEASE_YEAR, run_date.year + 1), year))
        .withColumn("duration_seconds", F.when(duration > 0, duration))
    )


def catalog_values_nulled(catalog: DataFrame, checked: DataFrame) -> dict[str, int]:
    """Per catalog column, how many values ``with_checked_catalog_values`` turned to null."""
    columns = ("original_language", "release_year", "duration_seconds")
    before = catalog.select([F.col(c).alias(f"raw_{c}") for c in columns])
    after = checked.select(columns)
    counts = before.agg(*[F.count(f"raw_{c}").alias(c) for c in columns]).first()
    kept = after.agg(*[F.count(c).alias(c) for c in columns]).first()
    return {c: counts[c] - kept[c] for c in columns if counts[c] - kept[c]}


def build_content(catalog: DataFrame, run_date: date) -> DataFrame:
    """Catalog -> silver/content: typed and checked (``with_checked_catalog_values``), one
    row per content id, primary genre derived."""
    genres = F.split(F.coalesce(F.col("genres"), F.lit("")), r"\|")
    content = (
        with_checked_catalog_values(catalog.where(F.col("content_id").isNotNull()), run_date)
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
    event_folders = [events_path(config, d) for d in days]
    check_landing_contract(event_folders, "viewing_events")  # before anything is written
    check_landing_contract([config.landing("catalog")], "catalog")
    raw_events = read_landing(spark, event_folders, VIEWING_EVENTS)
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
        catalog_values_nulled=catalog_values_nulled(catalog, with_checked_catalog_values(catalog, run_date)),
    )
    checked.unpersist()
    content.unpersist()
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
