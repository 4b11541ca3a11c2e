"""Genre MMR re-ranking on lists whose answer is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.rerank import GenreMMR, RerankError, rerank_mmr

GENRES = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=bool)  # items 0, 1: A; 2: B; 3: none
CANDIDATES = np.array([[0, 1, 2]])
SCORES = np.array([[1.0, 0.9, 0.0]])  # relevance after min-max scaling: 1, 0.9, 0


def test_lambda_one_keeps_the_model_order():
    assert rerank_mmr(CANDIDATES, GENRES, 1.0, scores=SCORES, k=3).tolist() == [[0, 1, 2]]


def test_mmr_trades_relevance_for_a_new_genre():
    # step 2 at lambda 0.5: item 1 -> 0.5 * 0.9 - 0.5 * 1 = -0.05; item 2 -> 0 - 0 = 0
    assert rerank_mmr(CANDIDATES, GENRES, 0.5, scores=SCORES, k=3).tolist() == [[0, 2, 1]]
    # at lambda 0.6: item 1 -> 0.54 - 0.4 = 0.14 beats item 2 -> 0
    assert rerank_mmr(CANDIDATES, GENRES, 0.6, scores=SCORES, k=3).tolist() == [[0, 1, 2]]


def test_without_scores_rank_is_the_relevance_and_padding_stays_out():
    # ranks -> relevance 1, 0.5, 0; at lambda 0.5: item 1 -> 0.25 - 0.5 < item 2 -> 0
    assert rerank_mmr(CANDIDATES, GENRES, 0.5, k=2).tolist() == [[0, 2]]
    padded = np.array([[3, -1, -1], [-1, -1, -1]])
    assert rerank_mmr(padded, GENRES, 0.5, k=2).tolist() == [[3, -1], [-1, -1]]


def test_each_user_is_reranked_independently():
    candidates = np.array([[0, 1, 2], [2, 3, 1]])
    scores = np.array([[1.0, 0.9, 0.0], [5.0, 4.0, 3.0]])
    got = GenreMMR(GENRES, 0.5)(candidates, scores, 3)
    # user 1: 2 first; then 3 (rel 0.5, no genre: Jaccard with {B} is 0) -> 0.25
    # beats 1 (rel 0, sim 0) -> 0
    assert got.tolist() == [[0, 2, 1], [2, 3, 1]]


def test_bad_settings_are_refused():
    with pytest.raises(RerankError, match="lambda_"):
        rerank_mmr(CANDIDATES, GENRES, 1.5)
    with pytest.raises(RerankError, match="scores shape"):
        rerank_mmr(CANDIDATES, GENRES, 0.5, scores=np.ones((1, 2)))
