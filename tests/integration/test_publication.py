"""Atomic publication, reruns, rollback, lineage and erasure on one small synthetic
lakehouse, in the order an operator would meet them. The module builds it once: a run of
D (kept as it was, ``first_only``), then a rerun of D. Tests that only read use those;
tests that write (a failed run, a rollback, an erasure) get a private copy, so no test
depends on another one or on their order:

1. a run of D publishes: the gold/runs row pins every published table's version;
2. its lineage rows match the Delta history of every table it read and wrote, and its
   OpenLineage events are in the file transport's folder;
3. a rerun of D gives the same table contents (new versions, no duplicates);
4. a run that writes its shelves and then fails leaves the previous shelves live, and is undone;
5. a rollback restores the previous version of gold/recommendations and readers follow;
6. an erasure re-points the publication and readers keep working.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from jobs.datasets.synthetic import SyntheticSpec, generate_landing
from jobs.lake import reader, tables
from jobs.lake.runs import RollbackRefused, rollback_table
from jobs.orchestration import pipeline
from jobs.orchestration.pipeline import RunFailed, run_pipeline
from jobs.shared.privacy import pseudonym
from jobs.stages.erasure import erase_accounts

pytestmark = [pytest.mark.spark, pytest.mark.integration]

DAY = date(2026, 11, 25)
# Content columns of each table compared across reruns: all but the run's identity (its
# id, and the model version, which names the run). Scores are compared exactly.
NOT_CONTENT = {"run_id", "model_version"}


RERUN_COMPARED = ["silver/events", "silver/interactions", "gold/recommendations", "gold/default_recommendations"]
CODE_VERSION = "publication-test"  # fixed, so a commit landing mid-test changes nothing
FAST = "[model]\nselection_trials = 1\n"


def _fast(config):
    """No model search: the configured model only (as FAST says for the CLI)."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, selection_trials=1))


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory, config_factory):
    """A run of D, copied aside as it was (``first_only``), then a rerun of D."""
    root = tmp_path_factory.mktemp("publication")
    config = _fast(config_factory(root / "lake", code_version=CODE_VERSION))
    spec = SyntheticSpec(users=150, items=60, events_per_day=900, days=2, end_date=DAY, seed=11)
    landing = generate_landing(config.lakehouse, spec)
    first = run_pipeline(spark, config, DAY)
    first_only = dataclasses.replace(config, lakehouse=str(root / "first_only"))
    shutil.copytree(config.lakehouse, first_only.lakehouse)
    versions = {t: tables.table_version(config.table(*t.split("/"))) for t in RERUN_COMPARED}
    second = run_pipeline(spark, config, DAY)
    return {"config": config, "first_only": first_only, "landing": landing, "first": first,
            "second": second, "first_versions": versions}


@pytest.fixture
def first_run(built):
    """The lakehouse after the first run of D (read only): (config, outcome)."""
    return built["first_only"], built["first"]


@pytest.fixture
def lake(built, tmp_path):
    """A private copy of the lakehouse after both runs, for a test that writes."""
    config = dataclasses.replace(built["config"], lakehouse=str(tmp_path / "lake"))
    shutil.copytree(built["config"].lakehouse, config.lakehouse)
    return {**built, "config": config}


def _content(table: pa.Table) -> list[tuple]:
    """Rows without the run's identity, sorted. Floats to 9 decimals: a default shelf's
    score is a Spark sum whose order of addition is not fixed (last-bit differences
    between reruns); every other value compares exactly."""
    keep = [c for c in table.column_names if c not in NOT_CONTENT]
    return sorted(tuple(round(v, 9) if isinstance(v, float) else v for v in r.values())
                  for r in table.select(keep).to_pylist())


def _partition(config, name: str, version: int | None = None) -> pa.Table:
    layer, table = name.split("/")
    return tables.read_arrow(config.table(layer, table), version=version,
                             filters=[("run_date", "=", DAY.isoformat())])


def test_a_run_publishes_in_one_step(first_run):
    config, first = first_run
    live = reader.latest_publication(config.lakehouse)
    assert live["run_id"] == first.run_id and live["kind"] == "run"
    written = json.loads(live["versions_json"])
    published = live["published"]
    assert {"gold/recommendations", "gold/default_recommendations", "gold/lineage"} <= set(published)
    assert all(p["version"] == written[t] and p["run_id"] == first.run_id for t, p in published.items())
    # the gold/runs append came after every published table's commit
    runs_commit = tables.table_history(config.table("gold", "runs"))[0]
    assert runs_commit["run_id"] == first.run_id
    shelves = reader.recommendations(config.lakehouse)
    assert shelves.num_rows > 0 and set(shelves.column("run_id").to_pylist()) == {first.run_id}
    user = shelves.column("user_key")[0].as_py()
    shelf = reader.shelf_for(config.lakehouse, user)
    assert [r["shelf"] for r in shelf] == ["personal"] * len(shelf)
    assert [r["rank"] for r in shelf] == list(range(1, config.shelf.size + 1))


