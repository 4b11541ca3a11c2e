"""Features stage: silver events -> ``silver/interactions``, the implicit-feedback
matrix the model trains on.

Confidence of (user, title) = sum over views of completion x recency decay, where
completion = min(1, seconds watched / duration) and a view ``d`` days before the run
date weighs ``0.5 ** (d / half_life)``. Only users with personalization consent
contribute; only events of the history window up to the run date are used.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import Config
from jobs.core.dates import days_up_to
from jobs.core.errors import StageError
from jobs.core.schemas import allowed_columns
from jobs.shared.stage import StageResult, stage_main


def filter_history_window(events: DataFrame, run_date: date, history_days: int) -> DataFrame:
    """Events of the ``history_days`` days ending on ``run_date`` (never after it)."""
    first = (run_date - timedelta(days=history_days - 1)).isoformat()
    return events.where(
        (F.col("run_date") >= F.lit(first)) & (F.col("run_date") <= F.lit(run_date.isoformat()))
    )


def filter_consenting_users(events: DataFrame, user_features: DataFrame) -> DataFrame:
    """Keep events of users known to have given personalization consent."""
    consenting = user_features.where("consent_personalization").select("user_key")
    return events.join(consenting, "user_key", "left_semi")


def build_interactions(
    events: DataFrame, content: DataFrame, run_date: date, half_life_days: float
) -> DataFrame:
    """Aggregate events to one weighted row per (user, title)."""
    durations = content.select("content_id", "duration_seconds")
    completion = F.least(
        F.lit(1.0),
        F.col("seconds_watched")
        / F.coalesce(F.nullif(F.col("duration_seconds"), F.lit(0)), F.col("seconds_watched")),
    )
    age_days = F.datediff(F.lit(run_date), F.to_date("event_date"))
    decay = F.pow(F.lit(0.5), age_days / F.lit(half_life_days))
    weighted = (
        events.where(F.col("seconds_watched") > 0)
        .join(F.broadcast(durations), "content_id", "inner")
        .withColumn("_completion", completion)
        .withColumn("_weight", F.col("_completion") * decay)
    )
    return (
        weighted.groupBy("user_key", "content_id")
        .agg(
            F.count(F.lit(1)).alias("views"),
            F.max("_completion").alias("completion"),
            F.max("event_date").alias("last_seen"),
            F.sum("_weight").alias("confidence"),
        )
        .withColumn("run_date", F.lit(run_date.isoformat()))
        .select(*allowed_columns("silver/interactions"))
    )


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """silver/events (history window), silver/user_features, silver/content ->
    silver/interactions."""
    day = run_date.isoformat()
    window = days_up_to(run_date, config.shelf.history_days)
    result = StageResult("features", run_date, run_id, config)
    events = filter_history_window(
        result.read(spark, "silver/events", window), run_date, config.shelf.history_days
    )
    users = result.read(spark, "silver/user_features", [day])
    content = result.read(spark, "silver/content", [day])
    interactions = build_interactions(
        filter_consenting_users(events, users),
        content,
        run_date,
        config.model.recency_half_life_days,
    ).cache()
    counts = interactions.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("user_key").alias("users"),
        F.countDistinct("content_id").alias("items"),
    ).first()
    if not counts["rows"]:
        raise StageError(
            f"no interactions for {day}: no consenting user has viewing events in the "
            f"{config.shelf.history_days} days up to it (check silver/events and consent)"
        )
    result.write(interactions, "silver/interactions")
    interactions.unpersist()
    result.metrics.update(interactions=counts["rows"], users=counts["users"], items=counts["items"])
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
