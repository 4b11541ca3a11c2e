"""Diversity-constrained shelves in Spark: each user's top-N ``silver/candidates`` -> a diversity-constrained shelf
of ``shelf.size`` titles in ``silver/shelves``.

The selection itself is ``jobs.recsys.diversity.select_shelves`` (pure numpy; its module doc
defines every constraint and the ``constraint_flags`` codes). Here it is applied in
Spark: each user's candidates and history are gathered into one row, and executors
re-rank Arrow batches of users with ``mapInArrow`` (vectorized over the batch), the
catalog's attributes shipped with the function as arrays. Nothing runs per user on the
driver; the driver only collects per-title and per-group aggregates.

Exposure: the users of a partition are re-ranked in a fixed order (by a hash of the user
key) and share the counts of shelves holding each title, so later users get titles earlier
ones were not given (``jobs.recsys.diversity``, exposure). Partitions hold at least
``MIN_USERS_PER_PARTITION`` users; the same candidates give the same shelves on a rerun.

Under-represented groups (``underrepresented_groups``): with ``rerank.underrepresented =
"derived"`` (the default), the provider groups and original languages whose share of
consumption (rows of ``silver/interactions``) is below ``underexposure_ratio`` x their
share of the catalog, or below ``minority_share``, plus any configured; with
"configured", only the configured lists. A title is under-represented when its provider
group or its original language is.

``shelf_constraint_checks`` re-checks published shelves against the configuration from
the shelves, catalog and history alone (not from the re-ranker's bookkeeping): the
``unmet_constraints`` of a shelf (constraints violated without a flag) must be 0. The
rerank stage validates its shelves with it.

The rerank and audit stages use ``rerank_candidates`` (constrained) and ``filter_top_k``
(unconstrained), which give the same columns: ``user_key, rank, content_id, score,
constraint_flags, explore``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs.core.config import RerankSettings
from jobs.recsys.diversity import (
    FLAGS,
    CatalogArrays,
    history_genre_mix,
    longtail_scores,
    select_shelves,
    underrepresented_groups,
)

# Users of one Spark partition share the exposure counts that spread shelves over the
# catalog (jobs.recsys.diversity, exposure): each partition gets at least this many users, so a
# small run is re-ranked in one partition (MovieLens' 943 users, top-10, split into 8
# partitions: coverage x1.89 of the plain top-10 instead of x2.27 in one).
MIN_USERS_PER_PARTITION = 5000


SHELF_SCHEMA = "user_key string, rank int, content_id string, score double, constraint_flags string, explore boolean"


@dataclass(frozen=True)
class ContentIndex:
    """The catalog as the re-ranker's arrays: ``ids[i]`` is the content id of item ``i``."""

    ids: pa.Array
    catalog: CatalogArrays


@dataclass(frozen=True)
class Underrepresented:
    provider_groups: frozenset[str]
    languages: frozenset[str]


def _counts(df: DataFrame, column: str) -> dict[str, float]:
    return {r[0]: float(r[1]) for r in df.groupBy(column).count().collect()}


def find_underrepresented(content: DataFrame, history: DataFrame, settings: RerankSettings) -> Underrepresented:
    """The under-represented provider groups and languages (module doc)."""
    found = {}
    for column, configured in (
        ("provider_group", settings.underrepresented_provider_groups),
        ("original_language", settings.underrepresented_languages),
    ):
        groups = set(configured)
        if settings.underrepresented == "derived":
            consumed = history.select("content_id").join(content.select("content_id", column), "content_id")
            groups |= underrepresented_groups(
                _counts(content, column), _counts(consumed, column),
                settings.underexposure_ratio, settings.minority_share,
            )
        found[column] = frozenset(groups)
    return Underrepresented(found["provider_group"], found["original_language"])


def _is_underrepresented(groups: Underrepresented):
    return F.coalesce(
        F.col("provider_group").isin(sorted(groups.provider_groups))
        | F.col("original_language").isin(sorted(groups.languages)),
        F.lit(False),
    )


