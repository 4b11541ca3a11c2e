"""Offline metrics against hand-computed small cases, and against a plain pandas/python
reference on a random case (the way Microsoft Recommenders tests its evaluation)."""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from jobs.recsys.metrics import (
    MetricsError,
    average_popularity,
    beyond_accuracy_metrics,
    catalog_coverage,
    exposure_gini,
    gini_index,
    intra_list_diversity,
    map_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)


def relevance(rows: list[set[int]], n_items: int) -> csr_matrix:
    dense = np.zeros((len(rows), n_items))
    for user, items in enumerate(rows):
        dense[user, list(items)] = 1
    return csr_matrix(dense)


# User 0: list [1, 2, 3], relevant {2, 5}: one hit at rank 2.
# User 1: list [4, 0, -1] (only two items), relevant {0, 4, 6, 7}: hits at ranks 1 and 2.
# User 2: list [0, 1, 2], nothing relevant: not evaluated.
LISTS = np.array([[1, 2, 3], [4, 0, -1], [0, 1, 2]])
TRUTH = relevance([{2, 5}, {0, 4, 6, 7}, set()], n_items=8)
L2, L3 = math.log2(3), math.log2(4)  # discounts of ranks 2 and 3 are 1/L2 and 1/L3


def test_precision_divides_by_k_even_for_a_short_list():
    assert precision_at_k(LISTS, TRUTH, 3) == pytest.approx((1 / 3 + 2 / 3) / 2)


def test_recall_divides_by_the_number_of_relevant_items():
    assert recall_at_k(LISTS, TRUTH, 3) == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_ndcg_ideal_is_over_min_k_and_relevant_count():
    user0 = (1 / L2) / (1 + 1 / L2)  # ideal: 2 relevant items at ranks 1-2
    user1 = (1 + 1 / L2) / (1 + 1 / L2 + 1 / L3)  # ideal: 3 = k of its 4 relevant items
    assert ndcg_at_k(LISTS, TRUTH, 3) == pytest.approx((user0 + user1) / 2)


def test_map_normalizes_by_min_k_and_relevant_count():
    user0 = (1 / 2) / 2  # precision@2 = 1/2 at the hit; min(3, 2) = 2
    user1 = (1 / 1 + 2 / 2) / 3  # min(3, 4) = 3
    assert map_at_k(LISTS, TRUTH, 3) == pytest.approx((user0 + user1) / 2)


def test_a_perfect_list_scores_one_and_k_truncates():
    truth = relevance([{3, 1}], n_items=5)
    assert ranking_metrics(np.array([[3, 1, 0]]), truth, 2) == {
        "precision@2": 1.0,
        "recall@2": 1.0,
        "ndcg@2": 1.0,
        "map@2": 1.0,
    }
    # only the first k of a longer list count: the hit at rank 3 is ignored
    assert ndcg_at_k(np.array([[0, 2, 3]]), truth, 2) == 0.0


def test_users_without_relevant_items_are_not_averaged_in():
    only_user_2 = relevance([set(), set(), {0}], n_items=8)
    assert precision_at_k(LISTS, only_user_2, 1) == 1.0  # user 2's list starts with item 0
    with pytest.raises(MetricsError, match="no user has a relevant item"):
        ranking_metrics(LISTS, relevance([set(), set(), set()], n_items=8), 3)


def test_padding_never_counts_as_the_last_item():
    # -1 must not index the last column: item 7 is relevant, the list is all padding
    truth = relevance([{7}], n_items=8)
    assert ranking_metrics(np.array([[-1, -1]]), truth, 2)["recall@2"] == 0.0


def test_inputs_that_do_not_line_up_are_refused():
    with pytest.raises(MetricsError, match="recommendation lists for"):
        ranking_metrics(LISTS[:2], TRUTH, 3)
    with pytest.raises(MetricsError, match="outside"):
        ranking_metrics(np.array([[9]]), relevance([{0}], n_items=8), 1)


# --- beyond accuracy: a catalog of 5 items --------------------------------------------

# item:          0       1    2    3   4
COUNTS = np.array([4, 2, 1, 0, 1])  # training interactions, 8 in all
GENRES = np.array(
    [
        [1, 1, 0],  # 0: {A, B}
        [0, 1, 0],  # 1: {B}
        [0, 0, 1],  # 2: {C}
        [0, 0, 0],  # 3: no genre
        [0, 0, 0],  # 4: no genre
    ],
    dtype=bool,
)
SHELVES = np.array([[0, 1], [0, 2]])  # exposure: item 0 twice, items 1 and 2 once


def test_coverage_is_distinct_items_over_catalog():
    assert catalog_coverage(SHELVES, 5) == pytest.approx(3 / 5)


def test_novelty_is_mean_self_information_of_the_training_share():
    # shares 4/8, 2/8, 4/8, 1/8 -> 1, 2, 1, 3 bits
    assert novelty(SHELVES, COUNTS) == pytest.approx((1 + 2 + 1 + 3) / 4)
    # an item never seen in training counts as seen once: 1/8 -> 3 bits
    assert novelty(np.array([[3]]), COUNTS) == pytest.approx(3.0)


def test_average_popularity_is_mean_training_count_per_slot():
    assert average_popularity(SHELVES, COUNTS) == pytest.approx((4 + 2 + 4 + 1) / 4)


