"""Landing files: the all-string arrow schema of each landing table and the JSONL, CSV and
Parquet sinks, written chunk by chunk under a hidden temporary name and renamed into place
when complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from jobs.datasets.synthetic.spec import FILE_FORMATS, SyntheticSpecError


def landing_schema(table: str) -> pa.Schema:
    """The arrow schema of a landing table: the contract's columns, all strings."""
    from jobs.core.schemas import LANDING  # Spark's types: imported only to write (the CLI checks first)

    return pa.schema([(name, pa.string()) for name in LANDING[table].fieldNames()])


class LandingFileWriter:
    """Writes one landing file chunk by chunk under a hidden temporary name and renames it
    into place on a clean close, so a reader never sees a half-written file."""

    def __init__(self, path: Path, schema: pa.Schema, file_format: str) -> None:
        if file_format not in FILE_FORMATS:
            formats = ", ".join(FILE_FORMATS)
            raise SyntheticSpecError(f"file format must be one of {formats}, got {file_format!r}")
        self.path = Path(path)
        self.schema = schema
        self.file_format = file_format
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        if file_format == "parquet":
            self._writer = pq.ParquetWriter(self._sink, schema, compression="snappy")
        elif file_format == "csv":
            self._writer = pa_csv.CSVWriter(self._sink, schema)

    def write(self, table: pa.Table) -> None:
        table = table.select(self.schema.names).cast(self.schema)
        if self._writer is not None:
            self._writer.write_table(table)
        else:
            self._sink.write(json_lines(table))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._sink.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        self._sink.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> LandingFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def json_lines(table: pa.Table) -> bytes:
    """The rows of an all-string table as JSON Lines (UTF-8, nulls as null), assembled with
    one arrow join per table; a table holding control characters goes through pandas'
    encoder instead."""
    if table.num_rows == 0:
        return b""
    segments: list[pa.Array | str] = []
    literal = "{"
    for i, name in enumerate(table.column_names):
        column = table.column(name).combine_chunks()
        data = _string_bytes(column)
        if (data < 0x20).any():
            text = table.to_pandas().to_json(orient="records", lines=True, force_ascii=False)
            return (text if text.endswith("\n") else text + "\n").encode("utf-8")
        if ((data == ord('"')) | (data == ord("\\"))).any():
            column = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
        literal += ("," if i else "") + json.dumps(name, ensure_ascii=False) + ":"
        if column.null_count == 0:
            segments += [literal + '"', column]
            literal = '"'
        else:
            segments += [literal, pc.fill_null(pc.binary_join_element_wise('"', column, '"', ""), "null")]
            literal = ""
    lines = pc.binary_join_element_wise(*segments, literal + "}\n", "")
    return _string_bytes(lines).tobytes()


def _string_bytes(column: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of a string array's values, end to end."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)
    data = column.buffers()[2]
    if data is None:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]


def write_landing_file(table: pa.Table, path: Path, landing_table: str, file_format: str) -> None:
    """Write a whole table as one landing file of ``landing_table``'s contract."""
    with LandingFileWriter(path, landing_schema(landing_table), file_format) as writer:
        writer.write(table)


def replace_directory(path: Path) -> Path:
    """Empty ``path`` (a directory this generator owns, such as a day partition)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def remove_landing_files(directory: Path, stem: str, keep: str | None = None) -> None:
    """Remove ``<stem>.<format>`` files (this generator's own names) but the ``keep`` format,
    so a folder never mixes formats after a rerun in another one."""
    for file_format in FILE_FORMATS:
        if file_format != keep:
            (directory / f"{stem}.{file_format}").unlink(missing_ok=True)
