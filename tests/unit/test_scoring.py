"""Candidate scoring on the executors gives the lists the driver computes on the whole
matrix, for every model family and weighting, without collecting the candidates."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import sparse

from jobs.recsys.models import ModelSpec, model_arrays, weighting_state
from jobs.recsys.training import (
    InteractionMatrix,
    fit_model,
    recommend_batched,
    recommend_histories,
    weighted_interactions,
)
from jobs.shared.scoring import Scorer, score_on_executors


def _interactions(users: int = 120, titles: int = 40, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    matrix = sparse.random(users, titles, density=0.15, format="coo", random_state=seed)
    return pa.table({
        "user_key": [f"user-{u:04d}" for u in matrix.row],
        "content_id": [f"title-{i:03d}" for i in matrix.col],
        "confidence": rng.uniform(0.1, 3.0, matrix.nnz),
    })


def _fitted(table: pa.Table, spec: ModelSpec):
    data = InteractionMatrix.from_arrow(table)
    weighted = weighted_interactions(data, spec)
    return data, weighted, fit_model(weighted, spec)


def _driver_lists(weighted: InteractionMatrix, model, n: int) -> dict[str, list[str]]:
    rows, cols, _ = recommend_batched(model, weighted.matrix, n, batch_users=16)
    lists: dict[str, list[str]] = {}
    for row, col in zip(rows, cols):
        lists.setdefault(weighted.user_keys[row], []).append(weighted.content_ids[col])
    return lists


@pytest.mark.parametrize("weighting", ["none", "bm25", "tfidf"])
@pytest.mark.parametrize("algorithm", ["ease", "als", "bpr", "blend"])
def test_a_users_history_gives_the_list_of_the_whole_matrix(algorithm, weighting):
    table = _interactions()
    spec = ModelSpec(algorithm=algorithm, weighting=weighting, factors=8, iterations=3)
    data, weighted, model = _fitted(table, spec)
    users = np.array([7, 0, 93, 41])  # any order, any subset
    rows = data.matrix[users]  # raw confidences, as silver/interactions holds them
    expected = _driver_lists(weighted, model, 10)
    got_rows, got_cols, _ = recommend_histories(
        model, spec, weighting_state(data.matrix, spec), len(data.content_ids), users,
        rows.indptr, rows.indices, rows.data, 10, batch_users=3,
    )
    for position, user in enumerate(users):
        got = list(data.content_ids[got_cols[got_rows == position]])
        assert got == expected[data.user_keys[user]], (algorithm, weighting, user)


@pytest.mark.spark
@pytest.mark.parametrize("algorithm", ["ease", "blend"])
def test_executors_score_every_user_as_the_driver_would(spark, algorithm):
    # some (user, title) rows twice: the executors sum them, as the driver's matrix does
    table = _interactions()
    table = pa.concat_tables([table, table.slice(0, 30)])
    spec = ModelSpec(algorithm=algorithm, weighting="bm25", factors=8, iterations=3)
    data, weighted, model = _fitted(table, spec)
    scorer = Scorer(spec, model_arrays(model), weighting_state(data.matrix, spec), data.content_ids, 10, 16,
                    "m-1", "2026-11-25")
    candidates = score_on_executors(spark.createDataFrame(table.to_pandas()), scorer, data.user_keys)
    got: dict[str, list[tuple[int, str]]] = {}
    for row in candidates.collect():
        assert (row["model_version"], row["run_date"]) == ("m-1", "2026-11-25")
        got.setdefault(row["user_key"], []).append((row["candidate_rank"], row["content_id"]))
    expected = _driver_lists(weighted, model, 10)
    assert set(got) == set(expected) == set(data.user_keys)
    for user, titles in expected.items():
        assert sorted(got[user]) == list(enumerate(titles, start=1)), user


@pytest.mark.spark
def test_a_title_the_model_never_saw_is_an_error(spark):
    table = _interactions()
    spec = ModelSpec(algorithm="ease")
    data, _, model = _fitted(table, spec)
    scorer = Scorer(spec, model_arrays(model), {}, data.content_ids[1:], 10, 16, "m-1", "2026-11-25")
    with pytest.raises(Exception, match="the model was not fitted on"):
        score_on_executors(spark.createDataFrame(table.to_pandas()), scorer, data.user_keys).collect()
