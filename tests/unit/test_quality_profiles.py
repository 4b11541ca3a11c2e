"""Profile frames of the quality gates (jobs.shared.quality_profiles) on tiny DataFrames."""

from __future__ import annotations

import math

import pytest
from pyspark.sql import functions as F

from jobs.core.config import QualitySettings
from jobs.shared import quality_profiles as qp

pytestmark = pytest.mark.spark

CONTENT = "content_id string, genres string, provider_group string, original_language string"
USERS = "user_key string, age_band string, region string, gender string"
INTERACTIONS = "user_key string, content_id string"


def _shares(df):
    return {(r["population"], r["dimension"], r["group"]): r["share"] for r in df.collect()}


def test_group_shares_per_population(spark):
    content = spark.createDataFrame(
        [("c1", "Drama|Comedy", "major", "en"), ("c2", "Drama", "indie", "fr"), ("c3", None, None, "en")], CONTENT
    )
    users = spark.createDataFrame([("u1", "25-34", "R1", "F"), ("u2", "25-34", "R2", None)], USERS)
    interactions = spark.createDataFrame([("u1", "c1"), ("u1", "c2"), ("u2", "c1")], INTERACTIONS)

    shares = _shares(qp.group_shares(interactions, users, content))

    # catalog genres: Drama twice, Comedy once, c3 has none (unknown) -> 4 assignments
    assert shares[("catalog", "genre", "Drama")] == pytest.approx(0.5)
    assert shares[("catalog", "genre", qp.UNKNOWN_GROUP)] == pytest.approx(0.25)
    assert shares[("catalog", "provider_group", qp.UNKNOWN_GROUP)] == pytest.approx(1 / 3)
    # interactions: c1 watched twice (Drama, Comedy), c2 once (Drama)
    assert shares[("interactions", "genre", "Drama")] == pytest.approx(3 / 5)
    assert shares[("interactions", "original_language", "en")] == pytest.approx(2 / 3)
    # training users: distinct users, a missing gender is its own group
    assert shares[("training_users", "gender", "F")] == pytest.approx(0.5)
    assert shares[("training_users", "gender", qp.UNKNOWN_GROUP)] == pytest.approx(0.5)
    assert shares[("training_users", "age_band", "25-34")] == pytest.approx(1.0)
    assert ("interactions", "genre", qp.UNKNOWN_GROUP) not in shares  # c3 was never watched


def test_previous_shares_mark_vanished_and_new_groups(spark):
    now = spark.createDataFrame(
        [("catalog", "genre", "Drama", 0.7), ("catalog", "genre", "Anime", 0.3), ("catalog", "language", "en", 1.0)],
        qp.SHARES,
    ).withColumn("group_count", F.lit(1))
    before = spark.createDataFrame(
        [("catalog", "genre", "Drama", 0.6), ("catalog", "genre", "Western", 0.4)], qp.SHARES
    )
    rows = {r["group"]: r for r in qp.with_previous_shares(now, before).collect()}

    assert rows["Western"]["share"] == 0.0 and rows["Western"]["previous_share"] == pytest.approx(0.4)
    assert rows["Anime"]["previous_share"] == 0.0 and rows["Anime"]["share_ratio"] is None
    assert rows["Drama"]["share_ratio"] == pytest.approx(0.7 / 0.6)
    assert rows["en"]["previous_share"] is None  # no history for that dimension


def test_representation_drift_kl(spark):
    profile = spark.createDataFrame(
        [
            ("training_users", "gender", "F", 1, 0.5, 0.5, 1.0),
            ("training_users", "gender", "M", 1, 0.5, 0.5, 1.0),
            ("catalog", "genre", "Drama", 1, 0.9, 0.5, 1.8),
            ("catalog", "genre", "Comedy", 1, 0.1, 0.5, 0.2),
            ("interactions", "genre", "Drama", 1, 1.0, None, None),
        ],
        "population string, dimension string, `group` string, group_count long, share double, "
        "previous_share double, share_ratio double",
    )
    kl = {r["population"]: r["kl_divergence"] for r in qp.representation_drift(profile).collect()}

    assert kl["training_users"] == pytest.approx(0.0, abs=1e-9)
    assert kl["catalog"] == pytest.approx(0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5), rel=1e-4)
    assert kl["interactions"] is None


def test_volume_band_needs_history():
    band = qp.volume_band(500, [1000, 900, 1100], min_history=3, low=0.5, high=2.0)
    assert (band.trailing_median, band.min_rows, band.max_rows) == (1000.0, 500.0, 2000.0)
    thin = qp.volume_band(500, [1000, 900], min_history=3, low=0.5, high=2.0)
    assert thin.trailing_median is None and thin.min_rows is None and thin.baseline_size == 2
    assert thin.baseline == "none" and band.baseline == "previous runs"


def test_the_volume_baseline_falls_back_to_earlier_landing_days():
    assert qp.volume_baseline([10, 11, 12], [5, 6, 7], 3) == ([10, 11, 12], "previous runs")
    assert qp.volume_baseline([10], [5, 6, 7], 3) == ([5, 6, 7], "earlier landing days")
    assert qp.volume_baseline([10], [5, 6], 3) == ([10], "none")
    landing = qp.volume_band(50, [100, 90, 110], 3, 0.5, 2.0, baseline="earlier landing days")
    assert (landing.min_rows, landing.max_rows) == (50.0, None)  # a busier day than the earlier ones passes


def test_identifier_counts_count_without_copying_values(spark):
    df = spark.createDataFrame(
        [("ml-12", "someone@example.org", "evening", "acc-000042"), ("ml-13", "10.1.2.3", "night", None),
         ("ml-14", "fe80:0:0:0:1:2:3:4", "1998-04-22", "R9")],
        "content_id string, note string, hour_bucket string, region string",
    )
    patterns = QualitySettings().identifier_patterns
    rows = {r["column"]: r for r in qp.identifier_counts(df, "f", patterns, ("content_id",)).collect()}

    assert set(rows) == {"note", "hour_bucket", "region"}  # content_id exempt
    assert rows["note"]["identifier_values"] == 3 and rows["note"]["leaking_column"] == "note"
    assert rows["region"]["identifier_values"] == 1
    assert rows["hour_bucket"]["identifier_values"] == 0 and rows["hour_bucket"]["leaking_column"] is None
    assert "someone@example.org" not in str([r.asDict() for r in rows.values()])


def test_content_in_catalog_flags_unknown_titles(spark):
    events = spark.createDataFrame([("u1", "c1"), ("u2", "c9")], INTERACTIONS)
    content = spark.createDataFrame([("c1", "Drama", "major", "en")], CONTENT)
    flags = {r["content_id"]: r["content_in_catalog"] for r in qp.with_content_in_catalog(events, content).collect()}
    assert flags == {"c1": True, "c9": False}
