"""The fairness audit on real runs (synthetic and MovieLens-100K): gold/audit is complete
(every expected side x metric x dimension x group x shelves row, derived here from the
silver tables, not from the audit's code), its shares agree with the tables it audits,
the clean runs pass every blocking threshold, the report shows it, and a violated
blocking threshold fails the run before publish while the last published shelves stay
live."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import replace

import pandas as pd
import pytest

from jobs.core.config import AuditSettings
from jobs.lake import tables
from jobs.orchestration.pipeline import RunFailed, run_pipeline

pytestmark = pytest.mark.spark

USER_DIMENSIONS = ("age_band", "gender", "region")
ITEM_DIMENSIONS = ("provider_group", "primary_genre", "original_language")
KINDS = ("unconstrained", "reranked")


def silver(config, name: str, run_date: str) -> pd.DataFrame:
    return tables.read_arrow(config.table("silver", name), filters=[("run_date", "=", run_date)]).to_pandas()


def audit_of(config, run_id: str) -> pd.DataFrame:
    rows = tables.read_arrow(config.table("gold", "audit")).to_pandas()
    return rows[rows["run_id"] == run_id]


def key(row) -> tuple:
    return tuple(None if pd.isna(v) else v for v in (row.side, row.metric, row.group_dimension, row.group, row.shelves))


def expected_keys(config, run_date: str) -> set[tuple]:
    """Every row the audit of ``run_date`` must hold, from the holdout's users and the catalog."""
    cutoffs = sorted({config.audit.k, config.shelf.size})
    metrics = [f"{m}@{k}" for k in cutoffs for m in ("ndcg", "recall")]
    users = silver(config, "user_features", run_date)
    holdout_users = users[users["user_key"].isin(silver(config, "holdout", run_date)["user_key"])]
    content = silver(config, "content", run_date)
    keys = {("user", f"ndcg@{k}_relative_drop", None, None, "reranked") for k in cutoffs}
    for kind in KINDS:
        keys |= {("user", m, None, None, kind) for m in ("holdout_users", *metrics)}
        for dim in USER_DIMENSIONS:
            groups = set(holdout_users[dim].fillna("*"))
            keys |= {("user", m, dim, g, kind) for g in groups for m in ("users", *metrics)}
            keys |= {("user", f"{m}_{agg}", dim, None, kind) for m in metrics for agg in ("difference", "ratio", "ratio_upper")}
            keys.add(("user", "groups_compared", dim, None, kind))
        keys |= {("item", m, None, None, kind) for m in ("exposure_gini", "coverage", "avg_popularity", "long_tail_share")}
    for dim in ITEM_DIMENSIONS:
        for g in set(content[dim].fillna("unknown")):
            keys |= {("item", m, dim, g, None) for m in ("catalog_share", "consumption_share")}
            keys |= {("item", m, dim, g, kind) for m in ("exposure_share", "exposure_to_catalog") for kind in KINDS}
    return keys


def check_complete_and_consistent(config, outcome) -> pd.DataFrame:
    run_date = outcome.run_date.isoformat()
    rows = audit_of(config, outcome.run_id)
    found = Counter(key(r) for r in rows.itertuples())
    assert [k for k, n in found.items() if n > 1] == []
    expected = expected_keys(config, run_date)
    assert expected - set(found) == set(), "missing audit rows"
    assert set(found) - expected == set(), "unexpected audit rows"
    assert set(rows["run_date"]) == {run_date}

    # the re-ranked exposure is the published shelves' (silver/shelves), by provider group
    shelves = silver(config, "shelves", run_date).merge(silver(config, "content", run_date), on="content_id")
    share = shelves["provider_group"].fillna("unknown").value_counts(normalize=True)
    exposure = rows[(rows.metric == "exposure_share") & (rows.group_dimension == "provider_group")
                    & (rows.shelves == "reranked")].set_index("group")["value"]
    pd.testing.assert_series_equal(exposure.sort_index(), share.reindex(exposure.index, fill_value=0.0).sort_index(),
                                   check_names=False, atol=1e-9)
    # shares of a dimension add up to 1
    sums = rows[rows.metric.isin(["catalog_share", "exposure_share"])].groupby(
        ["metric", "group_dimension", rows.shelves.fillna("-")])["value"].sum()
    assert sums.round(9).eq(1.0).all()

    # every gated row was judged; every blocking row of a clean run passed
    gated = rows[rows.threshold.notna()]
    assert set(gated.metric) >= {f"ndcg@{config.audit.k}_ratio", "exposure_gini", "long_tail_share"}
    blocking = rows[rows.blocking]
    assert len(blocking) and (blocking.shelves == "reranked").all()
    assert blocking[blocking.passed.notna()].passed.all(), blocking[["metric", "group_dimension", "value", "threshold"]]
    return rows


def test_audit_of_the_synthetic_run_is_complete_and_passes(synthetic_run):
    config, _, outcome = synthetic_run
    rows = check_complete_and_consistent(config, outcome)
    assert outcome.succeeded
    page = open(outcome.report_path).read()
    assert "Fairness audit" in page and page.count("data:image/png;base64,") >= 2
    assert len(rows) > 100


def test_audit_of_movielens_is_complete_and_passes(movielens_run):
    config, _, outcome = movielens_run
    rows = check_complete_and_consistent(config, outcome)
    k = config.audit.k
    # MovieLens-100K has enough users per gender and age band to compare them
    compared = rows[(rows.metric == "groups_compared") & (rows.shelves == "reranked")].set_index("group_dimension")
    assert compared.loc["gender", "value"] == 2 and compared.loc["age_band", "value"] >= 4
    ratio = rows[(rows.metric == f"ndcg@{k}_ratio") & (rows.shelves == "reranked")]
    assert ratio.value.notna().all() and (ratio.value >= config.audit.min_group_ndcg_ratio).all()


def test_violated_blocking_threshold_fails_the_run_before_publish(synthetic_run, spark, tmp_path, config_factory):
    from jobs.lake.reader import read_shelf

    config, _, outcome = synthetic_run
    lake = tmp_path / "lake"
    shutil.copytree(config.lakehouse, lake)
    impossible = replace(AuditSettings(), max_exposure_gini=0.0, blocking=("max_exposure_gini",))
    strict = config_factory(lake, audit=impossible)
    users = silver(strict, "shelves", outcome.run_date.isoformat())["user_key"].unique()[:5]
    before = {u: read_shelf(strict, u, None) for u in users}

    with pytest.raises(RunFailed) as failed:
        run_pipeline(spark, strict, outcome.run_date)
    failure = failed.value.outcome
    assert failure.failed_stage == "audit"
    assert "fairness" in failure.message and "exposure_gini" in failure.message and "max_exposure_gini" in failure.message

    # the evidence was written before the run stopped
    rows = audit_of(strict, failure.run_id)
    gini = rows[(rows.metric == "exposure_gini") & (rows.shelves == "reranked")].iloc[0]
    assert gini.blocking and not gini.passed and gini.threshold == 0.0
    # nothing was published: readers still get the shelves of the last succeeded run
    assert {u: read_shelf(strict, u, None) for u in users} == before
    recommendations = tables.read_arrow(strict.table("gold", "recommendations")).to_pandas()
    assert set(recommendations["run_id"]) == {outcome.run_id}
