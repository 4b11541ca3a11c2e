"""Publish stage: the re-ranked shelves (``silver/shelves``) -> the published shelves in ``gold/``.

- ``gold/recommendations``: each consenting user's shelf as ``jobs.stages.rerank`` built it
  (``shelf.size`` titles under the diversity constraints, ``constraint_flags`` naming any
  it could not satisfy), every title with a reason: titles in an explore slot are "New
  and diverse pick"; for the others, "Because you watched <title>" names the user's own watched title
  that contributed most to the model's score of the pick (``jobs.recsys.explain``: exact EASE
  contributions, ``implicit``'s ALS ``explain`` for ALS and the ALS part of the blend, a
  factor-cosine heuristic for BPR), computed on the executors in Arrow batches.
- ``gold/default_recommendations``: the non-personalized shelf per region (and
  ``ALL``) for users without consent or history. A title enters a region's shelf only
  when at least k distinct users there watched it, so no shelf reveals one person.

Publishing makes nothing visible by itself: the run becomes visible in one step when
``jobs.orchestration.pipeline.record_run`` appends its ``gold/runs`` row pinning the Delta version of
every published table. How a reader finds a user's shelf is ``jobs.lake.reader`` (without
Spark): the personal shelf, else the default shelf of the user's region, else ``ALL``.

The reasons a published title can carry are the constants of ``REASONS``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs.core.config import Config
from jobs.core.dates import days_up_to
from jobs.core.schemas import allowed_columns
from jobs.lake.model_store import load_saved_model
from jobs.lake.reader import ALL_REGIONS, UNKNOWN_REGION
from jobs.recsys.explain import Explainer, saved_model_explainer
from jobs.shared.stage import StageResult, stage_main

# Every reason a published title can carry (the ``reason`` column), by kind:
REASONS = {
    # personal shelf: the watched title that contributed most to the pick ("{title}")
    "because": "Because you watched {title}",
    # personal shelf: no watched title contributes positively (or it left the catalog)
    "history": "Picked for your viewing history",
    # default shelf of the user's region / of everyone (region ALL, and region "*" of the
    # users whose region is suppressed: it names no region, so neither does its reason)
    "popular_region": "Popular in your region",
    "popular_all": "Popular on fairshelf",
    # a title the re-ranker brings onto a shelf for diversity or novelty (issue 7)
    "new_diverse": "New and diverse pick",
}
BECAUSE_PREFIX = REASONS["because"].split("{")[0]


def filter_top_candidates(candidates: DataFrame, size: int) -> DataFrame:
    """The first ``size`` candidates of each user, ranked 1..size by score."""
    order = Window.partitionBy("user_key").orderBy(F.desc("score"), "content_id")
    return (
        candidates.withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= size)
        .select("user_key", "rank", "content_id", "score")
    )


BECAUSE_SCHEMA = "user_key string, content_id string, because_content_id string"


def _flat_rows(lists: pa.ListArray, ids: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, item row of each kept value, positions of the kept values) of a list
    column of content ids; ids the model does not know are left out."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = pc.index_in(pc.list_flatten(lists), value_set=ids)
    known = pc.is_valid(rows).to_numpy(zero_copy_only=False)
    owner = np.repeat(np.arange(len(lengths)), lengths)[known]
    indptr = np.r_[0, np.cumsum(np.bincount(owner, minlength=len(lengths)))].astype(np.int64)
    return indptr, pc.drop_null(rows).to_numpy().astype(np.int64), np.flatnonzero(known)


def explain_batch(batch: pa.RecordBatch, explainer: Explainer, ids: pa.Array) -> pa.RecordBatch:
    """One Arrow batch of users (``user_key``, ``picks``, ``seen``, ``weights``) -> one row
    per pick with the watched title that explains it (null when none does)."""
    picks, seen = batch.column("picks"), batch.column("seen")
    pick_ptr, pick_rows, pick_kept = _flat_rows(picks, ids)
    seen_ptr, seen_rows, seen_kept = _flat_rows(seen, ids)
    weights = pc.list_flatten(batch.column("weights")).to_numpy(zero_copy_only=False)[seen_kept]
    because = explainer.because(seen_ptr, seen_rows, weights, pick_ptr, pick_rows)
    lengths = pc.fill_null(pc.list_value_length(picks), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    reason = np.full(int(lengths.sum()), None, dtype=object)
    found = because >= 0
    reason[pick_kept[found]] = ids.take(pa.array(because[found])).to_numpy(zero_copy_only=False)
    return pa.RecordBatch.from_pydict(
        {
            "user_key": pc.take(batch.column("user_key"), pa.array(np.repeat(np.arange(len(lengths)), lengths))),
            "content_id": pc.list_flatten(picks),
            "because_content_id": pa.array(reason, pa.string()),
        }
    )


def with_because(shelves: DataFrame, history: DataFrame, explainer: Explainer, content_ids: np.ndarray) -> DataFrame:
    """Add ``because_content_id``: the watched title that contributed most to each pick.

    Each user's picks and history are gathered into one row; executors explain them in
    Arrow batches with numpy (``jobs.recsys.explain``), the model's arrays shipped with the
    function (for EASE only the columns of the titles on some shelf).
    """
    ids = pa.array([str(c) for c in content_ids], pa.string())
    shelf_titles = [r[0] for r in shelves.select("content_id").distinct().collect()]
    rows = pc.drop_null(pc.index_in(pa.array(shelf_titles, pa.string()), value_set=ids)).to_numpy()
    explainer = explainer.restricted_to(rows)

    def explain(batches):
        for batch in batches:
            yield explain_batch(batch, explainer, ids)

    gathered = shelves.groupBy("user_key").agg(F.collect_list("content_id").alias("picks")).join(
        history.groupBy("user_key").agg(
            F.collect_list(F.struct("content_id", "confidence")).alias("_history")
        ).select(
            "user_key",
            F.col("_history.content_id").alias("seen"),
            F.col("_history.confidence").cast("array<double>").alias("weights"),
        ),
        "user_key",
        "left",
    )
    return shelves.join(gathered.mapInArrow(explain, BECAUSE_SCHEMA), ["user_key", "content_id"], "left")


def with_reason(shelves: DataFrame, content: DataFrame) -> DataFrame:
    """Render ``because_content_id`` as a short reason a person can read (``REASONS``)."""
    titles = content.select(F.col("content_id").alias("because_content_id"), F.col("title").alias("_t"))
    reason = F.when(F.col("_t").isNotNull(), F.concat(F.lit(BECAUSE_PREFIX), F.col("_t")))
    return (
        shelves.join(F.broadcast(titles), "because_content_id", "left")
        .withColumn("reason", F.coalesce(reason, F.lit(REASONS["history"])))
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
    regions = user_features.select("user_key", F.coalesce("region", F.lit(UNKNOWN_REGION)).alias("region"))
    last_views = events.groupBy("user_key", "content_id").agg(F.max("event_date").alias("_last"))
    weight = F.pow(F.lit(0.5), F.datediff(F.lit(run_date), F.to_date("_last")) / F.lit(half_life_days))
    viewed = (
        last_views.join(regions, "user_key", "left")
        .withColumn("region", F.coalesce("region", F.lit(UNKNOWN_REGION)))
        .withColumn("_weight", weight)
    )
    popularity = [F.count(F.lit(1)).alias("viewers"), F.sum("_weight").alias("score")]
    per_region = viewed.groupBy("region", "content_id").agg(*popularity)
    overall = viewed.groupBy("content_id").agg(*popularity).withColumn("region", F.lit(ALL_REGIONS))
    popular = per_region.unionByName(overall).where(F.col("viewers") >= k)
    order = Window.partitionBy("region").orderBy(F.desc("score"), "content_id")
    reason = F.when(F.col("region").isin(ALL_REGIONS, UNKNOWN_REGION), REASONS["popular_all"]).otherwise(
        REASONS["popular_region"])
    return (
        popular.withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= size)
        .withColumn("reason", reason)
    )


def with_explore_reason(shelves: DataFrame) -> DataFrame:
    """Titles the re-ranker placed in an explore slot are "New and diverse pick"."""
    return shelves.withColumn(
        "reason", F.when(F.col("explore"), F.lit(REASONS["new_diverse"])).otherwise(F.col("reason"))
    )


def _with_run(df: DataFrame, run_id: str, run_date: date) -> DataFrame:
    return df.withColumn("run_id", F.lit(run_id)).withColumn("run_date", F.lit(run_date.isoformat()))


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """silver/shelves (re-ranked) and friends -> gold/recommendations, gold/default_recommendations."""
    day = [run_date.isoformat()]
    result = StageResult("publish", run_date, run_id, config)
    ranked = result.read(spark, "silver/shelves", day)
    content = result.read(spark, "silver/content", day)
    users = result.read(spark, "silver/user_features", day)
    history = result.read(spark, "silver/interactions", day)
    window = result.read(spark, "silver/events", days_up_to(run_date, config.shelf.history_days))

    model = load_saved_model(Path(config.model_dir(run_id)))
    shelves = ranked.select("user_key", "rank", "content_id", "score", "constraint_flags", "explore")
    shelves = with_reason(with_because(shelves, history, saved_model_explainer(model), model.content_ids), content)
    shelves = with_explore_reason(shelves)
    shelves = _with_run(shelves, run_id, run_date).withColumn(
        "model_version", F.lit(model.card["model_version"])
    )

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
    result.write(shelves.select(*allowed_columns("gold/recommendations")), "gold/recommendations")
    result.write(
        defaults.select(*allowed_columns("gold/default_recommendations")),
        "gold/default_recommendations",
    )
    summary = shelves.agg(
        F.countDistinct("user_key").alias("users"),
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("content_id").alias("titles"),
        F.sum(F.col("reason").startswith(BECAUSE_PREFIX).cast("long")).alias("explained"),
        F.sum(F.col("explore").cast("long")).alias("explore"),
    ).first()
    result.metrics.update(
        shelf_users=summary["users"],
        shelf_rows=summary["rows"],
        shelf_titles=summary["titles"],
        explained_rows=summary["explained"] or 0,
        new_diverse_rows=summary["explore"] or 0,
        explanation_method=model.card.get("explanations", {}).get("method"),
        default_regions=defaults.select("region").distinct().count(),
    )
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
