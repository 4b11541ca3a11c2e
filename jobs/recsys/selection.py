"""Model selection and batch recommendation, numpy only: fit a ``ModelSpec`` with BLAS on
one thread, top-N lists per user, the candidates of the hyperparameter search
(``search_space``) and the search itself (``select_model``: the best validation nDCG@k
within a budget). The nightly train stage and the offline evaluation both use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from jobs.recsys.metrics import ranking_metrics
from jobs.recsys.models import ModelSpec, make_model, weight_confidence


class SelectionError(ValueError):
    """Model selection cannot run as asked (an empty search space)."""


BATCH_USERS = 1024


_FILTERED = -1e38  # implicit marks filtered items with score -FLT_MAX, not with id -1


@dataclass(frozen=True)
class Trial:
    spec: ModelSpec
    metrics: dict[str, float]
    fit_seconds: float

    def record(self, k: int) -> dict[str, Any]:
        return {
            "model": self.spec.parameters(),
            f"validation_ndcg@{k}": round(self.metrics[f"ndcg@{k}"], 4),
            f"validation_precision@{k}": round(self.metrics[f"precision@{k}"], 4),
            "fit_seconds": round(self.fit_seconds, 2),
        }


def fit(spec: ModelSpec, weighted: csr_matrix):
    """Fit a model of ``spec`` on an already weighted matrix, BLAS held to one thread:
    ``implicit`` parallelizes over users itself (``jobs.recsys.models`` imports it at module level,
    so its BLAS is loaded before the limit is set), and on 2 shared cores a threaded BLAS
    made EASE's inversion slower and erratic (0.3 s to 7 s at 1,682 titles), not faster."""
    with threadpool_limits(limits=1, user_api="blas"):
        model = make_model(spec)
        model.fit(weighted, show_progress=False)
    return model


def recommend_lists(
    model, weighted: csr_matrix, users: np.ndarray, n: int, batch_users: int = BATCH_USERS
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` unseen items of each user in ``users``: (ids, scores), (len(users), n),
    best first, ids -1 where fewer than ``n`` items are left."""
    n = min(n, weighted.shape[1])
    ids_out = np.full((len(users), n), -1, dtype=np.int64)
    scores_out = np.full((len(users), n), -np.inf, dtype=np.float64)
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(0, len(users), batch_users):
            batch = users[start : start + batch_users]
            ids, scores = model.recommend(batch, weighted[batch], N=n, filter_already_liked_items=True)
            ids, scores = np.asarray(ids), np.asarray(scores, dtype=np.float64)
            keep = (ids >= 0) & (scores > _FILTERED)
            ids_out[start : start + len(batch)] = np.where(keep, ids, -1)
            scores_out[start : start + len(batch)] = np.where(keep, scores, -np.inf)
    return ids_out, scores_out


def _eval_users(train: csr_matrix, test: csr_matrix) -> np.ndarray:
    return np.flatnonzero((np.diff(train.indptr) > 0) & (np.diff(test.indptr) > 0))


def search_space(seed: int = 42) -> list[ModelSpec]:
    """The candidates of the hyperparameter search, in the order they are tried.

    Four families (EASE, ALS, EASE+ALS blend, BPR), ALS with raw, BM25- and TF-IDF-weighted
    confidence. They are interleaved, one point of each family in turn, so that a short
    budget still sees every family; within a family the points go from the likeliest to
    the least likely. (BM25 is not offered to EASE: it rescales each title's column, and
    EASE predicts in those units, so it ranks rare titles first.)"""
    ease = [
        ModelSpec(algorithm="ease", ease_regularization=lam, seed=seed) for lam in (300.0, 500.0, 150.0, 1000.0)
    ] + [ModelSpec(algorithm="ease", weighting="tfidf", ease_regularization=500.0, seed=seed)]
    als = [
        ModelSpec(algorithm="als", weighting=w, factors=f, regularization=r, alpha=a, iterations=15, seed=seed)
        for w, f, r, a in [
            ("none", 16, 0.05, 5.0),
            ("none", 32, 5.0, 5.0),
            ("none", 8, 0.05, 2.0),
            ("bm25", 32, 0.05, 5.0),
            ("none", 16, 1.0, 10.0),
            ("tfidf", 16, 0.05, 5.0),
            ("none", 64, 0.05, 2.0),
        ]
    ]
    blend = [
        ModelSpec(algorithm="blend", ease_regularization=300.0, factors=f, alpha=5.0, blend_weight=w, seed=seed)
        for f, w in [(16, 0.5), (16, 0.3), (32, 0.7)]
    ]
    bpr = [
        ModelSpec(algorithm="bpr", factors=f, learning_rate=lr, regularization=0.01, iterations=it, seed=seed)
        for f, lr, it in [(64, 0.05, 100), (32, 0.01, 200)]
    ]
    families = [ease, als, blend, bpr]
    ordered: list[ModelSpec] = []
    for i in range(max(len(f) for f in families)):
        ordered.extend(f[i] for f in families if i < len(f))
    return ordered


def validate(spec: ModelSpec, fit_part: csr_matrix, validation: csr_matrix, k: int) -> Trial:
    """Fit ``spec`` on ``fit_part`` and score its top-``k`` against ``validation``."""
    weighted = weight_confidence(fit_part, spec)
    start = time.perf_counter()
    model = fit(spec, weighted)
    seconds = time.perf_counter() - start
    users = _eval_users(fit_part, validation)
    ids, _ = recommend_lists(model, weighted, users, k)
    return Trial(spec, ranking_metrics(ids, validation[users], k), seconds)


def select_model(
    fit_part: csr_matrix,
    validation: csr_matrix,
    candidates: list[ModelSpec],
    *,
    k: int,
    time_budget_s: float,
    on_trial: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> tuple[ModelSpec, dict[str, Any]]:
    """The candidate with the best validation nDCG@k among those tried within the budget
    (the first candidate is always tried; a trial started in time finishes).

    ``on_trial(tried, candidates, trial record)`` is called after each trial (progress).
    The record's ``chosen_metrics`` are the chosen candidate's validation metrics."""
    if not candidates:
        raise SelectionError("the search space is empty")
    start = time.perf_counter()
    trials: list[Trial] = []
    for spec in candidates:
        if trials and time.perf_counter() - start >= time_budget_s:
            break
        trials.append(validate(spec, fit_part, validation, k))
        if on_trial:
            on_trial(len(trials), len(candidates), trials[-1].record(k))
    best = max(trials, key=lambda t: (t.metrics[f"ndcg@{k}"], -trials.index(t)))
    record = {
        "criterion": f"validation ndcg@{k}",
        "time_budget_s": time_budget_s,
        "seconds": round(time.perf_counter() - start, 1),
        "tried": len(trials),
        "candidates": len(candidates),
        "chosen": best.spec.parameters(),
        "chosen_metrics": {name: round(float(value), 4) for name, value in best.metrics.items()},
        "trials": [t.record(k) for t in trials],
    }
    return best.spec, record
