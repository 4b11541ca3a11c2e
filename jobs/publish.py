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
POPULAR_DAYS = 7


def filter_top_candidates(candidates: DataFrame, size: int) -> DataFrame:
    """The first ``size`` candidates of each user, ranked 1..size by score."""
    order = Window.partitionBy("user_key").orderBy(F.desc("score"), "content_id")
    return (
        candidates.withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= size)
        .select("user_key", "rank", "content_id", "score")
    )


def item_factor_frame(spark: SparkSession, factors: np.ndarray, content_ids: np.ndarray) -> DataFrame:
    """Unit-length item factors as a (content_id, factors array) DataFrame."""
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    unit = factors / np.where(norms == 0, 1, norms)
    table = pa.table(
        {"content_id": content_ids, "factors": pa.array(list(unit.astype(np.float64)))}
    )
    return spark.createDataFrame(table)


def with_because(shelves: DataFrame, history: DataFrame, item_factors: DataFrame) -> DataFrame:
    """Add ``because_content_id``: the watched title that best explains each pick.

    Score of a watched title j for pick i: cos(q_i, q_j) x the user's confidence in j.
    """
    dot = F.aggregate(
        F.zip_with("pick_f", "seen_f", lambda a, b: a * b), F.lit(0.0), lambda acc, v: acc + v
    )
    picks = shelves.join(
        F.broadcast(item_factors.withColumnRenamed("factors", "pick_f")), "content_id"
    )
    seen = history.select(
        "user_key", F.col("content_id").alias("seen_id"), "confidence"
    ).join(
        F.broadcast(item_factors.select(F.col("content_id").alias("seen_id"), F.col("factors").alias("seen_f"))),
        "seen_id",
    )
    pairs = picks.join(seen, "user_key").withColumn("_support", dot * F.col("confidence"))
    best = Window.partitionBy("user_key", "content_id").orderBy(F.desc("_support"), "seen_id")
    because = (
        pairs.withColumn("_n", F.row_number().over(best))
        .where("_n = 1")
        .select("user_key", "content_id", F.col("seen_id").alias("because_content_id"))
    )
    return shelves.join(because, ["user_key", "content_id"], "left")


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
    events: DataFrame, user_features: DataFrame, size: int, k: int
) -> DataFrame:
    """Most-watched titles per region and overall, counting distinct viewers.

    A title needs at least ``k`` distinct viewers in a region to be listed there.
    """
    regions = user_features.select("user_key", F.coalesce("region", F.lit("*")).alias("region"))
    viewed = events.select("user_key", "content_id").distinct().join(regions, "user_key", "left")
    viewed = viewed.withColumn("region", F.coalesce("region", F.lit("*")))
    per_region = viewed.groupBy("region", "content_id").agg(F.count(F.lit(1)).alias("viewers"))
    overall = viewed.groupBy("content_id").agg(F.count(F.lit(1)).alias("viewers")).withColumn(
        "region", F.lit(ALL_REGIONS)
    )
    popular = per_region.unionByName(overall).where(F.col("viewers") >= k)
    order = Window.partitionBy("region").orderBy(F.desc("viewers"), "content_id")
    reason = F.when(F.col("region") == ALL_REGIONS, "Popular on fairshelf").otherwise(
        "Popular in your region"
    )
    return (
        popular.withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= size)
        .withColumn("score", F.col("viewers").cast("double"))
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
    recent = read_silver(spark, config, "silver/events", days_up_to(run_date, POPULAR_DAYS))

    factors, ids = load_item_factors(Path(config.model_dir(run_id)))
    shelves = filter_top_candidates(candidates, config.shelf.size)
    shelves = with_reason(with_because(shelves, history, item_factor_frame(spark, factors, ids)), content)
    shelves = _with_run(shelves, run_id, run_date).withColumn(
        "model_version", F.lit(model_version(config, run_id))
    ).withColumn("constraint_flags", F.lit(None).cast("string"))

    defaults = _with_run(
        build_default_shelves(recent, users, config.shelf.default_shelf_size, config.privacy.k_anonymity),
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
