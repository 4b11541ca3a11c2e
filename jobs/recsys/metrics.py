"""Offline metrics of top-k recommendation lists: ranking quality and beyond accuracy.

Pure numpy; no I/O. Every function takes the lists as one ``recommended`` array of
item columns, shape (users, k), best first, padded with -1 where a user got fewer than
k items. Ground truth is a user x item sparse matrix whose non-zero cells are the
relevant (held-out) items; its rows line up with the rows of ``recommended``.

Definitions (the unit tests check each on hand-computed cases):

- precision@k = hits in the top k / k (a short list is still divided by k);
- recall@k = hits in the top k / number of relevant items;
- nDCG@k, binary relevance: DCG = sum over hit ranks r (1-based) of 1 / log2(r + 1),
  divided by the ideal DCG of min(k, |relevant|) hits in the first ranks;
- MAP@k: sum over hit ranks r of precision@r, divided by min(k, |relevant|);
  ranking metrics are averaged over the users with at least one relevant item;
- coverage = distinct recommended items / catalog size;
- novelty = mean over recommended slots of -log2(popularity share), the share of an item
  being its training interactions / all training interactions (Castells & Vargas'
  "choice" novelty, as in Microsoft Recommenders); an item never seen in training counts
  as seen once, so its novelty is finite and the highest;
- intra-list diversity = mean over lists (of 2 or more items) of the mean over item pairs
  of 1 - Jaccard(genre sets); two items without genres are at distance 0, an item without
  genres and one with some at distance 1;
- gini = Gini index of exposure (slots per item) over the whole catalog, items never
  recommended included: sum_j (2j - n - 1) x_j / ((n - 1) sum x), x sorted ascending,
  so 0 is equal exposure and 1 all exposure on one item;
- avg_popularity = mean training interaction count of the recommended items (per slot).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix


class MetricsError(ValueError):
    """Inputs to a metric do not line up (shapes, item ids out of the catalog)."""


def _check(recommended: np.ndarray, n_items: int) -> np.ndarray:
    recommended = np.asarray(recommended)
    if recommended.ndim != 2:
        raise MetricsError(f"recommended must be 2-D (users, k), got shape {recommended.shape}")
    if recommended.size and (recommended.max() >= n_items or recommended.min() < -1):
        raise MetricsError(f"recommended holds item ids outside 0..{n_items - 1} (or -1 padding)")
    return recommended.astype(np.int64, copy=False)


def hits(recommended: np.ndarray, relevant: csr_matrix) -> np.ndarray:
    """Boolean (users, k): whether the item at each rank is relevant to its user."""
    relevant = csr_matrix(relevant)
    recommended = _check(recommended, relevant.shape[1])
    if recommended.shape[0] != relevant.shape[0]:
        raise MetricsError(
            f"{recommended.shape[0]} recommendation lists for {relevant.shape[0]} users of ground truth"
        )
    valid = recommended >= 0
    out = np.zeros(recommended.shape, dtype=bool)
    if valid.any():
        users = np.nonzero(valid)[0]
        out[valid] = np.asarray(relevant[users, recommended[valid]]).ravel() != 0
    return out


def _relevant_counts(relevant: csr_matrix) -> np.ndarray:
    relevant = csr_matrix(relevant)
    relevant.eliminate_zeros()
    return np.diff(relevant.indptr)


def ranking_metrics_per_user(recommended: np.ndarray, relevant: csr_matrix, k: int) -> dict[str, np.ndarray]:
    """precision@k, recall@k, ndcg@k, map@k of every user with at least one relevant item,
    plus ``users``, the row numbers of those users."""
    if k < 1:
        raise MetricsError(f"k must be at least 1, got {k}")
    hit = hits(np.asarray(recommended)[:, :k], relevant)
    n_relevant = _relevant_counts(relevant)
    users = np.flatnonzero(n_relevant > 0)
    hit, n_relevant = hit[users], n_relevant[users]
    width = hit.shape[1]
    hit_count = hit.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hit @ discounts[:width]
    ideal = np.cumsum(discounts)[np.minimum(k, n_relevant) - 1]
    precision_at_rank = np.cumsum(hit, axis=1) / np.arange(1, width + 1)
    average_precision = (precision_at_rank * hit).sum(axis=1) / np.minimum(k, n_relevant)
    return {
        "users": users,
        f"precision@{k}": hit_count / k,
        f"recall@{k}": hit_count / n_relevant,
        f"ndcg@{k}": dcg / ideal,
        f"map@{k}": average_precision,
    }


def ranking_metrics(recommended: np.ndarray, relevant: csr_matrix, k: int) -> dict[str, float]:
    """Means over users with at least one relevant item (see the module doc)."""
    per_user = ranking_metrics_per_user(recommended, relevant, k)
    users = per_user.pop("users")
    if len(users) == 0:
        raise MetricsError("no user has a relevant item: nothing to evaluate")
    return {name: float(values.mean()) for name, values in per_user.items()}


def precision_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> float:
    return ranking_metrics(recommended, relevant, k)[f"precision@{k}"]


def recall_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> float:
    return ranking_metrics(recommended, relevant, k)[f"recall@{k}"]


def ndcg_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> float:
    return ranking_metrics(recommended, relevant, k)[f"ndcg@{k}"]


def map_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> float:
    return ranking_metrics(recommended, relevant, k)[f"map@{k}"]


# --- beyond accuracy -----------------------------------------------------------------


def exposure(recommended: np.ndarray, n_items: int) -> np.ndarray:
    """Number of list slots given to each catalog item."""
    recommended = _check(recommended, n_items)
    return np.bincount(recommended[recommended >= 0], minlength=n_items)


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Distinct recommended items / catalog size."""
    return float(np.count_nonzero(exposure(recommended, n_items)) / n_items)


