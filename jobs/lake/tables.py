"""Every read and write of a fairshelf table (DESIGN.md, "Storage: Delta Lake").

Default engine "delta-rs", no JVM jars needed: ``write_table`` runs a Spark job through the
Python data source of ``jobs.lake.delta_source`` (registered on the session here): executors
write Parquet files, the driver commits them as one Delta transaction with ``deltalake``,
with the run's metadata and an app transaction ``layer/name:run_date``; a failed job
commits nothing and deletes its files. Engine "delta-spark" does the same through
``format("delta")`` where the jars exist. Erasure (``erase_rows``, ``purge_history``)
removes rows by key without writing the key to the log, then deletes every older version,
data files and log entries alike.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from datetime import date
from typing import Sequence

from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.transaction import (
    create_table_with_add_actions,
)
from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

# The Spark-free half of this API (jobs.lake.delta; the downstream reader uses it alone).
from jobs.core.config import Config
from jobs.core.schemas import USER_KEY_COLUMNS, allowed_columns
from jobs.lake.delta import (  # noqa: F401
    LAYERS,
    CommitInfo,
    ErasedRows,
    PurgedHistory,
    TableError,
    TableInfo,
    app_id_of,
    check_readable,
    erase_rows,
    key_files,
    key_rows,
    list_tables,
    log_files_mentioning,
    missing_files,
    normalize_uri,
    open_table,
    partition_text,
    partition_values,
    purge_history,
    read_arrow,
    restore_table,
    rows_in_commit,
    snapshot_files,
    stats_configuration,
    stats_json,
    table_columns,
    table_exists,
    table_history,
    table_name,
    table_version,
    update_stats,
)
from jobs.lake.delta_source import (
    SOURCE_NAME,
    DeltaRsDataSource,
    WriteRequest,
    arrow_schema,
    reraise_remote_table_error,
    spark_schema,
)

MODES = ("overwrite_partition", "overwrite", "append")
ENGINES = ("delta-rs", "delta-spark")


# --- public API ---------------------------------------------------------------------------

def register_data_source(spark) -> None:
    """Register the delta-rs backed Python data source (``format("fairshelf_delta")``)."""
    spark.dataSource.register(DeltaRsDataSource)


def write_table(df: DataFrame, uri: str, *, commit: CommitInfo,
                mode: str = "overwrite_partition", partition_by: Sequence[str] = ("run_date",),
                allowed_columns: Sequence[str] | None = None,
                stats_exclude: Sequence[str] = ("user_key",), engine: str = "delta-rs",
                partitions: Sequence[str] | None = None) -> int:
    """Write ``df`` to the Delta table at ``uri`` in one commit; return the table version.

    ``overwrite_partition`` replaces the partitions whose ``run_date`` is in ``partitions``
    (default: ``commit.run_date`` alone; every row must have one of them), ``overwrite``
    the whole table (schema included), ``append`` adds rows. A repeat of the same
    ``commit.run_id`` for the same table and date is skipped. Columns in ``stats_exclude``
    never appear in file statistics.
    """
    uri, partition_by = normalize_uri(uri), tuple(partition_by)
    partitions = tuple(partitions or (commit.run_date,))
    _check_write(df, uri, commit, mode, partition_by, allowed_columns, engine, partitions)
    if engine == "delta-spark":
        _write_with_delta_spark(df, uri, commit, mode, partition_by, tuple(stats_exclude),
                                partitions)
    else:
        request = WriteRequest(uri, mode, partition_by, tuple(stats_exclude), commit,
                                uuid.uuid4().hex, partitions)
        writer = (df.write.format(SOURCE_NAME).mode("append" if mode == "append" else "overwrite")
                  .option("request", request.to_json()))
        try:
            writer.save(uri)
        except Exception as exc:
            reraise_remote_table_error(exc)
            raise
    return table_version(uri)


def write_named_table(df: DataFrame, config: Config, table: str, *, commit: CommitInfo,
                      mode: str = "overwrite_partition", partitions: Sequence[str] | None = None) -> int:
    """``write_table`` to the lakehouse table ``table`` ("layer/name") of ``config``, under
    the table's column allow-list, user keys kept out of file statistics."""
    layer, name = table.split("/")
    return write_table(df, config.table(layer, name), commit=commit, mode=mode, partitions=partitions,
                       allowed_columns=allowed_columns(table), stats_exclude=USER_KEY_COLUMNS,
                       engine=config.spark.table_engine)


def user_key_tables(lakehouse: str, exclude: Sequence[str] = ()) -> list[TableInfo]:
    """The lakehouse's tables with a user key column (``USER_KEY_COLUMNS``), but ``exclude``."""
    return [info for info in list_tables(lakehouse)
            if info.name not in exclude and set(USER_KEY_COLUMNS) & set(table_columns(info.uri))]


