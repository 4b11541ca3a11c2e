"""jobs.lake.tables: Delta tables written by Spark executors and committed by delta-rs.

Each test builds a tiny table under tmp_path and checks one acceptance rule of the module
(numbers in the test names' docstrings refer to the rules in the module's brief).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql.types import StructType
from pyspark.testing import assertDataFrameEqual

from jobs.lake.delta import (
    TableInfo,
    erase_rows,
    key_rows,
    list_tables,
    log_files_mentioning,
    partition_values,
    purge_history,
    read_arrow,
    table_columns,
    table_exists,
    table_history,
    table_version,
)
from jobs.lake.tables import CommitInfo, TableError, read_table, write_table

DAY, NEXT_DAY = "2026-11-25", "2026-11-26"
EVENTS = "user_key string, content_id string, seconds long, run_date string"
USER_KEYS = ("uk-7f3a9c01", "uk-7f3a9c02", "uk-7f3a9c03")


def run(run_id: str = "run-1", run_date: str = DAY) -> CommitInfo:
    return CommitInfo(run_id, run_date, "test_stage", "code-abc123", "cfg-0123")


def event_rows(run_date: str = DAY, seconds: int = 60) -> list[tuple]:
    """Three users' rows of one date, with a null content id and a null duration."""
    return sorted([(USER_KEYS[0], "c1", seconds, run_date),
                   (USER_KEYS[1], None, 2 * seconds, run_date),
                   (USER_KEYS[2], "c3", None, run_date)], key=_by_date_and_user)


def events(spark, run_date: str = DAY, seconds: int = 60):
    return spark.createDataFrame(event_rows(run_date, seconds), EVENTS)


def _by_date_and_user(row: tuple) -> tuple:
    return row[3], row[0]


def rows(uri: str, version: int | None = None) -> list[tuple]:
    """The table's rows (read without Spark), ordered by date and user."""
    table = read_arrow(uri, version=version).select(["user_key", "content_id", "seconds",
                                                     "run_date"])
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=_by_date_and_user)


def parquet_files(uri: str) -> set[str]:
    return {str(p.relative_to(uri)) for p in Path(uri).rglob("*.parquet")
            if "_delta_log" not in p.parts}


def referenced_files(uri: str) -> set[str]:
    return {str(Path(p).relative_to(uri)) for p in DeltaTable(uri).file_uris()}


def log_bytes(uri: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(Path(uri, "_delta_log").rglob("*"))
                    if p.is_file())


@pytest.fixture
def uri(tmp_path) -> str:
    return str(tmp_path / "lakehouse" / "silver" / "events")


# --- 1. executors write Parquet, the driver commits one transaction ------------------------

@pytest.mark.spark
def test_executor_files_are_committed_as_one_delta_version(spark, uri):
    version = write_table(events(spark).repartition(2), uri, commit=run())

    assert version == 0 and len(table_history(uri)) == 1
    files = parquet_files(uri)
    assert len(files) == 2, "one file per Spark task"
    assert all(f.startswith(f"run_date={DAY}/part-") for f in files)
    assert files == referenced_files(uri)
    for f in files:
        assert "run_date" not in pq.read_schema(Path(uri, f)).names
    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pydict()
    assert sorted(actions["size_bytes"]) == sorted(Path(uri, f).stat().st_size for f in files)
    assert sum(actions["num_records"]) == 3
    assert rows(uri) == event_rows()


# --- 2. modes ------------------------------------------------------------------------------

@pytest.mark.spark
def test_overwrite_partition_replaces_only_its_date(spark, uri):
    write_table(events(spark, DAY), uri, commit=run("run-1", DAY))
    write_table(events(spark, NEXT_DAY), uri, commit=run("run-2", NEXT_DAY))

    write_table(events(spark, DAY, seconds=1), uri, commit=run("run-3", DAY))

    assert rows(uri) == event_rows(DAY, seconds=1) + event_rows(NEXT_DAY)
    assert table_history(uri)[0]["operationParameters"]["mode"] == "Overwrite"


