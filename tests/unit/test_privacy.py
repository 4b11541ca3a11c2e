"""Privacy transforms on tiny DataFrames: HMAC pseudonyms, generalization, k-anonymity."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import pytest
from pyspark.sql import functions as F

from jobs.core.config import ConfigError, load_config
from jobs.shared.privacy import (
    SUPPRESSED,
    enforce_k_anonymity,
    key_pads,
    pseudonymize_accounts,
    with_pseudonym,
    with_age_band,
    with_hour_bucket,
    with_region,
)

pytestmark = pytest.mark.spark


@pytest.mark.parametrize(
    "key",
    [b"k" * 32, b"a-much-longer-key-" * 5, bytes(range(64))],
    ids=["32-bytes", "longer-than-a-block", "exactly-a-block"],
)
def test_hmac_matches_python_hmac(spark, key):
    accounts = ["acc-000001", "ünïcødé@example.org", ""]
    df = spark.createDataFrame([(a,) for a in accounts], "account_id string")
    got = [r["user_key"] for r in with_pseudonym(df, key, "account_id", "user_key").collect()]
    want = [hmac.new(key, a.encode(), hashlib.sha256).hexdigest() for a in accounts]
    assert got == want


def test_pseudonymize_drops_the_account_id_and_keeps_nulls(spark):
    df = spark.createDataFrame([("acc-1", 1), (None, 2)], "account_id string, n int")
    out = pseudonymize_accounts(df, b"x" * 32)
    assert "account_id" not in out.columns
    rows = {r["n"]: r["user_key"] for r in out.collect()}
    assert rows[2] is None
    assert rows[1] == hmac.new(b"x" * 32, b"acc-1", hashlib.sha256).hexdigest()


def test_different_keys_give_unlinkable_pseudonyms(spark):
    df = spark.createDataFrame([("acc-1",)], "account_id string")
    first = pseudonymize_accounts(df, b"a" * 32).first()["user_key"]
    second = pseudonymize_accounts(df, b"b" * 32).first()["user_key"]
    assert first != second


def test_age_bands_at_the_run_date(spark):
    rows = [("2000-11-26",), ("2000-11-27",), ("1950-01-01",), ("2015-06-01",), (None,), ("garbage",)]
    df = spark.createDataFrame(rows, "birth_date string")
    bands = [r["age_band"] for r in with_age_band(df, date(2025, 11, 26), (18, 25, 35, 45, 55, 65)).collect()]
    # 25 on the day itself, 24 a day before the birthday
    assert bands == ["25-34", "18-24", "65+", "<18", None, None]


def test_region_is_a_postcode_prefix(spark):
    df = spark.createDataFrame([("90210",), (" sw1a 1aa",), ("",), (None,)], "postcode string")
    assert [r["region"] for r in with_region(df, 1).collect()] == ["R9", "RS", None, None]


def test_hour_bucket_replaces_the_timestamp(spark):
    df = spark.createDataFrame([("2026-11-25T05:59:59Z",), ("2026-11-25T21:00:00Z",)], "t string")
    df = df.withColumn("started_at", F.col("t").cast("timestamp")).drop("t")
    out = with_hour_bucket(df).collect()
    assert [(r["event_date"], r["hour_bucket"]) for r in out] == [
        ("2026-11-25", "night"),
        ("2026-11-25", "evening"),
    ]
    assert "started_at" not in out[0].asDict()


def test_k_anonymity_generalizes_then_suppresses(spark):
    k = 3
    rows = (
        [(f"big{i}", "R1", "25-34", "F") for i in range(5)]  # already k-anonymous
        + [(f"reg{i}", f"R{i + 2}", "35-44", "M") for i in range(3)]  # unique regions, same age/gender
        + [("lone", "R9", "65+", "X")]  # unique on every attribute
    )
    df = spark.createDataFrame(rows, "user_key string, region string, age_band string, gender string")
    out = {r["user_key"]: r for r in enforce_k_anonymity(df, k).collect()}

    assert all(out[f"big{i}"]["region"] == "R1" and not out[f"big{i}"]["k_generalized"] for i in range(5))
    # the three unique regions are generalized; with 'lone' the '*' region holds 4 users,
    # 3 of which share age and gender: they keep them
    assert all(out[f"reg{i}"]["region"] == SUPPRESSED for i in range(3))
    assert all(out[f"reg{i}"]["age_band"] == "35-44" for i in range(3))
    assert not any(out[f"reg{i}"]["suppressed"] for i in range(3))
    # 'lone' is generalized on every attribute and, alone, suppressed
    assert (out["lone"]["region"], out["lone"]["age_band"], out["lone"]["gender"]) == (SUPPRESSED,) * 3
    assert out["lone"]["suppressed"]


def test_every_published_combination_covers_k_users(spark):
    import random

    rng = random.Random(7)
    rows = [
        (f"u{i}", f"R{rng.randint(0, 9)}", rng.choice(["18-24", "25-34", "35-44", "65+"]), rng.choice("FMX"))
        for i in range(400)
    ]
    df = spark.createDataFrame(rows, "user_key string, region string, age_band string, gender string")
    out = enforce_k_anonymity(df, 10).where(~F.col("suppressed"))
    smallest = out.groupBy("region", "age_band", "gender").count().agg(F.min("count")).first()[0]
    assert smallest >= 10


def test_missing_or_short_key_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="FAIRSHELF_PSEUDONYM_KEY"):
        load_config(environ={}).require_pseudonym_key()
    with pytest.raises(ConfigError, match="at least 32"):
        load_config(environ={"FAIRSHELF_PSEUDONYM_KEY": "short"}).require_pseudonym_key()


def test_key_file_must_be_private(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("k" * 40)
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config(environ={"FAIRSHELF_PSEUDONYM_KEY_FILE": str(key_file)})
    key_file.chmod(0o600)
    config = load_config(environ={"FAIRSHELF_PSEUDONYM_KEY_FILE": str(key_file)})
    assert config.require_pseudonym_key() == b"k" * 40
    assert "k" * 40 not in repr(config) and "k" * 40 not in str(config.as_dict())


def test_the_key_never_appears_in_a_query_plan(spark):
    """The plan is printed by explain(), the Spark UI and the event log: neither the key
    nor its HMAC pads (which give the key back) may be in it."""
    key = b"plan-test-key-0123456789abcdef-0123456789"
    out = pseudonymize_accounts(spark.createDataFrame([("acc-1",)], "account_id string"), key)
    plans = out._jdf.queryExecution().toString() + out._jdf.queryExecution().executedPlan().toString()
    secrets = [key.hex(), key.decode(), *(pad.hex() for pad in key_pads(key))]
    assert "user_key" in plans
    assert not [s for s in secrets if s.lower() in plans.lower()]
