"""``write_arrow``: a Delta write without Spark (the maintenance commands' few rows), with
the Spark writer's files, statistics, commit metadata, app transaction and modes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.lake.delta import CommitInfo, TableError, read_arrow, table_history, table_version
from jobs.lake.delta_write import stats_excluded, write_arrow

SCHEMA = pa.schema([("user_key", pa.string()), ("score", pa.float64()), ("run_date", pa.string())])


def commit(run_id: str, day: str = "2026-11-25") -> CommitInfo:
    return CommitInfo(run_id, day, "test", "code-1", "config-1")


def rows(day: str, *scores: float) -> pa.Table:
    return pa.table({"user_key": [f"u{n}" for n in range(len(scores))], "score": list(scores),
                     "run_date": [day] * len(scores)})


def add_stats(uri: Path) -> list[dict]:
    return [json.loads(json.loads(line)["add"]["stats"]) for log in sorted((uri / "_delta_log").glob("*.json"))
            for line in log.read_text().splitlines() if line.strip() and "add" in json.loads(line)]


def test_a_new_table_then_an_append_then_a_partition_replaced(tmp_path):
    uri = tmp_path / "gold" / "scores"
    assert write_arrow(rows("2026-11-24", 1.0, 2.0), str(uri), commit=commit("r1", "2026-11-24"),
                       schema=SCHEMA) == 0
    assert write_arrow(rows("2026-11-25", 3.0), str(uri), commit=commit("r2")) == 1
    assert write_arrow(rows("2026-11-25", 4.0, 5.0), str(uri), commit=commit("r3"),
                       mode="overwrite_partition") == 2
    got = sorted((r["run_date"], r["score"]) for r in read_arrow(str(uri)).to_pylist())
    assert got == [("2026-11-24", 1.0), ("2026-11-24", 2.0), ("2026-11-25", 4.0), ("2026-11-25", 5.0)]
    assert table_history(str(uri))[0]["run_id"] == "r3"
    stats = add_stats(uri)
    assert stats and all("user_key" not in s["minValues"] and "score" in s["minValues"] for s in stats)


def test_a_repeated_write_of_the_same_run_is_skipped(tmp_path):
    uri = str(tmp_path / "t")
    write_arrow(rows("2026-11-25", 1.0), uri, commit=commit("r1"), schema=SCHEMA)
    write_arrow(rows("2026-11-25", 1.0), uri, commit=commit("r1"))
    assert table_version(uri) == 0 and read_arrow(uri).num_rows == 1
    assert len(list(Path(uri, "run_date=2026-11-25").iterdir())) == 1  # the repeat's file deleted


def test_rows_of_another_date_are_refused_and_nothing_is_left(tmp_path):
    uri = str(tmp_path / "t")
    write_arrow(rows("2026-11-25", 1.0), uri, commit=commit("r1"), schema=SCHEMA)
    with pytest.raises(TableError, match="overwrite_partition"):
        write_arrow(rows("2026-11-26", 2.0), uri, commit=commit("r2"), mode="overwrite_partition")
    assert table_version(uri) == 0
    assert not Path(uri, "run_date=2026-11-26").exists() or not any(Path(uri, "run_date=2026-11-26").iterdir())


def test_a_missing_table_needs_a_schema(tmp_path):
    with pytest.raises(TableError, match="give its schema"):
        write_arrow(rows("2026-11-25", 1.0), str(tmp_path / "t"), commit=commit("r1"))


def test_statistics_leave_out_what_the_table_configuration_leaves_out():
    schema = pa.schema([("user_key", pa.string()), ("item", pa.string()), ("run_date", pa.string())])
    assert stats_excluded(schema, {"delta.dataSkippingStatsColumns": "item"}, ()) == ("user_key", "run_date")
    assert stats_excluded(schema, {"delta.dataSkippingNumIndexedCols": "0"}, ()) == tuple(schema.names)
    assert stats_excluded(schema, {}, ("user_key",)) == ("user_key",)
