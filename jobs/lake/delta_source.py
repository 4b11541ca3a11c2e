"""The Spark Python data source behind ``jobs.lake.tables`` (engine "delta-rs").

Executors write Parquet files straight into the table directory (``_DeltaFileWriter.write``);
the driver commits them as one Delta transaction with ``deltalake`` (``jobs.lake.delta_write.commit_files``),
carrying the run's metadata and an app transaction ``layer/name:run_date``; a failed job
commits nothing and deletes its files. Use it through ``jobs.lake.tables`` only (which
reads with Spark's own Parquet reader over the files of a Delta snapshot).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    WriterCommitMessage,
)
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from jobs.lake.delta import TableError, open_table
from jobs.lake.delta_write import (
    DataFile,
    WriteRequest,
    check_run_dates,
    commit_files,
    conform,
    discard_job_files,
    split_by_partition,
)

SOURCE_NAME = "fairshelf_delta"
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


@dataclass
class FilesWritten(WriterCommitMessage):
    """What one executor task wrote: a list of add-action dicts."""

    files: list[dict[str, Any]]


# --- the Spark Python data source ----------------------------------------------------------

class DeltaRsDataSource(DataSource):
    """Spark data source over Delta tables: Parquet I/O on executors, delta-rs commits."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> StructType:
        return spark_schema(open_table(self.options["path"], self._version))

    def writer(self, schema: StructType, overwrite: bool) -> _DeltaFileWriter:
        if "request" not in self.options:
            raise TableError(f"write {SOURCE_NAME} tables with jobs.lake.tables.write_table")
        return _DeltaFileWriter(WriteRequest.from_json(self.options["request"]), schema)

    @property
    def _version(self) -> int | None:
        return int(self.options["version"]) if self.options.get("version") else None


class _DeltaFileWriter(DataSourceArrowWriter):
    """write() runs in executor tasks; commit() and abort() on the driver."""

    def __init__(self, request: WriteRequest, schema: StructType):
        self.request = request
        self.arrow_schema = arrow_schema(schema)

    def write(self, iterator: Iterator[pa.RecordBatch]) -> FilesWritten:
        files: dict[tuple, DataFile] = {}
        try:
            for batch in iterator:
                batch = conform(batch, self.arrow_schema)
                if self.request.mode == "overwrite_partition":
                    check_run_dates(batch, self.request)
                for values, rows in split_by_partition(batch, self.request.partition_by):
                    key = tuple(values.values())
                    if key not in files:
                        files[key] = DataFile(self.request, values, rows.schema)
                    files[key].write(rows)
            return FilesWritten([data_file.close() for data_file in files.values()])
        except BaseException:
            for data_file in files.values():
                data_file.discard()
            raise

    def commit(self, messages: list[FilesWritten | None]) -> None:
        files = [f for message in messages if message is not None for f in message.files]
        commit_files(self.request, self.arrow_schema, files)

    def abort(self, messages: list[FilesWritten | None]) -> None:
        discard_job_files(self.request)


# --- shared helpers -----------------------------------------------------------------------


def arrow_schema(schema: StructType) -> pa.Schema:
    return to_arrow_schema(schema, timezone="UTC")


def spark_schema(table: DeltaTable) -> StructType:
    return from_arrow_schema(pa.schema(table.schema().to_arrow()))


def reraise_remote_table_error(exc: Exception) -> None:
    """Raise the TableError an executor or the commit raised, if that is why ``exc`` failed."""
    found = re.findall(r"TableError: (.+)", str(exc))
    if found:
        raise TableError(found[-1].strip()) from exc
