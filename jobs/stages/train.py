"""Train stage: ``silver/interactions`` -> an implicit-feedback model saved under
``models/<run id>/`` and the top-N ``silver/candidates`` of every consenting user.

The interactions go to the driver as Arrow (the model is single-node by nature:
``implicit`` trains on one CSR matrix); what is done with them, model selection included,
is ``jobs.recsys.training`` (numpy only). The candidates are scored on the executors
(``jobs.shared.scoring``: the model's arrays broadcast, users scored where their history
lies), so the driver holds the interaction matrix and the model, never all users' lists.

The holdout, for the fairness audit (``jobs.stages.audit``): the chosen model is fitted once more
on the split's fit part (selection keeps no fitted model), and its top-N for the validation
users go to ``silver/holdout_candidates`` (the columns of ``silver/candidates``) and the
held-out (user, title) pairs to ``silver/holdout``: quality measured on titles the model
that made those lists never saw.

Each run leaves in ``models/<run id>/``: ``model.npz`` (the model's arrays, and the
weighting's per-title state when it has one), ``user_index.parquet`` and
``item_index.parquet`` (key <-> row), and the model card as ``model_card.json`` and
``model_card.md`` (``jobs.recsys.model_card``). Progress goes to the ``jobs.stages.train``
and ``jobs.recsys.training`` loggers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import SparkSession

from jobs.core.config import Config
from jobs.core.errors import StageError
from jobs.core.schemas import allowed_columns
from jobs.lake.model_store import CARD_FILE, CARD_MARKDOWN_FILE, save_model_files
from jobs.recsys import explain, model_card
from jobs.recsys.models import (  # imports implicit
    model_arrays,
    weighting_state,
)
from jobs.recsys.training import (
    InteractionMatrix,
    TrainedModel,
    ValidationSplit,
    candidate_columns,
    holdout_candidates,
    train_model,
    validation_split,
)
from jobs.shared.scoring import Scorer, score_on_executors
from jobs.shared.stage import StageResult, read_silver, stage_main

log = logging.getLogger(__name__)


def candidates_table(
    data: InteractionMatrix,
    rows: np.ndarray,
    cols: np.ndarray,
    scores: np.ndarray,
    model_version: str,
    run_date: date,
) -> pa.Table:
    """Flat recommend output (rows and columns of ``data``) -> candidate rows with a
    1-based rank per user."""
    return pa.table(candidate_columns(data.user_keys, data.content_ids, rows, cols, scores, model_version,
                                      run_date.isoformat()))


# --- model selection on the run's own interactions ----------------------------------------


def holdout_table(data: InteractionMatrix, split: ValidationSplit, run_date: date) -> pa.Table:
    """The held-out (user, title) pairs of ``split`` as ``silver/holdout`` rows."""
    validation = split.validation.tocoo()
    return pa.table(
        {
            "user_key": data.user_keys[validation.row],
            "content_id": data.content_ids[validation.col],
            "run_date": np.full(validation.nnz, run_date.isoformat()),
        }
    )


# --- artifacts --------------------------------------------------------------------------


def save_model(
    model, data: InteractionMatrix, directory: Path, card: dict, extra_arrays: dict[str, np.ndarray] | None = None
) -> None:
    """Model arrays (npz, with ``extra_arrays`` such as the weighting state), index maps
    (Parquet) and the model card (JSON and Markdown) in ``directory``."""
    save_model_files(directory, {**model_arrays(model), **(extra_arrays or {})}, data.user_keys, data.content_ids)
    model_card.write_model_card(card, directory / CARD_FILE, directory / CARD_MARKDOWN_FILE)


def model_version(algorithm: str, run_id: str) -> str:
    return f"{algorithm}-{run_id}"


def data_window(run_date: date, config: Config) -> dict[str, Any]:
    """The days of viewing history a run's interactions come from."""
    first = run_date - timedelta(days=config.shelf.history_days - 1)
    return {
        "first_day": first.isoformat(),
        "last_day": run_date.isoformat(),
        "days": config.shelf.history_days,
        "recency_half_life_days": config.model.recency_half_life_days,
    }