def test_gini_of_exposure_over_the_whole_catalog():
    # exposure sorted: 0, 0, 1, 1, 2; weights 2j - n - 1 = -4, -2, 0, 2, 4
    assert exposure_gini(SHELVES, 5) == pytest.approx((0 + 0 + 0 + 2 * 1 + 4 * 2) / (4 * 4))
    assert gini_index([3, 3, 3]) == 0.0
    assert gini_index([0, 0, 0, 7]) == pytest.approx(1.0)


def test_intra_list_diversity_is_mean_pairwise_jaccard_distance():
    # [0, 1]: |{B}| / |{A, B}| = 1/2 -> 0.5 ; [0, 2]: disjoint -> 1
    assert intra_list_diversity(SHELVES, GENRES) == pytest.approx((0.5 + 1.0) / 2)
    # pairs of [0, 1, 2]: 0.5, 1, 1
    assert intra_list_diversity(np.array([[0, 1, 2]]), GENRES) == pytest.approx(2.5 / 3)


def test_intra_list_diversity_genreless_items_and_short_lists():
    # two genre-less items are not known to differ; genre-less vs {C} is distance 1;
    # a list with one item (after padding) has no pair and is left out
    lists = np.array([[3, 4], [3, 2], [0, -1]])
    assert intra_list_diversity(lists, GENRES) == pytest.approx((0.0 + 1.0) / 2)


def test_beyond_accuracy_bundle_names():
    assert set(beyond_accuracy_metrics(SHELVES, COUNTS, GENRES)) == {
        "coverage",
        "novelty",
        "intra_list_diversity",
        "gini",
        "avg_popularity",
    }


# --- against a straightforward pandas/python reference -----------------------------------


def reference_metrics(reco: pd.DataFrame, truth: pd.DataFrame, train: pd.DataFrame, genres, n_items, k):
    """Textbook definitions, one user at a time, from long (user, item[, rank]) frames."""
    rows = []
    for user, relevant in truth.groupby("user")["item"]:
        relevant = set(relevant)
        ranked = reco[reco.user == user].sort_values("rank")["item"].tolist()[:k]
        hit_ranks = [r for r, item in enumerate(ranked, start=1) if item in relevant]
        dcg = sum(1 / math.log2(r + 1) for r in hit_ranks)
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(k, len(relevant)) + 1))
        ap = sum((i + 1) / r for i, r in enumerate(hit_ranks)) / min(k, len(relevant))
        rows.append((len(hit_ranks) / k, len(hit_ranks) / len(relevant), dcg / idcg, ap))
    precision, recall, ndcg, map_ = np.mean(rows, axis=0)

    top = reco[reco["rank"] <= k]
    counts = train.groupby("item").size().reindex(range(n_items), fill_value=0)
    share = counts.clip(lower=1) / counts.sum()
    exposure = top.groupby("item").size().reindex(range(n_items), fill_value=0).sort_values().to_numpy()
    n = n_items
    gini = sum((2 * j - n - 1) * x for j, x in enumerate(exposure, start=1)) / ((n - 1) * exposure.sum())
    diversities = []
    for _, items in top.sort_values("rank").groupby("user")["item"]:
        sets = [frozenset(np.flatnonzero(genres[i])) for i in items]
        pairs = list(combinations(sets, 2))
        if pairs:
            diversities.append(
                np.mean([1 - (len(a & b) / len(a | b) if a | b else 1.0) for a, b in pairs])
            )
    return {
        f"precision@{k}": precision,
        f"recall@{k}": recall,
        f"ndcg@{k}": ndcg,
        f"map@{k}": map_,
        "coverage": top["item"].nunique() / n_items,
        "novelty": float((-np.log2(top["item"].map(share))).mean()),
        "intra_list_diversity": float(np.mean(diversities)),
        "gini": gini,
        "avg_popularity": float(top["item"].map(counts).mean()),
        "exposure_total": Counter(top["item"]).total(),
    }


def test_metrics_match_a_python_reference_on_a_random_case():
    rng = np.random.default_rng(7)
    n_users, n_items, k, width = 30, 40, 5, 8
    genres = rng.random((n_items, 4)) < 0.35
    train = pd.DataFrame({"user": rng.integers(0, n_users, 300), "item": rng.integers(0, n_items, 300)})
    truth = pd.DataFrame({"user": rng.integers(0, n_users, 120), "item": rng.integers(0, n_items, 120)})
    truth = truth.drop_duplicates()
    lists = np.array([rng.permutation(n_items)[:width] for _ in range(n_users)])
    lists[3, 4:] = -1  # a short list
    reco = pd.DataFrame(
        [(u, int(item), r) for u in range(n_users) for r, item in enumerate(lists[u], start=1) if item >= 0],
        columns=["user", "item", "rank"],
    )
    relevant = csr_matrix(
        (np.ones(len(truth)), (truth["user"], truth["item"])), shape=(n_users, n_items)
    )
    counts = np.bincount(train["item"], minlength=n_items)

    expected = reference_metrics(reco, truth, train, genres, n_items, k)
    assert expected.pop("exposure_total") == np.count_nonzero(lists[:, :k] >= 0)
    got = {**ranking_metrics(lists, relevant, k), **beyond_accuracy_metrics(lists[:, :k], counts, genres)}
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name