@pytest.mark.spark
def test_overwrite_partition_can_replace_several_dates_in_one_commit(spark, uri):
    third = "2026-11-27"
    for i, day in enumerate((DAY, NEXT_DAY, third)):
        write_table(events(spark, day), uri, commit=run(f"run-{i}", day))

    both = events(spark, DAY, seconds=5).unionByName(events(spark, NEXT_DAY, seconds=5))
    version = write_table(both, uri, commit=run("catch-up", NEXT_DAY), partitions=[DAY, NEXT_DAY])

    assert version == 3  # one commit for both dates
    assert rows(uri) == event_rows(DAY, 5) + event_rows(NEXT_DAY, 5) + event_rows(third)


@pytest.mark.spark
def test_reads_of_some_run_dates_list_only_their_files(spark, uri):
    write_table(events(spark, DAY), uri, commit=run("run-1", DAY))
    write_table(events(spark, NEXT_DAY, seconds=7), uri, commit=run("run-2", NEXT_DAY))

    df = read_table(spark, uri, run_dates=[NEXT_DAY])

    assert {r["run_date"] for r in df.collect()} == {NEXT_DAY}
    assert df.count() == 3
    assert sorted(partition_values(uri)) == [DAY, NEXT_DAY]
    # pruned at the file listing: no read task gets a file of another date
    assert df.rdd.getNumPartitions() <= len([f for f in parquet_files(uri) if NEXT_DAY in f])


@pytest.mark.spark
def test_overwrite_partition_rejects_rows_of_another_date(spark, uri):
    write_table(events(spark), uri, commit=run("run-1"))
    before = parquet_files(uri)
    mixed = events(spark, DAY).unionByName(events(spark, NEXT_DAY))

    with pytest.raises(TableError, match=rf"run_date \['{DAY}'\] got rows with run_date.*{NEXT_DAY}"):
        write_table(mixed, uri, commit=run("run-2", DAY))

    assert table_version(uri) == 0
    assert parquet_files(uri) == before


@pytest.mark.spark
def test_overwrite_replaces_the_whole_table_and_its_schema(spark, uri):
    write_table(events(spark, DAY), uri, commit=run("run-1", DAY))
    write_table(events(spark, NEXT_DAY), uri, commit=run("run-2", NEXT_DAY))
    replacement = spark.createDataFrame([("c9", 1.5, DAY)], "content_id string, score double, "
                                                            "run_date string")

    version = write_table(replacement, uri, commit=run("run-3"), mode="overwrite")

    assert version == 2
    assert read_arrow(uri).to_pylist() == [{"content_id": "c9", "score": 1.5, "run_date": DAY}]


@pytest.mark.spark
def test_append_adds_rows(spark, uri):
    write_table(events(spark), uri, commit=run("run-1"), mode="append")
    write_table(events(spark, NEXT_DAY), uri, commit=run("run-2", NEXT_DAY), mode="append")

    assert rows(uri) == event_rows(DAY) + event_rows(NEXT_DAY) and table_version(uri) == 1


# --- 3. commit metadata and the app transaction --------------------------------------------

@pytest.mark.spark
def test_every_commit_carries_run_metadata_and_an_app_transaction(spark, uri):
    commit = run("run-42")
    write_table(events(spark), uri, commit=commit)

    latest = table_history(uri)[0]
    assert {k: latest[k] for k in ("run_id", "run_date", "stage", "code_version",
                                   "config_hash")} == {
        "run_id": "run-42", "run_date": DAY, "stage": "test_stage",
        "code_version": "code-abc123", "config_hash": "cfg-0123"}
    assert DeltaTable(uri).transaction_version(f"silver/events:{DAY}") == commit.txn_version


def test_txn_version_is_a_deterministic_long_per_run_id():
    assert run("run-1").txn_version == run("run-1", NEXT_DAY).txn_version
    assert run("run-1").txn_version != run("run-2").txn_version
    assert 0 <= run("run-1").txn_version < 2**63


