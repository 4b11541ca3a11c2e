"""Every read and write of a fairshelf table (DESIGN.md, "Storage: Delta Lake").

Default engine "delta-rs", no JVM jars needed: ``write_table`` runs a Spark job through the
Python data source of ``jobs.delta_source`` (registered on the session here): executors
write Parquet files, the driver commits them as one Delta transaction with ``deltalake``,
with the run's metadata and an app transaction ``layer/name:run_date``; a failed job
commits nothing and deletes its files. Engine "delta-spark" does the same through
``format("delta")`` where the jars exist. Erasure (``erase_rows``, ``purge_history``)
removes rows by key without writing the key to the log, then deletes every older version,
data files and log entries alike.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Sequence
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.transaction import (AddAction, CommitProperties, PostCommitHookProperties,
                                   RemoveAction, create_table_with_add_actions)
from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from jobs.delta_source import (  # noqa: F401 (CommitInfo, TableError: part of this API)
    CommitInfo,
    DeltaRsDataSource,
    SOURCE_NAME,
    TableError,
    WriteRequest,
    app_id_of,
    arrow_schema,
    check_readable,
    normalize_uri,
    open_table,
    partition_text,
    reraise_remote_table_error,
    spark_schema,
    stats_configuration,
    stats_json,
    table_name,
    update_stats,
)

MODES = ("overwrite_partition", "overwrite", "append")
ENGINES = ("delta-rs", "delta-spark")
LAYERS = ("silver", "gold", "quarantine")



@dataclass(frozen=True)
class TableInfo:
    name: str  # "silver/events"
    uri: str
    version: int
    rows: int



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
    check_readable(table, uri)
    reader = (spark.read.format(SOURCE_NAME).schema(spark_schema(table))
              .option("version", str(table.version())))
    if run_dates is not None:
        reader = reader.option("run_dates", json.dumps(sorted(run_dates)))
    return reader.load(uri)


def partition_values(uri: str, column: str = "run_date") -> list[str]:
    """The distinct values of a partition column present in the table (empty if none)."""
    uri = normalize_uri(uri)
    if not table_exists(uri):
        return []
    return sorted({p[column] for p in DeltaTable(uri).partitions() if p.get(column) is not None})


def read_arrow(uri: str, *, version: int | None = None, filters=None) -> pa.Table:
    """The table as a pyarrow Table, without Spark (``filters`` in DNF, as deltalake takes)."""
    return open_table(normalize_uri(uri), version).to_pyarrow_table(filters=filters)


def table_exists(uri: str) -> bool:
    return DeltaTable.is_deltatable(normalize_uri(uri))


def table_version(uri: str) -> int | None:
    return open_table(normalize_uri(uri)).version() if table_exists(uri) else None


def table_history(uri: str) -> list[dict]:
    """Commits, newest first, each with the CommitInfo fields it was written with."""
    return open_table(normalize_uri(uri)).history()


def list_tables(lakehouse: str) -> list[TableInfo]:
    """The Delta tables directly under the lakehouse's silver/, gold/ and quarantine/."""
    root_uri = normalize_uri(lakehouse)
    fs, root = pafs.FileSystem.from_uri(root_uri)
    found = []
    for layer in LAYERS:
        selector = pafs.FileSelector(f"{root}/{layer}", allow_not_found=True)
        for entry in sorted(fs.get_file_info(selector), key=lambda e: e.base_name):
            uri = f"{root_uri}/{layer}/{entry.base_name}"
            if entry.type == pafs.FileType.Directory and table_exists(uri):
                table = DeltaTable(uri)
                rows = pc.sum(pa.table(table.get_add_actions()).column("num_records")).as_py()
                found.append(TableInfo(f"{layer}/{entry.base_name}", uri, table.version(),
                                       rows or 0))
    return found


def rows_in_commit(uri: str, version: int) -> int | None:
    """Rows the commit ``version`` added: the sum of its add actions' ``numRecords``, read
    from the commit's own log entry (lineage). None when that entry is gone (an erasure
    purges older log entries) or a file has no statistics."""
    uri = normalize_uri(uri)
    fs, root = pafs.FileSystem.from_uri(uri)
    try:
        with fs.open_input_stream(f"{root}/_delta_log/{version:020d}.json") as source:
            lines = source.read().decode().splitlines()
    except (FileNotFoundError, OSError):
        return None
    rows = 0
    for line in lines:
        add = json.loads(line).get("add") if line.strip() else None
        if add is None:
            continue
        stats = json.loads(add.get("stats") or "{}")
        if "numRecords" not in stats:
            return None
        rows += int(stats["numRecords"])
    return rows


