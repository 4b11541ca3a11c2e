"""What every stage shares: reading the landing zone, writing lineage-stamped tables,
collecting metrics, and running standalone under ``spark-submit``."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Sequence

from pyspark.sql import DataFrame, SparkSession

from jobs.core.config import Config
from jobs.core.errors import StageError
from jobs.lake import tables


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
        version = tables.write_named_table(df, self.config, table, commit=self.commit, mode=mode,
                                           partitions=partitions)
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


def stage_main(run: Callable[..., StageResult], argv: list[str] | None = None) -> None:
    """Run one stage standalone (``spark-submit jobs/<stage>.py --date D``)."""
    from jobs.core.config import load_config
    from jobs.lake.pseudonym_space import check_key
    from jobs.lake.runs import new_run_id
    from jobs.lake.spark import build_spark

    parser = argparse.ArgumentParser(description=run.__doc__)
    parser.add_argument("--date", required=True, type=date.fromisoformat)
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    run_id = args.run_id or new_run_id(args.date)
    check_key(config, claim_by=run_id)
    spark = build_spark(config)
    try:
        result = run(spark, config, args.date, run_id)
        print(json.dumps(result.summary(), indent=2, default=str))
    finally:
        spark.stop()