@pytest.mark.spark
def test_a_retried_write_of_the_same_run_commits_once(spark, uri):
    write_table(events(spark), uri, commit=run("run-1"), mode="append")
    files = parquet_files(uri)

    version = write_table(events(spark), uri, commit=run("run-1"), mode="append")

    assert version == 0 and rows(uri) == event_rows()
    assert parquet_files(uri) == files, "the retry's files are deleted"

    assert write_table(events(spark), uri, commit=run("run-2"), mode="append") == 1
    assert rows(uri) == sorted(event_rows() * 2, key=_by_date_and_user)


# --- 4. the allow-list ---------------------------------------------------------------------

@pytest.mark.spark
def test_a_column_outside_the_allow_list_is_rejected_before_writing(spark, uri):
    leaky = events(spark).withColumn("email", F.lit("ann@example.org"))

    with pytest.raises(TableError, match=r"\['email'\] are not in the table's allow-list"):
        write_table(leaky, uri, commit=run(),
                    allowed_columns=["user_key", "content_id", "seconds", "run_date"])

    assert not Path(uri).exists()


# --- 5. statistics keep user keys out of the log --------------------------------------------

@pytest.mark.spark
def test_user_keys_never_reach_the_transaction_log(spark, uri):
    write_table(events(spark).coalesce(1), uri, commit=run())
    assert not any(key.encode() in log_bytes(uri) for key in USER_KEYS)

    metrics = DeltaTable(uri).delete(f"user_key = '{USER_KEYS[0]}'")

    assert metrics["num_added_files"] == 1, "delta-rs rewrote the file of the other users"
    assert [r[0] for r in rows(uri)] == list(USER_KEYS[1:])
    # The DELETE commit records its predicate (so the erased key); no other key is logged.
    assert not any(key.encode() in log_bytes(uri) for key in USER_KEYS[1:])


@pytest.mark.spark
def test_file_statistics_cover_every_other_column(spark, uri):
    write_table(events(spark).coalesce(1), uri, commit=run())

    table = DeltaTable(uri)
    assert table.metadata().configuration == {
        "delta.dataSkippingStatsColumns": "content_id,seconds"}
    [stats] = [json.loads(line)["add"]["stats"] for line in
               Path(uri, "_delta_log", "00000000000000000000.json").read_text().splitlines()
               if '"add"' in line]
    assert json.loads(stats) == {"numRecords": 3,
                                 "minValues": {"content_id": "c1", "seconds": 60},
                                 "maxValues": {"content_id": "c3", "seconds": 120},
                                 "nullCount": {"content_id": 1, "seconds": 1}}


# --- 6. a failed job leaves the table as it was ---------------------------------------------

@pytest.mark.spark
def test_a_job_failing_on_an_executor_leaves_the_table_unchanged(spark, uri):
    write_table(events(spark), uri, commit=run("run-1"))
    before = rows(uri)
    # One task, batches of two rows: files are open when the third row's evaluation fails.
    many = spark.range(6).select(F.concat(F.lit("uk-"), F.col("id")).alias("user_key"),
                                 F.lit("c1").alias("content_id"),
                                 F.when(F.col("id") == 5, F.raise_error(F.lit("bad row")))
                                 .otherwise(F.col("id")).alias("seconds"),
                                 F.lit(DAY).alias("run_date")).coalesce(1)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "2")
    try:
        with pytest.raises(Exception, match="bad row"):
            write_table(many, uri, commit=run("run-2"))
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")

    assert table_version(uri) == 0 and rows(uri) == before
    assert parquet_files(uri) == referenced_files(uri), "no orphan Parquet files"


# --- 7. schema ------------------------------------------------------------------------------

@pytest.mark.spark
@pytest.mark.parametrize("change, message", [
    (lambda df: df.withColumn("device", F.lit("tv")), "new column device"),
    (lambda df: df.drop("content_id"), "missing column content_id"),
    (lambda df: df.withColumn("seconds", F.col("seconds").cast("double")),
     "seconds is .*long.* in the table but .*double.* in the DataFrame"),
])
def test_a_write_with_another_schema_is_a_table_error(spark, uri, change, message):
    write_table(events(spark), uri, commit=run("run-1"))

    with pytest.raises(TableError, match=message):
        write_table(change(events(spark)), uri, commit=run("run-2"), mode="append")

    assert table_version(uri) == 0


