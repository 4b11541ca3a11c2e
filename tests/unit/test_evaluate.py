"""The evaluation protocols on a tiny MovieLens-format folder: splits, lists without
training items, the budgeted search on the training part only, and the JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from jobs.evaluation.evaluate import EvaluationError, evaluate_movielens, main, results_table
from jobs.evaluation.splits import (
    SplitError,
    confidence_matrix,
    load_movielens,
    relevance_matrix,
    split_random_per_user,
    split_temporal,
)
from jobs.recsys.models import ModelSpec
from jobs.recsys.selection import fit, recommend_lists, search_space, select_model

DAY = 86_400
START = 883_612_800  # 1998-01-01T00:00:00Z
REQUIRED = {"precision@10", "recall@10", "ndcg@10", "map@10", "coverage", "novelty",
            "intra_list_diversity", "gini", "avg_popularity"}


def write_tiny_movielens(directory: Path, users: int = 40, items: int = 30, seed: int = 3) -> Path:
    """Two taste groups over 30 films and 20 days; MovieLens-100K's file formats."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "u.genre").write_text("unknown|0\nAction|1\nDrama|2\n\n", encoding="latin-1")
    (directory / "u.user").write_text(
        "".join(f"{u}|30|F|other|1000{u % 10}\n" for u in range(1, users + 1)), encoding="latin-1"
    )
    (directory / "u.item").write_text(
        "".join(
            f"{i}|Film {i} (1995)|01-Jan-1995||http://x|{int(i == items)}|{int(i <= items // 2)}|{int(i > items // 2)}\n"
            for i in range(1, items + 1)
        ),
        encoding="latin-1",
    )
    rows = []
    for u in range(1, users + 1):
        pool = np.arange(1, items // 2 + 1) if u % 2 else np.arange(items // 2 + 1, items + 1)
        for item in rng.choice(pool, size=int(rng.integers(6, 12)), replace=False):
            day = int(rng.integers(0, 20))
            rows.append(f"{u}\t{item}\t{int(rng.integers(1, 6))}\t{START + day * DAY + int(rng.integers(0, DAY))}\n")
    (directory / "u.data").write_text("".join(rows), encoding="latin-1")
    return directory


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_movielens(tmp_path_factory.mktemp("tiny-ml"))


def test_random_split_holds_out_a_quarter_of_each_user(tiny):
    data = load_movielens(tiny)
    split = split_random_per_user(data.ratings, 0.25, seed=42)
    sizes = data.ratings.groupby("user").size()
    test_sizes = split.test.groupby("user").size().reindex(sizes.index, fill_value=0)
    assert (test_sizes == np.floor(0.25 * sizes + 0.5)).all()
    both = pd.concat([split.train, split.test]).sort_values(["user", "item"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(both, data.ratings.sort_values(["user", "item"]).reset_index(drop=True))
    again = split_random_per_user(data.ratings, 0.25, seed=42)
    pd.testing.assert_frame_equal(split.test, again.test)
    other = split_random_per_user(data.ratings, 0.25, seed=43)
    assert not split.test.equals(other.test)


def test_a_user_with_one_rating_keeps_it_in_training():
    ratings = pd.DataFrame({"user": [0, 1, 1], "item": [0, 0, 1], "rating": 5, "timestamp": START})
    split = split_random_per_user(ratings, 0.25, seed=1)
    assert 0 in set(split.train["user"]) and 0 not in set(split.test["user"])


def test_temporal_split_trains_strictly_before_the_cutoff_day(tiny):
    data = load_movielens(tiny)
    split = split_temporal(data.ratings, 0.8)
    cutoff = pd.Timestamp(split.info["cutoff_day"], tz="UTC").timestamp()
    assert split.train["timestamp"].max() < cutoff <= split.test["timestamp"].min()
    assert set(split.test["user"]) <= set(split.train["user"])
    after = (data.ratings["timestamp"] >= cutoff).sum()
    assert len(split.test) + split.info["dropped_test_ratings_of_new_users"] == after
    with pytest.raises(SplitError, match="quantile"):
        split_temporal(data.ratings, 1.0)


def test_matrices_hold_completion_and_binary_relevance():
    ratings = pd.DataFrame({"user": [0, 1], "item": [1, 0], "rating": [4, 1], "timestamp": START})
    np.testing.assert_allclose(confidence_matrix(ratings, 2, 3).toarray(), [[0, 0.8, 0], [0.2, 0, 0]])
    np.testing.assert_array_equal(relevance_matrix(ratings, 2, 3).toarray(), [[0, 1, 0], [1, 0, 0]])


def test_lists_never_hold_training_items_even_when_implicit_runs_out():
    # user 0 has seen 3 of 4 items: implicit pads with score -FLT_MAX (not id -1)
    x = csr_matrix(np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1]], dtype=np.float32))
    model = fit(ModelSpec(algorithm="als", factors=2, iterations=5, alpha=2.0), x)
    ids, scores = recommend_lists(model, x, np.array([0, 1]), 4)
    assert ids[0].tolist() == [3, -1, -1, -1] and np.all(np.isneginf(scores[0, 1:]))
    assert sorted(ids[1, :3].tolist()) == [1, 2, 3] and ids[1, 3] == -1