def build_content_index(content: DataFrame, history: DataFrame, settings: RerankSettings) -> ContentIndex:
    """Collect the catalog's genres, providers, under-representation and popularity
    (distinct viewers in ``history``) as arrays, in content id order."""
    groups = find_underrepresented(content, history, settings)
    viewers = history.groupBy("content_id").agg(F.countDistinct("user_key").alias("viewers"))
    rows = (
        content.select("content_id", "genres", "provider", _is_underrepresented(groups).alias("under"))
        .join(viewers, "content_id", "left")
        .orderBy("content_id")
        .toArrow()
    )
    genre_sets = [set(filter(None, (g or "").split("|"))) for g in rows.column("genres").to_pylist()]
    names = sorted(set().union(*genre_sets)) if genre_sets else []
    column = {name: j for j, name in enumerate(names)}
    genres = np.zeros((rows.num_rows, max(len(names), 1)), dtype=bool)
    for i, item in enumerate(genre_sets):
        genres[i, [column[g] for g in item]] = True
    providers = rows.column("provider").to_pylist()
    known = sorted({p for p in providers if p is not None})
    code = {p: j for j, p in enumerate(known)}
    popularity = pc.fill_null(rows.column("viewers"), 0).to_numpy(zero_copy_only=False).astype(np.float64)
    return ContentIndex(
        ids=rows.column("content_id").combine_chunks(),
        catalog=CatalogArrays(
            genres=genres,
            provider=np.array([code.get(p, -1) for p in providers], dtype=np.int64),
            underrepresented=rows.column("under").to_numpy(zero_copy_only=False).astype(bool),
            longtail=longtail_scores(popularity),
        ),
    )