# --- 8. reading -----------------------------------------------------------------------------

@pytest.mark.spark
def test_read_table_returns_partition_columns_with_their_types(spark, uri):
    df = spark.createDataFrame([("a", 1, DAY), ("b", 2, DAY), ("c", None, DAY)],
                               "content_id string, bucket int, run_date string")
    write_table(df, uri, commit=run(), partition_by=("run_date", "bucket"))

    result = read_table(spark, uri)

    assert result.schema["bucket"].dataType.simpleString() == "int"
    assertDataFrameEqual(result, df)
    # small files are packed into read tasks, one per core at least when there are enough
    assert result.rdd.getNumPartitions() == min(3, os.cpu_count()) and len(parquet_files(uri)) == 3


@pytest.mark.spark
def test_time_travel_reads_a_partition_as_it_was(spark, uri):
    write_table(events(spark, DAY), uri, commit=run("run-1"))
    write_table(events(spark, DAY, seconds=5), uri, commit=run("run-2"))

    assertDataFrameEqual(read_table(spark, uri, version=0), events(spark, DAY))
    assertDataFrameEqual(read_table(spark, uri), events(spark, DAY, seconds=5))


@pytest.mark.spark
def test_an_empty_table_reads_as_an_empty_dataframe_with_its_schema(spark, uri):
    assert write_table(spark.createDataFrame([], EVENTS), uri, commit=run()) == 0

    result = read_table(spark, uri)

    assert result.count() == 0
    assert [f.name for f in result.schema] == ["user_key", "content_id", "seconds", "run_date"]


@pytest.mark.spark
def test_a_missing_table_is_a_table_error_naming_its_path(spark, uri):
    for read in (lambda: read_table(spark, uri), lambda: read_arrow(uri),
                 lambda: table_history(uri)):
        with pytest.raises(TableError, match=f"no Delta table at {uri}"):
            read()
    assert not table_exists(uri) and table_version(uri) is None


# --- 9. idempotent reruns -------------------------------------------------------------------

@pytest.mark.spark
def test_rerunning_a_date_with_the_same_rows_keeps_them_once(spark, uri):
    write_table(events(spark), uri, commit=run("run-1"))
    first = rows(uri)

    version = write_table(events(spark), uri, commit=run("run-2"))

    assert version == 1 and rows(uri) == first


# --- 11. URIs, and the helpers ------------------------------------------------------------

@pytest.mark.spark
def test_file_uris_and_escaped_partition_values_work(spark, uri):
    file_uri = Path(uri).as_uri()
    df = spark.createDataFrame([("c1", "smart tv:4k/hd", DAY), ("c2", "100%", DAY)],
                               "content_id string, device string, run_date string")

    write_table(df, file_uri, commit=run(), partition_by=("run_date", "device"))

    assert table_exists(uri) and read_arrow(file_uri).num_rows == 2
    assert {f.split("/")[1] for f in parquet_files(uri)} == {"device=smart%20tv%3A4k%2Fhd",
                                                           "device=100%25"}
    assertDataFrameEqual(read_table(spark, file_uri), df)


@pytest.mark.spark
def test_read_arrow_filters_without_spark(spark, uri):
    write_table(events(spark, DAY), uri, commit=run("run-1", DAY))
    write_table(events(spark, NEXT_DAY), uri, commit=run("run-2", NEXT_DAY))

    table = read_arrow(uri, filters=[("run_date", "=", NEXT_DAY)])

    assert table.num_rows == 3 and set(table.column("run_date").to_pylist()) == {NEXT_DAY}


