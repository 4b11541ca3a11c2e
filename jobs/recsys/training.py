"""Training on one interaction matrix, numpy only (the train stage collects the matrix and
writes what this returns).

Users and titles get stable integer indexes (sorted keys; ``InteractionMatrix``), and
candidates come from batched ``recommend`` calls (``recommend_batched``), never one call
per user and never the full score matrix.

Model selection (``select_hyperparameters``): a validation split is carved from the run's
own interactions (``holdout_per_user``: for a seeded sample of at most
``model.validation_users`` users with two titles or more, ``model.validation_share`` of
their titles held out at random); the first ``model.selection_trials`` of the configured
model and then the candidates of ``jobs.recsys.selection.search_space`` (a fixed order) are
fitted on the rest and scored by validation nDCG@10; the best is fitted on all
interactions. A budget of trials, not seconds: the same interactions and settings choose
the same model under any load. One trial: no search, the configured model is used and
validated once.

``holdout_candidates``: the chosen model fitted once more on the split's fit part, and its
top-N for the validation users (what the fairness audit measures quality on). Progress
goes to the ``jobs.recsys.training`` logger and to a ``progress(phase, done, total)``
callback.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from jobs.core.config import ModelSettings
from jobs.core.errors import StageError
from jobs.core.model_spec import ModelSpec
from jobs.recsys.models import EASE_MAX_ITEMS, make_model, weight_confidence, weight_rows
from jobs.recsys.selection import recommend_lists, search_space, select_model

log = logging.getLogger(__name__)

SELECTION_K = 10  # lists are scored by validation nDCG@10, as in the offline evaluation


# phase ("selection", "fit", "recommend"), done, total
Progress = Callable[[str, int, int], None]


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


def weighted_interactions(data: InteractionMatrix, settings: ModelSettings | ModelSpec) -> InteractionMatrix:
    """The same matrix with the confidence weighting (none, bm25, tfidf) of ``settings``
    applied; models train and score on it."""
    return replace(data, matrix=weight_confidence(data.matrix, ModelSpec.from_settings(settings)))


def fit_model(data: InteractionMatrix, settings: ModelSettings | ModelSpec, show_progress: bool = False):
    """Fit ``jobs.recsys.models.make_model(settings)`` (als, bpr, ease, blend) on the user x item
    matrix, already weighted (``weighted_interactions``). BLAS is held to one thread (every
    BLAS library loaded, ``implicit``'s included, hence its import at module level, through
    ``jobs.recsys.models``): ``implicit`` parallelizes over users itself and a multi-threaded BLAS
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
    userids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``n`` unseen items for every row of ``matrix``, in batches of users.

    Row i of ``matrix`` is the model's user ``userids[i]`` (default: user i, the matrix
    the model was fitted on). Returns flat arrays (row of ``matrix``, item column,
    score), in rank order per user.
    """
    n = min(n, matrix.shape[1])
    rows, cols, scores = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    total = matrix.shape[0]
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(0, total, batch_users):
            users = np.arange(start, min(start + batch_users, total))
            model_users = users if userids is None else np.asarray(userids)[users]
            ids, batch_scores = model.recommend(model_users, matrix[users], N=n, filter_already_liked_items=True)
            # fewer than n unseen items: EASE pads with id -1, implicit with score -FLT_MAX
            valid = (ids >= 0) & (batch_scores > -1e38)
            rows.append(np.repeat(users, ids.shape[1]).reshape(ids.shape)[valid])
            cols.append(ids[valid])
            scores.append(batch_scores[valid])
            if progress:
                progress(int(users[-1]) + 1, total)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(scores)


def recommend_histories(
    model, spec: ModelSpec, state: dict[str, np.ndarray], n_items: int, userids: np.ndarray,
    indptr: np.ndarray, items: np.ndarray, confidence: np.ndarray, n: int, batch_users: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``recommend_batched`` for some users given by their raw history, as an executor
    sees them: user i (the model's user ``userids[i]``) watched ``items`` (columns of
    the model) with ``confidence`` between ``indptr[i]`` and ``indptr[i + 1]``,
    duplicates allowed. The rows are weighted as the model's matrix was
    (``weight_rows``, with ``state`` from ``weighting_state`` of that matrix), so the
    lists are those ``recommend_batched`` gives on the whole matrix."""
    matrix = csr_matrix(
        (np.asarray(confidence, dtype=np.float32), np.asarray(items), np.asarray(indptr)),
        shape=(len(indptr) - 1, n_items),
    )
    matrix.sum_duplicates()
    matrix.data = weight_rows(matrix.indptr, matrix.indices, matrix.data, spec, n_items, state).astype(np.float32)
    return recommend_batched(model, matrix, n, batch_users, userids=userids)