def missing_files(uri: str, version: int) -> list[str]:
    """The data files of ``version`` no longer on storage (vacuumed); raises TableError
    when the version itself cannot be opened (its log entries were purged)."""
    uri = normalize_uri(uri)
    table = open_table(uri, version)
    fs, root = pafs.FileSystem.from_uri(uri)
    paths = [f"{root}/{unquote(p)}" for p in pa.table(table.get_add_actions()).column("path").to_pylist()]
    return [p for p, info in zip(paths, fs.get_file_info(paths)) if info.type == pafs.FileType.NotFound]


def restore_table(uri: str, version: int, *, commit: CommitInfo) -> int:
    """Make the content of ``version`` the table's current content in a new commit
    (delta-rs ``restore``, history kept); returns the new version. TableError when the
    version cannot be read any more (log purged or files vacuumed)."""
    uri = normalize_uri(uri)
    gone = missing_files(uri, version)
    if gone:
        raise TableError(f"version {version} of {table_name(uri)} cannot be restored: "
                         f"{len(gone)} of its data files were vacuumed")
    table = open_table(uri)
    table.restore(version, commit_properties=CommitProperties(custom_metadata=asdict(commit)))
    return table_version(uri)


# --- erasure: rows removed by key, then every older version purged -------------------------
# DESIGN.md, "Privacy rules: Erasure". Normal operation never deletes history: tables keep
# Delta's defaults (deleted files kept 7 days, log entries 30 days) so time travel and
# rollback work. An erasure overrides both for the tables it touches: see purge_history.

@dataclass(frozen=True)
class ErasedRows:
    """What ``erase_rows`` removed from one table."""

    version: int | None  # the commit that removed the rows; None when no row matched
    rows_by_key: dict[str, int]  # key -> rows removed (keys without rows left out)
    files_rewritten: int  # files replaced by a copy without those rows
    files_removed: int  # files that held only those rows (removed, no copy)

    @property
    def rows(self) -> int:
        return sum(self.rows_by_key.values())


@dataclass(frozen=True)
class PurgedHistory:
    """What ``purge_history`` deleted from one table."""

    version: int  # the table's only readable version afterwards (its checkpoint)
    data_files_deleted: int
    log_files_deleted: int


def table_columns(uri: str) -> list[str]:
    """The column names of the table's current schema, partition columns included."""
    return [f.name for f in open_table(normalize_uri(uri)).schema().fields]


def key_rows(uri: str, keys: Sequence[str], column: str = "user_key") -> dict[str, int]:
    """Rows per key of ``keys`` in ``column`` at the current version (only that column read)."""
    uri = normalize_uri(uri)
    table = open_table(uri)
    wanted = _key_array(keys)
    counts: dict[str, int] = {}
    for _, _, hits in _files_with_keys(table, uri, column, wanted):
        for key, n in hits.items():
            counts[key] = counts.get(key, 0) + n
    return counts


def erase_rows(uri: str, keys: Sequence[str], *, commit: CommitInfo, column: str = "user_key",
               stats_exclude: Sequence[str] = ("user_key",)) -> ErasedRows:
    """Remove every row whose ``column`` is one of ``keys`` from the table, in one commit.

    Each data file holding such rows is replaced by a copy without them, written here with
    pyarrow (statistics leave out ``stats_exclude``, as ``write_table`` does); a file holding
    nothing else is removed. The commit holds only those remove and add actions and
    ``commit``'s metadata: unlike ``DeltaTable.delete``, which records its predicate, it
    writes no key to the transaction log. Older versions still hold the rows until
    ``purge_history``. Nothing is committed when no row matches.
    """
    uri = normalize_uri(uri)
    table = open_table(uri)
    check_readable(table, uri)
    if column not in {f.name for f in table.schema().fields}:
        raise TableError(f"{table_name(uri)} has no column {column!r} to erase keys from")
    wanted = _key_array(keys)
    fs, root = pafs.FileSystem.from_uri(uri)
    partition_by = list(table.metadata().partition_columns)
    actions: list[AddAction | RemoveAction] = []
    written: list[str] = []
    counts: dict[str, int] = {}
    rewritten = removed = 0
    now_ms = int(time.time() * 1000)
    try:
        for entry, path, hits in _files_with_keys(table, uri, column, wanted):
            for key, n in hits.items():
                counts[key] = counts.get(key, 0) + n
            values = {c: partition_text(entry[f"partition.{c}"]) for c in partition_by}
            actions.append(RemoveAction(path, True, now_ms, entry["size_bytes"], values))
            data = pq.read_table(f"{root}/{path}", filesystem=fs)
            kept = data.filter(pc.invert(_is_key(data.column(column), wanted)))
            if kept.num_rows == 0:
                removed += 1
                continue
            directory = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            new_path = f"{directory}part-erasure-{uuid.uuid4().hex}.parquet"
            written.append(new_path)
            actions.append(_write_data_file(fs, root, new_path, kept, values, stats_exclude))
            rewritten += 1
        if not actions:
            return ErasedRows(None, {}, 0, 0)
        table.create_write_transaction(
            actions, "append", table.schema(), partition_by,
            commit_properties=CommitProperties(custom_metadata=asdict(commit)),
            post_commithook_properties=PostCommitHookProperties())
    except BaseException:
        for new_path in written:
            with suppress(Exception):
                fs.delete_file(f"{root}/{new_path}")
        raise
    return ErasedRows(table_version(uri), counts, rewritten, removed)


