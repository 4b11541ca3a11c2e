"""Ingest rules on tiny DataFrames: every kind of bad record gets its reason code,
valid ones pass, and nothing is lost (input = accepted + quarantined)."""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql import functions as F

from jobs.core.schemas import CATALOG, VIEWING_EVENTS, allowed_columns
from jobs.stages.ingest import (
    build_content,
    build_quarantine,
    build_silver_events,
    catalog_values_nulled,
    dates_to_ingest,
    with_checked_catalog_values,
    with_rejection_reason,
    with_typed_event_fields,
)

pytestmark = pytest.mark.spark
D = date(2026, 11, 25)
KEY = b"unit-test-key-unit-test-key-unit-test-key"


def _event(event_id="e1", account="acc-1", content="c1", started="2026-11-25T20:00:00Z", seconds="600",
           device="tv", country="DE"):
    return (event_id, account, content, started, seconds, "dev-9", device, "10.1.2.3", country)


CASES = {
    "valid": _event("ok"),
    "missing_event_id": _event(None),
    "missing_account_id": _event("e2", account=None),
    "bad_timestamp": _event("e3", started="yesterday evening"),
    "outside_run_date": _event("e4", started="2026-11-24T23:59:59Z"),
    "bad_seconds": _event("e5", seconds="ten"),
    "negative_seconds": _event("e6", seconds="-5"),
    "absurd_seconds": _event("e7", seconds="999999"),
    "unknown_content": _event("e8", content="c404"),
    "bad_device_type": _event("e9", device="\U0001F4F1 phone"),
    "bad_country": _event("e10", country="\U0001F1E9\U0001F1EA"),
    "valid_mixed_case": _event("e11", device=" Mobile ", country="at"),
    "valid_without_device_or_country": _event("e12", device=None, country=None),
}


@pytest.fixture
def checked(spark):
    rows = list(CASES.values()) + [_event("dup"), _event("dup")]
    events = spark.createDataFrame(rows, VIEWING_EVENTS).withColumn("landing_date", F.lit(D.isoformat()))
    catalog_ids = spark.createDataFrame([("c1",)], "content_id string")
    return with_rejection_reason(with_typed_event_fields(events), catalog_ids, 6 * 3600).cache()


def test_each_bad_record_gets_its_reason(checked):
    reasons = {r["event_id"]: r["reason"] for r in checked.where(~F.col("event_id").eqNullSafe("dup")).collect()}
    expected = {CASES[name][0]: (None if name.startswith("valid") else name) for name in CASES}
    assert reasons == expected


def test_exact_duplicates_keep_one_copy(checked):
    dups = [r["reason"] for r in checked.where(F.col("event_id") == "dup").collect()]
    assert sorted(dups, key=lambda reason: reason or "") == [None, "duplicate_event"]


def test_counts_add_up_and_no_identifier_leaves(checked):
    silver = build_silver_events(checked, KEY)
    quarantine = build_quarantine(checked, KEY)
    assert silver.count() + quarantine.count() == checked.count()
    assert silver.columns == allowed_columns("silver/events")
    assert quarantine.columns == allowed_columns("quarantine/viewing_events")
    for df in (silver, quarantine):
        values = {str(v) for row in df.collect() for v in row}
        assert not values & {"acc-1", "10.1.2.3", "dev-9", "2026-11-25T20:00:00Z"}


def test_quarantine_is_pseudonymized_not_blank(checked):
    rows = build_quarantine(checked, KEY).where("reason = 'unknown_content'").collect()
    assert len(rows) == 1 and len(rows[0]["user_key"]) == 64


def test_a_run_catches_up_on_days_not_ingested_yet():
    landing = ["2026-11-20", "2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"]
    days = dates_to_ingest(landing, {"2026-11-23"}, D, history_days=5)
    # the window is 11-21..11-25: 11-20 is too old, 11-23 done, 11-26 is after D
    assert days == ["2026-11-22", "2026-11-24", "2026-11-25"]
    assert dates_to_ingest(landing, set(landing), D, 5) == ["2026-11-25"]  # D is always redone


def test_content_is_typed_and_unique(spark):
    catalog = spark.createDataFrame(
        [
            ("c1", "Alpha", "Drama|Comedy", "P", "independent", "en", "1999", "5400"),
            ("c1", "Alpha (dup)", "Drama", "P", "independent", "en", "1999", "5400"),
            ("c2", "Beta", None, "Q", "major_studio", "fr", "n/a", "1200"),
            (None, "No id", "Drama", "Q", "major_studio", "fr", "2001", "1200"),
        ],
        CATALOG,
    )
    rows = {r["content_id"]: r for r in build_content(catalog, D).collect()}
    assert set(rows) == {"c1", "c2"}
    assert rows["c1"]["primary_genre"] == "Drama" and rows["c1"]["release_year"] == 1999
    assert rows["c2"]["primary_genre"] is None and rows["c2"]["release_year"] is None


