"""Implicit-feedback models behind one narrow interface, and confidence weighting.

Every model here has the interface of ``implicit``'s recommenders as fairshelf uses it:
``fit(user_items)`` on a user x item CSR matrix of confidences, and
``recommend(userids, user_items, N, filter_already_liked_items)`` returning (ids, scores)
arrays of shape (len(userids), N), best first. Its learned state is a dict of arrays
(``model_arrays``) that ``np.savez`` can store.

- ``als`` and ``bpr``: ``implicit``'s CPU models, seeded.
- ``ease``: EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019),
  a closed-form item x item model: B = I - P diag(1 / diag(P)), P = (X'X + lambda I)^-1,
  scores = X_u B. Its state is a dense items x items matrix, so it is offered up to
  ``EASE_MAX_ITEMS`` titles: at 20,000 the float32 matrix takes 1.6 GB (about 3.2 GB at
  the peak of the fit) and the O(n^3) inversion about 5 minutes on one BLAS thread
  (extrapolated from 2.5 s measured at 4,000 titles).
  MovieLens-100K (1,682 titles) fits in about a second.
- ``blend``: EASE and ALS fitted on the same matrix; each user's scores of the two models
  are standardized over the catalog (z-scores) and mixed, ``blend_weight`` for EASE and
  the rest for ALS. Same catalog limit as EASE; its state is both models' arrays.

Confidence weighting (``weight_confidence``) reshapes the matrix before a model sees it:
``none`` keeps the confidences, ``bm25`` and ``tfidf`` apply ``implicit.nearest_neighbours``'
weights the way ``implicit``'s own examples do (on the item x user matrix, so a title's
row is length-normalized and a heavy user counts less). Apply it to the matrix used for
``fit`` and pass the same weighted matrix to ``recommend``: EASE scores from it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.linalg

# implicit is imported here, at module level, so that its BLAS is loaded before anyone
# enters threadpool_limits (limits apply only to libraries already loaded).
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import bm25_weight, tfidf_weight
from scipy.sparse import csr_matrix

# The model's hyperparameters are declared once, in the core layer (re-exported here).
from jobs.core.model_spec import ALGORITHMS as ALGORITHMS
from jobs.core.model_spec import WEIGHTINGS as WEIGHTINGS
from jobs.core.model_spec import ModelError as ModelError
from jobs.core.model_spec import ModelSpec as ModelSpec

EASE_MAX_ITEMS = 20_000


def weight_confidence(user_items: csr_matrix, spec: ModelSpec) -> csr_matrix:
    """The user x item matrix a model of ``spec`` trains and scores on."""
    matrix = csr_matrix(user_items, dtype=np.float32)
    if spec.weighting == "none":
        return matrix
    item_users = matrix.T.tocsr()
    if spec.weighting == "bm25":
        weighted = bm25_weight(item_users, K1=spec.bm25_k1, B=spec.bm25_b)
    else:
        weighted = tfidf_weight(item_users)
    result = csr_matrix(weighted.T, dtype=np.float32)
    result.sort_indices()
    return result


def weighting_state(user_items: csr_matrix, spec: ModelSpec) -> dict[str, np.ndarray]:
    """What ``weight_rows`` needs besides a user's own row to weigh it as
    ``weight_confidence`` weighed the whole matrix: for ``bm25`` each title's length norm
    (an aggregate over all users, like popularity); nothing for ``none`` and ``tfidf``,
    whose weights depend on the row alone."""
    if spec.weighting != "bm25":
        return {}
    item_sums = np.ravel(np.asarray(csr_matrix(user_items, dtype=np.float32).sum(axis=0), dtype=np.float64))
    mean = item_sums.mean() if len(item_sums) else 1.0
    return {"bm25_length_norm": (1.0 - spec.bm25_b) + spec.bm25_b * item_sums / (mean or 1.0)}


def weight_rows(
    indptr: np.ndarray, items: np.ndarray, confidence: np.ndarray, spec: ModelSpec, n_items: int,
    state: dict[str, np.ndarray],
) -> np.ndarray:
    """The weighted confidences of some users' rows, given flat (CSR-like) ``items`` and
    ``confidence`` of each user between ``indptr[u]`` and ``indptr[u + 1]``: the values
    ``weight_confidence`` gives those cells of the whole matrix (``state`` from
    ``weighting_state`` of that matrix). The formulas are ``implicit``'s ``tfidf_weight``
    and ``bm25_weight`` applied to the item x user matrix, where a user's "document
    frequency" is the number of titles in their row."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if spec.weighting == "none":
        return confidence
    counts = np.diff(np.asarray(indptr))
    idf = np.repeat(np.log(float(n_items)) - np.log1p(counts.astype(np.float64)), counts)
    if spec.weighting == "tfidf":
        return np.sqrt(confidence) * idf
    norm = state["bm25_length_norm"][np.asarray(items)]
    k1 = spec.bm25_k1
    return confidence * (k1 + 1.0) / (k1 * norm + confidence) * idf


