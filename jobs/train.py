"""Train stage: ``silver/interactions`` -> an ``implicit`` model saved under
``models/<run id>/`` and the top-N ``silver/candidates`` of every consenting user.

The interactions go to the driver as Arrow (the model is single-node by nature:
``implicit`` trains on one CSR matrix), users and titles get stable integer indexes
(sorted keys, saved beside the factors), and candidates come from batched
``recommend`` calls, never one call per user and never the full score matrix.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from jobs.config import Config, ModelSettings
from jobs.models import ModelSpec, make_model, model_arrays, weight_confidence  # imports implicit
from jobs.schemas import allowed_columns
from jobs.stage import StageError, StageResult, read_silver, stage_main

MODEL_FILE = "model.npz"
USERS_FILE = "user_index.parquet"
ITEMS_FILE = "item_index.parquet"
CARD_FILE = "model_card.json"


@dataclass
class InteractionMatrix:
    """A user x item confidence matrix and the keys of its rows and columns."""

    matrix: csr_matrix
    user_keys: np.ndarray  # row i belongs to user_keys[i]
    content_ids: np.ndarray  # column j is content_ids[j]

    @classmethod
    def from_arrow(cls, table: pa.Table) -> "InteractionMatrix":
        """Build from (user_key, content_id, confidence) rows; keys sorted, so indexes are stable."""
        users = table.column("user_key").to_numpy(zero_copy_only=False).astype(str)
        items = table.column("content_id").to_numpy(zero_copy_only=False).astype(str)
        confidence = table.column("confidence").to_numpy().astype(np.float32)
        user_keys, rows = np.unique(users, return_inverse=True)
        content_ids, cols = np.unique(items, return_inverse=True)
        matrix = csr_matrix(
            (confidence, (rows, cols)), shape=(len(user_keys), len(content_ids)), dtype=np.float32
        )
        matrix.sum_duplicates()
        return cls(matrix, user_keys, content_ids)


def weighted_interactions(data: InteractionMatrix, settings: ModelSettings) -> InteractionMatrix:
    """The same matrix with the configured confidence weighting (none, bm25, tfidf)
    applied; models train and score on it."""
    return replace(data, matrix=weight_confidence(data.matrix, ModelSpec.from_settings(settings)))


def fit_model(data: InteractionMatrix, settings: ModelSettings, show_progress: bool = False):
    """Fit ``jobs.models.make_model(settings)`` (als, bpr, ease, blend) on the user x item
    matrix, already weighted (``weighted_interactions``). BLAS is held to one thread (every
    BLAS library loaded, ``implicit``'s included, hence its import at module level, through
    ``jobs.models``): ``implicit`` parallelizes over users itself and a multi-threaded BLAS
    inside it slows it badly."""
    with threadpool_limits(limits=1, user_api="blas"):
        model = make_model(settings)
        model.fit(data.matrix, show_progress=show_progress)
    return model


def recommend_batched(
    model,
    matrix: csr_matrix,
    n: int,
    batch_users: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``n`` unseen items for every row of ``matrix``, in batches of users.

    Returns flat arrays (user row, item column, score), in rank order per user.
    """
    n = min(n, matrix.shape[1])
    rows, cols, scores = [], [], []
    total = matrix.shape[0]
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(0, total, batch_users):
            users = np.arange(start, min(start + batch_users, total))
            ids, batch_scores = model.recommend(users, matrix[users], N=n, filter_already_liked_items=True)
            # fewer than n unseen items: EASE pads with id -1, implicit with score -FLT_MAX
            valid = (ids >= 0) & (batch_scores > -1e38)
            rows.append(np.repeat(users, ids.shape[1]).reshape(ids.shape)[valid])
            cols.append(ids[valid])
            scores.append(batch_scores[valid])
            if progress:
                progress(int(users[-1]) + 1, total)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(scores)


def candidates_table(
    data: InteractionMatrix,
    rows: np.ndarray,
    cols: np.ndarray,
    scores: np.ndarray,
    model_version: str,
    run_date: date,
) -> pa.Table:
    """Flat recommend output -> candidate rows with a 1-based rank per user."""
    ranks = np.ones(len(rows), dtype=np.int32)
    if len(rows):
        new_user = np.r_[True, rows[1:] != rows[:-1]]
        starts = np.flatnonzero(new_user)
        ranks = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)])) + 1
    return pa.table(
        {
            "user_key": data.user_keys[rows],
            "content_id": data.content_ids[cols],
            "score": scores.astype(np.float64),
            "candidate_rank": ranks.astype(np.int32),
            "model_version": np.full(len(rows), model_version),
            "run_date": np.full(len(rows), run_date.isoformat()),
        }
    )


def save_model(model, data: InteractionMatrix, directory: Path, card: dict) -> None:
    """Factors (npz), index maps (Parquet) and the model card (JSON) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / MODEL_FILE, **model_arrays(model))
    pq.write_table(pa.table({"user_key": data.user_keys, "row": np.arange(len(data.user_keys))}), directory / USERS_FILE)
    pq.write_table(pa.table({"content_id": data.content_ids, "col": np.arange(len(data.content_ids))}), directory / ITEMS_FILE)
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))


def load_item_factors(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """Item factors and the content id of each row, from a saved model."""
    with np.load(directory / MODEL_FILE) as saved:
        if "item_factors" not in saved.files:
            raise StageError(
                f"{directory / MODEL_FILE} holds no item factors (an EASE model): explanations "
                "need algorithm 'als', 'bpr' or 'blend'"
            )
        factors = saved["item_factors"]
    ids = pq.read_table(directory / ITEMS_FILE).column("content_id").to_numpy(zero_copy_only=False)
    return factors, ids.astype(str)


def model_version(config: Config, run_id: str) -> str:
    return f"{config.model.algorithm}-{run_id}"


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """silver/interactions of ``run_date`` -> models/<run id>/ and silver/candidates."""
    day = run_date.isoformat()
    interactions = read_silver(spark, config, "silver/interactions", [day]).select(
        "user_key", "content_id", "confidence"
    )
    data = InteractionMatrix.from_arrow(interactions.toArrow())
    if data.matrix.nnz == 0:
        raise StageError(f"silver/interactions has no rows for {day}: run the features stage first")
    data = weighted_interactions(data, config.model)

    model = fit_model(data, config.model)
    version = model_version(config, run_id)
    rows, cols, scores = recommend_batched(
        model, data.matrix, config.model.candidates_per_user, config.model.batch_users
    )
    card = {
        "model_version": version,
        "run_id": run_id,
        "run_date": day,
        "algorithm": config.model.algorithm,
        "parameters": asdict(config.model),
        "data_window_days": config.shelf.history_days,
        "users": len(data.user_keys),
        "items": len(data.content_ids),
        "interactions": int(data.matrix.nnz),
        "code_version": config.code_version,
        "config_hash": config.config_hash,
    }
    save_model(model, data, Path(config.model_dir(run_id)), card)

    result = StageResult("train", run_date, run_id, config)
    candidates = spark.createDataFrame(
        candidates_table(data, rows, cols, scores, version, run_date)
    ).select(*allowed_columns("silver/candidates"))
    result.write(candidates, "silver/candidates")
    result.metrics.update(
        model_version=version,
        model_dir=config.model_dir(run_id),
        trained_users=len(data.user_keys),
        trained_items=len(data.content_ids),
        candidates=len(rows),
    )
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
