"""Publish stage: candidates -> the published shelves in ``gold/``.

- ``gold/recommendations``: each consenting user's shelf (top ``shelf.size``), every
  title with a reason: the user's own past title most similar to it (cosine of the
  model's item factors, weighted by how much the user watched it).
- ``gold/default_recommendations``: the non-personalized shelf per region (and
  ``ALL``) for users without consent or history. A title enters a region's shelf only
  when at least k distinct users there watched it, so no shelf reveals one person.
- ``gold/runs``: one row per run, written last: readers take the latest successful run.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs.config import Config
from jobs.schemas import allowed_columns
from jobs.stage import StageResult, days_up_to, read_silver, stage_main
from jobs.train import load_item_factors, model_version

ALL_REGIONS = "ALL"


def filter_top_candidates(candidates: DataFrame, size: int) -> DataFrame:
    """The first ``size`` candidates of each user, ranked 1..size by score."""
    order = Window.partitionBy("user_key").orderBy(F.desc("score"), "content_id")
    return (
        candidates.withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= size)
        .select("user_key", "rank", "content_id", "score")
    )


def unit_rows(factors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), for cosine similarity."""
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return (factors / np.where(norms == 0, 1, norms)).astype(np.float32)


def best_because(
    picks: list[int], seen: list[int], confidence: list[float], unit: np.ndarray
) -> list[int]:
    """For each pick (item row), the seen item row with the highest
    cos(pick, seen) x confidence: the user's own title that best explains it."""
    support = (unit[picks] @ unit[seen].T) * np.asarray(confidence, dtype=np.float32)
    return [seen[j] for j in support.argmax(axis=1)]


BECAUSE_SCHEMA = "user_key string, content_id string, because_content_id string"


def with_because(
    shelves: DataFrame, history: DataFrame, factors: np.ndarray, content_ids: np.ndarray
) -> DataFrame:
    """Add ``because_content_id``: the watched title that best explains each pick.

    Each user's picks and history are gathered into one row; executors score them
    in Arrow batches with numpy against the (broadcast) item factors.
    """
    unit = unit_rows(factors)
    ids = [str(c) for c in content_ids]

    def explain(batches):
        row_of = {content_id: i for i, content_id in enumerate(ids)}
        for batch in batches:
            users, picked, because = [], [], []
            for user in batch.to_pylist():
                picks = [row_of[c] for c in user["picks"] if c in row_of]
                seen = [(row_of[c], w) for c, w in zip(user["seen"] or [], user["weights"] or []) if c in row_of]
                if not picks or not seen:
                    continue
                rows, weights = zip(*seen)
                for pick, reason in zip(picks, best_because(picks, list(rows), list(weights), unit)):
                    users.append(user["user_key"])
                    picked.append(ids[pick])
                    because.append(ids[reason])
            yield pa.RecordBatch.from_pydict(
                {"user_key": users, "content_id": picked, "because_content_id": because}
            )

    gathered = shelves.groupBy("user_key").agg(F.collect_list("content_id").alias("picks")).join(
        history.groupBy("user_key").agg(
            F.collect_list("content_id").alias("seen"), F.collect_list("confidence").alias("weights")
        ),
        "user_key",
        "left",
    )
    return shelves.join(gathered.mapInArrow(explain, BECAUSE_SCHEMA), ["user_key", "content_id"], "left")


def with_reason(shelves: DataFrame, content: DataFrame) -> DataFrame:
    """Render ``because_content_id`` as a short reason a person can read."""
    titles = content.select(F.col("content_id").alias("because_content_id"), F.col("title").alias("_t"))
    reason = F.when(F.col("_t").isNotNull(), F.concat(F.lit("Because you watched "), F.col("_t")))
    return (
        shelves.join(F.broadcast(titles), "because_content_id", "left")
        .withColumn("reason", F.coalesce(reason, F.lit("Picked for your viewing history")))
        .drop("_t", "because_content_id")
    )


def build_default_shelves(
    events: DataFrame, user_features: DataFrame, run_date: date, half_life_days: float, size: int, k: int
) -> DataFrame:
    """Popular titles per region and overall, from distinct viewers over the history
    window, each viewer counting ``0.5 ** (days since their last view / half life)``.

    A title needs at least ``k`` distinct viewers in a region to be listed there, so
    no shelf reveals what one person watched.
    """
    regions = user_features.select("user_key", F.coalesce("region", F.lit("*")).alias("region"))
    last_views = events.groupBy("user_key", "content_id").agg(F.max("event_date").alias("_last"))
    weight = F.pow(F.lit(0.5), F.datediff(F.lit(run_date), F.to_date("_last")) / F.lit(half_life_days))
    viewed = (
        last_views.join(regions, "user_key", "left")
        .withColumn("region", F.coalesce("region", F.lit("*")))
        .withColumn("_weight", weight)
    )
    popularity = [F.count(F.lit(1)).alias("viewers"), F.sum("_weight").alias("score")]
    per_region = viewed.groupBy("region", "content_id").agg(*popularity)
    overall = viewed.groupBy("content_id").agg(*popularity).withColumn("region", F.lit(ALL_REGIONS))
    popular = per_region.unionByName(overall).where(F.col("viewers") >= k)
    order = Window.partitionBy("region").orderBy(F.desc("score"), "content_id")
    reason = F.when(F.col("region") == ALL_REGIONS, "Popular on fairshelf").otherwise(
        "Popular in your region"
    )
    return (
        popular.withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= size)
        .withColumn("reason", reason)
    )


def _with_run(df: DataFrame, run_id: str, run_date: date) -> DataFrame:
    return df.withColumn("run_id", F.lit(run_id)).withColumn("run_date", F.lit(run_date.isoformat()))


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """silver/candidates and friends -> gold/recommendations, gold/default_recommendations."""
    day = [run_date.isoformat()]
    candidates = read_silver(spark, config, "silver/candidates", day)
    content = read_silver(spark, config, "silver/content", day)
    users = read_silver(spark, config, "silver/user_features", day)
    history = read_silver(spark, config, "silver/interactions", day)
    window = read_silver(spark, config, "silver/events", days_up_to(run_date, config.shelf.history_days))

    factors, ids = load_item_factors(Path(config.model_dir(run_id)))
    shelves = filter_top_candidates(candidates, config.shelf.size)
    shelves = with_reason(with_because(shelves, history, factors, ids), content)
    shelves = _with_run(shelves, run_id, run_date).withColumn(
        "model_version", F.lit(model_version(config, run_id))
    ).withColumn("constraint_flags", F.lit(None).cast("string"))

    defaults = _with_run(
        build_default_shelves(
            window,
            users,
            run_date,
            config.model.recency_half_life_days,
            config.shelf.default_shelf_size,
            config.privacy.k_anonymity,
        ),
        run_id,
        run_date,
    )
    result = StageResult("publish", run_date, run_id, config)
    result.write(shelves.select(*allowed_columns("gold/recommendations")), "gold/recommendations")
    result.write(
        defaults.select(*allowed_columns("gold/default_recommendations")),
        "gold/default_recommendations",
    )
    summary = shelves.agg(
        F.countDistinct("user_key").alias("users"),
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("content_id").alias("titles"),
    ).first()
    result.metrics.update(
        shelf_users=summary["users"],
        shelf_rows=summary["rows"],
        shelf_titles=summary["titles"],
        default_regions=defaults.select("region").distinct().count(),
    )
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