@pytest.mark.spark
def test_list_tables_walks_the_layers(spark, tmp_path):
    lakehouse = tmp_path / "lakehouse"
    write_table(events(spark), str(lakehouse / "silver" / "events"), commit=run())
    write_table(events(spark).limit(1), str(lakehouse / "gold" / "recommendations"),
                commit=run())
    (lakehouse / "gold" / "not_a_table").mkdir()

    assert list_tables(str(lakehouse)) == [
        TableInfo("silver/events", str(lakehouse / "silver" / "events"), 0, 3),
        TableInfo("gold/recommendations", str(lakehouse / "gold" / "recommendations"), 0, 1),
    ]


@pytest.mark.spark
@pytest.mark.parametrize("options, message", [
    ({"mode": "upsert"}, "mode='upsert' is not supported"),
    ({"engine": "iceberg"}, "engine='iceberg' is not supported"),
    ({"partition_by": ("region",)}, r"partition column\(s\) \['region'\] not in the DataFrame"),
    ({"partition_by": (), "mode": "overwrite_partition"}, "include run_date in partition_by"),
])
def test_invalid_write_requests_are_table_errors(spark, uri, options, message):
    with pytest.raises(TableError, match=message):
        write_table(events(spark), uri, commit=run(), **options)
    assert not Path(uri).exists()


# --- 10. engine="delta-spark" (no Delta jars here: the writer's calls are recorded) ---------

class RecordingWriter:
    """Stands in for a DataFrameWriter and records what delta-spark would be asked to do."""

    def __init__(self):
        self.options: dict[str, str] = {}
        self.calls: dict[str, object] = {}

    def format(self, name):
        self.calls["format"] = name
        return self

    def partitionBy(self, *columns):
        self.calls["partitionBy"] = columns
        return self

    def mode(self, mode):
        self.calls["mode"] = mode
        return self

    def option(self, key, value):
        self.options[key] = value
        return self

    def save(self, path):
        self.calls["save"] = path


def test_delta_spark_engine_passes_metadata_txn_and_replace_where(spark, uri):
    writer = RecordingWriter()
    df = SimpleNamespace(schema=StructType.fromDDL(EVENTS), write=writer,
                         columns=["user_key", "content_id", "seconds", "run_date"])

    version = write_table(df, uri, commit=run("run-7"), engine="delta-spark")

    assert writer.calls == {"format": "delta", "partitionBy": ("run_date",),
                            "mode": "overwrite", "save": uri}
    assert json.loads(writer.options.pop("userMetadata"))["run_id"] == "run-7"
    assert writer.options == {"txnAppId": f"silver/events:{DAY}:run-7",
                              "txnVersion": str(run("run-7").txn_version),
                              "replaceWhere": f"run_date IN ('{DAY}')"}
    # The table was created first by delta-rs, so user keys stay out of delta-spark's stats.
    assert version == 0
    assert DeltaTable(uri).metadata().configuration == {
        "delta.dataSkippingStatsColumns": "content_id,seconds"}


# --- 12. erasure: rows removed by key without logging it, then older versions purged --------

def erasure() -> CommitInfo:
    return CommitInfo("erase-1", NEXT_DAY, "erasure", "code-abc123", "cfg-0123")


@pytest.mark.spark
def test_erase_rows_rewrites_files_in_one_commit_that_names_no_key(spark, uri):
    write_table(events(spark, DAY).coalesce(1), uri, commit=run("run-1", DAY))
    write_table(events(spark, NEXT_DAY).coalesce(1), uri, commit=run("run-2", NEXT_DAY))
    before = parquet_files(uri)

    erased = erase_rows(uri, [USER_KEYS[0], "uk-not-there"], commit=erasure())

    assert erased.version == 2 and table_version(uri) == 2, "one commit"
    assert erased.rows_by_key == {USER_KEYS[0]: 2} and erased.rows == 2
    assert (erased.files_rewritten, erased.files_removed) == (2, 0)
    assert rows(uri) == [r for r in event_rows(DAY) + event_rows(NEXT_DAY)
                         if r[0] != USER_KEYS[0]]
    latest = table_history(uri)[0]
    assert latest["stage"] == "erasure" and latest["run_id"] == "erase-1"
    assert latest["operationParameters"] == {"mode": "Append", "partitionBy": '["run_date"]'}
    assert not any(key.encode() in log_bytes(uri) for key in USER_KEYS)
    new_files = parquet_files(uri) - before
    assert len(new_files) == 2 and all("part-erasure-" in f for f in new_files)
    adds = [json.loads(line)["add"] for line in
            Path(uri, "_delta_log", "00000000000000000002.json").read_text().splitlines()
            if '"add"' in line]
    assert {json.dumps(sorted(json.loads(a["stats"])["minValues"])) for a in adds} == {
        '["content_id", "seconds"]'}, "statistics leave user_key out"
    assert key_rows(uri, USER_KEYS) == {USER_KEYS[1]: 2, USER_KEYS[2]: 2}