def test_search_stops_at_the_budget_but_always_tries_one(tiny):
    data = load_movielens(tiny)
    split = split_random_per_user(data.ratings, 0.25, 42)
    shape = (data.n_users, data.n_items)
    fit_part, validation = confidence_matrix(split.train, *shape), relevance_matrix(split.test, *shape)
    candidates = search_space()[:3]
    chosen, record = select_model(fit_part, validation, candidates, k=10, time_budget_s=1e-9)
    assert record["tried"] == 1 and chosen == candidates[0]
    chosen, record = select_model(fit_part, validation, candidates, k=10, time_budget_s=600)
    assert record["tried"] == 3
    best = max(record["trials"], key=lambda t: t["validation_ndcg@10"])
    assert chosen.parameters() == best["model"] == record["chosen"]


def test_search_space_offers_every_family_early():
    families = [spec.algorithm for spec in search_space()[:4]]
    assert sorted(families) == ["als", "blend", "bpr", "ease"]


def test_evaluation_has_the_design_shape_and_never_validates_on_test(tiny, monkeypatch):
    import jobs.evaluation.evaluate as evaluate

    seen = []
    original = evaluate.select_model

    def spy(fit_part, validation, candidates, **kwargs):
        seen.append(fit_part + validation)
        return original(fit_part, validation, candidates[:2], **kwargs)

    monkeypatch.setattr(evaluate, "select_model", spy)
    result = evaluate_movielens(tiny, time_budget_s=5)
    assert set(result) == {"random", "temporal"}
    for protocol in result.values():
        assert set(protocol) == {"unconstrained", "reranked"}
        for metrics in protocol.values():
            assert REQUIRED <= set(metrics) and "training_seconds" in metrics and "model" in metrics
    json.dumps(result)  # the CLI prints it as JSON

    # what the search saw (fit + validation) is exactly each protocol's training part
    data = load_movielens(tiny)
    shape = (data.n_users, data.n_items)
    random_train = split_random_per_user(data.ratings, 0.25, 42).train
    temporal_train = split_temporal(data.ratings, 0.8).train
    for searched, train in zip(seen, (random_train, temporal_train), strict=True):
        np.testing.assert_array_equal(searched.toarray() > 0, confidence_matrix(train, *shape).toarray() > 0)


def test_given_settings_skip_the_search(tiny):
    result = evaluate_movielens(tiny, settings=ModelSpec(algorithm="ease", ease_regularization=10.0))
    selection = result["random"]["unconstrained"]["model_selection"]
    assert selection["criterion"] == "given settings, no search"
    assert result["temporal"]["reranked"]["model"]["algorithm"] == "ease"
    assert "| random | unconstrained |" in results_table(result)


def test_bad_requests_get_clear_errors(tiny, tmp_path, capsys):
    with pytest.raises(EvaluationError, match="time budget"):
        evaluate_movielens(tiny, time_budget_s=0)
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "MovieLens-100K directory not found" in capsys.readouterr().err


def test_the_cli_reranks_with_the_configured_constraints(tiny, tmp_path):
    """``fairshelf evaluate --json`` uses the config file's [rerank] settings: with every
    constraint off the re-ranked lists are the unconstrained top-k."""
    from typer.testing import CliRunner

    from jobs.interfaces.cli import app

    off = tmp_path / "off.toml"
    off.write_text(
        "[rerank]\nmmr_lambda = 1.0\nmax_genre_share = 1.0\nmin_underrepresented_share = 0.0\n"
        "max_titles_per_provider = 0\ncalibration_max_kl = 0.0\nexplore_slots = 0\n"
    )
    runs = {}
    for name, extra in (("off", ["--config", str(off)]), ("defaults", [])):
        done = CliRunner().invoke(
            app, ["evaluate", "--movielens", str(tiny), "--json", "--configured", "--budget", "1", *extra],
            env={"FAIRSHELF_LAKEHOUSE": str(tmp_path / "lake")},
        )
        assert done.exit_code == 0, done.output
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
    plain = {p: {k: v for k, v in runs["off"][p]["unconstrained"].items() if "seconds" not in k} for p in runs["off"]}
    for protocol, lists in runs["off"].items():
        reranked = {k: v for k, v in lists["reranked"].items() if k in plain[protocol] and "flag" not in k}
        assert reranked == {k: v for k, v in plain[protocol].items() if k in reranked}
    defaults = runs["defaults"]["random"]
    assert any(defaults["reranked"][k] != defaults["unconstrained"][k] for k in REQUIRED)  # the test can fail