def read_table(spark, uri: str, *, version: int | None = None, engine: str = "delta-rs",
               run_dates: Sequence[str] | None = None) -> DataFrame:
    """The table (at ``version``, or the latest) as a DataFrame, partition columns included.

    ``run_dates`` restricts the read to those ``run_date`` partitions; only their files
    are listed and read.
    """
    uri = normalize_uri(uri)
    if engine == "delta-spark":
        reader = spark.read.format("delta")
        df = (reader if version is None else reader.option("versionAsOf", version)).load(uri)
        return df if run_dates is None else df.where(df["run_date"].isin(list(run_dates)))
    table = open_table(uri, version)
    schema = spark_schema(table)
    files = snapshot_files(table, uri, run_dates)
    if not files:
        return spark.createDataFrame([], schema)
    # Spark's own Parquet reader (JVM, vectorized, on the executors) over the snapshot's
    # files; partition columns come from the files' paths under the table root.
    return spark.read.schema(schema).option("basePath", uri).parquet(*files).select(*schema.fieldNames())


# --- erasure: rows removed by key, then every older version purged -------------------------
# DESIGN.md, "Privacy rules: Erasure". Normal operation never deletes history: tables keep
# Delta's defaults (deleted files kept 7 days, log entries 30 days) so time travel and
# rollback work. An erasure overrides both for the tables it touches: see purge_history.


# --- checks made on the driver before any file is written ---------------------------------

def _check_write(df, uri, commit, mode, partition_by, allowed_columns, engine,
                 partitions) -> None:
    _check_choice("mode", mode, MODES)
    _check_choice("engine", engine, ENGINES)
    for day in (commit.run_date, *partitions):
        try:
            date.fromisoformat(day)
        except ValueError:
            raise TableError(f"run_date {day!r} is not a YYYY-MM-DD date") from None
    if allowed_columns is not None:
        extra = [c for c in df.columns if c not in set(allowed_columns)]
        if extra:
            raise TableError(f"{table_name(uri)}: column(s) {extra} are not in the table's "
                             "allow-list; drop them with a select() or declare them in "
                             "jobs/core/schemas.py")
    missing = [c for c in partition_by if c not in df.columns]
    if missing:
        raise TableError(f"{table_name(uri)}: partition column(s) {missing} not in the "
                         f"DataFrame (columns: {df.columns})")
    if mode == "overwrite_partition" and "run_date" not in partition_by:
        raise TableError("mode='overwrite_partition' replaces a run_date partition: include "
                         "run_date in partition_by, or use mode='overwrite'")
    if mode != "overwrite" and table_exists(uri):
        _check_same_layout(DeltaTable(uri), uri, df.schema, partition_by)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TableError(f"{name}={value!r} is not supported; use one of {list(allowed)}")


def _check_same_layout(table: DeltaTable, uri: str, schema: StructType,
                       partition_by: tuple[str, ...]) -> None:
    """TableError unless ``schema`` has the table's column names, types and partitioning."""
    have = {f.name: f.type for f in table.schema().fields}
    new = {f.name: f.type for f in DeltaSchema.from_arrow(arrow_schema(schema)).fields}
    problems = [f"missing column {n}" for n in have if n not in new]
    problems += [f"new column {n}" for n in new if n not in have]
    problems += [f"{n} is {have[n]} in the table but {new[n]} in the DataFrame"
                 for n in new if n in have and new[n] != have[n]]
    if list(table.metadata().partition_columns) != list(partition_by):
        problems.append(f"table partitioned by {table.metadata().partition_columns}, "
                        f"write partitioned by {list(partition_by)}")
    if problems:
        raise TableError(f"{table_name(uri)}: the DataFrame does not match the table: "
                         + "; ".join(problems) + ". Fix the stage's output schema, or "
                         "replace the whole table with mode='overwrite'")


def _write_with_delta_spark(df, uri, commit, mode, partition_by, stats_exclude,
                            partitions) -> None:
    """Write with delta-spark's ``format("delta")``, for clusters that provide the jars.

    UNTESTED here (no Delta jars in this environment). A missing table is first created
    empty with delta-rs so ``delta.dataSkippingStatsColumns`` keeps user keys out of the log.
    delta-spark skips a write when the recorded txnVersion of its txnAppId is >= the new one;
    ``txn_version`` is a hash, not increasing, so the app id here includes the run id: the
    same run is skipped, any other run writes. Metadata goes in ``userMetadata`` (JSON).
    """
    if not table_exists(uri):
        arrow = arrow_schema(df.schema)
        create_table_with_add_actions(
            uri, DeltaSchema.from_arrow(arrow), [], partition_by=list(partition_by),
            configuration=stats_configuration(arrow, partition_by, stats_exclude))
    writer = (df.write.format("delta").partitionBy(*partition_by)
              .option("userMetadata", json.dumps(asdict(commit), sort_keys=True))
              .option("txnAppId", f"{app_id_of(uri, commit)}:{commit.run_id}")
              .option("txnVersion", str(commit.txn_version)))
    if mode == "overwrite_partition":
        dates = ", ".join(f"'{d}'" for d in partitions)  # validated as ISO dates
        writer = writer.mode("overwrite").option("replaceWhere", f"run_date IN ({dates})")
    elif mode == "overwrite":
        writer = writer.mode("overwrite").option("overwriteSchema", "true")
    else:
        writer = writer.mode("append")
    writer.save(uri)


