"""Writing a Delta table from Arrow data without Spark: the Parquet files (one per
partition, statistics leaving out the user keys) and the one Delta commit (the run's
metadata, an app transaction ``layer/name:run_date``) that ``jobs.lake.tables`` writes through
its Spark data source (``jobs.lake.delta_source``, whose executors and driver call the
functions here), and ``write_arrow`` for the few rows a maintenance command writes
(``fairshelf rollback``, ``fairshelf erase``), where starting Spark would cost more than
the write. Imports no pyspark.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from functools import reduce
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    PostCommitHookProperties,
    Transaction,
    create_table_with_add_actions,
)

from jobs.lake.delta import (
    CommitInfo,
    TableError,
    app_id_of,
    normalize_uri,
    partition_text,
    stats_configuration,
    stats_json,
    table_name,
    update_stats,
)

_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class WriteRequest:
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
        return app_id_of(self.uri, self.commit)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WriteRequest:
        data = json.loads(text)
        return cls(**{**data, "commit": CommitInfo(**data["commit"])})


# --- Parquet files and their statistics (Spark executors, or write_arrow) -----------------

class DataFile:
    """One Parquet file an executor task is writing into a partition directory."""

    def __init__(self, request: WriteRequest, values: dict[str, Any], schema: pa.Schema):
        self.fs, root = pafs.FileSystem.from_uri(request.uri)
        self.values = {c: partition_text(v) for c, v in values.items()}
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
        update_stats(self.stats, batch, self.stats_columns)

    def close(self) -> dict[str, Any]:
        self.writer.close()
        info = self.fs.get_file_info(self.full_path)
        return {"path": self.path, "size": info.size, "partition_values": self.values,
                "modification_time": info.mtime_ns // 1_000_000,
                "stats": stats_json(self.rows, self.stats)}

    def discard(self) -> None:
        """Best effort: the driver's abort() also deletes whatever this job left behind."""
        with suppress(Exception):
            self.writer.close()
        with suppress(Exception):
            self.fs.delete_file(self.full_path)


def check_run_dates(batch: pa.RecordBatch, request: WriteRequest) -> None:
    run_dates = pc.cast(batch.column("run_date"), pa.string())
    allowed = pa.array(list(request.partitions), pa.string())
    wrong = pc.invert(pc.fill_null(pc.is_in(run_dates, value_set=allowed), False))
    if pc.any(wrong).as_py():
        found = pc.unique(run_dates.filter(wrong)).to_pylist()[:5]
        raise TableError(f"{table_name(request.uri)}: overwrite_partition of run_date "
                         f"{list(request.partitions)} got rows with run_date {found}; keep "
                         "only those dates' rows, or write with mode='append'")


def split_by_partition(batch: pa.RecordBatch, columns: tuple[str, ...]):
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


# --- driver side: the Delta commit --------------------------------------------------------

def commit_files(request: WriteRequest, schema: pa.Schema, files: list[dict]) -> None:
    """Commit ``files`` as one Delta transaction, unless this run already committed them."""
    table = DeltaTable(request.uri) if DeltaTable.is_deltatable(request.uri) else None
    txn_version = request.commit.txn_version
    if table is not None and table.transaction_version(request.app_id) == txn_version:
        discard_job_files(request)  # a retry of a write this run already committed
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
            configuration=stats_configuration(schema, request.partition_by,
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


def discard_job_files(request: WriteRequest) -> None:
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


def conform(batch: pa.RecordBatch, schema: pa.Schema,
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


def _escape(value: str | None) -> str:
    """A partition value as a Hive-style directory name part."""
    return _NULL_PARTITION if value is None else quote(value, safe="-_.")


# --- write_arrow: a whole write on this process, no Spark ----------------------------------

def write_arrow(data: pa.Table, uri: str, *, commit: CommitInfo, mode: str = "append",
                partition_by: Sequence[str] = ("run_date",), schema: pa.Schema | None = None,
                stats_exclude: Sequence[str] = ("user_key",),
                partitions: Sequence[str] | None = None) -> int:
    """Write ``data`` to the Delta table at ``uri`` in one commit, as ``tables.write_table``
    does through Spark (same files, statistics, commit metadata, app transaction and modes
    ``append`` and ``overwrite_partition``); return the table version. Its columns are
    conformed to the table's schema, or to ``schema`` for a table not created yet; file
    statistics leave out what the table's configuration leaves out (``stats_exclude`` for a
    new table). For the few rows of a maintenance command: everything happens on this
    process."""
    uri = normalize_uri(uri)
    exists = DeltaTable.is_deltatable(uri)
    if mode not in ("append", "overwrite_partition"):
        raise TableError(f"write_arrow mode={mode!r}: use 'append' or 'overwrite_partition'")
    if exists:
        table = DeltaTable(uri)
        schema = pa.schema(table.schema().to_arrow())
        partition_by = tuple(table.metadata().partition_columns)
        stats_exclude = stats_excluded(schema, table.metadata().configuration, stats_exclude)
    elif schema is None:
        raise TableError(f"{table_name(uri)} does not exist: give its schema to create it")
    request = WriteRequest(uri, mode, tuple(partition_by), tuple(stats_exclude), commit,
                           uuid.uuid4().hex, tuple(partitions or (commit.run_date,)))
    files: dict[tuple, DataFile] = {}
    try:
        for batch in data.to_batches():
            batch = conform(batch, schema)
            if mode == "overwrite_partition":
                check_run_dates(batch, request)
            for values, rows in split_by_partition(batch, request.partition_by):
                key = tuple(values.values())
                if key not in files:
                    files[key] = DataFile(request, values, rows.schema)
                files[key].write(rows)
        commit_files(request, schema, [data_file.close() for data_file in files.values()])
    except BaseException:
        for data_file in files.values():
            data_file.discard()
        discard_job_files(request)
        raise
    return DeltaTable(uri).version()


def stats_excluded(schema: pa.Schema, configuration: dict[str, str],
                   default: Sequence[str]) -> tuple[str, ...]:
    """The columns a table's configuration (``stats_configuration``) keeps out of file
    statistics; ``default`` when it names none."""
    if configuration.get("delta.dataSkippingNumIndexedCols") == "0":
        return tuple(schema.names)
    listed = configuration.get("delta.dataSkippingStatsColumns")
    if listed is None:
        return tuple(default)
    kept = set(listed.split(","))
    return tuple(n for n in schema.names if n not in kept)
