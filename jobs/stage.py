"""What every stage shares: reading the landing zone, writing lineage-stamped tables,
collecting metrics, and running standalone under ``spark-submit``."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from jobs import tables
from jobs.config import Config
from jobs.schemas import USER_KEY_COLUMNS, allowed_columns

LANDING_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class StageError(RuntimeError):
    """A stage cannot do its work; the message says what is wrong and how to fix it."""


class GateFailed(StageError):
    """A blocking gate (quality, representation, k-anonymity, fairness, diversity) failed:
    the run stops before publish and the last published shelves stay live.

    ``failures`` are one line each: what was checked, what was observed, what was allowed.
    """

    def __init__(self, gate: str, failures: Sequence[str]):
        self.gate = gate
        self.failures = list(failures)
        shown = "; ".join(self.failures[:10])
        more = f" (and {len(self.failures) - 10} more)" if len(self.failures) > 10 else ""
        super().__init__(f"gate {gate!r} failed: {shown}{more}")


@dataclass
class StageResult:
    """Outputs and metrics of one stage for one run; also the stage's table writer."""

    stage: str
    run_date: date
    run_id: str
    config: Config
    metrics: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, int] = field(default_factory=dict)  # "layer/name" -> version read
    outputs: dict[str, int] = field(default_factory=dict)  # "layer/name" -> version written

    @property
    def commit(self) -> tables.CommitInfo:
        return tables.CommitInfo(
            run_id=self.run_id,
            run_date=self.run_date.isoformat(),
            stage=self.stage,
            code_version=self.config.code_version,
            config_hash=self.config.config_hash,
        )

    def read(
        self, spark: SparkSession, table: str, run_dates: Sequence[str] | None = None
    ) -> DataFrame:
        """``table`` ("layer/name"), or only its ``run_dates`` partitions, at the version
        current now; that version is pinned for the whole stage and recorded as an input
        (lineage)."""
        layer, name = table.split("/")
        uri = self.config.table(layer, name)
        version = tables.table_version(uri)
        if version is None:
            raise StageError(f"{table} does not exist yet at {uri}: run the stages before {self.stage}")
        self.inputs[table] = version
        return tables.read_table(
            spark, uri, version=version, engine=self.config.spark.table_engine, run_dates=run_dates
        )

    def write(
        self,
        df: DataFrame,
        table: str,
        mode: str = "overwrite_partition",
        partitions: Sequence[str] | None = None,
    ) -> int:
        """Write ``df`` to ``table`` ("layer/name") under the table's allow-list.

        ``overwrite_partition`` replaces the run date's partition, or the
        ``partitions`` (run_date values) named.
        """
        layer, name = table.split("/")
        version = tables.write_table(
            df,
            self.config.table(layer, name),
            commit=self.commit,
            mode=mode,
            partitions=partitions,
            allowed_columns=allowed_columns(table),
            stats_exclude=USER_KEY_COLUMNS,
            engine=self.config.spark.table_engine,
        )
        self.outputs[table] = version
        return version

    def summary(self) -> dict[str, Any]:
        """A small JSON-able summary (what an Airflow task returns; never data)."""
        return {
            "stage": self.stage,
            "run_id": self.run_id,
            "run_date": self.run_date.isoformat(),
            "inputs": self.inputs,
            "outputs": self.outputs,
            "metrics": self.metrics,
        }


def read_silver(
    spark: SparkSession, config: Config, table: str, run_dates: Sequence[str] | None = None
) -> DataFrame:
    """A table ("layer/name"), or only its ``run_dates`` partitions (only their files read)."""
    layer, name = table.split("/")
    return tables.read_table(
        spark, config.table(layer, name), engine=config.spark.table_engine, run_dates=run_dates
    )


def days_up_to(run_date: date, days: int) -> list[str]:
    """The ISO dates of the ``days`` days ending on ``run_date``, oldest first."""
    return [(run_date - timedelta(days=n)).isoformat() for n in reversed(range(days))]


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


def stage_main(run: Callable[..., StageResult], argv: list[str] | None = None) -> None:
    """Run one stage standalone (``spark-submit jobs/<stage>.py --date D``)."""
    from jobs.config import load_config
    from jobs.runs import new_run_id
    from jobs.spark import build_spark

    parser = argparse.ArgumentParser(description=run.__doc__)
    parser.add_argument("--date", required=True, type=date.fromisoformat)
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    spark = build_spark(config)
    try:
        result = run(spark, config, args.date, args.run_id or new_run_id(args.date))
        print(json.dumps(result.summary(), indent=2, default=str))
    finally:
        spark.stop()