def _padded(lengths: np.ndarray, values: np.ndarray, fill, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat per-user values -> (users, max length) array; also each value's owner and column."""
    owner = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.r_[0, np.cumsum(lengths)[:-1]] if len(lengths) else np.zeros(0, dtype=np.int64)
    column = np.arange(len(owner)) - np.repeat(starts, lengths)
    out = np.full((len(lengths), int(lengths.max(initial=0))), fill, dtype=dtype)
    out[owner, column] = values
    return out, owner, column


def shelves_batch(
    batch: pa.RecordBatch, index: ContentIndex, settings: RerankSettings, size: int, exposure: np.ndarray | None = None
) -> tuple[pa.RecordBatch, np.ndarray]:
    """One batch of users (``user_key``, ``candidates``: list of (content_id, score) best
    first, ``history``: list of (content_id, confidence), ``seed``) -> their shelf rows,
    and the exposure counts (``jobs.recsys.diversity``) after them, given those before."""
    n_items = len(index.ids)
    candidates = batch.column("candidates")
    lengths = pc.fill_null(pc.list_value_length(candidates), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(candidates)
    content_ids = flat.field("content_id")
    items = pc.fill_null(pc.index_in(content_ids, value_set=index.ids), -1).to_numpy(zero_copy_only=False)
    scores = flat.field("score").to_numpy(zero_copy_only=False).astype(np.float64)
    cand, owner, column = _padded(lengths, items.astype(np.int64), -1, np.int64)
    score_matrix, _, _ = _padded(lengths, scores, 0.0, np.float64)

    history = batch.column("history")
    h_lengths = pc.fill_null(pc.list_value_length(history), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    h_flat = pc.list_flatten(history)
    h_items = pc.fill_null(pc.index_in(h_flat.field("content_id"), value_set=index.ids), -1)
    h_items = h_items.to_numpy(zero_copy_only=False).astype(np.int64)
    h_owner = np.repeat(np.arange(len(h_lengths)), h_lengths)
    h_weights = pc.fill_null(h_flat.field("confidence"), 0.0).to_numpy(zero_copy_only=False)
    known = h_items >= 0
    mix = history_genre_mix(h_owner[known], h_items[known], h_weights[known], len(lengths), index.catalog.genre_share)
    seen = np.unique(h_owner[known] * n_items + h_items[known])
    engaged = (cand >= 0) & np.isin(np.arange(len(lengths))[:, None] * n_items + cand, seen)

    seeds = batch.column("seed").to_numpy(zero_copy_only=False)
    shelves = select_shelves(cand, score_matrix, engaged, mix, index.catalog, settings, size, seeds, exposure)
    users, ranks = np.nonzero(shelves.positions >= 0)
    starts = np.r_[0, np.cumsum(lengths)[:-1]] if len(lengths) else np.zeros(0, dtype=np.int64)
    flat_rows = starts[users] + shelves.positions[users, ranks]
    flags = pa.array(shelves.flag_strings(), pa.string())
    rows = pa.RecordBatch.from_pydict(
        {
            "user_key": pc.take(batch.column("user_key"), pa.array(users)),
            "rank": pa.array(ranks + 1, pa.int32()),
            "content_id": pc.take(content_ids, pa.array(flat_rows)),
            "score": pa.array(scores[flat_rows], pa.float64()),
            "constraint_flags": pc.take(flags, pa.array(users)),
            "explore": pa.array(shelves.explore[users, ranks], pa.bool_()),
        }
    )
    return rows, shelves.exposure


def gather_user_lists(candidates: DataFrame, history: DataFrame) -> DataFrame:
    """One row per user with candidates: ``candidates`` (content_id, score) best first
    (score descending, then content id), ``history`` (content_id, confidence) and
    ``seed``, a hash of the user key (seeds the explore spread: same user, same picks)."""
    ordered = F.sort_array(F.collect_list(F.struct((-F.col("score")).alias("_order"), "content_id", "score")))
    lists = candidates.groupBy("user_key").agg(
        F.xxhash64("user_key").alias("seed"),
        F.transform(ordered, lambda c: F.struct(c["content_id"].alias("content_id"), c["score"].alias("score"))).alias(
            "candidates"
        )
    )
    watched = history.groupBy("user_key").agg(
        F.collect_list(F.struct("content_id", F.col("confidence").cast("double").alias("confidence"))).alias("history")
    )
    return lists.join(watched, "user_key", "left")


def rerank_candidates(
    candidates: DataFrame, content: DataFrame, history: DataFrame, settings: RerankSettings, size: int
) -> DataFrame:
    """Constrained shelves of ``size`` titles from each user's candidates (``user_key,
    content_id, score``), with ``history`` (``user_key, content_id, confidence``: what
    the user watched) and ``content`` (silver/content). Columns: ``SHELF_SCHEMA``."""
    index = build_content_index(content, history, settings)
    users = candidates.select("user_key").distinct().count()
    most = int(candidates.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    partitions = max(1, min(most, users // MIN_USERS_PER_PARTITION))

    def rerank(batches):
        exposure = None  # the partition's users share exposure counts, batch after batch
        for batch in batches:
            rows, exposure = shelves_batch(batch, index, settings, size, exposure)
            yield rows

    lists = gather_user_lists(candidates, history).repartition(partitions, "seed").sortWithinPartitions("seed", "user_key")
    return lists.mapInArrow(rerank, SHELF_SCHEMA)


def filter_top_k(candidates: DataFrame, size: int) -> DataFrame:
    """The unconstrained shelves: each user's ``size`` best candidates by score (ties by
    content id), with the columns of ``rerank_candidates`` (no flags, no explore)."""
    order = Window.partitionBy("user_key").orderBy(F.desc("score"), "content_id")
    return (
        candidates.withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= size)
        .select(
            "user_key",
            F.col("rank").cast("int").alias("rank"),
            "content_id",
            F.col("score").cast("double").alias("score"),
            F.lit(None).cast("string").alias("constraint_flags"),
            F.lit(False).alias("explore"),
        )
    )


def _exploded_genres(df: DataFrame) -> DataFrame:
    """One row per (row of ``df``, genre of its title) with ``genre_weight`` = 1 / number
    of the title's genres (``df`` has a ``genres`` column)."""
    names = F.filter(F.split(F.coalesce("genres", F.lit("")), r"\|"), lambda g: g != "")
    return df.withColumn("_genres", names).withColumn("genre", F.explode("_genres")).withColumn(
        "genre_weight", 1.0 / F.size("_genres")
    )


def shelf_constraint_checks(
    shelves: DataFrame, content: DataFrame, history: DataFrame, settings: RerankSettings
) -> DataFrame:
    """Per user of ``shelves``: ``shelf_length``, one boolean per constraint it violates
    although its ``constraint_flags`` do not name it (``unmet_<flag>``), and
    ``unmet_constraints``, their number, which must be 0. Recomputed from the shelves,
    the catalog and the history alone."""
    groups = find_underrepresented(content, history, settings)
    titles = content.select(
        "content_id", "genres", "provider", _is_underrepresented(groups).alias("under")
    )
    rows = shelves.select("user_key", "content_id", "constraint_flags", "explore").join(
        F.broadcast(titles), "content_id", "left"
    )
    watched = history.select("user_key", "content_id", F.lit(True).alias("_engaged"))
    rows = rows.join(watched, ["user_key", "content_id"], "left")
    # an aggregate, not limit(1): stopping a scan of a Python data source early breaks its
    # worker's pipe (a harmless but alarming traceback on stderr)
    any_under = bool(titles.agg(F.max(F.col("under").cast("int"))).first()[0])

    per_user = rows.groupBy("user_key").agg(
        F.count(F.lit(1)).alias("shelf_length"),
        F.first("constraint_flags", ignorenulls=True).alias("constraint_flags"),
        F.sum(F.col("under").cast("int")).alias("under_titles"),
        F.sum(F.col("explore").cast("int")).alias("explore_titles"),
        F.sum((F.col("explore") & F.coalesce("_engaged", F.lit(False))).cast("int")).alias("explore_engaged"),
    )
    genre_max = (
        _exploded_genres(rows).groupBy("user_key", "genre").count()
        .groupBy("user_key").agg(F.max("count").alias("max_genre_titles"))
    )
    provider_max = (
        rows.where(F.col("provider").isNotNull()).groupBy("user_key", "provider").count()
        .groupBy("user_key").agg(F.max("count").alias("max_provider_titles"))
    )
    kl = _calibration_kl(rows, history.join(F.broadcast(content.select("content_id", "genres")), "content_id"), settings)

    length = F.col("shelf_length")
    genre_cap = (
        F.greatest(F.floor(length * settings.max_genre_share + 1e-9), F.lit(1))
        if settings.max_genre_share < 1 else length
    )
    under_target = F.ceil(length * settings.min_underrepresented_share - 1e-9) if any_under else F.lit(0)
    violated = {
        "explore": (F.col("explore_titles") < F.least(F.lit(settings.explore_slots), length))
        | (F.col("explore_engaged") > 0),
        "max_per_provider": F.lit(settings.max_titles_per_provider > 0)
        & (F.coalesce("max_provider_titles", F.lit(0)) > settings.max_titles_per_provider),
        "max_genre_share": F.coalesce("max_genre_titles", F.lit(0)) > genre_cap,
        "min_underrepresented_share": F.coalesce("under_titles", F.lit(0)) < under_target,
        "calibration": F.lit(settings.calibration_max_kl > 0)
        & (F.coalesce("calibration_kl", F.lit(0.0)) > settings.calibration_max_kl + 1e-9),
    }
    flagged = F.split(F.coalesce("constraint_flags", F.lit("")), ",")
    checked = per_user.join(genre_max, "user_key", "left").join(provider_max, "user_key", "left").join(
        kl, "user_key", "left"
    )
    for flag in FLAGS:
        checked = checked.withColumn(f"unmet_{flag}", violated[flag] & ~F.array_contains(flagged, flag))
    unmet = sum(F.col(f"unmet_{flag}").cast("int") for flag in FLAGS)
    return checked.withColumn("unmet_constraints", unmet).select(
        "user_key", "shelf_length", "calibration_kl", *[f"unmet_{f}" for f in FLAGS], "unmet_constraints"
    )


def _calibration_kl(shelf_rows: DataFrame, watched: DataFrame, settings: RerankSettings) -> DataFrame:
    """Per user: KL(p || (1 - a) q + a p) of the history genre mix p (confidence-weighted)
    and the shelf genre mix q (jobs.recsys.diversity, calibration), by Spark aggregates."""
    a = settings.calibration_smoothing
    p = (
        _exploded_genres(watched)
        .groupBy("user_key", "genre")
        .agg(F.sum(F.col("genre_weight") * F.col("confidence")).alias("_p"))
    )
    p = p.withColumn("p", F.col("_p") / F.sum("_p").over(Window.partitionBy("user_key")))
    lengths = shelf_rows.groupBy("user_key").agg(F.count(F.lit(1)).alias("_n"))
    q = (
        _exploded_genres(shelf_rows).groupBy("user_key", "genre").agg(F.sum("genre_weight").alias("_q"))
        .join(lengths, "user_key")
        .select("user_key", "genre", (F.col("_q") / F.col("_n")).alias("q"))
    )
    both = p.where(F.col("p") > 0).join(q, ["user_key", "genre"], "left").fillna(0.0, subset=["q"])
    term = F.col("p") * F.log(F.col("p") / ((1 - a) * F.col("q") + a * F.col("p")))
    return both.groupBy("user_key").agg(F.sum(term).alias("calibration_kl"))
