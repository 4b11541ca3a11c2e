"""Reading the landing zone: ``landing/<name>/`` folders of JSON Lines, CSV or Parquet
files (one format per folder), always with an explicit all-string schema, and the
``viewing_events/date=D/`` partitions present."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from jobs.core.config import Config
from jobs.core.errors import StageError

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
