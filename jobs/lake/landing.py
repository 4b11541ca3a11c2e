"""Reading the landing zone: ``landing/<name>/`` folders of JSON Lines, CSV or Parquet
files (one format per folder), always with an explicit all-string schema, and the
``viewing_events/date=D/`` partitions present."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.core.config import Config
from jobs.core.errors import StageError

if TYPE_CHECKING:  # pyspark only where a function reads with Spark: the CLI's checks before
    # Spark starts (jobs.lake.preflight) use this module without importing it
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

LANDING_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def landing_files(path: str) -> tuple[str, list[str]]:
    """The Spark reader format and the data files of a landing folder.

    Raises StageError naming the folder when it is missing, empty, or mixes formats.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise StageError(f"landing folder {folder} does not exist: nothing to ingest")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in LANDING_FORMATS
    )
    files = [p for p in files if p.stat().st_size > 0]
    if not files:
        raise StageError(
            f"landing folder {folder} has no non-empty data files "
            f"({', '.join(sorted(LANDING_FORMATS))})"
        )
    formats = {LANDING_FORMATS[p.suffix.lower()] for p in files}
    if len(formats) > 1:
        raise StageError(f"landing folder {folder} mixes formats {sorted(formats)}; use one")
    return formats.pop(), [str(p) for p in files]


def read_landing(spark: SparkSession, paths: str | list[str], schema: StructType) -> DataFrame:
    """Read landing folders with an explicit schema (every landing column is a string).

    Values that do not fit are kept as the raw string and judged by the stage.
    """
    found = [landing_files(p) for p in ([paths] if isinstance(paths, str) else paths)]
    formats = {fmt for fmt, _ in found}
    if len(formats) > 1:
        raise StageError(f"landing folders {paths} mix formats {sorted(formats)}; use one")
    fmt, files = formats.pop(), [f for _, group in found for f in group]
    reader = spark.read.schema(schema)
    if fmt == "csv":
        return reader.option("header", "true").option("mode", "PERMISSIVE").csv(files)
    if fmt == "json":
        return reader.option("mode", "PERMISSIVE").json(files)
    return reader.parquet(*files)


def landing_frame(spark: SparkSession, config: Config, name: str, schema: StructType) -> DataFrame:
    return read_landing(spark, config.landing(name), schema)


def events_path(config: Config, day: str) -> str:
    return config.landing(f"viewing_events/date={day}")


def landing_event_dates(config: Config) -> list[str]:
    """The dates of the landing partitions present (``date=YYYY-MM-DD`` folders)."""
    root = Path(config.landing("viewing_events"))
    if not root.is_dir():
        return []
    return sorted(p.name[5:] for p in root.iterdir() if p.is_dir() and p.name.startswith("date="))


def landing_row_count(path: str) -> int:
    """The rows of a landing folder, counted without Spark: Parquet footers, lines of
    JSON Lines, lines after the header of CSV (a quoted field across lines would count
    twice: a baseline's estimate, not a validation)."""
    fmt, files = landing_files(path)
    if fmt == "parquet":
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    rows = 0
    for name in files:
        lines, last = 0, b"\n"
        with open(name, "rb") as handle:
            while chunk := handle.read(1 << 22):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        rows += lines + (last != b"\n") - (fmt == "csv")
    return rows


def earlier_landing_counts(config: Config, day: str, most: int) -> list[int]:
    """Row counts (``landing_row_count``) of the last ``most`` landing partitions before
    ``day``, oldest first; folders without data files are left out."""
    counts = []
    for earlier in [d for d in landing_event_dates(config) if d < day][-most:]:
        try:
            counts.append(landing_row_count(events_path(config, earlier)))
        except StageError:
            continue
    return counts


def landing_account_ids(spark: SparkSession, config: Config) -> DataFrame:
    """Every distinct non-null ``account_id`` of the landing zone: profiles, the viewing
    events of every day, and the retained erasure requests (folders that hold data)."""
    from pyspark.sql import functions as F

    from jobs.core.schemas import ERASURE_REQUESTS, USERS, VIEWING_EVENTS

    sources = [(config.landing("users"), USERS), (config.landing("erasure_requests"), ERASURE_REQUESTS)]
    sources += [(events_path(config, day), VIEWING_EVENTS) for day in landing_event_dates(config)]
    frames = [read_landing(spark, path, schema).select("account_id")
              for path, schema in sources if has_landing_data(path)]
    if not frames:
        return spark.createDataFrame([], "account_id string")
    ids = frames[0]
    for frame in frames[1:]:
        ids = ids.unionByName(frame)
    return ids.where(F.col("account_id").isNotNull() & (F.col("account_id") != "")).distinct()


def has_landing_data(folder: str) -> bool:
    """Whether a landing folder holds a non-empty data file."""
    path = Path(folder)
    return path.is_dir() and any(
        p.is_file() and p.suffix.lower() in LANDING_FORMATS and p.stat().st_size > 0
        for p in path.iterdir())


# The columns a landing file must have for the stages to use its rows (a row missing a
# value is quarantined by the stage; a file missing a column is refused before anything
# is written, naming the file and the column).
REQUIRED_COLUMNS = {
    "viewing_events": ("event_id", "account_id", "content_id", "started_at", "seconds_watched"),
    "users": ("account_id", "consent_personalization"),
    "catalog": ("content_id", "title", "genres"),
    "erasure_requests": ("request_id", "account_id", "requested_at"),
}
JSON_LINES_SAMPLED = 200  # a JSON Lines file's columns: the keys of its first lines


def file_columns(path: str) -> dict[str, str]:
    """Column name -> type ("string" for CSV and JSON) of one landing file."""
    suffix = Path(path).suffix.lower()
    if LANDING_FORMATS[suffix] == "parquet":
        try:
            return {f.name: str(f.type) for f in pq.read_schema(path)}
        except (pa.ArrowInvalid, OSError) as exc:
            raise StageError(
                f"landing file {path} is not a Parquet file ({str(exc).splitlines()[0]}): replace it, or "
                f"give it the extension of its real format ({', '.join(s for s in LANDING_FORMATS if s != suffix)}); "
                "nothing was written") from exc
    with open(path, encoding="utf-8", errors="replace") as source:
        if LANDING_FORMATS[suffix] == "csv":
            return {name: "string" for name in next(csv.reader(source), [])}
        columns: dict[str, str] = {}
        for line in itertools.islice(source, JSON_LINES_SAMPLED):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a malformed line is the stage's to quarantine
                if isinstance(record, dict):
                    columns.update({k: "string" for k in record})
        return columns


def check_landing_contract(folders: list[str], name: str) -> None:
    """StageError naming the file and the column when a data file of ``folders`` (landing
    ``name``: viewing_events, users, catalog, erasure_requests) lacks a required column,
    or holds one as a nested type no stage can read as text."""
    required = REQUIRED_COLUMNS[name]
    for folder in folders:
        for path in landing_files(folder)[1]:
            columns = file_columns(path)
            missing = [c for c in required if c not in columns]
            if missing:
                raise StageError(
                    f"landing file {path} has no column {', '.join(missing)} (its columns: "
                    f"{', '.join(columns) or 'none'}): the {name} contract needs {', '.join(required)}. "
                    "Fix the file or its producer and run again; nothing was written")
            nested = [c for c in required if columns[c].startswith(("struct", "list", "map", "large_list"))]
            if nested:
                raise StageError(
                    f"landing file {path}: column {', '.join(nested)} is {columns[nested[0]]}, not a value "
                    f"the {name} contract can read as text; nothing was written")
