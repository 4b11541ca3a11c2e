"""What build_spark (jobs/lake/spark.py) adds for clusters: the jobs package zipped for the
executors, and an honest failure of table_engine "delta-spark" without the Delta Lake jars
(this environment has none: Maven is unreachable). Writing with delta-spark itself is not
tested here (README, "Running on a Spark cluster")."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jobs.core.config import ConfigError
from jobs.lake.spark import DELTA_JARS, jobs_archive, missing_jvm_classes, require_delta_jars
from tests.conftest import TEST_KEY

REPO = Path(__file__).resolve().parents[2]


def test_the_jobs_archive_holds_the_package_and_its_data(tmp_path):
    names = set(zipfile.ZipFile(jobs_archive(tmp_path)).namelist())
    assert {"jobs/__init__.py", "jobs/lake/delta_source.py", "jobs/core/defaults.toml"} <= names
    assert any(n.startswith("jobs/shared/expectations/") and n.endswith(".json") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.spark
def test_missing_jvm_classes_names_only_what_the_jvm_lacks(spark):
    classes = {"spark": "org.apache.spark.sql.SparkSession", "nothing": "io.example.DoesNotExist"}
    assert missing_jvm_classes(spark, classes) == ["nothing"]


@pytest.mark.spark
def test_delta_spark_without_the_jars_names_them_and_how_to_provide_them(spark):
    with pytest.raises(ConfigError) as error:
        require_delta_jars(spark)
    message = str(error.value)
    assert "\n" not in message
    for needed in (*DELTA_JARS, "spark.jars.packages", "--jars", "delta-rs"):
        assert needed in message, needed


def test_a_run_with_delta_spark_and_no_jars_stops_at_session_start(tmp_path):
    """The real CLI: the engine's settings reach the session (Spark itself warns that it
    cannot load the Delta extension), the check refuses it, the user sees one message (no
    Python traceback) and exit code 1; nothing is written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAIRSHELF_", "SPARK_"))}
    env.update(PYTHONPATH=str(REPO), FAIRSHELF_LAKEHOUSE=str(tmp_path / "lake"),
               FAIRSHELF_TABLE_ENGINE="delta-spark", FAIRSHELF_PSEUDONYM_KEY=TEST_KEY.decode(),
               FAIRSHELF_SPARK_DRIVER_MEMORY="512m")
    day = tmp_path / "lake" / "landing" / "viewing_events" / "date=2026-11-25"
    day.mkdir(parents=True)
    (day / "part-00000.jsonl").write_text("{}\n")  # a landing day, so the CLI's checks before Spark pass
    done = subprocess.run([str(Path(sys.executable).parent / "fairshelf"), "run", "--date", "2026-11-25"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = " ".join((done.stdout + done.stderr).split())  # the CLI wraps long lines
    assert done.returncode == 1, output[-3000:]
    assert 'table_engine "delta-spark" needs the Delta Lake jars' in output
    assert "io.delta:delta-spark_2.13:4.4.1" in output
    assert "Traceback" not in output
    assert not (tmp_path / "lake" / "silver").exists()
