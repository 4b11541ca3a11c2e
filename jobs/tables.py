"""Every read and write of a fairshelf table (DESIGN.md, "Storage: Delta Lake").

Default engine "delta-rs", no JVM jars needed: ``write_table`` runs a Spark job through the
Python data source registered here. Executors write Parquet files straight into the table
directory; the driver commits them as one Delta transaction with ``deltalake``, carrying the
run's metadata and an app transaction ``layer/name:run_date``. A failed job commits nothing
and deletes its files. Reads list the files of a Delta snapshot and read one file per Spark
task. Engine "delta-spark" does the same through ``format("delta")`` where the jars exist.
Erasure (``erase_rows``, ``purge_history``) removes rows by key without writing the key to
the log, then deletes every older version, data files and log entries alike.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import uuid
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import date
from functools import reduce
from typing import Any, Iterator, Sequence
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.transaction import (AddAction, CommitProperties, PostCommitHookProperties,
                                   RemoveAction, Transaction, create_table_with_add_actions)
from pyspark.sql import DataFrame
from pyspark.sql.datasource import (DataSource, DataSourceArrowWriter, DataSourceReader,
                                    InputPartition, WriterCommitMessage)
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

SOURCE_NAME = "fairshelf_delta"
MODES = ("overwrite_partition", "overwrite", "append")
ENGINES = ("delta-rs", "delta-spark")
LAYERS = ("silver", "gold", "quarantine")
READ_TASK_BYTES = 64 * 1024 * 1024
STRING_STATS_CHARS = 32  # as Delta Lake: longer strings get a prefix as min and no max
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


class TableError(Exception):
    """A table cannot be read or written as asked; the message says why and what to do."""


@dataclass(frozen=True)
class CommitInfo:
    """Lineage stamped on every commit (as custom commit metadata)."""

    run_id: str
    run_date: str  # "YYYY-MM-DD"
    stage: str
    code_version: str
    config_hash: str

    @property
    def txn_version(self) -> int:
        """A deterministic (non-monotonic) version for the Delta app transaction of this run."""
        return int(hashlib.sha256(self.run_id.encode()).hexdigest()[:15], 16)


@dataclass(frozen=True)
class TableInfo:
    name: str  # "silver/events"
    uri: str
    version: int
    rows: int


@dataclass(frozen=True)
class _WriteRequest:
    """Everything the executors and the committing driver need, passed as one option."""

    uri: str
    mode: str
    partition_by: Sequence[str]
    stats_exclude: Sequence[str]
    commit: CommitInfo
    job_id: str  # in every file name of this write, so a failed job's files can be found
    partitions: Sequence[str] = ()  # run_date values an overwrite_partition replaces

    @property
    def app_id(self) -> str:
        return _app_id(self.uri, self.commit)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "_WriteRequest":
        data = json.loads(text)
        return cls(**{**data, "commit": CommitInfo(**data["commit"])})


@dataclass
class FilesWritten(WriterCommitMessage):
    """What one executor task wrote: a list of add-action dicts."""

    files: list[dict[str, Any]]


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
    uri, partition_by = _normalize_uri(uri), tuple(partition_by)
    partitions = tuple(partitions or (commit.run_date,))
    _check_write(df, uri, commit, mode, partition_by, allowed_columns, engine, partitions)
    if engine == "delta-spark":
        _write_with_delta_spark(df, uri, commit, mode, partition_by, tuple(stats_exclude),
                                partitions)
    else:
        request = _WriteRequest(uri, mode, partition_by, tuple(stats_exclude), commit,
                                uuid.uuid4().hex, partitions)
        writer = (df.write.format(SOURCE_NAME).mode("append" if mode == "append" else "overwrite")
                  .option("request", request.to_json()))
        try:
            writer.save(uri)
        except Exception as exc:
            _reraise_remote_table_error(exc)
            raise
    return table_version(uri)


def read_table(spark, uri: str, *, version: int | None = None, engine: str = "delta-rs",
               run_dates: Sequence[str] | None = None) -> DataFrame:
    """The table (at ``version``, or the latest) as a DataFrame, partition columns included.

    ``run_dates`` restricts the read to those ``run_date`` partitions; only their files
    are listed and read.
    """
    uri = _normalize_uri(uri)
    if engine == "delta-spark":
        reader = spark.read.format("delta")
        df = (reader if version is None else reader.option("versionAsOf", version)).load(uri)
        return df if run_dates is None else df.where(df["run_date"].isin(list(run_dates)))
    table = _open_table(uri, version)
    _check_readable(table, uri)
    reader = (spark.read.format(SOURCE_NAME).schema(_spark_schema(table))
              .option("version", str(table.version())))
    if run_dates is not None:
        reader = reader.option("run_dates", json.dumps(sorted(run_dates)))
    return reader.load(uri)


def partition_values(uri: str, column: str = "run_date") -> list[str]:
    """The distinct values of a partition column present in the table (empty if none)."""
    uri = _normalize_uri(uri)
    if not table_exists(uri):
        return []
    return sorted({p[column] for p in DeltaTable(uri).partitions() if p.get(column) is not None})


def read_arrow(uri: str, *, version: int | None = None, filters=None) -> pa.Table:
    """The table as a pyarrow Table, without Spark (``filters`` in DNF, as deltalake takes)."""
    return _open_table(_normalize_uri(uri), version).to_pyarrow_table(filters=filters)


def table_exists(uri: str) -> bool:
    return DeltaTable.is_deltatable(_normalize_uri(uri))


def table_version(uri: str) -> int | None:
    return _open_table(_normalize_uri(uri)).version() if table_exists(uri) else None


def table_history(uri: str) -> list[dict]:
    """Commits, newest first, each with the CommitInfo fields it was written with."""
    return _open_table(_normalize_uri(uri)).history()


def list_tables(lakehouse: str) -> list[TableInfo]:
    """The Delta tables directly under the lakehouse's silver/, gold/ and quarantine/."""
    root_uri = _normalize_uri(lakehouse)
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
    return [f.name for f in _open_table(_normalize_uri(uri)).schema().fields]


