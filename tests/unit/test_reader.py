"""The read API (jobs/lake/reader.py) and the publication pointer's pure parts (jobs/lake/runs.py),
on tiny Delta tables written with deltalake: no Spark."""

from __future__ import annotations

import json
from datetime import date

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from jobs.lake import reader
from jobs.lake.runs import dates_to_run, published_tables, repointed, serving_at


def _run(run_id, run_date, finished_at, status="succeeded", kind="run", published=None, code="c1", config="h1"):
    return {
        "run_id": run_id, "run_date": run_date, "status": status, "kind": kind,
        "finished_at": finished_at, "code_version": code, "config_hash": config,
        "published_json": None if published is None else json.dumps(published),
    }


def _runs_table(rows):
    return pa.Table.from_pylist(rows)


def test_the_live_publication_is_the_latest_date_then_the_latest_finish():
    rows = [
        _run("a", "2026-11-24", "2026-11-25T03:00:00+00:00", published={}),
        _run("b", "2026-11-25", "2026-11-26T03:00:00+00:00", published={}),
        _run("c", "2026-11-25", "2026-11-26T05:00:00+00:00", status="failed"),
        # a backfill of an older date, recorded last, does not replace the live shelves
        _run("d", "2026-11-20", "2026-11-26T06:00:00+00:00", published={}),
        _run("e", "2026-11-25", "2026-11-26T04:00:00+00:00", kind="rollback", published={}),
    ]
    assert reader.choose_publication(_runs_table(rows))["run_id"] == "e"
    assert reader.choose_publication(_runs_table(rows), "2026-11-20")["run_id"] == "d"
    assert reader.choose_publication(_runs_table(rows), "2026-11-23") is None
    assert reader.choose_publication(_runs_table(rows[2:3])) is None


def test_latest_succeeded_run_names_the_run_whose_shelves_are_served():
    pinned = {"gold/recommendations": {"version": 3, "run_id": "b", "run_date": "2026-11-25"}}
    rows = [_run("b", "2026-11-25", "2026-11-26T03:00:00+00:00", published=pinned),
            _run("erase-1", "2026-11-25", "2026-11-26T04:00:00+00:00", kind="erasure", published=pinned)]
    assert reader.latest_succeeded_run(_runs_table(rows)) == "b"


def test_repointing_keeps_the_live_run_and_changes_only_the_named_tables():
    published = published_tables("b", "2026-11-25", {"gold/recommendations": 3, "gold/lineage": 7, "silver/events": 9})
    assert set(published) == {"gold/recommendations", "gold/lineage"}  # silver/events is not published
    live = {**_run("b", "2026-11-25", "t1", published=published), "message": None, "failed_stage": None}
    row = repointed(live, {"gold/recommendations": {"version": 5}}, kind="erasure", run_id="x", message="m", now="t2")
    after = json.loads(row["published_json"])
    assert after["gold/recommendations"] == {"version": 5, "run_id": "b", "run_date": "2026-11-25"}
    assert after["gold/lineage"] == published["gold/lineage"]
    assert (row["run_id"], row["kind"], row["run_date"], row["finished_at"]) == ("x", "erasure", "2026-11-25", "t2")
    with pytest.raises(ValueError):
        repointed(live, {}, kind="run", run_id="x", message="m", now="t2")


def test_serving_at_finds_the_run_a_version_served():
    def pin(version, run_id):
        return {"gold/recommendations": {"version": version, "run_id": run_id, "run_date": "d"}}

    rows = [_run("a", "d", "t1", published=pin(2, "a")), _run("b", "d", "t2", published=pin(6, "b")),
            _run("f", "d", "t3", status="failed")]
    assert serving_at(rows, "gold/recommendations", 5)["run_id"] == "a"
    assert serving_at(rows, "gold/recommendations", 6)["run_id"] == "b"
    assert serving_at(rows, "gold/recommendations", 1) is None
    assert serving_at(rows, "gold/audit", 9) is None


