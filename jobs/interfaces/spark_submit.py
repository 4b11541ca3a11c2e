"""The DAG's spark-submit mode (``[airflow] stage_runner = "spark-submit"``): each stage
task is a ``SparkSubmitOperator`` that submits ``jobs/interfaces/submit_stage.py`` for the
DAG run's partition to the master of the Airflow connection ``[airflow] spark_conn_id``,
in client deploy mode (the driver runs beside the task; standalone cluster mode cannot
hand the driver its environment, so the provider refuses it).

What reaches the driver: the task's environment (``FAIRSHELF_LAKEHOUSE``, ...), and the
key as ``FAIRSHELF_PSEUDONYM_KEY`` (from the connection ``fairshelf_pseudonym_key`` or the
task's own environment), set on the spark-submit process only while it runs and
registered with Airflow's secrets masker. The driver's output goes to the task log; its
result (the stage's summary) comes back through a file in a private temporary folder and
is the task's return value, as for an in-process stage task.

Imported only by the DAG file in this mode (the provider is not needed otherwise).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, Mapping

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from jobs.interfaces.airflow_tasks import (
    MixedAttemptsError,
    annotate_outlets,
    leave_failure,
    partition_of,
    pipeline_config,
    require_upstream_of_same_attempt,
)

LAUNCHER = Path(__file__).resolve().with_name("submit_stage.py")
KEY_VARIABLE = "FAIRSHELF_PSEUDONYM_KEY"


class SubmittedStageFailed(RuntimeError):
    """The stage failed in the driver spark-submit started; the message is its error."""


def launcher_args(stage: str, run_date: date, run_id: str, result: Path) -> list[str]:
    return ["--stage", stage, "--date", run_date.isoformat(), "--run-id", run_id, "--result", str(result)]


def submit_environment(key: str, path: str) -> dict[str, str]:
    """What spark-submit gets on top of the task's environment: the key, and this Python's
    bin folder first on PATH (its ``spark-submit``, also when Airflow runs from a venv that
    is not activated)."""
    return {KEY_VARIABLE: key, "PATH": os.pathsep.join([str(Path(sys.executable).parent), path])}


class StageSubmitOperator(SparkSubmitOperator):
    """One stage of the DAG run's partition, submitted with spark-submit."""

    def __init__(self, *, stage: str, conn_id: str, **kwargs: Any):
        super().__init__(application=str(LAUNCHER), conn_id=conn_id, name=f"fairshelf-{stage}",
                         conf={"spark.pyspark.driver.python": sys.executable}, **kwargs)
        self.stage = stage

    def prepare(self, context: Mapping[str, Any], result: Path):
        """Check the run, load the config with its key and set the launcher's arguments;
        returns (partition, config, spark-submit's extra environment)."""
        partition = partition_of(context)
        require_upstream_of_same_attempt(self.stage, context, partition)
        config = pipeline_config()
        key = config.require_pseudonym_key().decode()
        self.application_args = launcher_args(self.stage, partition.run_date, partition.run_id, result)
        return partition, config, submit_environment(key, os.environ.get("PATH", ""))

    def execute(self, context: Mapping[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from jobs.core.config import ConfigError

        with tempfile.TemporaryDirectory(prefix="fairshelf-submit-") as folder:
            result = Path(folder) / "result.json"
            try:
                partition, config, environment = self.prepare(context, result)
            except (ConfigError, MixedAttemptsError) as exc:  # retrying cannot fix either
                leave_failure(context, self.stage, exc)
                raise AirflowFailException(str(exc)) from exc
            self.env_vars, self._hook = environment, None
            try:
                super().execute(context)
            except Exception as exc:
                error = json.loads(result.read_text()).get("error") if result.is_file() else None
                leave_failure(context, self.stage, SubmittedStageFailed(error) if error else exc)
                raise
            finally:
                self.env_vars, self._hook = None, None  # the key stays in no attribute
            summary = json.loads(result.read_text())["summary"]
        annotate_outlets(context, partition, config, summary.get("outputs", {}))
        return summary