def rank_within_users(rows: np.ndarray) -> np.ndarray:
    """1-based ranks of flat, per-user ordered lists (``rows``: each entry's user)."""
    rows = np.asarray(rows)
    if not len(rows):
        return np.zeros(0, dtype=np.int32)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    return (np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)])) + 1).astype(np.int32)


def candidate_columns(
    user_keys: np.ndarray, content_ids: np.ndarray, rows: np.ndarray, cols: np.ndarray, scores: np.ndarray,
    model_version: str, run_date: str,
) -> dict[str, Any]:
    """Flat recommend output -> the columns of ``silver/candidates`` (``user_keys[rows]``
    owns each entry, ``content_ids[cols]`` is its title), with a 1-based rank per user."""
    return {
        "user_key": np.asarray(user_keys)[rows],
        "content_id": np.asarray(content_ids)[cols],
        "score": np.asarray(scores, dtype=np.float64),
        "candidate_rank": rank_within_users(rows),
        "model_version": np.full(len(rows), model_version),
        "run_date": np.full(len(rows), run_date),
    }


@dataclass(frozen=True)
class ValidationSplit:
    """The run's interactions cut in two for model selection."""

    fit_part: csr_matrix  # confidences the candidates are fitted on
    validation: csr_matrix  # ones at the held-out (user, title) cells
    info: dict[str, Any]


def holdout_per_user(matrix: csr_matrix, share: float, seed: int, max_users: int) -> ValidationSplit:
    """Per-user random holdout of ``matrix`` (users x titles): a seeded sample of at most
    ``max_users`` of the users with two titles or more each give ``round(share x n)`` of
    their n titles (at least one, never all) to validation; every other cell stays in the
    fit part. Same matrix, share and seed: same split."""
    if not 0.0 < share < 1.0:
        raise StageError(f"model.validation_share must be within (0, 1), got {share}")
    matrix = csr_matrix(matrix, dtype=np.float32)
    matrix.sort_indices()
    rng = np.random.default_rng(seed)
    counts = np.diff(matrix.indptr)
    eligible = np.flatnonzero(counts >= 2)
    sampled = np.sort(rng.choice(eligible, max_users, replace=False)) if len(eligible) > max_users else eligible
    held = np.zeros(matrix.shape[0], dtype=np.int64)
    held[sampled] = np.clip(np.floor(share * counts[sampled] + 0.5), 1, counts[sampled] - 1)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((rng.random(matrix.nnz), rows))  # a random order within each row
    position = np.empty(matrix.nnz, dtype=np.int64)
    position[order] = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], counts)
    is_validation = position < held[rows]

    def part(mask: np.ndarray, values: np.ndarray) -> csr_matrix:
        return csr_matrix((values[mask], (rows[mask], matrix.indices[mask])), shape=matrix.shape, dtype=np.float32)

    fit_part = part(~is_validation, matrix.data)
    validation = part(is_validation, np.ones(matrix.nnz, dtype=np.float32))
    info = {
        "kind": "random per user, from this run's interactions",
        "share": share,
        "seed": seed,
        "users": int(len(sampled)),
        "fit_interactions": int(fit_part.nnz),
        "validation_interactions": int(validation.nnz),
    }
    return ValidationSplit(fit_part, validation, info)


def selection_candidates(settings: ModelSettings | ModelSpec, n_items: int) -> list[ModelSpec]:
    """The configured model, then ``jobs.evaluation.evaluate.search_space`` (seeded like it) without
    it; EASE and the blend only where the catalog fits EASE (``EASE_MAX_ITEMS``)."""
    configured = ModelSpec.from_settings(settings)
    fits = [configured, *(s for s in search_space(configured.seed) if s != configured)]
    if n_items > EASE_MAX_ITEMS:
        fits = [s for s in fits if s.algorithm not in ("ease", "blend")] or [replace(configured, algorithm="als")]
    return fits


