"""The rerank stage's DataFrame functions on tiny inputs: shelves built on the executors
(mapInArrow) satisfy every constraint or are flagged, and ``shelf_constraint_checks``
catches a shelf that violates one without a flag."""

from __future__ import annotations

import dataclasses

import pytest
from pyspark.sql import functions as F

from jobs.core.config import RerankSettings
from jobs.shared.shelves import filter_top_k, find_underrepresented, rerank_candidates, shelf_constraint_checks

pytestmark = pytest.mark.spark

SETTINGS = RerankSettings(
    mmr_lambda=1.0, max_genre_share=0.5, min_underrepresented_share=0.25, underrepresented="configured",
    underrepresented_provider_groups=("community",), max_titles_per_provider=2,
    calibration_max_kl=0.0, explore_slots=1,
)
CONTENT = [  # content_id, genres, provider, provider_group, original_language
    ("c1", "Drama", "P1", "major", "en"),
    ("c2", "Drama", "P1", "major", "en"),
    ("c3", "Drama|Comedy", "P1", "major", "en"),
    ("c4", "Comedy", "P2", "major", "en"),
    ("c5", "Horror", "P3", "community", "de"),
    ("c6", None, None, "major", "en"),
]


@pytest.fixture(scope="module")
def tables(spark):
    content = spark.createDataFrame(
        CONTENT, "content_id string, genres string, provider string, provider_group string, original_language string"
    )
    scores = {"u1": ["c1", "c2", "c3", "c4", "c5", "c6"], "u2": ["c1", "c2", "c3"]}
    candidates = spark.createDataFrame(
        [(u, c, float(10 - i)) for u, ids in scores.items() for i, c in enumerate(ids)],
        "user_key string, content_id string, score double",
    )
    history = spark.createDataFrame(
        [("u1", "c6", 1.0), ("u2", "c4", 2.0), ("u2", "c5", 1.0)],
        "user_key string, content_id string, confidence double",
    )
    return candidates, content, history


def _rows(df):
    return {(r.user_key, r.rank): r for r in df.collect()}


def test_reranked_shelves_keep_every_constraint_or_flag_it(tables):
    candidates, content, history = tables
    shelves = rerank_candidates(candidates, content, history, SETTINGS, 4)
    rows = _rows(shelves)
    u1 = [rows[("u1", r)].content_id for r in range(1, 5)]
    # Drama at most 2 of 4, P1 at most 2, one community title (c5), the last slot an
    # unengaged title: c1, c2 (Drama, P1), then c4 (c3 would be a third Drama and P1), then
    # the explore slot: c5 (Horror, new, long tail) already needed for the community share
    assert u1 == ["c1", "c2", "c4", "c5"]
    assert rows[("u1", 4)].explore and rows[("u1", 1)].constraint_flags is None
    # u2 has 3 candidates, all Drama and P1, none of the community
    u2 = [rows[("u2", r)].content_id for r in range(1, 4)]
    assert u2 == ["c1", "c2", "c3"]
    assert set(rows[("u2", 1)].constraint_flags.split(",")) == {
        "max_per_provider", "max_genre_share", "min_underrepresented_share",
    }
    checks = shelf_constraint_checks(shelves, content, history, SETTINGS)
    assert {r.user_key: r.unmet_constraints for r in checks.collect()} == {"u1": 0, "u2": 0}


def test_checks_catch_unflagged_violations(tables):
    candidates, content, history = tables
    plain = filter_top_k(candidates, 4)  # the model's top 4: no flags, no explore
    checks = {r.user_key: r for r in shelf_constraint_checks(plain, content, history, SETTINGS).collect()}
    u1 = checks["u1"]  # c1..c4: 3 Drama > 2, 3 of P1 > 2, no community title, no explore title
    assert (u1.unmet_max_genre_share, u1.unmet_max_per_provider, u1.unmet_min_underrepresented_share,
            u1.unmet_explore) == (True, True, True, True)
    assert u1.unmet_constraints == 4


def test_calibration_is_rechecked_in_spark(tables, spark):
    candidates, content, history = tables
    settings = dataclasses.replace(SETTINGS, calibration_max_kl=0.5, max_genre_share=1.0,
                                   min_underrepresented_share=0.0, max_titles_per_provider=0, explore_slots=0)
    shelves = rerank_candidates(candidates, content, history, settings, 2)
    checks = {r.user_key: r for r in shelf_constraint_checks(shelves, content, history, settings).collect()}
    # u2 watched Comedy (weight 2) and Horror (1); their candidates are all Drama (c3 half
    # Comedy): no shelf meets the bound -> the relevance-first shelf is kept and flagged
    u2 = [r.constraint_flags for r in shelves.where("user_key = 'u2'").collect()]
    assert u2 == ["calibration", "calibration"]
    assert checks["u2"].calibration_kl > 0.5 and checks["u2"].unmet_constraints == 0
    # u1 watched only a genre-less title: not calibrated
    assert checks["u1"].calibration_kl is None and checks["u1"].unmet_constraints == 0
    # the same shelf without the flag is caught
    unflagged = shelves.withColumn("constraint_flags", F.lit(None).cast("string"))
    again = {r.user_key: r for r in shelf_constraint_checks(unflagged, content, history, settings).collect()}
    assert again["u2"].unmet_calibration and again["u2"].unmet_constraints == 1


def test_derived_underrepresented_groups(tables):
    _, content, history = tables
    derived = dataclasses.replace(SETTINGS, underrepresented="derived", underrepresented_provider_groups=(),
                                  underexposure_ratio=0.5, minority_share=0.0)
    # catalog: major 5/6, community 1/6; en 5/6, de 1/6. Consumption (3 interactions):
    # major 2/3, community 1/3; en 2/3, de 1/3: nothing below half its catalog share
    groups = find_underrepresented(content, history, derived)
    assert (groups.provider_groups, groups.languages) == (frozenset(), frozenset())
    # ... but community and de are below a minority share of 0.4
    minority = dataclasses.replace(derived, minority_share=0.4)
    groups = find_underrepresented(content, history, minority)
    assert (groups.provider_groups, groups.languages) == (frozenset({"community"}), frozenset({"de"}))


def test_users_share_exposure_and_a_rerun_gives_the_same_shelves(tables, spark):
    _, content, _ = tables
    # 100 users (4 rounds of the re-ranker) with the same near-tied candidates c1..c6
    users = [f"u{n:03d}" for n in range(100)]
    candidates = spark.createDataFrame(
        [(u, f"c{i}", 6.0 - i / 10) for u in users for i in range(1, 7)],
        "user_key string, content_id string, score double",
    ).repartition(4)  # several input partitions: still one re-rank partition for 100 users
    history = spark.createDataFrame([("u000", "c6", 1.0)], "user_key string, content_id string, confidence double")
    settings = RerankSettings(max_genre_share=1.0, min_underrepresented_share=0.0, underrepresented="configured",
                              max_titles_per_provider=0, calibration_max_kl=0.0, explore_slots=0,
                              exposure_weight=1.0)
    first = rerank_candidates(candidates, content, history, settings, 2)
    titles = {r.content_id for r in first.select("content_id").distinct().collect()}
    # the plain top 2 would be c1, c2 for everyone; shared exposure moves later users on
    assert {"c1", "c2"} < titles and len(titles) >= 4
    again = rerank_candidates(candidates.repartition(3), content, history, settings, 2)
    assert sorted(first.collect()) == sorted(again.collect())
