"""The nightly train stage without Spark: the validation split carved from the run's own
interactions, the budgeted model selection, seeded training, and the model card files."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.core.config import ModelSettings
from jobs.evaluation import evaluate, splits
from jobs.lake.model_store import (
    CARD_FILE,
    CARD_MARKDOWN_FILE,
    MODEL_FILE,
    USERS_FILE,
    drop_users_from_model,
    load_saved_model,
)
from jobs.recsys import selection, training
from jobs.recsys.explain import saved_model_explainer
from jobs.recsys.models import ModelSpec, model_arrays, weighting_state
from jobs.recsys.training import (
    InteractionMatrix,
    holdout_per_user,
    select_hyperparameters,
    selection_candidates,
    train_model,
)
from jobs.stages.train import run_model_card, save_model

D = date(2026, 11, 25)
FAST = [  # a small search space, so that a test's search ends long before its budget
    ModelSpec(algorithm="ease", ease_regularization=5.0),
    ModelSpec(algorithm="als", factors=4, iterations=5, alpha=2.0),
    ModelSpec(algorithm="ease", ease_regularization=50.0, weighting="tfidf"),
]


def run_interactions(users: int = 60, items: int = 25, seed: int = 11) -> InteractionMatrix:
    """Two taste groups, confidences like the features stage's (completion x decay sums)."""
    rng = np.random.default_rng(seed)
    keys, titles, confidence = [], [], []
    for u in range(users):
        pool = np.arange(items // 2) if u % 2 else np.arange(items // 2, items)
        for i in rng.choice(pool, size=int(rng.integers(1, 9)), replace=False):
            keys.append(f"user-{u:03d}")
            titles.append(f"cnt-{i:03d}")
            confidence.append(float(rng.uniform(0.1, 2.0)))
    return InteractionMatrix.from_arrow(pa.table({"user_key": keys, "content_id": titles, "confidence": confidence}))


def settings(**changes) -> ModelSettings:
    return replace(ModelSettings(algorithm="ease", ease_regularization=20.0), **changes)


@pytest.fixture
def fast_search(monkeypatch):
    monkeypatch.setattr(training, "search_space", lambda seed=42: [replace(s, seed=seed) for s in FAST])


def test_holdout_splits_each_sampled_users_titles_and_nothing_else():
    data = run_interactions()
    split = holdout_per_user(data.matrix, 0.25, seed=42, max_users=1000)
    fit, held = split.fit_part, split.validation
    pattern = lambda m: {(int(r), int(c)) for r, c in zip(*m.nonzero())}  # noqa: E731
    assert pattern(fit) | pattern(held) == pattern(data.matrix) and not pattern(fit) & pattern(held)
    assert set(np.unique(held.data)) == {1.0}
    np.testing.assert_array_equal(fit.toarray()[fit.toarray() > 0], data.matrix.toarray()[fit.toarray() > 0])
    counts, held_counts = np.diff(data.matrix.indptr), np.diff(held.indptr)
    assert np.all(held_counts[counts < 2] == 0)
    many = counts >= 2
    np.testing.assert_array_equal(held_counts[many], np.clip(np.floor(0.25 * counts[many] + 0.5), 1, counts[many] - 1))
    again = holdout_per_user(data.matrix, 0.25, seed=42, max_users=1000)
    assert pattern(again.validation) == pattern(held)
    assert pattern(holdout_per_user(data.matrix, 0.25, seed=7, max_users=1000).validation) != pattern(held)
    sampled = holdout_per_user(data.matrix, 0.25, seed=42, max_users=5)
    assert (np.diff(sampled.validation.indptr) > 0).sum() == 5 and sampled.info["users"] == 5


def test_selection_sees_only_the_runs_interactions(monkeypatch, fast_search):
    data = run_interactions()
    seen = {}
    real_select = training.select_model

    def spy(fit_part, validation, candidates, **kwargs):
        seen.update(fit=fit_part, validation=validation, candidates=candidates)
        return real_select(fit_part, validation, candidates, **kwargs)

    def no_other_data(*args, **kwargs):
        raise AssertionError("model selection must not read any other data set")

    monkeypatch.setattr(training, "select_model", spy)
    monkeypatch.setattr(evaluate, "load_movielens", no_other_data)
    monkeypatch.setattr(splits, "load_movielens", no_other_data)
    spec, record = select_hyperparameters(data, settings(selection_trials=100))
    # the two parts are the run's matrix, cell for cell: nothing added, nothing lost
    restored = seen["fit"] + data.matrix.multiply(seen["validation"])
    assert (abs(restored - data.matrix)).max() < 1e-6
    assert seen["fit"].shape == data.matrix.shape
    assert record["tried"] == len(seen["candidates"]) == 1 + len(FAST)
    assert record["validation_split"]["validation_interactions"] == seen["validation"].nnz
    assert spec.parameters() == record["chosen"]
    best = max(record["trials"], key=lambda t: t["validation_ndcg@10"])
    assert record["chosen"] == best["model"] and record["chosen_metrics"]["ndcg@10"] == best["validation_ndcg@10"]


def test_one_trial_keeps_the_configured_model(fast_search):
    data = run_interactions()
    configured = settings(algorithm="als", factors=3, iterations=4, selection_trials=1)
    spec, record = select_hyperparameters(data, configured)
    assert spec == ModelSpec.from_settings(configured)
    assert record["tried"] == 1 and "selection_trials 1" in record["criterion"]
    assert set(record["chosen_metrics"]) == {"precision@10", "recall@10", "ndcg@10", "map@10"}


def test_the_search_is_budgeted_by_trials_whatever_the_clock_says(fast_search, monkeypatch):
    """The first ``selection_trials`` candidates in their fixed order, however long each takes:
    a clock that jumps an hour per reading (a machine under heavy load) changes nothing."""
    data = run_interactions()
    config = settings(selection_trials=3)
    calm_spec, calm = select_hyperparameters(data, config)
    ticks = iter(range(0, 10**7, 3600))
    monkeypatch.setattr(selection.time, "perf_counter", lambda: float(next(ticks)))
    busy_spec, busy = select_hyperparameters(data, config)
    expected = [s.parameters() for s in selection_candidates(config, data.matrix.shape[1])[:3]]
    for record in (calm, busy):
        assert [t["model"] for t in record["trials"]] == expected
        assert (record["tried"], record["trial_budget"], record["candidates"]) == (3, 3, 1 + len(FAST))
    assert busy_spec == calm_spec and busy["chosen_metrics"] == calm["chosen_metrics"]


def test_the_configured_model_comes_first_and_ease_only_where_it_fits():
    configured = ModelSettings()
    candidates = selection_candidates(configured, n_items=100)
    assert candidates[0] == ModelSpec.from_settings(configured)
    assert len(set(candidates)) == len(candidates)  # the configured point is not tried twice
    large = selection_candidates(configured, n_items=training.EASE_MAX_ITEMS + 1)
    assert large and {s.algorithm for s in large} <= {"als", "bpr"}


def test_training_is_seeded_and_reproducible(fast_search):
    data = run_interactions()
    for config in (settings(selection_trials=100), settings(algorithm="blend", factors=3, iterations=3, selection_trials=1)):
        first, second = train_model(data, config), train_model(data, config)
        assert first.spec == second.spec
        assert first.selection["trials"] and [
            {k: v for k, v in t.items() if k != "fit_seconds"} for t in first.selection["trials"]
        ] == [{k: v for k, v in t.items() if k != "fit_seconds"} for t in second.selection["trials"]]
        one, two = model_arrays(first.model), model_arrays(second.model)
        assert one.keys() == two.keys()
        for name in one:
            np.testing.assert_array_equal(one[name], two[name])


def test_training_reports_progress(fast_search):
    calls = []
    train_model(run_interactions(), settings(selection_trials=100), progress=lambda *a: calls.append(a))
    assert [c for c in calls if c[0] == "selection"] == [("selection", i, 4) for i in range(1, 5)]
    assert calls[-2:] == [("fit", 0, 1), ("fit", 1, 1)]


def test_nothing_to_hold_out_falls_back_to_the_configured_model():
    one_each = InteractionMatrix.from_arrow(
        pa.table({"user_key": ["a", "b", "c"], "content_id": ["x", "y", "x"], "confidence": [1.0, 1.0, 1.0]})
    )
    spec, record = select_hyperparameters(one_each, settings())
    assert spec == ModelSpec.from_settings(settings()) and record["tried"] == 0


def test_model_card_files_hold_the_fields(tmp_path, config_factory, fast_search):
    config = config_factory(tmp_path / "lake")
    data = run_interactions()
    trained = train_model(data, replace(config.model, selection_trials=100, weighting="bm25"))
    card = run_model_card(config, D, "run-9", data, trained, candidates=123, recommend_seconds=0.5)
    directory = tmp_path / "model"
    save_model(trained.model, data, directory, card, extra_arrays=weighting_state(data.matrix, trained.spec))

    saved = json.loads((directory / CARD_FILE).read_text())
    assert saved["model_version"] == f"{trained.spec.algorithm}-run-9" and saved["run_date"] == "2026-11-25"
    assert saved["data_window"] == {
        "first_day": "2025-11-26", "last_day": "2026-11-25", "days": 365, "recency_half_life_days": 30.0
    }
    assert saved["rows"] == {"interactions": data.matrix.nnz, "users": 60, "items": 25, "candidates": 123}
    assert saved["model"]["parameters"] == trained.spec.parameters() == saved["selection"]["chosen"]
    assert saved["validation_metrics"]["ndcg@10"] == saved["selection"]["chosen_metrics"]["ndcg@10"]
    assert len(saved["selection"]["trials"]) == 4
    assert all({"model", "validation_ndcg@10", "fit_seconds"} <= set(t) for t in saved["selection"]["trials"])
    assert set(saved["seconds"]) == {"selection", "training", "candidates"}
    assert saved["code_version"] == config.code_version and saved["config_hash"] == config.config_hash
    assert saved["fairness"]["status"] == "pending" and "run-9" in saved["fairness"]["detail"]
    assert saved["configured"]["selection_trials"] == config.model.selection_trials

    markdown = (directory / CARD_MARKDOWN_FILE).read_text()
    for heading in ("# Model card", "## Data", "## Model", "## Validation", "## Hyperparameter search",
                    "## Time", "## Explanations", "## Fairness"):
        assert heading in markdown
    assert "**pending.**" in markdown and "2025-11-26" in markdown and config.config_hash in markdown

    loaded = load_saved_model(directory)
    assert ModelSpec(**loaded.spec_parameters) == trained.spec and list(loaded.content_ids) == list(data.content_ids)
    assert "user_factors" not in loaded.arrays  # publishing needs no per-user array
    assert saved_model_explainer(loaded).method == {"ease": "ease", "als": "als", "blend": "als", "bpr": "cosine"}[trained.spec.algorithm]


def test_an_ease_model_loses_an_erased_users_index_row(tmp_path, config_factory):
    data = run_interactions()
    trained = train_model(data, settings(selection_trials=1))
    card = run_model_card(config_factory(tmp_path / "lake"), D, "run-1", data, trained, 0, 0.0)
    directory = tmp_path / "m"
    save_model(trained.model, data, directory, card)
    assert np.load(directory / MODEL_FILE).files == ["item_weights"]
    before = np.load(directory / MODEL_FILE)["item_weights"]
    key = str(data.user_keys[3])
    assert drop_users_from_model(directory, [key]) == [key]
    index = pq.read_table(directory / USERS_FILE).to_pylist()
    assert key not in {r["user_key"] for r in index} and [r["row"] for r in index] == list(range(59))
    np.testing.assert_array_equal(np.load(directory / MODEL_FILE)["item_weights"], before)


def test_explainer_of_a_saved_ease_model_uses_its_weighting(tmp_path, config_factory):
    data = run_interactions()
    configured = settings(weighting="tfidf", selection_trials=1)
    trained = train_model(data, configured)
    model, spec, weighted = trained.model, trained.spec, trained.data
    assert spec.algorithm == "ease" and spec.weighting == "tfidf"
    card = run_model_card(config_factory(tmp_path / "lake"), D, "run-1", data, trained, 0, 0.0)
    save_model(model, data, tmp_path / "m", card, extra_arrays=weighting_state(data.matrix, spec))
    explainer = saved_model_explainer(load_saved_model(tmp_path / "m"))
    user = 4
    row = data.matrix[user]
    picks = model.recommend(user, weighted.matrix[user], N=3)[0]
    because = explainer.because(np.array([0, row.nnz]), row.indices, row.data, np.array([0, 3]), picks)
    contributions = weighted.matrix[user].toarray().ravel()[:, None] * model.item_weights[:, picks]
    assert because.tolist() == contributions.argmax(axis=0).tolist()