def key_rows(uri: str, keys: Sequence[str], column: str = "user_key") -> dict[str, int]:
    """Rows per key of ``keys`` in ``column`` at the current version (only that column read)."""
    uri = _normalize_uri(uri)
    table = _open_table(uri)
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
    uri = _normalize_uri(uri)
    table = _open_table(uri)
    _check_readable(table, uri)
    if column not in {f.name for f in table.schema().fields}:
        raise TableError(f"{_table_name(uri)} has no column {column!r} to erase keys from")
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
            values = {c: _partition_text(entry[f"partition.{c}"]) for c in partition_by}
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
    uri = _normalize_uri(uri)
    table = _open_table(uri)
    deleted = table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False,
                           full=True,
                           commit_properties=CommitProperties(custom_metadata=asdict(commit)),
                           post_commithook_properties=PostCommitHookProperties(
                               create_checkpoint=False))
    table = _open_table(uri)
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
    uri = _normalize_uri(uri)
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
        _update_stats(stats, batch, columns)
    info = fs.get_file_info(full_path)
    return AddAction(path, info.size, values, info.mtime_ns // 1_000_000, True,
                     _stats_json(data.num_rows, stats))


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
            raise TableError(f"{_table_name(uri)}: column(s) {extra} are not in the table's "
                             "allow-list; drop them with a select() or declare them in "
                             "jobs/schemas.py")
    missing = [c for c in partition_by if c not in df.columns]
    if missing:
        raise TableError(f"{_table_name(uri)}: partition column(s) {missing} not in the "
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
    new = {f.name: f.type for f in DeltaSchema.from_arrow(_arrow_schema(schema)).fields}
    problems = [f"missing column {n}" for n in have if n not in new]
    problems += [f"new column {n}" for n in new if n not in have]
    problems += [f"{n} is {have[n]} in the table but {new[n]} in the DataFrame"
                 for n in new if n in have and new[n] != have[n]]
    if list(table.metadata().partition_columns) != list(partition_by):
        problems.append(f"table partitioned by {table.metadata().partition_columns}, "
                        f"write partitioned by {list(partition_by)}")
    if problems:
        raise TableError(f"{_table_name(uri)}: the DataFrame does not match the table: "
                         + "; ".join(problems) + ". Fix the stage's output schema, or "
                         "replace the whole table with mode='overwrite'")


# --- the Spark Python data source ----------------------------------------------------------

class DeltaRsDataSource(DataSource):
    """Spark data source over Delta tables: Parquet I/O on executors, delta-rs commits."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> StructType:
        return _spark_schema(_open_table(self.options["path"], self._version))

    def reader(self, schema: StructType) -> "DataSourceReader":
        run_dates = self.options.get("run_dates")
        return _DeltaFileReader(self.options["path"], self._version, schema,
                                None if run_dates is None else json.loads(run_dates))

    def writer(self, schema: StructType, overwrite: bool) -> "_DeltaFileWriter":
        if "request" not in self.options:
            raise TableError(f"write {SOURCE_NAME} tables with jobs.tables.write_table")
        return _DeltaFileWriter(_WriteRequest.from_json(self.options["request"]), schema)

    @property
    def _version(self) -> int | None:
        return int(self.options["version"]) if self.options.get("version") else None


class _DeltaFileWriter(DataSourceArrowWriter):
    """write() runs in executor tasks; commit() and abort() on the driver."""

    def __init__(self, request: _WriteRequest, schema: StructType):
        self.request = request
        self.arrow_schema = _arrow_schema(schema)

    def write(self, iterator: Iterator[pa.RecordBatch]) -> FilesWritten:
        files: dict[tuple, _DataFile] = {}
        try:
            for batch in iterator:
                batch = _conform(batch, self.arrow_schema)
                if self.request.mode == "overwrite_partition":
                    _check_run_dates(batch, self.request)
                for values, rows in _split_by_partition(batch, self.request.partition_by):
                    key = tuple(values.values())
                    if key not in files:
                        files[key] = _DataFile(self.request, values, rows.schema)
                    files[key].write(rows)
            return FilesWritten([data_file.close() for data_file in files.values()])
        except BaseException:
            for data_file in files.values():
                data_file.discard()
            raise

    def commit(self, messages: list[FilesWritten | None]) -> None:
        files = [f for message in messages if message is not None for f in message.files]
        _commit_files(self.request, self.arrow_schema, files)

    def abort(self, messages: list[FilesWritten | None]) -> None:
        _discard_job_files(self.request)


class _DeltaFileReader(DataSourceReader):
    """One input partition per data file of the snapshot; read() yields Arrow batches."""

    def __init__(self, uri: str, version: int | None, schema: StructType,
                 run_dates: list[str] | None = None):
        self.uri, self.version, self.schema = uri, version, schema
        self.run_dates = None if run_dates is None else set(run_dates)

    def partitions(self) -> list[InputPartition]:
        """(relative path, partition values) of each file; Spark adds one empty partition
        (value None) when a snapshot has no files."""
        table = _open_table(self.uri, self.version)
        _check_readable(table, self.uri)
        columns = list(table.metadata().partition_columns)
        actions = pa.table(table.get_add_actions(flatten=True))
        rows = actions.select(["path", "size_bytes"] + [f"partition.{c}" for c in columns]).to_pylist()
        if self.run_dates is not None:
            rows = [r for r in rows if str(r.get("partition.run_date")) in self.run_dates]
        files = [(unquote(r["path"]), {c: r[f"partition.{c}"] for c in columns}, r["size_bytes"])
                 for r in rows]
        return [InputPartition(group) for group in _pack_files(files)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        if partition.value is None:
            return
        schema = _arrow_schema(self.schema)
        fs, root = pafs.FileSystem.from_uri(self.uri)
        for path, values in partition.value:  # paths relative to the table root
            with fs.open_input_file(f"{root}/{path}") as source:
                for batch in pq.ParquetFile(source).iter_batches():
                    yield _conform(batch, schema, constants=values)


def _pack_files(files: list[tuple[str, dict, int]]) -> list[list[tuple[str, dict]]]:
    """Group data files into read tasks: about ``READ_TASK_BYTES`` each, and at least as
    many tasks as cores when there are enough files. Many small files (one per day
    partition) otherwise cost one Spark task each."""
    if not files:
        return []
    total = sum(size for _, _, size in files)
    tasks = max(min(len(files), os.cpu_count() or 1), math.ceil(total / READ_TASK_BYTES))
    groups: list[list[tuple[str, dict]]] = [[] for _ in range(min(tasks, len(files)))]
    loads = [0] * len(groups)
    for path, values, size in sorted(files, key=lambda f: -f[2]):
        lightest = loads.index(min(loads))  # largest first onto the lightest task
        groups[lightest].append((path, values))
        loads[lightest] += size
    return groups


# --- executor side: Parquet files and their statistics ------------------------------------

class _DataFile:
    """One Parquet file an executor task is writing into a partition directory."""

    def __init__(self, request: _WriteRequest, values: dict[str, Any], schema: pa.Schema):
        self.fs, root = pafs.FileSystem.from_uri(request.uri)
        self.values = {c: _partition_text(v) for c, v in values.items()}
        directory = "".join(f"{c}={_escape(v)}/" for c, v in self.values.items())
        self.path = f"{directory}part-{request.job_id}-{uuid.uuid4().hex}.parquet"
        self.full_path = f"{root}/{self.path}"
        self.fs.create_dir(self.full_path.rsplit("/", 1)[0], recursive=True)
        self.writer = pq.ParquetWriter(self.full_path, schema, filesystem=self.fs)
        self.stats_columns = [f.name for f in schema if f.name not in request.stats_exclude]
        self.stats: dict[str, dict[str, Any]] = {}
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.rows += batch.num_rows
        _update_stats(self.stats, batch, self.stats_columns)

    def close(self) -> dict[str, Any]:
        self.writer.close()
        info = self.fs.get_file_info(self.full_path)
        return {"path": self.path, "size": info.size, "partition_values": self.values,
                "modification_time": info.mtime_ns // 1_000_000,
                "stats": _stats_json(self.rows, self.stats)}

    def discard(self) -> None:
        """Best effort: the driver's abort() also deletes whatever this job left behind."""
        with suppress(Exception):
            self.writer.close()
        with suppress(Exception):
            self.fs.delete_file(self.full_path)


def _check_run_dates(batch: pa.RecordBatch, request: _WriteRequest) -> None:
    run_dates = pc.cast(batch.column("run_date"), pa.string())
    allowed = pa.array(list(request.partitions), pa.string())
    wrong = pc.invert(pc.fill_null(pc.is_in(run_dates, value_set=allowed), False))
    if pc.any(wrong).as_py():
        found = pc.unique(run_dates.filter(wrong)).to_pylist()[:5]
        raise TableError(f"{_table_name(request.uri)}: overwrite_partition of run_date "
                         f"{list(request.partitions)} got rows with run_date {found}; keep "
                         "only those dates' rows, or write with mode='append'")


def _split_by_partition(batch: pa.RecordBatch, columns: tuple[str, ...]):
    """(partition values, rows without the partition columns) for each partition in batch."""
    data_columns = [n for n in batch.schema.names if n not in columns]
    if not columns:
        yield {}, batch.select(data_columns)
        return
    keys = pa.Table.from_batches([batch]).select(list(columns)).group_by(list(columns))
    for values in keys.aggregate([]).to_pylist():
        masks = [pc.is_null(batch.column(c)) if v is None else pc.equal(batch.column(c), v)
                 for c, v in values.items()]
        yield values, batch.filter(reduce(pc.and_, masks)).select(data_columns)


def _update_stats(stats: dict, batch: pa.RecordBatch, columns: list[str]) -> None:
    """Fold a batch into running nullCount (non-nested types) and min/max (orderable ones)."""
    for name in columns:
        column = batch.column(name)
        if pa.types.is_nested(column.type):
            continue
        entry = stats.setdefault(name, {"nullCount": 0})
        entry["nullCount"] += column.null_count
        if _has_min_max(column.type) and column.null_count < len(column):
            extremes = pc.min_max(column)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
            entry["min"] = low if "min" not in entry else min(entry["min"], low)
            entry["max"] = high if "max" not in entry else max(entry["max"], high)


def _stats_json(rows: int, stats: dict) -> str:
    """Delta file statistics; non-finite floats and over-long string maxima left out."""
    def usable(value: Any, bound: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, str) and len(value) > STRING_STATS_CHARS:
            return value[:STRING_STATS_CHARS] if bound == "min" else None
        return value.isoformat() if isinstance(value, date) else value

    result: dict[str, Any] = {"numRecords": rows, "minValues": {}, "maxValues": {},
                              "nullCount": {n: e["nullCount"] for n, e in stats.items()}}
    for name, entry in stats.items():
        for bound, key in (("min", "minValues"), ("max", "maxValues")):
            value = usable(entry.get(bound), bound)
            if value is not None:
                result[key][name] = value
    return json.dumps(result)


def _has_min_max(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
            or pa.types.is_floating(t) or pa.types.is_date32(t))


# --- driver side: the Delta commit --------------------------------------------------------

def _commit_files(request: _WriteRequest, schema: pa.Schema, files: list[dict]) -> None:
    """Commit ``files`` as one Delta transaction, unless this run already committed them."""
    table = DeltaTable(request.uri) if DeltaTable.is_deltatable(request.uri) else None
    txn_version = request.commit.txn_version
    if table is not None and table.transaction_version(request.app_id) == txn_version:
        _discard_job_files(request)  # a retry of a write this run already committed
        return
    actions = [AddAction(f["path"], f["size"], f["partition_values"], f["modification_time"],
                         True, f["stats"]) for f in files]
    properties = CommitProperties(
        custom_metadata=asdict(request.commit),
        app_transactions=[Transaction(request.app_id, txn_version)])
    if table is None or request.mode == "overwrite":
        create_table_with_add_actions(
            request.uri, DeltaSchema.from_arrow(schema), actions,
            mode="error" if table is None else "overwrite", partition_by=list(request.partition_by),
            configuration=_stats_configuration(schema, request.partition_by,
                                               request.stats_exclude),
            commit_properties=properties,
            post_commithook_properties=PostCommitHookProperties())
    else:
        replace = request.mode == "overwrite_partition"
        table.create_write_transaction(
            actions, "overwrite" if replace else "append", table.schema(),
            list(request.partition_by),
            [("run_date", "in", list(request.partitions))] if replace else None,
            commit_properties=properties, post_commithook_properties=PostCommitHookProperties())


def _stats_configuration(schema: pa.Schema, partition_by: Sequence[str],
                         stats_exclude: Sequence[str]) -> dict[str, str]:
    """Table configuration that keeps ``stats_exclude`` out of any later rewrite's stats."""
    columns = [n for n in schema.names if n not in stats_exclude and n not in partition_by]
    if not columns:
        return {"delta.dataSkippingNumIndexedCols": "0"}
    return {"delta.dataSkippingStatsColumns": ",".join(columns)}


def _discard_job_files(request: _WriteRequest) -> None:
    """Delete the files this write job left in the table that no commit references."""
    fs, root = pafs.FileSystem.from_uri(request.uri)
    referenced: set[str] = set()
    if DeltaTable.is_deltatable(request.uri):
        paths = pa.table(DeltaTable(request.uri).get_add_actions()).column("path").to_pylist()
        referenced = {unquote(p) for p in paths}
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    for entry in fs.get_file_info(selector):
        relative = entry.path[len(root) + 1:]
        if (entry.type == pafs.FileType.File and request.job_id in entry.base_name
                and not relative.startswith("_delta_log/") and relative not in referenced):
            fs.delete_file(entry.path)


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
        arrow = _arrow_schema(df.schema)
        create_table_with_add_actions(
            uri, DeltaSchema.from_arrow(arrow), [], partition_by=list(partition_by),
            configuration=_stats_configuration(arrow, partition_by, stats_exclude))
    writer = (df.write.format("delta").partitionBy(*partition_by)
              .option("userMetadata", json.dumps(asdict(commit), sort_keys=True))
              .option("txnAppId", f"{_app_id(uri, commit)}:{commit.run_id}")
              .option("txnVersion", str(commit.txn_version)))
    if mode == "overwrite_partition":
        dates = ", ".join(f"'{d}'" for d in partitions)  # validated as ISO dates
        writer = writer.mode("overwrite").option("replaceWhere", f"run_date IN ({dates})")
    elif mode == "overwrite":
        writer = writer.mode("overwrite").option("overwriteSchema", "true")
    else:
        writer = writer.mode("append")
    writer.save(uri)


# --- shared helpers -----------------------------------------------------------------------

def _normalize_uri(uri: str) -> str:
    """URIs (s3://, file://, ...) unchanged; local paths made absolute."""
    return uri.rstrip("/") if "://" in uri else os.path.abspath(uri)


def _table_name(uri: str) -> str:
    return "/".join(uri.rstrip("/").split("/")[-2:])


def _app_id(uri: str, commit: CommitInfo) -> str:
    return f"{_table_name(uri)}:{commit.run_date}"


def _open_table(uri: str, version: int | None = None) -> DeltaTable:
    if not DeltaTable.is_deltatable(uri):
        raise TableError(f"no Delta table at {uri}: run the stage that writes it first, or "
                         "check the lakehouse path in the configuration")
    try:
        return DeltaTable(uri, version=version)
    except Exception as exc:
        raise TableError(f"cannot open version {version} of {uri}: {exc}") from exc


def _check_readable(table: DeltaTable, uri: str) -> None:
    features = table.protocol().reader_features or []
    mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if "deletionVectors" in features or mapping != "none":
        raise TableError(f"{uri} uses deletion vectors or column mapping, which the delta-rs "
                         "engine's reader does not support; read it with engine='delta-spark'")


def _arrow_schema(schema: StructType) -> pa.Schema:
    return to_arrow_schema(schema, timezone="UTC")


def _spark_schema(table: DeltaTable) -> StructType:
    return from_arrow_schema(pa.schema(table.schema().to_arrow()))


def _conform(batch: pa.RecordBatch, schema: pa.Schema,
             constants: dict[str, Any] | None = None) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``'s columns: cast, constants filled in, missing null."""
    constants, rows = constants or {}, batch.num_rows
    arrays = []
    for field in schema:
        if field.name in constants:
            value = constants[field.name]
            arrays.append(pa.nulls(rows, field.type) if value is None
                          else pa.repeat(pa.scalar(value).cast(field.type), rows))
        elif field.name in batch.schema.names:
            arrays.append(batch.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(rows, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _partition_text(value: Any) -> str | None:
    """A partition value as the Delta log stores it."""
    if isinstance(value, bool):
        return str(value).lower()
    return None if value is None else str(value)


def _escape(value: str | None) -> str:
    """A partition value as a Hive-style directory name part."""
    return _NULL_PARTITION if value is None else quote(value, safe="-_.")


def _reraise_remote_table_error(exc: Exception) -> None:
    """Raise the TableError an executor or the commit raised, if that is why ``exc`` failed."""
    found = re.findall(r"TableError: (.+)", str(exc))
    if found:
        raise TableError(found[-1].strip()) from exc
