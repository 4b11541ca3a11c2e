"""Re-ranking of candidate lists for diversity.

``rerank_mmr`` is the simple re-rank the offline evaluation uses for its "reranked"
numbers until the constrained re-ranker (diversity constraints as gates) extends this
module: Maximal Marginal Relevance (Carbonell & Goldstein 1998) over genre sets.

Greedy, for every user at once: the next item is the candidate that maximizes
``lambda_ * relevance - (1 - lambda_) * max similarity to the items already picked``,
where relevance is the model score min-max scaled to [0, 1] within the user's candidate
list (rank-based, 1 at the top and 0 at the bottom, when no scores are given) and
similarity is the Jaccard similarity of genre sets (two genre-less items count as
identical). ``lambda_ = 1`` keeps the model's order; lower values trade relevance for
genre variety. Pure numpy, vectorized over a batch of users: ``k`` steps of
(users x candidates) array operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.metrics import genre_jaccard_similarity


class RerankError(ValueError):
    """Candidate lists or re-rank settings that cannot be used."""


def _relevance(candidates: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    valid = candidates >= 0
    if scores is None:
        width = candidates.shape[1]
        rel = 1.0 - np.arange(width) / max(width - 1, 1)
        return np.where(valid, rel[None, :], 0.0)
    scores = np.where(valid, np.asarray(scores, dtype=np.float64), 0.0)
    low = np.min(np.where(valid, scores, np.inf), axis=1, keepdims=True)
    high = np.max(np.where(valid, scores, -np.inf), axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return np.where(valid, (scores - np.where(np.isfinite(low), low, 0.0)) / span, 0.0)


def rerank_mmr(
    candidates: np.ndarray,
    item_genres: np.ndarray,
    lambda_: float,
    *,
    scores: np.ndarray | None = None,
    k: int = 10,
) -> np.ndarray:
    """The top-``k`` of each candidate list (users x N item ids, best first, -1 padded)
    re-ordered by genre MMR (module doc). Returns (users, k) item ids, -1 padded."""
    if not 0.0 <= lambda_ <= 1.0:
        raise RerankError(f"lambda_ must be within [0, 1], got {lambda_}")
    candidates = np.asarray(candidates, dtype=np.int64)
    if candidates.ndim != 2:
        raise RerankError(f"candidates must be 2-D (users, N), got shape {candidates.shape}")
    if scores is not None and np.shape(scores) != candidates.shape:
        raise RerankError(f"scores shape {np.shape(scores)} differs from candidates {candidates.shape}")
    genres = np.asarray(item_genres, dtype=bool)
    n_users, width = candidates.shape
    k = min(k, width)
    valid = candidates >= 0
    relevance = _relevance(candidates, scores)
    candidate_genres = genres[np.where(valid, candidates, 0)]  # (users, N, genres)
    max_similarity = np.zeros((n_users, width))
    available = valid.copy()
    rows = np.arange(n_users)
    picked = np.full((n_users, k), -1, dtype=np.int64)
    for step in range(k):
        objective = lambda_ * relevance - (1.0 - lambda_) * max_similarity
        objective = np.where(available, objective, -np.inf)
        best = np.argmax(objective, axis=1)  # first maximum: ties keep the model's order
        has_pick = available[rows, best]
        picked[has_pick, step] = candidates[rows, best][has_pick]
        available[rows, best] = False
        similarity = genre_jaccard_similarity(candidate_genres, candidate_genres[rows, best][:, None, :])
        max_similarity = np.maximum(max_similarity, similarity)
    return picked


@dataclass(frozen=True)
class GenreMMR:
    """``rerank_mmr`` as a re-ranker callable: (candidate ids, candidate scores, k) -> ids."""

    item_genres: np.ndarray
    lambda_: float = 0.7

    def __call__(self, candidate_ids: np.ndarray, candidate_scores: np.ndarray | None, k: int) -> np.ndarray:
        return rerank_mmr(candidate_ids, self.item_genres, self.lambda_, scores=candidate_scores, k=k)

    @property
    def description(self) -> dict[str, Any]:
        return {"method": "genre MMR, Jaccard similarity (jobs.rerank.rerank_mmr)", "lambda": self.lambda_}