def purge_history(uri: str, *, commit: CommitInfo) -> PurgedHistory:
    """Make the current version the table's only one: what an erasure needs.

    1. Vacuum with retention 0 (``enforce_retention_duration=False``) and ``full=True``:
       every data file the current version does not reference is deleted, the files older
       versions used and orphans of failed jobs alike.
    2. Checkpoint the current version, then delete every log entry (commit, checkpoint)
       before it. The checkpoint holds the current files' add actions (their statistics
       never hold user keys), tombstones (paths), the schema, configuration and the app
       transactions (so reruns stay idempotent); no commit predicates.
    Opening an older version then fails (``TableError``) instead of reading erased rows.
    Needs exclusive access to the table: a concurrent write's uncommitted files would be
    deleted, and a reader of an older version loses it.
    """
    uri = normalize_uri(uri)
    table = open_table(uri)
    deleted = table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False,
                           full=True,
                           commit_properties=CommitProperties(custom_metadata=asdict(commit)),
                           post_commithook_properties=PostCommitHookProperties(
                               create_checkpoint=False))
    table = open_table(uri)
    table.create_checkpoint()
    version = table.version()
    fs, root = pafs.FileSystem.from_uri(uri)
    log_deleted = 0
    for entry in fs.get_file_info(pafs.FileSelector(f"{root}/_delta_log")):
        number = entry.base_name.split(".", 1)[0]
        if entry.type == pafs.FileType.File and number.isdigit() and int(number) < version:
            fs.delete_file(entry.path)
            log_deleted += 1
    return PurgedHistory(version, len(deleted), log_deleted)


def log_files_mentioning(uri: str, needles: Sequence[str]) -> list[str]:
    """The files under the table's ``_delta_log`` holding any of ``needles`` (checkpoints
    decoded, every other file read as bytes); empty when the log holds none of them."""
    uri = normalize_uri(uri)
    fs, root = pafs.FileSystem.from_uri(uri)
    encoded = [n.encode() for n in needles]
    found = []
    selector = pafs.FileSelector(f"{root}/_delta_log", recursive=True, allow_not_found=True)
    for entry in fs.get_file_info(selector):
        if entry.type != pafs.FileType.File:
            continue
        with fs.open_input_file(entry.path) as source:
            content = source.read()
        if entry.base_name.endswith(".parquet"):
            content = repr(pq.read_table(pa.BufferReader(content)).to_pylist()).encode()
        if any(n in content for n in encoded):
            found.append(entry.path[len(root) + 1:])
    return sorted(found)


def _key_array(keys: Sequence[str]) -> pa.Array:
    if isinstance(keys, str):
        raise TableError("keys must be a list of keys, not one string")
    return pa.array(sorted(set(keys)), pa.string())


def _is_key(column: pa.ChunkedArray, wanted: pa.Array) -> pa.ChunkedArray:
    return pc.fill_null(pc.is_in(column.cast(pa.string()), value_set=wanted), False)


def _files_with_keys(table: DeltaTable, uri: str, column: str, wanted: pa.Array):
    """(add action row, path on disk, rows per key) of each current file holding a key."""
    if len(wanted) == 0:
        return
    fs, root = pafs.FileSystem.from_uri(uri)
    for entry in pa.table(table.get_add_actions(flatten=True)).to_pylist():
        path = unquote(entry["path"])
        values = pq.read_table(f"{root}/{path}", columns=[column], filesystem=fs).column(column)
        hit = _is_key(values, wanted)
        if pc.any(hit).as_py():
            counts = pc.value_counts(values.filter(hit)).to_pylist()
            yield entry, path, {c["values"]: c["counts"] for c in counts}


def _write_data_file(fs, root: str, path: str, data: pa.Table, values: dict[str, str | None],
                     stats_exclude: Sequence[str]) -> AddAction:
    """Write ``data`` as the Parquet file ``path`` of the table; its add action."""
    full_path = f"{root}/{path}"
    pq.write_table(data, full_path, filesystem=fs)
    stats: dict[str, dict[str, Any]] = {}
    columns = [n for n in data.schema.names if n not in set(stats_exclude)]
    for batch in data.to_batches():
        update_stats(stats, batch, columns)
    info = fs.get_file_info(full_path)
    return AddAction(path, info.size, values, info.mtime_ns // 1_000_000, True,
                     stats_json(data.num_rows, stats))


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
                             "jobs/schemas.py")
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