def test_lineage_matches_the_delta_history(first_run):
    config, first = first_run
    rows = reader.published_table(config.lakehouse, reader.latest_publication(config.lakehouse),
                                  "gold/lineage").to_pylist()
    assert [r["stage"] for r in rows] == list(pipeline.ORDER)
    written_by = {}
    for row in rows:
        assert row["status"] == "succeeded" and row["code_version"] == config.code_version
        assert row["config_hash"] == config.config_hash and row["seconds"] >= 0
        assert row["started_at"] <= row["finished_at"]
        for table, out in json.loads(row["outputs_json"]).items():
            layer, name = table.split("/")
            commit = next(h for h in tables.table_history(config.table(layer, name))
                          if h["version"] == out["version"])
            assert (commit["run_id"], commit["stage"]) == (first.run_id, row["stage"]), table
            written_by[table] = out["version"]
        for table, version in json.loads(row["inputs_json"]).items():
            # what a stage read is what this run's earlier stage wrote, when one did
            if table in written_by:
                assert version == written_by[table], (row["stage"], table)
    ingest = next(r for r in rows if r["stage"] == "ingest")
    landing = json.loads(ingest["landing_json"])
    assert f"landing/viewing_events/date={DAY}" in landing and "landing/catalog" in landing
    assert sum(v["files"] for k, v in landing.items() if "viewing_events" in k) == sum(
        1 for _ in Path(config.landing("viewing_events")).glob("date=*/*"))
    # rows recorded = rows of the run's partition at the version written
    publish = json.loads(next(r for r in rows if r["stage"] == "publish")["outputs_json"])
    shelves = publish["gold/recommendations"]
    assert shelves["rows"] == _partition(config, "gold/recommendations", shelves["version"]).num_rows > 0


def test_openlineage_events_in_the_file_transport(first_run):
    config, _ = first_run
    folder = Path(config.lakehouse) / "lineage" / "openlineage"
    events = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    mine = [e for e in events if e["run"]["facets"]["parent"]["run"]["runId"] == events[0]["run"]["facets"]["parent"]["run"]["runId"]]
    kinds = {(e["job"]["name"], e["eventType"]) for e in mine}
    assert kinds == {(f"fairshelf.{s}", t) for s in pipeline.ORDER for t in ("START", "COMPLETE")}
    complete = next(e for e in mine if e["job"]["name"] == "fairshelf.publish" and e["eventType"] == "COMPLETE")
    out = next(o for o in complete["outputs"] if o["name"] == "gold/recommendations")
    assert out["namespace"].startswith("file://")
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == reader.recommendations(config.lakehouse).num_rows
    assert "user_key" in {f["name"] for f in out["facets"]["schema"]["fields"]}
    lineage = {r["stage"]: r for r in reader.published_table(
        config.lakehouse, reader.latest_publication(config.lakehouse), "gold/lineage").to_pylist()}
    for event in (e for e in mine if e["eventType"] == "COMPLETE"):
        stage = event["job"]["name"].split(".", 1)[1]
        read = {i["name"]: int(i["facets"]["version"]["datasetVersion"]) for i in event["inputs"]}
        assert read == json.loads(lineage[stage]["inputs_json"]), stage


def test_rerunning_a_date_gives_the_same_tables(built):
    config, second, old_versions = built["config"], built["second"], built["first_versions"]
    before = reader.latest_publication(built["first_only"].lakehouse)["published"]
    live = reader.latest_publication(config.lakehouse)
    assert live["run_id"] == second.run_id
    for table in RERUN_COMPARED:
        old, new = _partition(config, table, old_versions[table]), _partition(config, table)
        assert new.num_rows == old.num_rows, table  # replaced, not appended
        assert _content(new) == _content(old), table
        assert tables.table_version(config.table(*table.split("/"))) > old_versions[table]
    assert live["published"]["gold/recommendations"]["version"] > before["gold/recommendations"]["version"]


def _cli(config, *args):
    from typer.testing import CliRunner

    from jobs.interfaces.cli import app

    settings = Path(config.lakehouse).parent / "fast.toml"
    settings.write_text(FAST)
    env = {"FAIRSHELF_LAKEHOUSE": config.lakehouse, "FAIRSHELF_CONFIG": str(settings),
           "FAIRSHELF_CODE_VERSION": CODE_VERSION, "FAIRSHELF_PSEUDONYM_KEY": config.pseudonym_key.decode()}
    return CliRunner().invoke(app, ["--quiet", *args], env=env)


