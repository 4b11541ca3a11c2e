"""EASE and the EASE+ALS blend on small matrices whose answer is known, and the
``implicit``-style recommend interface they share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from jobs.core.config import ModelSettings
from jobs.recsys.models import EASE, ModelError, ModelSpec, make_model, model_arrays, top_n, weight_confidence


@pytest.fixture(autouse=True)
def one_blas_thread():
    """As fairshelf fits ``implicit`` models: BLAS held to one thread."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def test_ease_closed_form_on_two_items():
    # X'X = [[2, 1], [1, 2]]; + lambda I (lambda = 1) = [[3, 1], [1, 3]];
    # P = 1/8 [[3, -1], [-1, 3]]; B_ij = -P_ij / P_jj = 1/3 off the diagonal, 0 on it
    x = csr_matrix(np.array([[1, 1], [1, 0], [0, 1]], dtype=np.float32))
    weights = EASE(regularization=1.0).fit(x).item_weights
    np.testing.assert_allclose(weights, [[0, 1 / 3], [1 / 3, 0]], rtol=1e-5)


def _two_communities() -> csr_matrix:
    """Users 0-9 watch items 0-4, users 10-19 items 5-9; each misses one of its block."""
    dense = np.zeros((20, 10), dtype=np.float32)
    for u in range(20):
        block = np.arange(5) if u < 10 else np.arange(5, 10)
        dense[u, np.delete(block, u % 5)] = 1
    return csr_matrix(dense)


@pytest.mark.parametrize("algorithm", ["ease", "blend"])
def test_the_missing_item_of_the_own_block_comes_first(algorithm):
    x = _two_communities()
    model = make_model(ModelSpec(
        algorithm=algorithm, ease_regularization=1.0, factors=2, iterations=30, regularization=0.1, alpha=2.0,
        blend_weight=0.5,
    ))
    model.fit(x)
    users = np.arange(20)
    ids, scores = model.recommend(users, x[users], N=3, filter_already_liked_items=True)
    expected = np.where(users < 10, users % 5, 5 + users % 5)
    np.testing.assert_array_equal(ids[:, 0], expected)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_recommend_filters_seen_items_and_pads_with_minus_one():
    x = csr_matrix(np.array([[1, 1, 0], [1, 1, 1]], dtype=np.float32))
    model = EASE(regularization=1.0).fit(x)
    ids, scores = model.recommend(np.array([0, 1]), x, N=3)
    assert ids[0, 0] == 2 and list(ids[0, 1:]) == [-1, -1]
    assert list(ids[1]) == [-1, -1, -1] and np.all(np.isneginf(scores[1]))
    single_ids, _ = model.recommend(0, x[0], N=1)
    assert single_ids.shape == (1,) and single_ids[0] == 2
    with pytest.raises(ModelError, match="rows for"):
        model.recommend(np.array([0, 1]), x[0], N=1)


def test_blend_weight_one_ranks_as_ease_does():
    x = _two_communities()
    ease = make_model(ModelSpec(algorithm="ease", ease_regularization=5.0)).fit(x)
    blend = make_model(ModelSpec(algorithm="blend", ease_regularization=5.0, blend_weight=1.0, factors=2, alpha=2.0))
    blend.fit(x)
    users = np.arange(20)
    np.testing.assert_array_equal(blend.recommend(users, x, N=5)[0], ease.recommend(users, x, N=5)[0])
    assert set(model_arrays(blend)) == {"item_weights", "user_factors", "item_factors"}


def test_top_n_breaks_ties_by_the_lower_id():
    ids, values = top_n(np.array([[1.0, 3.0, 3.0, -np.inf, 2.0]]), 4)
    assert ids.tolist() == [[1, 2, 4, 0]]
    ids, _ = top_n(np.array([[1.0, -np.inf]]), 2)
    assert ids.tolist() == [[0, -1]]


def test_ease_refuses_a_catalog_larger_than_offered():
    with pytest.raises(ModelError, match="offered up to 3 titles"):
        EASE(max_items=3).fit(csr_matrix((2, 4), dtype=np.float32))


def test_spec_reads_model_settings_and_validates():
    spec = ModelSpec.from_settings(ModelSettings(algorithm="bpr", factors=8))
    assert (spec.algorithm, spec.factors, spec.weighting) == ("bpr", 8, "none")
    with pytest.raises(ModelError, match="algorithm: should be 'als', 'bpr', 'ease' or 'blend'"):
        ModelSpec(algorithm="svd")
    with pytest.raises(ModelError, match="weighting: should be 'none', 'bm25' or 'tfidf'"):
        ModelSpec(weighting="log")
    with pytest.raises(ModelError, match=r"blend_weight: should be less than or equal to 1 \(got 1.5\)"):
        dataclasses.replace(spec, blend_weight=1.5)


def test_weighting_keeps_the_pattern_and_none_keeps_values():
    x = _two_communities() * 0.5
    assert (weight_confidence(x, ModelSpec()) != x).nnz == 0
    for weighting in ("bm25", "tfidf"):
        weighted = weight_confidence(x, ModelSpec(weighting=weighting))
        assert weighted.shape == x.shape
        np.testing.assert_array_equal((weighted != 0).toarray(), (x != 0).toarray())
