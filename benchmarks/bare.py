"""The reference to beat (issue 14): the nightly shelves as an engineer would build them
without fairshelf, on the same landing zone.

Read the history window's landing events with Spark, drop malformed rows, hash the
account id with Spark's ``sha2`` (salted), count views per (user, title), collect them as
Arrow, fit EASE (closed form, the model family fairshelf's default blend is built on) on
one BLAS thread, take each user's top-20 unseen titles in numpy batches, write them as
one Parquet file. No gates, no re-rank, no audit, no lineage: that is the point.

Nothing here imports ``jobs``: the landing layout (``landing/viewing_events/date=D/``,
``landing/catalog/``, all-string columns) is the only thing it shares with fairshelf, and
``tests/unit/test_benchmarks.py`` checks that the two agree, and that ``fit_ease`` gives
the weights of ``jobs.recsys.models.EASE``.

``run_bare`` returns its phase timings: ``spark_start`` (not part of ``seconds``), then
``read_aggregate_collect``, ``fit`` (the CSR matrix from Arrow, then EASE), ``top_n`` and
``write``; ``seconds`` is the sum of the last four.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.linalg  # loads the BLAS before threadpool_limits, which only limits loaded libraries
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

EASE_LAMBDA = 500.0  # the reference; fairshelf's default blend uses ease_regularization 300
SHELF_SIZE = 20
BATCH_USERS = 4096
MAX_WATCH_SECONDS = 6 * 3600
HISTORY_DAYS = 365
PHASES = ("read_aggregate_collect", "fit", "top_n", "write")


def build_session(master: str = "local[2]", driver_memory: str = "4g", shuffle_partitions: int = 8) -> SparkSession:
    """A plain local SparkSession with the settings fairshelf's benchmark runs use."""
    return (
        SparkSession.builder.appName("bare-pipeline")
        .master(master)
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


# --- Spark: read, clean, hash, aggregate --------------------------------------------------

def read_events(spark: SparkSession, landing: Path, run_date: date, history_days: int = HISTORY_DAYS) -> DataFrame:
    """The landing events of the ``history_days`` days up to ``run_date`` (partition
    ``date``, discovered from the folder names and pruned)."""
    first = run_date - timedelta(days=history_days - 1)
    events = spark.read.parquet(str(landing / "viewing_events"))
    return events.where(F.col("date").between(F.lit(first), F.lit(run_date)))


def filter_valid_events(events: DataFrame, catalog: DataFrame, max_watch_seconds: int = MAX_WATCH_SECONDS) -> DataFrame:
    """Drop malformed rows: no event or account id, a start that is no timestamp or is not
    on its partition's day, seconds that are not a whole number in 1..max, a title not in
    the catalog, a repeated event id."""
    started = F.col("started_at").try_cast("timestamp")
    seconds = F.when(F.col("seconds_watched").rlike(r"^[0-9]+$"), F.col("seconds_watched").try_cast("long"))
    return (
        events.where(F.col("event_id").isNotNull() & F.col("account_id").isNotNull())
        .where(F.to_date(started) == F.col("date"))
        .withColumn("seconds_watched", seconds)
        .where(F.col("seconds_watched").between(1, max_watch_seconds))
        .join(F.broadcast(catalog.select("content_id")), "content_id", "left_semi")
        .dropDuplicates(["event_id"])
    )


def views_per_user_title(events: DataFrame, salt: str) -> DataFrame:
    """(user_key, content_id, views): user_key is sha2-256 of salt + account id."""
    user_key = F.sha2(F.concat(F.lit(salt), F.col("account_id")), 256)
    return (
        events.select(user_key.alias("user_key"), "content_id")
        .groupBy("user_key", "content_id")
        .agg(F.count(F.lit(1)).cast("float").alias("views"))
    )


# --- numpy: matrix, EASE, top-N ------------------------------------------------------------

def user_title_matrix(views: pa.Table) -> tuple[csr_matrix, pa.Array, pa.Array]:
    """The (users x titles) CSR matrix of ``views`` and the user keys and content ids of
    its rows and columns."""
    users = views.column("user_key").combine_chunks().dictionary_encode()
    titles = views.column("content_id").combine_chunks().dictionary_encode()
    matrix = csr_matrix(
        (views.column("views").to_numpy(), (users.indices.to_numpy(), titles.indices.to_numpy())),
        shape=(len(users.dictionary), len(titles.dictionary)), dtype=np.float32,
    )
    return matrix, users.dictionary, titles.dictionary


def fit_ease(matrix: csr_matrix, regularization: float = EASE_LAMBDA) -> np.ndarray:
    """EASE (Steck 2019): B = I - P diag(1 / diag(P)), P = (X'X + lambda I)^-1, zero diagonal."""
    gram = (matrix.T @ matrix).toarray().astype(np.float32)
    gram[np.diag_indices_from(gram)] += regularization
    weights = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    weights /= -np.diag(weights)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def top_unseen(rows: csr_matrix, weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``rows``: the ``n`` best-scoring titles not in the row (ids, scores),
    best first."""
    scores = np.asarray(rows @ weights)
    scores[np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr)), rows.indices] = -np.inf
    n = min(n, scores.shape[1])
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    return ids, np.take_along_axis(scores, ids, axis=1)


# --- the run --------------------------------------------------------------------------------

def run_bare(
    spark: SparkSession, lakehouse: Path, run_date: date, out: Path, salt: str,
    regularization: float = EASE_LAMBDA, shelf_size: int = SHELF_SIZE, batch_users: int = BATCH_USERS,
    history_days: int = HISTORY_DAYS,
) -> dict[str, Any]:
    """The bare pipeline on ``lakehouse``'s landing zone, the ``history_days`` up to
    ``run_date``; shelves to ``out`` (recommendations.parquet). Returns phase seconds and sizes."""
    landing = Path(lakehouse) / "landing"
    phase: dict[str, float] = dict.fromkeys(PHASES, 0.0)

    started = time.perf_counter()
    catalog = spark.read.parquet(str(landing / "catalog"))
    events = filter_valid_events(read_events(spark, landing, run_date, history_days), catalog)
    views = views_per_user_title(events, salt).toArrow()
    phase["read_aggregate_collect"] = time.perf_counter() - started

    started = time.perf_counter()
    matrix, user_keys, content_ids = user_title_matrix(views)
    del views
    with threadpool_limits(limits=1, user_api="blas"):
        weights = fit_ease(matrix, regularization)
    phase["fit"] = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("user_key", pa.string()), ("rank", pa.int16()), ("content_id", pa.string()),
                        ("score", pa.float32())])
    shelf_rows = 0
    with pq.ParquetWriter(out / "recommendations.parquet", schema) as writer:
        for first in range(0, matrix.shape[0], batch_users):
            started = time.perf_counter()
            rows = slice(first, min(first + batch_users, matrix.shape[0]))
            with threadpool_limits(limits=1, user_api="blas"):
                ids, scores = top_unseen(matrix[rows], weights, shelf_size)
            phase["top_n"] += time.perf_counter() - started
            started = time.perf_counter()
            found = np.isfinite(scores).ravel()  # a user who has seen nearly every title gets fewer
            users = np.repeat(np.arange(rows.start, rows.stop), ids.shape[1])[found]
            writer.write_table(pa.table({
                "user_key": user_keys.take(pa.array(users)),
                "rank": pa.array(np.tile(np.arange(1, ids.shape[1] + 1, dtype=np.int16), ids.shape[0])[found]),
                "content_id": content_ids.take(pa.array(ids.ravel()[found])),
                "score": pa.array(scores.ravel()[found].astype(np.float32)),
            }, schema=schema))
            shelf_rows += int(found.sum())
            phase["write"] += time.perf_counter() - started
    return {
        "seconds": round(sum(phase.values()), 2),
        "phase_seconds": {k: round(v, 2) for k, v in phase.items()},
        "users": int(matrix.shape[0]),
        "items": int(matrix.shape[1]),
        "interactions": int(matrix.nnz),
        "shelf_rows": shelf_rows,
        "ease_regularization": regularization,
    }
