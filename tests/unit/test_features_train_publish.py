"""Interactions, the model on a small matrix whose answer is known, and shelf building."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from jobs.core.config import ModelSettings
from jobs.recsys.explain import Explainer
from jobs.recsys.models import ModelSpec
from jobs.recsys.training import InteractionMatrix, fit_model, recommend_batched
from jobs.stages.features import build_interactions, filter_consenting_users, filter_history_window
from jobs.stages.publish import REASONS, build_default_shelves, filter_top_candidates, with_because, with_reason
from jobs.stages.train import candidates_table

D = date(2026, 11, 25)


@pytest.mark.spark
def test_interactions_weigh_completion_and_recency(spark):
    events = spark.createDataFrame(
        [
            ("u1", "c1", "2026-11-25", 3000, "2026-11-25"),  # half of a 6000 s film, today
            ("u1", "c1", "2026-10-26", 6000, "2026-10-26"),  # whole film, 30 days ago
            ("u1", "c2", "2026-11-25", 9000, "2026-11-25"),  # more than the duration: capped at 1
            ("u2", "c1", "2026-11-25", 0, "2026-11-25"),  # zero seconds: no signal
        ],
        "user_key string, content_id string, event_date string, seconds_watched long, run_date string",
    )
    content = spark.createDataFrame([("c1", 6000), ("c2", 1200)], "content_id string, duration_seconds long")
    rows = {(r["user_key"], r["content_id"]): r for r in build_interactions(events, content, D, 30.0).collect()}
    assert set(rows) == {("u1", "c1"), ("u1", "c2")}
    assert rows[("u1", "c1")]["views"] == 2
    assert rows[("u1", "c1")]["confidence"] == pytest.approx(0.5 + 1.0 * 0.5)
    assert rows[("u1", "c1")]["last_seen"] == "2026-11-25"
    assert rows[("u1", "c2")]["confidence"] == pytest.approx(1.0)


@pytest.mark.spark
def test_history_window_never_reads_after_the_run_date(spark):
    events = spark.createDataFrame(
        [("2026-11-26",), ("2026-11-25",), ("2026-08-28",), ("2026-08-27",)], "run_date string"
    )
    kept = sorted(r[0] for r in filter_history_window(events, D, 90).collect())
    assert kept == ["2026-08-28", "2026-11-25"]


@pytest.mark.spark
def test_users_without_consent_are_excluded(spark):
    events = spark.createDataFrame([("yes", "c1"), ("no", "c1"), ("unknown", "c1")], "user_key string, content_id string")
    users = spark.createDataFrame([("yes", True), ("no", False)], "user_key string, consent_personalization boolean")
    assert [r[0] for r in filter_consenting_users(events, users).collect()] == ["yes"]


def _two_communities() -> InteractionMatrix:
    """Users 0-9 watch items 0-4, users 10-19 watch items 5-9; each user misses one item
    of their own block, which is the right recommendation."""
    users, items = [], []
    for u in range(20):
        block = range(0, 5) if u < 10 else range(5, 10)
        missing = block[u % 5]
        for i in block:
            if i != missing:
                users.append(f"u{u:02d}")
                items.append(f"c{i}")
    table = pa.table({"user_key": users, "content_id": items, "confidence": [1.0] * len(users)})
    return InteractionMatrix.from_arrow(table)


def test_index_maps_are_sorted_and_stable():
    data = _two_communities()
    assert list(data.user_keys) == sorted(data.user_keys)
    assert list(data.content_ids) == [f"c{i}" for i in range(10)]
    assert data.matrix.shape == (20, 10) and data.matrix.nnz == 80


def test_model_recommends_the_missing_item_of_the_users_community():
    data = _two_communities()
    # the matrix has rank 2 (two communities): two factors recover it
    model = fit_model(data, ModelSettings(factors=2, iterations=30, regularization=0.1, alpha=1.0))
    rows, cols, scores = recommend_batched(model, data.matrix, n=1, batch_users=7)
    assert len(rows) == 20 and list(rows) == list(range(20))  # batches cover every user once
    for u, i in zip(rows, cols):
        block = range(0, 5) if u < 10 else range(5, 10)
        assert i == block[u % 5]


def test_training_is_seeded():
    data = _two_communities()
    settings = ModelSettings(factors=4, iterations=5)
    first = fit_model(data, settings).item_factors
    second = fit_model(data, settings).item_factors
    np.testing.assert_array_equal(first, second)


def test_candidates_are_ranked_per_user():
    data = _two_communities()
    rows = np.array([0, 0, 0, 3, 3])
    cols = np.array([4, 1, 2, 0, 4])
    table = candidates_table(data, rows, cols, np.array([0.9, 0.5, 0.1, 0.8, 0.7]), "als-x", D).to_pylist()
    assert [r["candidate_rank"] for r in table] == [1, 2, 3, 1, 2]
    assert table[3]["user_key"] == data.user_keys[3] and table[3]["content_id"] == "c0"


@pytest.mark.spark
def test_shelf_takes_the_best_scores(spark):
    candidates = spark.createDataFrame(
        [("u1", "a", 0.1), ("u1", "b", 0.9), ("u1", "c", 0.5), ("u2", "a", 0.3)],
        "user_key string, content_id string, score double",
    )
    shelf = filter_top_candidates(candidates, 2).orderBy("user_key", "rank").collect()
    assert [(r["user_key"], r["rank"], r["content_id"]) for r in shelf] == [
        ("u1", 1, "b"), ("u1", 2, "c"), ("u2", 1, "a")
    ]


@pytest.mark.spark
def test_because_names_the_title_that_contributed_most(spark):
    # EASE: the contribution of watched j to pick i is confidence_j x B[j, i]
    ids = np.array(["pick1", "seen1", "pick2", "seen2", "heavy", "gone"])
    weights = np.zeros((6, 6))
    weights[1, 0], weights[3, 0] = 0.9, 0.2  # pick1: seen1 0.9 x 1, seen2 0.2 x 1
    weights[1, 2], weights[3, 2] = 0.3, 0.4  # pick2: seen1 0.3 x 1, seen2 0.4 x 1
    explainer = Explainer.from_model_arrays(ModelSpec(algorithm="ease"), {"item_weights": weights}, 6)
    shelves = spark.createDataFrame(
        [("u", "pick1", 1), ("u", "pick2", 2), ("u", "unknown", 3), ("new", "pick1", 1), ("w", "pick2", 1)],
        "user_key string, content_id string, rank int",
    )
    history = spark.createDataFrame(
        [("u", "seen1", 1.0), ("u", "seen2", 1.0), ("u", "not-in-model", 5.0), ("v", "heavy", 9.0),
         ("w", "gone", 1.0)],
        "user_key string, content_id string, confidence double",
    )
    got = {
        (r["user_key"], r["content_id"]): r["because_content_id"]
        for r in with_because(shelves, history, explainer, ids).collect()
    }
    # no history, a title the model does not know, or nothing that contributes: no title
    assert got == {
        ("u", "pick1"): "seen1", ("u", "pick2"): "seen2", ("u", "unknown"): None,
        ("new", "pick1"): None, ("w", "pick2"): None,
    }


@pytest.mark.spark
def test_reasons_come_from_the_vocabulary(spark):
    shelves = spark.createDataFrame(
        [("u", "a", "b"), ("u", "c", None), ("u", "d", "left-catalog")],
        "user_key string, content_id string, because_content_id string",
    )
    content = spark.createDataFrame([("b", "Brazil")], "content_id string, title string")
    got = {r["content_id"]: r["reason"] for r in with_reason(shelves, content).collect()}
    assert got == {"a": "Because you watched Brazil", "c": REASONS["history"], "d": REASONS["history"]}
    assert REASONS["because"].format(title="Brazil") == got["a"]


@pytest.mark.spark
def test_default_shelf_lists_only_titles_with_k_viewers(spark):
    k = 3
    today, month_ago = "2026-11-25", "2026-10-26"
    events = spark.createDataFrame(
        [(f"u{i}", "hit", today) for i in range(5)]
        + [(f"u{i}", "old_hit", month_ago) for i in range(6)]
        + [("u0", "niche", today), ("u1", "niche", today), ("u0", "hit", month_ago)],
        "user_key string, content_id string, event_date string",
    )
    users = spark.createDataFrame([(f"u{i}", "R1") for i in range(6)], "user_key string, region string")
    shelves = build_default_shelves(events, users, D, half_life_days=30.0, size=10, k=k).collect()
    got = {(r["region"], r["rank"], r["content_id"]): r["score"] for r in shelves}
    # 5 viewers today outrank 6 viewers a half-life ago (6 x 0.5 = 3); niche (2 < k) is out
    assert got == {
        ("R1", 1, "hit"): 5.0, ("R1", 2, "old_hit"): 3.0,
        ("ALL", 1, "hit"): 5.0, ("ALL", 2, "old_hit"): 3.0,
    }