def test_backfill_skips_dates_done_with_the_same_code_and_config():
    days = [date(2026, 11, d) for d in (1, 2, 3, 4)]
    rows = [_run("a", "2026-11-01", "t", published={}), _run("b", "2026-11-02", "t", code="old", published={}),
            _run("c", "2026-11-03", "t", status="failed"), _run("e", "2026-11-04", "t", kind="erasure", published={})]
    todo, skipped = dates_to_run(days, rows, "c1", "h1")
    assert skipped == [date(2026, 11, 1)] and todo == days[1:]
    assert dates_to_run(days, rows, "c1", "h1", rerun=True) == (days, [])
    assert dates_to_run(days, rows, "c1", "other")[1] == []


# --- reading a lakehouse --------------------------------------------------------------------

def _shelf(run_id, users, titles):
    return pa.table({
        "user_key": [u for u in users for _ in titles],
        "rank": pa.array([r for _ in users for r in range(1, len(titles) + 1)], pa.int32()),
        "content_id": [t for _ in users for t in titles],
        "reason": ["Because you watched X"] * (len(users) * len(titles)),
        "run_id": [run_id] * (len(users) * len(titles)),
        "run_date": ["2026-11-25"] * (len(users) * len(titles)),
    })


def _defaults(run_id):
    return pa.table({"region": ["N", "ALL"], "rank": pa.array([1, 1], pa.int32()), "content_id": ["n1", "all1"],
                     "reason": ["Popular in your region", "Popular on fairshelf"],
                     "run_id": [run_id] * 2, "run_date": ["2026-11-25"] * 2})


@pytest.fixture
def lakehouse(tmp_path):
    """Run r1 published; then r2 wrote new shelves (version 1) and failed before its row."""
    lake = tmp_path / "lake"
    recs, defaults = str(lake / "gold" / "recommendations"), str(lake / "gold" / "default_recommendations")
    features = str(lake / "silver" / "user_features")
    write_deltalake(recs, _shelf("r1", ["u1", "u2"], ["t1", "t2"]), partition_by=["run_date"])
    write_deltalake(defaults, _defaults("r1"), partition_by=["run_date"])
    write_deltalake(features, pa.table({"user_key": ["u1", "u3"], "region": ["N", None],
                                        "run_date": ["2026-11-25"] * 2}), partition_by=["run_date"])
    published = published_tables("r1", "2026-11-25", {"gold/recommendations": 0,
                                                      "gold/default_recommendations": 0,
                                                      "silver/user_features": 0})
    write_deltalake(str(lake / "gold" / "runs"), pa.Table.from_pylist([
        _run("r1", "2026-11-25", "2026-11-26T03:00:00+00:00", published=published),
        _run("r2", "2026-11-25", "2026-11-26T04:00:00+00:00", status="failed"),
    ]))
    write_deltalake(recs, _shelf("r2", ["u1", "u2"], ["t9"]), mode="overwrite")
    return str(lake)


def test_readers_see_the_pinned_version_not_the_latest_write(lakehouse):
    assert reader.latest_publication(lakehouse)["run_id"] == "r1"
    shelves = reader.recommendations(lakehouse)
    assert set(shelves.column("run_id").to_pylist()) == {"r1"} and shelves.num_rows == 4
    assert [r["content_id"] for r in reader.shelf_for(lakehouse, "u1")] == ["t1", "t2"]
    assert reader.recommendations(lakehouse).to_pandas().shape == (4, 6)


def test_a_user_without_a_personal_shelf_gets_the_region_then_all(lakehouse):
    region_user = reader.shelf_for(lakehouse, "u3", region="N")
    assert region_user == [{"rank": 1, "content_id": "n1", "reason": "Popular in your region", "shelf": "N"}]
    # region looked up in the published user features: u3's was suppressed ("*"), no shelf -> ALL
    assert [r["shelf"] for r in reader.shelf_for(lakehouse, "u3")] == ["ALL"]
    assert [r["shelf"] for r in reader.shelf_for(lakehouse, "stranger")] == ["ALL"]


def test_nothing_published_is_said_clearly(tmp_path):
    with pytest.raises(reader.NothingPublished, match="nothing published yet"):
        reader.latest_publication(str(tmp_path))
    assert reader.shelf_for(str(tmp_path), "u1") == []