def novelty(recommended: np.ndarray, item_counts: np.ndarray) -> float:
    """Mean -log2(training share) of the recommended items (see the module doc)."""
    counts = np.asarray(item_counts, dtype=np.float64)
    recommended = _check(recommended, len(counts))
    items = recommended[recommended >= 0]
    if len(items) == 0:
        raise MetricsError("no recommended item: novelty is undefined")
    share = np.maximum(counts[items], 1.0) / counts.sum()
    return float(np.mean(-np.log2(share)))


def average_popularity(recommended: np.ndarray, item_counts: np.ndarray) -> float:
    """Mean training interaction count of the recommended items."""
    counts = np.asarray(item_counts, dtype=np.float64)
    recommended = _check(recommended, len(counts))
    items = recommended[recommended >= 0]
    if len(items) == 0:
        raise MetricsError("no recommended item: average popularity is undefined")
    return float(counts[items].mean())


def gini_index(values: np.ndarray) -> float:
    """Gini index of non-negative values, normalized by n - 1 (0 equal, 1 all on one)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n < 2 or x.sum() == 0:
        return 0.0
    weights = 2 * np.arange(1, n + 1) - n - 1
    return float((weights @ x) / ((n - 1) * x.sum()))


def exposure_gini(recommended: np.ndarray, n_items: int) -> float:
    """Gini index of exposure over the whole catalog."""
    return gini_index(exposure(recommended, n_items))


def genre_jaccard_similarity(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Jaccard similarity of boolean genre vectors, broadcast over leading axes; two empty
    genre sets are identical (similarity 1)."""
    left, right = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
    inter = (left * right).sum(axis=-1)
    union = left.sum(axis=-1) + right.sum(axis=-1) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 1.0)


def intra_list_diversity(recommended: np.ndarray, item_genres: np.ndarray, batch_users: int = 4096) -> float:
    """Mean over lists of the mean pairwise genre distance 1 - Jaccard (module doc)."""
    genres = np.asarray(item_genres, dtype=bool)
    recommended = _check(recommended, genres.shape[0])
    k = recommended.shape[1]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    per_list = []
    for start in range(0, recommended.shape[0], batch_users):
        lists = recommended[start : start + batch_users]
        valid = lists >= 0
        g = genres[np.where(valid, lists, 0)]  # (users, k, genres)
        distance = 1.0 - genre_jaccard_similarity(g[:, :, None, :], g[:, None, :, :])
        pair = upper & valid[:, :, None] & valid[:, None, :]
        n_pairs = pair.sum(axis=(1, 2))
        keep = n_pairs > 0
        per_list.append((distance * pair).sum(axis=(1, 2))[keep] / n_pairs[keep])
    values = np.concatenate(per_list) if per_list else np.array([])
    if len(values) == 0:
        raise MetricsError("no list has two items: intra-list diversity is undefined")
    return float(values.mean())


def beyond_accuracy_metrics(
    recommended: np.ndarray, item_counts: np.ndarray, item_genres: np.ndarray
) -> dict[str, float]:
    """coverage, novelty, intra_list_diversity, gini, avg_popularity (module doc)."""
    n_items = len(item_counts)
    return {
        "coverage": catalog_coverage(recommended, n_items),
        "novelty": novelty(recommended, item_counts),
        "intra_list_diversity": intra_list_diversity(recommended, item_genres),
        "gini": exposure_gini(recommended, n_items),
        "avg_popularity": average_popularity(recommended, item_counts),
    }