def validation_split(data: InteractionMatrix, settings: ModelSettings) -> ValidationSplit:
    """The run's validation split (``holdout_per_user`` with the model settings)."""
    return holdout_per_user(data.matrix, settings.validation_share, settings.seed, settings.validation_users)


def select_hyperparameters(
    data: InteractionMatrix,
    settings: ModelSettings,
    progress: Progress | None = None,
    split: ValidationSplit | None = None,
) -> tuple[ModelSpec, dict[str, Any]]:
    """The model to fit on all of ``data``, chosen on a validation split of ``data`` alone
    (``split``, by default ``validation_split``) among the first
    ``settings.selection_trials`` candidates (module doc), and the search's record: trials
    (parameters, validation nDCG and precision, fit seconds), the chosen parameters and
    their validation metrics, the split."""
    budget = settings.selection_trials
    configured = ModelSpec.from_settings(settings)
    split = split or validation_split(data, settings)
    if split.validation.nnz == 0:
        return configured, {
            "criterion": "none: no user has two titles, nothing could be held out",
            "trial_budget": budget, "seconds": 0.0, "tried": 0, "candidates": 0,
            "chosen": configured.parameters(), "chosen_metrics": None, "trials": [],
            "validation_split": split.info,
        }
    space = selection_candidates(settings, data.matrix.shape[1])
    candidates = space[:budget]

    def on_trial(done: int, total: int, trial: dict[str, Any]) -> None:
        log.info("selection trial %d/%d: %s", done, total, json.dumps(trial, sort_keys=True))
        if progress:
            progress("selection", done, total)

    spec, record = select_model(
        split.fit_part, split.validation, candidates, k=SELECTION_K, time_budget_s=math.inf, on_trial=on_trial
    )
    del record["time_budget_s"]
    record.update(trial_budget=budget, candidates=len(space))
    record["validation_split"] = split.info
    if budget == 1:
        record["criterion"] = "none: search off (selection_trials 1), the configured model validated once"
    return spec, record


@dataclass
class TrainedModel:
    """A model fitted on all of a run's interactions, and how it was chosen."""

    model: Any
    spec: ModelSpec
    data: InteractionMatrix  # weighted as the model trains and scores
    selection: dict[str, Any]
    selection_seconds: float
    training_seconds: float
    split: ValidationSplit | None = None  # the selection's split (the audit's holdout)


def train_model(data: InteractionMatrix, settings: ModelSettings, progress: Progress | None = None) -> TrainedModel:
    """Choose the model on a validation split of ``data`` and fit it on all of ``data``
    (raw confidences; the chosen weighting is applied here). Seeded: the same data and
    settings give the same model on any machine (the search is budgeted in trials)."""
    start = time.perf_counter()
    split = validation_split(data, settings)
    spec, selection = select_hyperparameters(data, settings, progress, split)
    selection_seconds = time.perf_counter() - start
    log.info("chose %s in %.1f s", json.dumps(spec.parameters(), sort_keys=True), selection_seconds)
    weighted = weighted_interactions(data, spec)
    if progress:
        progress("fit", 0, 1)
    start = time.perf_counter()
    model = fit_model(weighted, spec)
    training_seconds = time.perf_counter() - start
    if progress:
        progress("fit", 1, 1)
    log.info("fitted %s on %d interactions in %.1f s", spec.algorithm, data.matrix.nnz, training_seconds)
    return TrainedModel(model, spec, weighted, selection, selection_seconds, training_seconds, split)


def holdout_candidates(
    data: InteractionMatrix, split: ValidationSplit, spec: ModelSpec, n: int, batch_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top-``n`` candidates, for every validation user of ``split``, of a model of
    ``spec`` fitted on the split's fit part alone (weighted as ``spec`` says), titles of
    the fit part excluded: flat (user row, item column, score) arrays in rank order, as
    ``recommend_batched``. One extra fit: model selection keeps no fitted model."""
    users = np.flatnonzero(np.diff(split.validation.indptr) > 0)
    if len(users) == 0:
        empty = np.array([], dtype=np.int64)
        return empty, empty, np.array([], dtype=np.float64)
    weighted = weight_confidence(split.fit_part, spec)
    model = fit_model(replace(data, matrix=weighted), spec)
    ids, scores = recommend_lists(model, weighted, users, n, batch_users)
    valid = ids >= 0
    rows = np.repeat(users, ids.shape[1]).reshape(ids.shape)
    return rows[valid], ids[valid], scores[valid]
