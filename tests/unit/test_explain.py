"""Explanations on small matrices whose answer is known: EASE's exact contributions,
``implicit``'s ALS ``explain`` (the reference), the blend's ALS part, and the per-user
confidence weighting they see."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random
from threadpoolctl import threadpool_limits

from jobs.recsys import explain
from jobs.recsys.explain import Explainer, best_per_group, user_pairs
from jobs.recsys.models import ModelSpec, make_model, model_arrays, weight_confidence, weight_rows, weighting_state


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def flat(lists):
    """CSR-like (indptr, values) of a list of lists."""
    return np.r_[0, np.cumsum([len(x) for x in lists])], np.array([v for x in lists for v in x], dtype=np.int64)


def random_matrix(users=60, items=40, seed=2) -> csr_matrix:
    x = csr_matrix(sparse_random(users, items, density=0.15, random_state=seed, dtype=np.float32))
    x.data = (3 * x.data + 0.1).astype(np.float32)
    x.sort_indices()
    return x


def test_ease_contribution_is_confidence_times_the_weight_of_the_pair():
    # B[j, i]: watched 0 and 1, pick 2. Contributions: 0 -> 1.0 x 0.9, 1 -> 3.0 x 0.1
    weights = np.array([[0.0, 0.2, 0.9], [0.5, 0.0, 0.1], [0.3, 0.4, 0.0]])
    explainer = Explainer.from_model_arrays(ModelSpec(algorithm="ease"), {"item_weights": weights}, 3)
    seen_ptr, seen = flat([[1, 0]])
    pick_ptr, picks = flat([[2]])
    _, seen_index, values = explainer.contributions(seen_ptr, seen, [3.0, 1.0], pick_ptr, picks)
    assert dict(zip([0, 1], values[np.argsort(seen_index)])) == pytest.approx({0: 0.9, 1: 0.3})
    assert explainer.because(seen_ptr, seen, [3.0, 1.0], pick_ptr, picks).tolist() == [0]
    # watch title 1 ten times as much: 10 x 0.1 = 1.0 > 0.9
    assert explainer.because(seen_ptr, seen, [10.0, 1.0], pick_ptr, picks).tolist() == [1]


def test_ease_contributions_add_up_to_the_models_score():
    x = random_matrix()
    spec = ModelSpec(algorithm="ease", ease_regularization=5.0, weighting="tfidf")
    weighted = weight_confidence(x, spec)
    model = make_model(spec).fit(weighted)
    explainer = Explainer.from_model_arrays(spec, {**model_arrays(model), **weighting_state(x, spec)}, x.shape[1])
    users = np.array([0, 7, 33])
    rows = x[users]
    pick_ptr, picks = flat([[1, 2, 3], [4], [5, 39]])
    pick_index, _, values = explainer.contributions(rows.indptr, rows.indices, rows.data, pick_ptr, picks)
    totals = np.bincount(pick_index, values, minlength=len(picks))
    scores = model.score(users, weighted[users])
    expected = [scores[u, p] for u, p in zip(np.repeat([0, 1, 2], np.diff(pick_ptr)), picks)]
    np.testing.assert_allclose(totals, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weighting", ["none", "tfidf", "bm25"])
def test_als_contributions_are_implicits_explain(weighting):
    x = random_matrix()
    spec = ModelSpec(algorithm="als", factors=6, iterations=8, alpha=3.0, regularization=0.5, weighting=weighting)
    weighted = weight_confidence(x, spec)
    model = make_model(spec)
    model.fit(weighted, show_progress=False)
    explainer = Explainer.from_model_arrays(spec, {**model_arrays(model), **weighting_state(x, spec)}, x.shape[1])
    users = np.array([1, 5, 9, 30])
    picks_of = [[0, 3, 7], [], [11, 12], [39]]
    rows = x[users]
    pick_ptr, picks = flat(picks_of)
    pick_index, seen_index, values = explainer.contributions(rows.indptr, rows.indices, rows.data, pick_ptr, picks)
    because = explainer.because(rows.indptr, rows.indices, rows.data, pick_ptr, picks)
    # positions index each user's watched titles sorted by item row
    seen_sorted = np.concatenate([np.sort(rows[k].indices) for k in range(len(users))])
    position = 0
    for user, user_picks in zip(users, picks_of):
        for pick in user_picks:
            total, top, _ = model.explain(user, weighted, pick, N=x.shape[1])
            mine = values[pick_index == position]
            items = seen_sorted[seen_index[pick_index == position]]
            reference = dict(top)
            assert dict(zip(items.tolist(), mine.tolist())) == pytest.approx(reference, rel=1e-4, abs=1e-6)
            assert mine.sum() == pytest.approx(total, rel=1e-4, abs=1e-6)
            assert because[position] == max(reference, key=reference.get)
            position += 1


def test_als_explains_a_pick_by_a_title_of_its_own_community():
    # users 0-9 watch items 0-4, users 10-19 items 5-9, each missing one of their block
    dense = np.zeros((20, 10), dtype=np.float32)
    for u in range(20):
        block = np.arange(5) if u < 10 else np.arange(5, 10)
        dense[u, np.delete(block, u % 5)] = 1
    x = csr_matrix(dense)
    spec = ModelSpec(algorithm="als", factors=2, iterations=30, regularization=0.1, alpha=1.0)
    model = make_model(spec)
    model.fit(x, show_progress=False)
    explainer = Explainer.from_model_arrays(spec, model_arrays(model), 10)
    users = np.array([0, 12])
    rows = x[users]
    pick_ptr, picks = flat([[0], [7]])  # each user's missing title
    because = explainer.because(rows.indptr, rows.indices, rows.data, pick_ptr, picks)
    assert because[0] in range(1, 5) and because[1] in (5, 6, 8, 9)


def test_the_blend_is_explained_by_its_als_part():
    x = random_matrix(seed=4)
    blend_spec = ModelSpec(algorithm="blend", factors=5, iterations=6, ease_regularization=10.0, alpha=2.0, blend_weight=0.5)
    blend = make_model(blend_spec)
    blend.fit(x)
    als_spec = ModelSpec(algorithm="als", factors=5, iterations=6, alpha=2.0)
    from_blend = Explainer.from_model_arrays(blend_spec, model_arrays(blend), 40)
    from_als = Explainer.from_model_arrays(als_spec, model_arrays(blend.als), 40)
    rows = x[[2, 3, 4]]
    pick_ptr, picks = flat([[1, 2], [3], [4, 5, 6]])
    args = (rows.indptr, rows.indices, rows.data, pick_ptr, picks)
    assert from_blend.method == "als"
    np.testing.assert_array_equal(from_blend.because(*args), from_als.because(*args))


def test_bpr_falls_back_to_cosine_weighted_by_confidence():
    factors = np.array([[1.0, 0.0], [1.0, 0.2], [0.6, 0.8]])
    explainer = Explainer.from_model_arrays(ModelSpec(algorithm="bpr"), {"item_factors": factors}, 3)
    seen_ptr, seen = flat([[1, 2]])
    pick_ptr, picks = flat([[0]])
    # seen 1 is the more similar, but the user watched 2 four times as much
    assert explainer.because(seen_ptr, seen, [1.0, 1.0], pick_ptr, picks).tolist() == [1]
    assert explainer.because(seen_ptr, seen, [1.0, 4.0], pick_ptr, picks).tolist() == [2]


def test_chunks_restriction_and_ties_do_not_change_the_answer(monkeypatch):
    x = random_matrix(users=80, seed=5)
    rng = np.random.default_rng(0)
    users = np.arange(80)
    rows = x[users]
    pick_ptr, picks = flat([rng.choice(40, size=int(rng.integers(0, 6)), replace=False) for _ in users])
    args = (rows.indptr, rows.indices, rows.data, pick_ptr, picks)
    for spec in (ModelSpec(algorithm="ease", ease_regularization=3.0), ModelSpec(algorithm="als", factors=4, iterations=5, alpha=2.0)):
        model = make_model(spec)
        model.fit(x)
        explainer = Explainer.from_model_arrays(spec, model_arrays(model), 40)
        whole = explainer.because(*args)
        monkeypatch.setattr(explain, "CHUNK_ELEMENTS", 50)  # many chunks of a few users
        assert explainer._chunks(rows.indptr, pick_ptr).__len__() > 10
        np.testing.assert_array_equal(explainer.because(*args), whole)
        np.testing.assert_array_equal(explainer.restricted_to(picks).because(*args), whole)
        monkeypatch.undo()
    # equal contributions: the lower item row explains
    weights = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    tie = Explainer.from_model_arrays(ModelSpec(algorithm="ease"), {"item_weights": weights}, 3)
    assert tie.because(*flat([[1, 0]]), [1.0, 1.0], *flat([[2]])).tolist() == [0]


def test_pairs_and_best_per_group():
    pick_index, seen_index = user_pairs(np.array([0, 2, 2, 3]), np.array([0, 2, 3, 3]))
    # user 0: picks 0, 1 x seen 0, 1; user 1: pick 2, no seen; user 2: no pick
    assert pick_index.tolist() == [0, 0, 1, 1] and seen_index.tolist() == [0, 1, 0, 1]
    values = np.array([0.5, 0.7, -1.0, -np.inf])
    assert best_per_group(pick_index, values, 3).tolist() == [1, -1, -1]


def test_weight_rows_matches_the_whole_matrix_weighting():
    x = random_matrix(users=50, items=30, seed=1)
    users = [3, 7, 8, 40]
    for weighting in ("none", "tfidf", "bm25"):
        spec = ModelSpec(weighting=weighting)
        rows = x[users]
        got = weight_rows(rows.indptr, rows.indices, rows.data, spec, x.shape[1], weighting_state(x, spec))
        np.testing.assert_allclose(got, weight_confidence(x, spec)[users].data, rtol=1e-5)