@pytest.mark.spark
def test_erase_rows_removes_files_holding_only_erased_rows_and_escaped_paths(spark, uri):
    df = spark.createDataFrame([("uk-1", "smart tv:4k", DAY), ("uk-2", "smart tv:4k", DAY),
                                ("uk-1", "100%", DAY)],
                               "user_key string, device string, run_date string").coalesce(1)
    write_table(df, uri, commit=run(), partition_by=("run_date", "device"))

    erased = erase_rows(uri, ["uk-1"], commit=erasure())

    assert (erased.files_rewritten, erased.files_removed) == (1, 1)
    assert read_table(spark, uri).collect() == [("uk-2", "smart tv:4k", DAY)]
    assert table_columns(uri) == ["user_key", "device", "run_date"]


@pytest.mark.spark
def test_erase_rows_without_a_matching_row_commits_nothing(spark, uri):
    write_table(events(spark), uri, commit=run())

    erased = erase_rows(uri, ["uk-nobody"], commit=erasure())

    assert erased.version is None and erased.rows == 0 and table_version(uri) == 0
    with pytest.raises(TableError, match="has no column 'account'"):
        erase_rows(uri, ["uk-nobody"], commit=erasure(), column="account")


@pytest.mark.spark
def test_purge_history_leaves_one_version_whose_files_are_all_that_remain(spark, uri):
    commit = run("run-1", DAY)
    write_table(events(spark, DAY), uri, commit=commit)
    write_table(events(spark, DAY, seconds=5), uri, commit=run("run-2", DAY))
    # a key logged by a plain delete (its predicate) is purged with the rest of the log
    DeltaTable(uri).delete(f"user_key = '{USER_KEYS[0]}'")
    assert log_files_mentioning(uri, [USER_KEYS[0]]) == ["_delta_log/00000000000000000002.json"]
    Path(uri, f"run_date={DAY}", "part-orphan.parquet").write_bytes(b"left by a killed job")
    stale = parquet_files(uri) - referenced_files(uri)

    purged = purge_history(uri, commit=erasure())

    assert parquet_files(uri) == referenced_files(uri), "old versions' files and orphans gone"
    assert f"run_date={DAY}/part-orphan.parquet" in stale
    assert purged.data_files_deleted == len(stale) and purged.version == table_version(uri)
    assert sorted(p.name for p in Path(uri, "_delta_log").iterdir()) == [
        f"{purged.version:020d}.checkpoint.parquet", f"{purged.version:020d}.json",
        "_last_checkpoint"]
    assert purged.log_files_deleted == purged.version
    assert log_files_mentioning(uri, USER_KEYS) == []
    assert [r[0] for r in rows(uri)] == list(USER_KEYS[1:])
    with pytest.raises(TableError, match=f"cannot open version 0 of {uri}"):
        read_arrow(uri, version=0)
    assert table_history(uri)[0]["stage"] == "erasure"
    # the app transaction survives: a retry of run-2 is still skipped, a new run writes
    assert DeltaTable(uri).transaction_version(f"silver/events:{DAY}") == run("run-2").txn_version
    assert write_table(events(spark, DAY), uri, commit=run("run-2", DAY)) == purged.version
    assert write_table(events(spark, DAY), uri, commit=run("run-3", DAY)) == purged.version + 1
    assert rows(uri) == event_rows(DAY)