class EASE:
    """EASE (Steck 2019): closed-form item x item regression with a zero diagonal."""

    def __init__(self, regularization: float = 500.0, max_items: int = EASE_MAX_ITEMS):
        self.regularization = float(regularization)
        self.max_items = max_items
        self.item_weights: np.ndarray | None = None  # B, items x items

    def fit(self, user_items: csr_matrix, show_progress: bool = False) -> "EASE":
        n_items = user_items.shape[1]
        if n_items > self.max_items:
            raise ModelError(
                f"EASE holds a dense {n_items:,} x {n_items:,} matrix; it is offered up to "
                f"{self.max_items:,} titles. Use algorithm 'als' for a catalog this large."
            )
        x = csr_matrix(user_items, dtype=np.float32)
        gram = (x.T @ x).toarray()  # float32 throughout: one n x n matrix, inverted in place
        gram[np.diag_indices(n_items)] += self.regularization
        weights = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        weights /= -np.diag(weights)
        weights[np.diag_indices(n_items)] = 0.0
        self.item_weights = weights
        return self

    def recommend(
        self,
        userid,
        user_items: csr_matrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` items of each row of ``user_items`` (the rows of ``userid``).

        Where fewer than ``N`` items are left after filtering, ids are -1 and scores -inf.
        A scalar ``userid`` gives 1-D arrays, as ``implicit`` does.
        """
        return _recommend_from_scores(self.score, userid, user_items, N, filter_already_liked_items)

    def score(self, userids: np.ndarray, rows: csr_matrix) -> np.ndarray:
        """Dense (users, items) scores of the users whose interactions are ``rows``."""
        if self.item_weights is None:
            raise ModelError("EASE used before fit")
        return np.asarray(rows @ self.item_weights)


class Blend:
    """EASE and ALS on the same matrix, per-user z-scores mixed (module doc)."""

    def __init__(self, ease: EASE, als: AlternatingLeastSquares, ease_weight: float = 0.5):
        self.ease = ease
        self.als = als
        self.ease_weight = float(ease_weight)

    def fit(self, user_items: csr_matrix, show_progress: bool = False) -> "Blend":
        self.ease.fit(user_items)
        self.als.fit(user_items, show_progress=show_progress)
        return self

    @property
    def user_factors(self) -> np.ndarray:
        return self.als.user_factors

    @property
    def item_factors(self) -> np.ndarray:
        return self.als.item_factors

    def recommend(
        self,
        userid,
        user_items: csr_matrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As ``EASE.recommend``; ``userid`` must be rows of the matrix the ALS part was fitted on."""
        return _recommend_from_scores(self.score, userid, user_items, N, filter_already_liked_items)

    def score(self, userids: np.ndarray, rows: csr_matrix) -> np.ndarray:
        if self.als.user_factors is None:
            raise ModelError("Blend used before fit")
        ease = _standardize(self.ease.score(userids, rows))
        als = _standardize(np.asarray(self.als.user_factors)[userids] @ np.asarray(self.als.item_factors).T)
        return self.ease_weight * ease + (1.0 - self.ease_weight) * als


def _standardize(scores: np.ndarray) -> np.ndarray:
    std = scores.std(axis=1, keepdims=True)
    return (scores - scores.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def _recommend_from_scores(score, userid, user_items, n: int, filter_already_liked_items: bool):
    """The ``implicit``-style recommend of a model whose ``score(userids, rows)`` gives
    dense scores."""
    single = np.isscalar(userid)
    userids = np.atleast_1d(np.asarray(userid))
    rows = csr_matrix(user_items, dtype=np.float32)
    if rows.shape[0] != len(userids):
        raise ModelError(f"user_items has {rows.shape[0]} rows for {len(userids)} userid(s): pass their rows")
    scores = score(userids, rows).astype(np.float64)
    if filter_already_liked_items:
        liked_rows = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        scores[liked_rows, rows.indices] = -np.inf
    ids, top = top_n(scores, n)
    return (ids[0], top[0]) if single else (ids, top)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Column ids and values of the ``n`` largest finite scores per row, best first;
    ids -1 and scores -inf where a row has fewer (ties broken by the lower id)."""
    n = min(n, scores.shape[1])
    if n <= 0:
        empty = np.empty((scores.shape[0], 0))
        return empty.astype(np.int64), empty
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    ids = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(part_scores, order, axis=1)
    missing = ~np.isfinite(values)
    ids[missing] = -1
    values[missing] = -np.inf
    return ids, values


def make_model(settings: Any):
    """An unfitted model of ``settings`` (a ``ModelSpec``, or the configuration's
    ``ModelSettings``: its spec part), seeded."""
    spec = ModelSpec.from_settings(settings)
    if spec.algorithm == "als":
        return AlternatingLeastSquares(
            factors=spec.factors,
            regularization=spec.regularization,
            alpha=spec.alpha,
            iterations=spec.iterations,
            random_state=spec.seed,
        )
    if spec.algorithm == "bpr":
        return BayesianPersonalizedRanking(
            factors=spec.factors,
            learning_rate=spec.learning_rate,
            regularization=spec.regularization,
            iterations=spec.iterations,
            random_state=spec.seed,
        )
    if spec.algorithm == "blend":
        als = make_model(dataclasses.replace(spec, algorithm="als"))
        return Blend(EASE(regularization=spec.ease_regularization), als, spec.blend_weight)
    return EASE(regularization=spec.ease_regularization)


def model_arrays(model) -> dict[str, np.ndarray]:
    """The learned state of a fitted model, as arrays for ``np.savez``."""
    if isinstance(model, EASE):
        if model.item_weights is None:
            raise ModelError("EASE model is not fitted")
        return {"item_weights": model.item_weights}
    if isinstance(model, Blend):
        return {**model_arrays(model.ease), **model_arrays(model.als)}
    return {"user_factors": np.asarray(model.user_factors), "item_factors": np.asarray(model.item_factors)}


def model_from_arrays(spec: ModelSpec, arrays: dict[str, np.ndarray]):
    """A model of ``spec`` ready to recommend, from its ``model_arrays`` (what executors
    rebuild from the broadcast arrays: no fitting)."""
    model = make_model(spec)
    parts = (model.ease, model.als) if isinstance(model, Blend) else (model,)
    for part in parts:
        if isinstance(part, EASE):
            part.item_weights = arrays["item_weights"]
        else:
            part.user_factors = arrays["user_factors"]
            part.item_factors = arrays["item_factors"]
    return model
