"""Delta tables through ``deltalake`` (delta-rs) and pyarrow alone, no Spark: opening,
reading as Arrow, versions and history, listing a lakehouse's tables, restoring a version,
and erasure by key (``erase_rows`` rewrites the files holding the keys without writing a
key to the log; ``purge_history`` then deletes every older version). ``jobs.lake.tables``
adds the Spark reads and writes on top and re-exports this module; the downstream reader
(``jobs.lake.reader``) imports only this one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
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
from deltalake.transaction import AddAction, CommitProperties, PostCommitHookProperties, RemoveAction

STRING_STATS_CHARS = 32  # as Delta Lake: longer strings get a prefix as min and no max


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


def update_stats(stats: dict, batch: pa.RecordBatch, columns: list[str]) -> None:
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


def stats_json(rows: int, stats: dict) -> str:
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


def stats_configuration(schema: pa.Schema, partition_by: Sequence[str],
                         stats_exclude: Sequence[str]) -> dict[str, str]:
    """Table configuration that keeps ``stats_exclude`` out of any later rewrite's stats."""
    columns = [n for n in schema.names if n not in stats_exclude and n not in partition_by]
    if not columns:
        return {"delta.dataSkippingNumIndexedCols": "0"}
    return {"delta.dataSkippingStatsColumns": ",".join(columns)}


def normalize_uri(uri: str) -> str:
    """URIs (s3://, file://, ...) unchanged; local paths made absolute."""
    return uri.rstrip("/") if "://" in uri else os.path.abspath(uri)


def table_name(uri: str) -> str:
    return "/".join(uri.rstrip("/").split("/")[-2:])


def app_id_of(uri: str, commit: CommitInfo) -> str:
    return f"{table_name(uri)}:{commit.run_date}"


def open_table(uri: str, version: int | None = None) -> DeltaTable:
    if not DeltaTable.is_deltatable(uri):
        raise TableError(f"no Delta table at {uri}: run the stage that writes it first, or "
                         "check the lakehouse path in the configuration")
    try:
        return DeltaTable(uri, version=version)
    except Exception as exc:
        raise TableError(f"cannot open version {version} of {uri}: {exc}") from exc


def check_readable(table: DeltaTable, uri: str) -> None:
    features = table.protocol().reader_features or []
    mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if "deletionVectors" in features or mapping != "none":
        raise TableError(f"{uri} uses deletion vectors or column mapping, which the delta-rs "
                         "engine's reader does not support; read it with engine='delta-spark'")


def snapshot_files(table: DeltaTable, uri: str, run_dates: Sequence[str] | None = None) -> list[str]:
    """The data files of ``table``'s snapshot (URIs), only those of the ``run_dates``
    partitions when given."""
    check_readable(table, uri)
    if run_dates is None:
        return table.file_uris()
    if "run_date" not in table.metadata().partition_columns:
        raise TableError(f"{uri} is not partitioned by run_date: read it whole")
    return table.file_uris([("run_date", "in", sorted(run_dates))]) if run_dates else []


def partition_text(value: Any) -> str | None:
    """A partition value as the Delta log stores it."""
    if isinstance(value, bool):
        return str(value).lower()
    return None if value is None else str(value)


LAYERS = ("silver", "gold", "quarantine")


@dataclass(frozen=True)
class TableInfo:
    name: str  # "silver/events"
    uri: str
    version: int
    rows: int


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
    return key_files(uri, keys, column)[0]


def key_files(uri: str, keys: Sequence[str], column: str = "user_key") -> tuple[dict[str, int], int]:
    """(rows per key of ``keys`` in ``column``, data files holding any of them) at the
    current version; only that column is read."""
    uri = normalize_uri(uri)
    table = open_table(uri)
    wanted = _key_array(keys)
    counts: dict[str, int] = {}
    files = 0
    for _, _, hits in _files_with_keys(table, uri, column, wanted):
        files += 1
        for key, n in hits.items():
            counts[key] = counts.get(key, 0) + n
    return counts, files


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