def test_a_backfill_resumes_by_skipping_dates_done_and_runs_lists_them(lake):
    config = lake["config"]  # a copy: the backfill would write if it did not skip
    done = _cli(config, "backfill", "--start", DAY.isoformat(), "--end", DAY.isoformat())
    assert done.exit_code == 0, done.output
    assert f"{DAY}: skipped, already succeeded" in done.output and "1 skipped" in done.output
    listed = _cli(config, "runs", "--json")
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [r["run_id"] for r in rows if r["live"]] == [lake["second"].run_id]
    assert {r["kind"] for r in rows} == {"run"} and len(rows) == 2


def test_a_failure_before_publication_leaves_the_previous_shelves(lake, spark, monkeypatch):
    config, second = lake["config"], lake["second"]
    user = reader.recommendations(config.lakehouse).column("user_key")[0].as_py()
    shelf_before = reader.shelf_for(config.lakehouse, user)
    live_before = reader.latest_publication(config.lakehouse)
    real_publish = pipeline.STAGES["publish"]

    def publish_then_crash(*args):
        real_publish(*args)  # the new shelves are written ...
        raise RuntimeError("injected: the machine died before the run was recorded")

    monkeypatch.setitem(pipeline.STAGES, "publish", publish_then_crash)
    smaller = dataclasses.replace(config, shelf=dataclasses.replace(config.shelf, size=10))
    with pytest.raises(RunFailed) as failure:
        run_pipeline(spark, smaller, DAY)
    # ... were committed, then undone with the failed run: the table holds the live shelves again
    history = tables.table_history(config.table("gold", "recommendations"))
    assert history[0]["operation"] == "RESTORE"
    assert any(h.get("run_id") == failure.value.outcome.run_id and h.get("stage") == "publish" for h in history)
    assert _content(_partition(config, "gold/recommendations")) == _content(reader.recommendations(config.lakehouse))
    assert reader.latest_publication(config.lakehouse)["run_id"] == live_before["run_id"] == second.run_id
    assert reader.shelf_for(config.lakehouse, user) == shelf_before
    failed = [r for r in tables.read_arrow(config.table("gold", "runs")).to_pylist() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["failed_stage"] == "publish" and failed[0]["published_json"] is None


def test_rollback_restores_the_previous_version_and_readers_follow(lake, spark):
    config, first = lake["config"], lake["first"]
    uri = config.table("gold", "recommendations")
    runs = tables.read_arrow(config.table("gold", "runs")).to_pylist()
    first_row = next(r for r in runs if r["run_id"] == first.run_id)
    target = json.loads(first_row["published_json"])["gold/recommendations"]["version"]
    row = rollback_table(config, "gold/recommendations", target)
    assert row["kind"] == "rollback"
    restored = tables.table_version(uri)
    assert _content(tables.read_arrow(uri, version=restored)) == _content(tables.read_arrow(uri, version=target))
    live = reader.latest_publication(config.lakehouse)
    assert live["run_id"] == row["run_id"]
    assert live["published"]["gold/recommendations"] == {"version": restored, "run_id": first.run_id,
                                                          "run_date": DAY.isoformat()}
    assert set(reader.recommendations(config.lakehouse).column("run_id").to_pylist()) == {first.run_id}
    assert reader.latest_succeeded_run(tables.read_arrow(config.table("gold", "runs"))) == first.run_id


@pytest.mark.parametrize("table, version, says", [
    ("gold/runs", 0, "publication record itself"),
    ("gold/recommendations", 999, "versions 0.."),
    ("silver/no_such_table", 0, "unknown table"),
])
def test_rollback_refuses_clearly(lake, spark, table, version, says):
    with pytest.raises(RollbackRefused, match=says):
        rollback_table(lake["config"], table, version)


def test_erasure_repoints_and_readers_keep_working(lake, spark):
    config = lake["config"]
    shelves = reader.recommendations(config.lakehouse)
    keys = set(shelves.column("user_key").to_pylist())
    account = next(f"acc-{n:06d}" for n in range(1, 200) if pseudonym(config.pseudonym_key, f"acc-{n:06d}") in keys)
    erased = pseudonym(config.pseudonym_key, account)
    old_version = reader.latest_publication(config.lakehouse)["published"]["gold/recommendations"]["version"]
    erase_accounts(spark, config, [account], "2026-11-26T00:00:00+00:00", "erase__test")
    live = reader.latest_publication(config.lakehouse)
    assert live["kind"] == "erasure"
    after = reader.recommendations(config.lakehouse)
    assert erased not in set(after.column("user_key").to_pylist())
    assert after.num_rows == shelves.num_rows - pc.sum(pc.equal(shelves.column("user_key"), erased)).as_py()
    assert reader.shelf_for(config.lakehouse, erased)[0]["shelf"] != "personal"
    other = next(k for k in keys if k != erased)
    assert reader.shelf_for(config.lakehouse, other)[0]["shelf"] == "personal"
    with pytest.raises(RollbackRefused, match="erasure"):
        rollback_table(config, "gold/recommendations", old_version)
