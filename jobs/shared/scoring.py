"""Candidate scoring on the executors: every user's top-N unseen titles, computed where
their history lies, never collected on the driver.

The driver fits the model on one matrix (``implicit`` and EASE need it whole); what
scoring needs of it, the model's arrays, the title order and the weighting's per-title
state (``Scorer``), is broadcast once. The interactions are gathered per user
(``user_key``, ``history``: list of (content_id, confidence)), and executors score Arrow
batches of users with ``mapInArrow`` (``jobs.recsys.training.recommend_histories``: the
same lists the driver would compute on the whole matrix). A factor model (ALS, BPR, the
ALS part of a blend) also needs each user's row of its user factors: the user index
(``user_key`` -> row) is joined in; EASE scores from the history alone.

The driver's memory bound is therefore the interaction matrix and the model's arrays;
the candidates (``candidates_per_user`` x users rows) exist only on the executors and in
``silver/candidates``.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.errors import StageError
from jobs.core.model_spec import ModelSpec
from jobs.core.schemas import CANDIDATES
from jobs.lake.tables import arrow_schema
from jobs.recsys.models import model_from_arrays
from jobs.recsys.training import candidate_columns, recommend_histories

@dataclass(frozen=True)
class Scorer:
    """What an executor needs to score users: broadcast once per run."""

    spec: ModelSpec
    arrays: dict[str, np.ndarray]  # jobs.recsys.models.model_arrays
    state: dict[str, np.ndarray]  # jobs.recsys.models.weighting_state of the fitted matrix
    content_ids: np.ndarray  # column j of the model is content_ids[j]
    n: int  # candidates per user
    batch_users: int
    model_version: str
    run_date: str

    @property
    def needs_user_rows(self) -> bool:
        return "user_factors" in self.arrays


def candidates_batch(
    batch: pa.RecordBatch, model, scorer: Scorer, titles: pa.Array, schema: pa.Schema
) -> pa.RecordBatch:
    """One batch of users (``user_key``, ``user_row``, ``history``) -> their candidate rows
    (``schema``: ``CANDIDATES`` as Arrow; ``titles``: ``scorer.content_ids`` as Arrow)."""
    history = batch.column("history")
    lengths = pc.fill_null(pc.list_value_length(history), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(history)
    items = pc.index_in(flat.field("content_id"), value_set=titles)
    items = pc.fill_null(items, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    confidence = pc.fill_null(flat.field("confidence"), 0.0).to_numpy(zero_copy_only=False)
    if (items < 0).any():
        raise StageError("a history names a title the model was not fitted on: score the interactions it was fitted on")
    indptr = np.r_[0, np.cumsum(lengths)]
    rows, cols, scores = recommend_histories(
        model, scorer.spec, scorer.state, len(scorer.content_ids), batch.column("user_row").to_numpy(),
        indptr, items, confidence, scorer.n, scorer.batch_users,
    )
    user_keys = batch.column("user_key").to_numpy(zero_copy_only=False)
    columns = candidate_columns(user_keys, scorer.content_ids, rows, cols, scores, scorer.model_version,
                                scorer.run_date)
    return pa.RecordBatch.from_pydict(columns, schema=schema)


def score_on_executors(interactions: DataFrame, scorer: Scorer, user_keys: np.ndarray) -> DataFrame:
    """The candidates (``jobs.core.schemas.CANDIDATES``) of every user of ``interactions``
    (``user_key, content_id, confidence``: what the model was fitted on; ``user_keys``:
    the model's user rows, needed by factor models)."""
    spark = interactions.sparkSession
    lists = interactions.groupBy("user_key").agg(
        F.collect_list(F.struct("content_id", F.col("confidence").cast("double").alias("confidence"))).alias("history")
    )
    if scorer.needs_user_rows:
        index = pa.table({"user_key": pa.array(user_keys, pa.string()),
                          "user_row": pa.array(np.arange(len(user_keys)), pa.int64())})
        lists = lists.join(spark.createDataFrame(index), "user_key")
    else:
        lists = lists.withColumn("user_row", F.lit(-1).cast("long"))
    shared = spark.sparkContext.broadcast(scorer)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = shared.value
        model = model_from_arrays(scorer.spec, scorer.arrays)
        titles, schema = pa.array(scorer.content_ids), arrow_schema(CANDIDATES)  # once per task
        for batch in batches:  # slices of batch_users users: output batches of batch_users x n rows
            for start in range(0, batch.num_rows, scorer.batch_users):
                yield candidates_batch(batch.slice(start, scorer.batch_users), model, scorer, titles, schema)

    return lists.mapInArrow(score, CANDIDATES)