def run_model_card(
    config: Config, run_date: date, run_id: str, data: InteractionMatrix, trained: TrainedModel,
    candidates: int, recommend_seconds: float,
) -> dict[str, Any]:
    """The model card of a run's model (``jobs.recsys.model_card``)."""
    return model_card.build_model_card(
        model_version=model_version(trained.spec.algorithm, run_id),
        run_id=run_id,
        run_date=run_date.isoformat(),
        spec=trained.spec,
        configured=dataclasses.asdict(config.model),
        data_window=data_window(run_date, config),
        rows={
            "interactions": int(data.matrix.nnz),
            "users": len(data.user_keys),
            "items": len(data.content_ids),
            "candidates": int(candidates),
        },
        selection=trained.selection,
        seconds={
            "selection": round(trained.selection_seconds, 2),
            "training": round(trained.training_seconds, 2),
            "candidates": round(recommend_seconds, 2),
        },
        explanations=explain.describe(trained.spec),
        code_version=config.code_version,
        config_hash=config.config_hash,
    )


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """silver/interactions of ``run_date`` -> models/<run id>/ and silver/candidates."""
    day = run_date.isoformat()
    result = StageResult("train", run_date, run_id, config)
    interactions = result.read(spark, "silver/interactions", [day]).select(
        "user_key", "content_id", "confidence"
    )
    data = InteractionMatrix.from_arrow(interactions.toArrow())
    if data.matrix.nnz == 0:
        raise StageError(f"silver/interactions has no rows for {day}: run the features stage first")

    trained = train_model(data, config.model)
    version = model_version(trained.spec.algorithm, run_id)
    state = weighting_state(data.matrix, trained.spec)
    scorer = Scorer(
        trained.spec, model_arrays(trained.model), state, data.content_ids, config.model.candidates_per_user,
        config.model.batch_users, version, day,
    )
    start = time.perf_counter()
    log.info("candidates: scoring %d users on the executors", len(data.user_keys))
    result.write(
        score_on_executors(interactions, scorer, data.user_keys).select(*allowed_columns("silver/candidates")),
        "silver/candidates",
    )
    candidates = read_silver(spark, config, "silver/candidates", [day]).count()
    recommend_seconds = time.perf_counter() - start
    start = time.perf_counter()
    split = trained.split or validation_split(data, config.model)
    h_rows, h_cols, h_scores = holdout_candidates(
        data, split, trained.spec, config.model.candidates_per_user, config.model.batch_users
    )
    holdout_seconds = time.perf_counter() - start
    card = run_model_card(config, run_date, run_id, data, trained, candidates, recommend_seconds)
    save_model(trained.model, data, Path(config.model_dir(run_id)), card, extra_arrays=state)

    holdout_lists = candidates_table(data, h_rows, h_cols, h_scores, f"{version}-holdout", run_date)
    result.write(
        spark.createDataFrame(holdout_lists).select(*allowed_columns("silver/holdout_candidates")),
        "silver/holdout_candidates",
    )
    result.write(
        spark.createDataFrame(holdout_table(data, split, run_date)).select(*allowed_columns("silver/holdout")),
        "silver/holdout",
    )
    result.metrics.update(
        model_version=version,
        model_dir=config.model_dir(run_id),
        model=trained.spec.parameters(),
        trained_users=len(data.user_keys),
        trained_items=len(data.content_ids),
        candidates=candidates,
        candidates_seconds=round(recommend_seconds, 2),
        selection_seconds=round(trained.selection_seconds, 2),
        training_seconds=round(trained.training_seconds, 2),
        holdout_users=int(np.count_nonzero(np.diff(split.validation.indptr))),
        holdout_candidates=len(h_rows),
        holdout_seconds=round(holdout_seconds, 2),
        validation_metrics=trained.selection.get("chosen_metrics"),
        model_selection={k: v for k, v in trained.selection.items() if k != "chosen_metrics"},
    )
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
