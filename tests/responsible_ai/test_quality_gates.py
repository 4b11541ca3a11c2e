"""The quality and representation gates (jobs.stages.quality) catch deliberately broken batches,
naming the failed expectation and what was observed; a clean MovieLens-100K run passes.

The broken batches are tiny frames run through the same public functions and the same
suites (expectations/*.json) as the nightly quality stage.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
from pyspark.sql import functions as F

from jobs.core.errors import GateFailed
from jobs.shared import expectation_suites
from jobs.shared import quality_profiles as qp
from jobs.stages import quality

pytestmark = pytest.mark.spark

D = date(2026, 11, 25)
RUN_ID = "test-run"


@pytest.fixture(scope="module")
def validator():
    return expectation_suites.Validator()


@pytest.fixture(scope="module")
def qconfig(tmp_path_factory):
    from tests.conftest import make_config

    return make_config(tmp_path_factory.mktemp("quality") / "lake")


def parameters(qconfig, band=None):
    return quality.suite_parameters(qconfig, D, band or qp.volume_band(100, [], 3, 0.5, 2.0))


def gate(outcomes):
    with pytest.raises(GateFailed) as failed:
        expectation_suites.raise_on_blocking("quality", outcomes)
    return str(failed.value)


def run_suite(df, suite, qconfig, validator, band=None, scan=False):
    return expectation_suites.validate_frame(
        df, suite, parameters(qconfig, band), qconfig, RUN_ID, D, validator=validator, scan_identifiers=scan
    )


def interactions(spark, rows):
    return spark.createDataFrame(
        rows,
        "user_key string, content_id string, views long, completion double, last_seen string, "
        "confidence double, run_date string",
    )


def test_clean_interactions_pass(spark, qconfig, validator):
    df = interactions(spark, [("u1", "c1", 1, 0.5, "2026-11-20", 0.4, "2026-11-25"),
                              ("u2", "c1", 2, 1.0, "2026-11-25", 1.2, "2026-11-25")])
    outcomes = run_suite(df, "interactions", qconfig, validator, scan=True)
    expectation_suites.raise_on_blocking("quality", outcomes)  # does not raise
    assert {o.suite for o in outcomes} == {"interactions", "identifiers"}
    assert all(row["success"] for o in outcomes for row in o.rows)


def test_nulls_in_keys_fail_the_gate(spark, qconfig, validator):
    df = interactions(spark, [("u1", "c1", 1, 0.5, "2026-11-20", 0.4, "2026-11-25"),
                              (None, "c2", 1, 0.5, "2026-11-20", 0.4, "2026-11-25")])
    message = gate(run_suite(df, "interactions", qconfig, validator))
    assert "interactions: expect_column_values_to_not_be_null(user_key)" in message
    assert '"unexpected": 1' in message


def test_half_empty_landing_day_fails_the_volume_gate(spark, qconfig, validator):
    band = qp.volume_band(480, [1000, 1010, 990, 1005], min_history=3, low=0.5, high=2.0)
    frame = spark.createDataFrame([qp.volume_row(band)], qp.VOLUME)
    message = gate(run_suite(frame, "volume", qconfig, validator, band=band))
    assert "volume: expect_column_values_to_be_between(landing_rows, max_value=2005.0, min_value=501.25)" in message


def test_volume_without_history_is_a_warning_only(spark, qconfig, validator):
    band = qp.volume_band(480, [1000], min_history=3, low=0.5, high=2.0)
    frame = spark.createDataFrame([qp.volume_row(band)], qp.VOLUME)
    [outcome] = run_suite(frame, "volume", qconfig, validator, band=band)
    assert outcome.success
    assert outcome.warnings and "trailing_median" in outcome.warnings[0]


def test_missing_run_date_fails_freshness(spark, qconfig, validator):
    events = spark.createDataFrame(
        [("u1", "c1", "2026-11-24", "evening", 600, "tv", "DE", "2026-11-24")],
        "user_key string, content_id string, event_date string, hour_bucket string, "
        "seconds_watched long, device_type string, country string, run_date string",
    ).withColumn("content_in_catalog", F.lit(True))
    message = gate(run_suite(events, "silver_events", qconfig, validator))
    assert "expect_column_max_to_be_between(run_date" in message and '"2026-11-24"' in message


def _profile(spark, current, previous):
    shares = spark.createDataFrame(current, qp.SHARES).withColumn("group_count", F.lit(1).cast("long"))
    return qp.with_previous_shares(shares, spark.createDataFrame(previous, qp.SHARES))


def test_genre_vanishing_from_the_catalog_fails(spark, qconfig, validator):
    profile = _profile(
        spark,
        [("catalog", "genre", "Drama", 0.6), ("catalog", "genre", "Comedy", 0.4)],
        [("catalog", "genre", "Drama", 0.5), ("catalog", "genre", "Comedy", 0.3), ("catalog", "genre", "Western", 0.2)],
    )
    message = gate(run_suite(profile, "representation", qconfig, validator))
    assert "representation: expect_column_values_to_be_between(share" in message
    assert "Western" in message


def test_demographic_group_collapsing_fails(spark, qconfig, validator):
    profile = _profile(
        spark,
        [("training_users", "gender", "F", 0.1), ("training_users", "gender", "M", 0.9)],
        [("training_users", "gender", "F", 0.45), ("training_users", "gender", "M", 0.55)],
    )
    outcomes = run_suite(profile, "representation", qconfig, validator)
    outcomes += run_suite(qp.representation_drift(profile), "representation_drift", qconfig, validator)
    message = gate(outcomes)
    assert "expect_column_values_to_be_between(share_ratio" in message and '"F"' in message
    assert "representation_drift: expect_column_values_to_be_between(kl_divergence" in message


def test_email_leaked_into_a_column_fails(spark, qconfig, validator):
    users = spark.createDataFrame(
        [("k1", "25-34", "R1", "F", True, "2026-11-25"), ("k2", "25-34", "someone@example.org", "M", True, "2026-11-25")],
        "user_key string, age_band string, region string, gender string, consent_personalization boolean, run_date string",
    )
    outcome = expectation_suites.validate_identifiers({"user_features": users}, qconfig, RUN_ID, D, validator=validator)
    message = gate([outcome])
    assert "identifiers: expect_column_values_to_be_null(leaking_column)" in message and "region" in message
    assert "someone@example.org" not in message + json.dumps(outcome.rows)


def test_recommendations_with_unmet_constraints_fail(spark, qconfig, validator):
    shelves = spark.createDataFrame(
        [("k1", 1, "c1", 0.9, None, False, "2026-11-25", 0), ("k1", 2, "c2", 0.8, "genre_share", False, "2026-11-25", 1)],
        "user_key string, rank int, content_id string, score double, constraint_flags string, explore boolean, "
        "run_date string, unmet_constraints int",
    )
    params = dict(parameters(qconfig), shelf_size=20)
    outcomes = expectation_suites.validate_frame(shelves, "recommendations", params, qconfig, RUN_ID, D, validator=validator)
    assert "expect_column_values_to_be_between(unmet_constraints, max_value=0.0, min_value=0.0)" in gate(outcomes)


def _results(spark, config):
    from jobs.shared.stage import read_silver

    return read_silver(spark, config, "gold/quality_results")


def test_clean_movielens_run_passes_every_gate(spark, movielens_run):
    config, _, outcome = movielens_run
    assert outcome.succeeded, outcome.message
    results = _results(spark, config).where("run_date = '1998-04-22'")
    checked = results.where("severity != 'observation'")
    assert checked.where("severity = 'blocking' AND NOT success").count() == 0
    assert {r["suite"] for r in checked.select("suite").distinct().collect()} >= {
        "landing_events", "volume", "silver_events", "user_features", "content", "interactions",
        "representation", "representation_drift", "identifiers",
    }
    quality_metrics = next(s for s in outcome.summaries if s["stage"] == "quality")["metrics"]
    assert quality_metrics["blocking_failures"] == 0 and quality_metrics["validation_seconds"] > 0
    docs = quality_metrics["data_docs"]
    assert docs and open(docs).read().count("<html") >= 1


def test_a_failed_gate_in_a_nightly_run_stops_it_before_publish(synthetic_run, spark, tmp_path, config_factory):
    """The whole stage, not only the suites: an email leaked into the landing catalog
    fails the rerun of the night at ``quality``, names the expectation, stores the
    evidence in gold/quality_results, and leaves the published shelves as they were."""
    import shutil

    from jobs.lake import tables
    from jobs.lake.reader import read_shelf
    from jobs.orchestration.pipeline import RunFailed, run_pipeline

    config, _, outcome = synthetic_run
    lake = tmp_path / "lake"
    shutil.copytree(config.lakehouse, lake)
    copy = config_factory(lake)
    catalog = lake / "landing" / "catalog" / "catalog.jsonl"
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    rows[0]["title"] = "Write to jane.doe@example.com for tickets"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    published = tables.read_arrow(copy.table("gold", "recommendations")).to_pandas()
    users = list(published["user_key"].unique()[:5])
    before = {u: read_shelf(copy, u, None) for u in users}

    with pytest.raises(RunFailed) as failed:
        run_pipeline(spark, copy, outcome.run_date)
    failure = failed.value.outcome
    assert failure.failed_stage == "quality"
    assert "gate 'quality' failed" in failure.message and "title" in failure.message
    assert "jane.doe" not in failure.message  # the message names the column, never the value

    results = _results(spark, copy).where(F.col("run_id") == failure.run_id)
    failed_rows = results.where("severity = 'blocking' AND NOT success").collect()
    assert failed_rows and all(r["suite"] == "identifiers" for r in failed_rows)
    assert not any("jane.doe" in (r["details"] or "") + (r["observed_value"] or "") for r in results.collect())
    assert {u: read_shelf(copy, u, None) for u in users} == before
    assert set(tables.read_arrow(copy.table("gold", "recommendations")).to_pandas()["run_id"]) == {outcome.run_id}


@pytest.mark.parametrize("file_format", ["jsonl", "csv", "parquet"])
def test_landing_rows_are_counted_without_spark_as_spark_reads_them(spark, tmp_path, file_format):
    from jobs.core.schemas import VIEWING_EVENTS
    from jobs.datasets.synthetic import SyntheticSpec, generate_landing
    from jobs.lake.landing import events_path, landing_row_count, read_landing
    from tests.conftest import make_config

    config = make_config(tmp_path / "lake")
    generate_landing(config.lakehouse, SyntheticSpec(users=50, items=20, events_per_day=700, days=1, end_date=D,
                                                     file_format=file_format, rows_per_file=300))
    path = events_path(config, D.isoformat())
    assert landing_row_count(path) == read_landing(spark, path, VIEWING_EVENTS).count() > 0


def test_a_cut_landing_day_fails_the_volume_gate_from_the_first_night(spark, tmp_path, validator):
    """A new deployment: a week of landing days, no earlier run. The run date's landing
    file cut to 5% of its events is compared with the earlier landing days and blocked."""
    from jobs.datasets.synthetic import SyntheticSpec, generate_landing
    from jobs.lake.landing import events_path, landing_row_count
    from jobs.shared.stage import StageResult
    from tests.conftest import make_config

    config = make_config(tmp_path / "lake")
    generate_landing(config.lakehouse, SyntheticSpec(users=50, items=20, events_per_day=400, days=7, end_date=D))
    result = StageResult("quality", D, RUN_ID, config)
    whole = landing_row_count(events_path(config, D.isoformat()))
    assert quality.volume_band_for(spark, result, config, whole).baseline == "earlier landing days"

    [part] = (tmp_path / "lake" / "landing" / "viewing_events" / f"date={D.isoformat()}").iterdir()
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[: len(lines) // 20]))
    band = quality.volume_band_for(spark, result, config, landing_row_count(events_path(config, D.isoformat())))
    assert (band.baseline, band.baseline_size) == ("earlier landing days", 6)
    assert band.landing_rows < band.min_rows
    frame = spark.createDataFrame([qp.volume_row(band)], qp.VOLUME)
    message = gate(run_suite(frame, "volume", config, validator, band=band))
    assert "volume: expect_column_values_to_be_between(landing_rows" in message
