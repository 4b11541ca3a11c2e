"""The audit's holdout from the train stage (jobs.recsys.training.holdout_candidates, jobs.stages.train.holdout_table):
lists from a model that saw only the fit part, for exactly the validation users."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from jobs.recsys.models import ModelSpec
from jobs.recsys.training import InteractionMatrix, holdout_candidates, holdout_per_user
from jobs.stages.train import candidates_table, holdout_table

D = date(2026, 11, 25)


def interactions(users: int = 40, items: int = 20, seed: int = 3) -> InteractionMatrix:
    rng = np.random.default_rng(seed)
    keys, titles, confidence = [], [], []
    for u in range(users):
        for i in rng.choice(items, size=int(rng.integers(1, 8)), replace=False):
            keys.append(f"user-{u:03d}")
            titles.append(f"cnt-{i:03d}")
            confidence.append(float(rng.uniform(0.1, 2.0)))
    return InteractionMatrix.from_arrow(pa.table({"user_key": keys, "content_id": titles, "confidence": confidence}))


def test_holdout_lists_are_for_validation_users_and_skip_only_fit_titles():
    data = interactions()
    split = holdout_per_user(data.matrix, 0.25, seed=42, max_users=1000)
    spec = ModelSpec(algorithm="ease", ease_regularization=5.0)
    rows, cols, scores = holdout_candidates(data, split, spec, n=5, batch_users=7)
    validation_users = set(np.flatnonzero(np.diff(split.validation.indptr) > 0))
    assert set(rows.tolist()) == validation_users
    fit = split.fit_part.toarray() > 0
    assert not fit[rows, cols].any()  # a title the model was fitted on is never a candidate
    # the held-out titles are not filtered: the model never saw them, so they can be found
    held = split.validation.toarray() > 0
    assert held[rows, cols].any()
    table = candidates_table(data, rows, cols, scores, "ease-x-holdout", D).to_pandas()
    assert table.groupby("user_key")["candidate_rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()
    assert (table.groupby("user_key")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()


def test_holdout_table_is_every_held_out_pair():
    data = interactions()
    split = holdout_per_user(data.matrix, 0.25, seed=42, max_users=1000)
    table = holdout_table(data, split, D).to_pandas()
    assert len(table) == split.validation.nnz
    assert set(table["run_date"]) == {D.isoformat()}
    r, c = split.validation.nonzero()
    assert set(zip(table["user_key"], table["content_id"])) == set(zip(data.user_keys[r], data.content_ids[c]))


def test_no_validation_user_gives_empty_holdout_lists():
    one_each = InteractionMatrix.from_arrow(
        pa.table({"user_key": ["a", "b"], "content_id": ["x", "y"], "confidence": [1.0, 1.0]})
    )
    split = holdout_per_user(one_each.matrix, 0.25, seed=42, max_users=10)
    rows, cols, scores = holdout_candidates(one_each, split, ModelSpec(algorithm="ease", ease_regularization=500.0), n=5, batch_users=7)
    assert len(rows) == len(cols) == len(scores) == 0