def test_device_types_and_countries_are_stored_normalized(checked):
    [row] = checked.where(F.col("event_id") == "e11").collect()
    assert (row["device_type"], row["country"]) == ("mobile", "AT")


def test_catalog_values_outside_their_domain_become_null_and_titles_plain(spark):
    catalog = spark.createDataFrame(
        [
            ("c1", "Line\nbreak\t\u200btitle", "Drama", "P", "independent", " EN ", "1999", "5400"),
            ("c2", "Beta", "Drama", "Q", "major_studio", "xx", "1066", "-5"),
            ("c3", "Gamma", "Drama", "Q", "major_studio", None, "2027", "0"),
        ],
        CATALOG,
    )
    rows = {r["content_id"]: r for r in build_content(catalog, D).collect()}
    assert rows["c1"]["title"] == "Line break title"
    assert (rows["c1"]["original_language"], rows["c1"]["release_year"], rows["c1"]["duration_seconds"]) == ("en", 1999, 5400)
    assert (rows["c2"]["original_language"], rows["c2"]["release_year"], rows["c2"]["duration_seconds"]) == (None, None, None)
    assert (rows["c3"]["release_year"], rows["c3"]["duration_seconds"]) == (2027, None)  # next year's release is fine
    nulled = catalog_values_nulled(catalog, with_checked_catalog_values(catalog, D))
    assert nulled == {"original_language": 1, "release_year": 1, "duration_seconds": 2}


@pytest.mark.parametrize("name, content, column", [
    ("part.jsonl", '{"event_id": "e", "user_id": "a", "content_id": "c", "started_at": "t", "seconds_watched": "1"}\n',
     "account_id"),
    ("part.csv", "event_id,account_id,content_id,started_at\ne,a,c,t\n", "seconds_watched"),
])
def test_a_landing_file_without_a_required_column_is_named_with_the_column(tmp_path, name, content, column):
    from jobs.core.errors import StageError
    from jobs.lake.landing import check_landing_contract

    (tmp_path / name).write_text(content)
    with pytest.raises(StageError, match=rf"{name} has no column {column} .*nothing was written"):
        check_landing_contract([str(tmp_path)], "viewing_events")


def test_a_parquet_landing_file_with_a_nested_column_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.core.errors import StageError
    from jobs.lake.landing import check_landing_contract

    table = pa.table({"content_id": ["c"], "title": [{"en": "T"}], "genres": ["Drama"]})
    pq.write_table(table, tmp_path / "catalog.parquet")
    with pytest.raises(StageError, match="column title is struct"):
        check_landing_contract([str(tmp_path)], "catalog")
    pq.write_table(pa.table({"content_id": ["c"], "title": ["T"], "genres": ["Drama"], "release_year": [1999]}),
                   tmp_path / "catalog.parquet")
    check_landing_contract([str(tmp_path)], "catalog")  # numbers are fine: read as text


def test_landing_is_read_alike_from_json_lines_csv_and_parquet(spark, tmp_path):
    """The format is detected by extension; the explicit schema gives the same rows."""
    from jobs.datasets.synthetic import SyntheticSpec, generate_landing
    from jobs.lake.landing import read_landing

    frames = {}
    for fmt in ("jsonl", "csv", "parquet"):
        spec = SyntheticSpec(users=60, items=30, events_per_day=200, days=1, end_date=D, file_format=fmt)
        generate_landing(tmp_path / fmt, spec)
        path = tmp_path / fmt / "landing" / "viewing_events" / f"date={D.isoformat()}"
        frames[fmt] = read_landing(spark, str(path), VIEWING_EVENTS)
    rows = {fmt: sorted(tuple(r) for r in df.collect()) for fmt, df in frames.items()}
    assert len(rows["jsonl"]) == 200
    assert rows["jsonl"] == rows["csv"] == rows["parquet"]


def test_a_missing_or_empty_landing_partition_names_its_path(spark, tmp_path):
    from jobs.core.errors import StageError
    from jobs.lake.landing import read_landing

    with pytest.raises(StageError, match="date=2026-11-25 does not exist"):
        read_landing(spark, str(tmp_path / "date=2026-11-25"), VIEWING_EVENTS)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "part-0.jsonl").write_text("")
    with pytest.raises(StageError, match="no non-empty data files"):
        read_landing(spark, str(tmp_path / "empty"), VIEWING_EVENTS)
