"""Lineage pieces without Spark: rows counted from Delta commits, restore, gold/lineage
rows, OpenLineage events (file transport written, HTTP failure only a warning) and the
[lineage] settings."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from jobs.core.config import ConfigError, load_config
from jobs.lake import tables
from jobs.orchestration import lineage

DAY = date(2026, 11, 25)


@pytest.fixture
def lake_config(tmp_path, config_factory):
    return config_factory(tmp_path / "lake")


def _write(uri, rows, mode="append"):
    write_deltalake(uri, pa.table({"user_key": [f"u{i}" for i in range(rows)], "run_date": ["2026-11-25"] * rows}),
                    mode=mode, partition_by=["run_date"])


def test_rows_in_commit_counts_what_each_commit_added(tmp_path):
    uri = str(tmp_path / "gold" / "t")
    _write(uri, 3)
    _write(uri, 2)
    _write(uri, 5, mode="overwrite")
    assert [tables.rows_in_commit(uri, v) for v in (0, 1, 2)] == [3, 2, 5]
    assert tables.rows_in_commit(uri, 7) is None  # no such commit (or purged by an erasure)


def test_restore_makes_an_old_version_current_and_refuses_vacuumed_ones(tmp_path):
    uri = str(tmp_path / "gold" / "t")
    _write(uri, 3)
    _write(uri, 5, mode="overwrite")
    commit = tables.CommitInfo("rollback-1", "2026-11-25", "rollback", "code", "hash")
    assert tables.restore_table(uri, 0, commit=commit) == 2
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 3
    assert DeltaTable(uri).history(1)[0]["run_id"] == "rollback-1"
    DeltaTable(uri).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert tables.missing_files(uri, 1)
    with pytest.raises(tables.TableError, match="vacuumed"):
        tables.restore_table(uri, 1, commit=commit)


def test_landing_folders_of_ingest_are_its_catch_up_days_and_the_catalog():
    days = ["2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"]
    folders = lineage.landing_folders("ingest", DAY, {"first_ingested_date": "2026-11-24"}, days)
    assert folders == ["catalog", "viewing_events/date=2026-11-24", "viewing_events/date=2026-11-25"]
    assert lineage.landing_folders("privacy", DAY, {}, days) == ["users"]
    assert lineage.landing_folders("quality", DAY, {"landing_read": ["viewing_events/date=2026-11-25"]}, days) == [
        "viewing_events/date=2026-11-25"]
    assert lineage.landing_folders("train", DAY, {}, days) == []


def test_lineage_row_records_versions_rows_landing_and_expectations(lake_config):
    config = lake_config
    _write(config.table("gold", "recommendations"), 4)
    users = Path(config.landing("users"))
    users.mkdir(parents=True)
    (users / "part-0.jsonl").write_text('{"account_id": "a"}\n')
    summary = {"stage": "privacy", "inputs": {"silver/events": 3}, "outputs": {"gold/recommendations": 0},
               "metrics": {"expectations_failed": 0, "suppressed": 2}, "seconds": 1.5,
               "started_at": "2026-11-26T01:00:00+00:00", "finished_at": "2026-11-26T01:00:01+00:00"}
    row = lineage.lineage_row(config, "run-1", DAY, summary)
    assert json.loads(row["outputs_json"]) == {"gold/recommendations": {"version": 0, "rows": 4}}
    assert json.loads(row["inputs_json"]) == {"silver/events": 3}
    assert json.loads(row["landing_json"]) == {"landing/users": {"files": 1, "bytes": 20}}
    assert json.loads(row["expectations_json"]) == {"expectations_failed": 0}
    assert (row["status"], row["config_hash"], row["seconds"]) == ("succeeded", config.config_hash, 1.5)
    assert lineage.lineage_row(config, "run-1", DAY, {**summary, "metrics": {}})["expectations_json"] is None


def test_stage_events_are_openlineage_with_parent_datasets_and_row_counts(lake_config):
    from openlineage.client.serde import Serde

    config = lake_config
    _write(config.table("gold", "recommendations"), 4)
    summary = {"stage": "publish", "inputs": {"silver/candidates": 2}, "outputs": {"gold/recommendations": 0}}
    event = Serde.to_dict(lineage.stage_event(config, "COMPLETE", "publish", "run-1", DAY,
                                              "2026-11-26T01:00:00+00:00", summary))
    start = Serde.to_dict(lineage.stage_event(config, "START", "publish", "run-1", DAY, "2026-11-26T00:59:00+00:00"))
    assert (event["job"]["namespace"], event["job"]["name"]) == ("fairshelf", "fairshelf.publish")
    assert event["run"]["runId"] == start["run"]["runId"] != event["run"]["facets"]["parent"]["run"]["runId"]
    assert event["run"]["facets"]["parent"]["run"]["runId"] == lineage.openlineage_run_id("run-1")
    (out,) = event["outputs"]
    assert out["name"] == "gold/recommendations" and out["namespace"] == f"file://{tables.normalize_uri(config.lakehouse)}"
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 4
    assert out["facets"]["version"]["datasetVersion"] == "0"
    assert "rank" in {f["name"] for f in out["facets"]["schema"]["fields"]}
    assert event["inputs"][0]["name"] == "silver/candidates"


def test_file_transport_writes_one_json_file_per_event(lake_config):
    assert lineage.emit_stage_event(lake_config, "START", "ingest", "run-1", DAY, "2026-11-26T01:00:00+00:00")
    (written,) = (Path(lake_config.lakehouse) / "lineage" / "openlineage").glob("*.json")
    event = json.loads(written.read_text())
    assert (event["eventType"], event["job"]["name"]) == ("START", "fairshelf.ingest")


def test_an_unreachable_backend_is_a_warning_not_a_failure(tmp_path, caplog):
    config = load_config(environ={"FAIRSHELF_OPENLINEAGE_TRANSPORT": "http",
                                  "FAIRSHELF_OPENLINEAGE_URL": "http://127.0.0.1:9"},
                         lakehouse=str(tmp_path))
    config = dataclasses.replace(config, lineage=dataclasses.replace(config.lineage, timeout_seconds=0.5))
    with caplog.at_level(logging.WARNING, logger="jobs.orchestration.lineage"):
        assert lineage.emit_stage_event(config, "START", "ingest", "run-1", DAY, "2026-11-26T01:00:00+00:00") is False
    assert "not sent" in caplog.text


def test_lineage_settings_are_validated_and_the_api_key_comes_from_the_environment(tmp_path):
    config = load_config(environ={"FAIRSHELF_OPENLINEAGE_API_KEY": "s3cret"})
    assert config.lineage.api_key == "s3cret" and "s3cret" not in repr(config)
    assert config.config_hash == load_config(environ={}).config_hash  # where events go is not config
    bad = tmp_path / "bad.toml"
    for text, says in [('[lineage]\napi_key = "x"\n', "FAIRSHELF_OPENLINEAGE_API_KEY"),
                       ('[lineage]\ntransport = "kafka"\n', r"\[lineage\] transport: should be 'file', 'http' or 'none'"),
                       ('[lineage]\ntransport = "http"\n', r"\[lineage\] url: transport 'http' needs"),
                       ('[lineage]\nurl_typo = "x"\n', "unknown setting")]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=says):
            load_config(bad, environ={})
