"""The nightly run on a real Spark standalone cluster (infra/spark/cluster.py): a master and
two workers (1 core, 1g each) on free local ports, in a clean environment (no PYTHONPATH,
no FAIRSHELF_* variable), so the executors get the fairshelf code only as the zip
``build_spark`` ships them.

- One night runs in a subprocess (``fairshelf run``, its own SparkSession, master
  ``spark://``, ``SPARK_CONF_DIR`` = infra/spark's ``spark-defaults.conf`` plus an event log)
  over a copy of the session's synthetic landing zone, with the session run's settings; its
  published tables must hold the rows the session's local-mode run published.
- The event log must show tasks on executors of both workers.
- Neither the key nor its HMAC pads may appear in the event log, the daemons' logs, the
  executors' logs (the workers' work folders) or the driver's output.
- One stage is submitted by the DAG's own ``SparkSubmitOperator`` (spark-submit mode), its
  real ``execute``, against the same cluster; its log holds no key either.
- The cluster fixture stops everything it started, also when a test fails, and checks
  that no process of it is left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from infra.spark.cluster import WorkerSpec, group_alive, standalone_cluster
from jobs.lake import reader
from jobs.shared.privacy import key_pads
from tests.conftest import TEST_KEY
from tests.dags.test_nightly_dag import _dag_run, _OutletEvents, _TaskInstance

pytestmark = [pytest.mark.integration, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]
FAIRSHELF = Path(sys.executable).parent / "fairshelf"
TIMEOUT = 1200  # seconds for the cluster run
# Short-lived JVMs on small data (the daemons, executors and driver): the quick JIT tier and
# the serial GC, as in tests/dags/test_airflow_scheduler.py.
JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# What a published row is, without what names the run that wrote it.
RUN_COLUMNS = {"run_id", "model_version"}
SECRETS = [TEST_KEY.decode(), TEST_KEY.hex(), *(pad.hex() for pad in key_pads(TEST_KEY))]


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FAIRSHELF_", "SPARK_", "PYSPARK_"))}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark-cluster")
    environ = {**os.environ, "JAVA_TOOL_OPTIONS": JAVA_OPTIONS}
    with standalone_cluster(root, [WorkerSpec(cores=1, memory="1g")] * 2, environ=environ) as running:
        yield running
    left = [name for name, p in running.processes.items() if p.poll() is None or group_alive(p.pid)]
    assert not left, f"still running after the cluster was stopped: {left}"


@pytest.fixture(scope="module")
def spark_conf_dir(tmp_path_factory):
    """infra/spark's spark-defaults.conf, plus an uncompressed event log."""
    folder = tmp_path_factory.mktemp("spark-conf")
    events = folder / "events"
    events.mkdir()
    text = (REPO / "infra" / "spark" / "spark-defaults.conf").read_text()
    text += (f"\nspark.eventLog.enabled true\nspark.eventLog.dir file://{events}\n"
             "spark.eventLog.compress false\nspark.eventLog.rolling.enabled false\n")
    (folder / "spark-defaults.conf").write_text(text)
    return folder


def _environment(cluster, lakehouse: Path, conf_dir: Path, config_file: Path) -> dict[str, str]:
    return {
        **_clean_environ(),
        "PYTHONPATH": str(REPO),
        "FAIRSHELF_LAKEHOUSE": str(lakehouse),
        "FAIRSHELF_CONFIG": str(config_file),
        "FAIRSHELF_PSEUDONYM_KEY": TEST_KEY.decode(),
        "FAIRSHELF_SPARK_MASTER": cluster.master_url,
        "FAIRSHELF_SPARK_DRIVER_MEMORY": "1g",
        "SPARK_CONF_DIR": str(conf_dir),
        "JAVA_TOOL_OPTIONS": JAVA_OPTIONS,
    }


@pytest.fixture(scope="module")
def cluster_run(cluster, spark_conf_dir, synthetic_run, tmp_path_factory):
    """`fairshelf run` on the cluster over a copy of the session run's landing zone:
    (lakehouse, completed process)."""
    config, _, outcome = synthetic_run
    folder = tmp_path_factory.mktemp("cluster-run")
    lakehouse = folder / "lake"
    shutil.copytree(Path(config.lakehouse) / "landing", lakehouse / "landing")
    config_file = folder / "fairshelf.toml"  # the session run's settings (tests/conftest.make_config)
    config_file.write_text(f"[model]\nselection_trials = {config.model.selection_trials}\n")
    start = time.perf_counter()
    done = subprocess.run(
        [str(FAIRSHELF), "run", "--date", outcome.run_date.isoformat()],
        env=_environment(cluster, lakehouse, spark_conf_dir, config_file),
        cwd=folder, capture_output=True, text=True, timeout=TIMEOUT)
    print(f"cluster run: {time.perf_counter() - start:.0f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return lakehouse, done


def _published_rows(lakehouse: str, table: str) -> list[tuple]:
    publication = reader.latest_publication(lakehouse)
    rows = reader.published_table(lakehouse, publication, table).to_pylist()
    return sorted(tuple(sorted((k, repr(v)) for k, v in row.items() if k not in RUN_COLUMNS)) for row in rows)


def _seconds(publication: dict) -> float:
    """A run's wall time from its gold/runs row (Spark's start not included)."""
    started, finished = (datetime.fromisoformat(publication[k]) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def _events(conf_dir: Path) -> list[dict]:
    files = [p for p in (conf_dir / "events").rglob("*") if p.is_file()]
    assert files, "no event log was written"
    return [json.loads(line) for path in files for line in path.read_text().splitlines() if line.strip()]


def test_a_night_on_the_cluster_publishes_what_local_mode_publishes(cluster_run, synthetic_run):
    lakehouse, _ = cluster_run
    config, _, _ = synthetic_run
    for table in ("gold/recommendations", "gold/default_recommendations", "gold/audit"):
        on_cluster = _published_rows(str(lakehouse), table)
        assert on_cluster, table
        assert on_cluster == _published_rows(config.lakehouse, table), table
    on_cluster, local = (reader.latest_publication(str(lakehouse)), reader.latest_publication(config.lakehouse))
    assert on_cluster["config_hash"] == local["config_hash"]
    print("stages' wall time: " + ", ".join(f"{name} {_seconds(p):.0f} s" for name, p in
                                            (("cluster", on_cluster), ("local", local))))


def test_tasks_ran_on_executors_of_both_workers(cluster_run, spark_conf_dir, cluster):
    events = _events(spark_conf_dir)
    # An executor's log URLs name its worker's web UI: one per worker.
    worker_of = {e["Executor ID"]: e["Executor Info"]["Log Urls"]["stdout"].split("/logPage")[0]
                 for e in events if e["Event"] == "SparkListenerExecutorAdded"}
    ran = [e["Task Info"]["Executor ID"] for e in events if e["Event"] == "SparkListenerTaskEnd"]
    assert ran and "driver" not in ran
    assert len({worker_of[executor] for executor in ran}) == 2, worker_of
    assert len(cluster.work_dirs) == 2 and all(any(d.iterdir()) for d in cluster.work_dirs)


def _executors_running(events: list[dict], operator: str) -> set[str]:
    """The executors that ran tasks of the SQL executions whose physical plan has ``operator``."""
    plans: dict[int, str] = {}
    for e in events:
        if e["Event"].endswith(("SQLExecutionStart", "SQLAdaptiveExecutionUpdate")):
            plans[e["executionId"]] = plans.get(e["executionId"], "") + e["physicalPlanDescription"]
    executions = {n for n, plan in plans.items() if operator in plan}
    stages = {stage for e in events if e["Event"] == "SparkListenerJobStart"
              and int((e.get("Properties") or {}).get("spark.sql.execution.id", -1)) in executions
              for stage in e["Stage IDs"]}
    return {e["Task Info"]["Executor ID"] for e in events
            if e["Event"] == "SparkListenerTaskEnd" and e["Stage ID"] in stages}


def test_re_ranking_runs_in_executor_processes(cluster_run, spark_conf_dir):
    """The candidate scoring (train), the re-ranker and the publish stage's reasons are
    mapInArrow (Python) over the users: every such task ran on an executor."""
    executors = _executors_running(_events(spark_conf_dir), "MapInArrow")
    assert executors and "driver" not in executors


def test_the_key_appears_in_no_log_of_the_cluster_run(cluster_run, spark_conf_dir, cluster):
    _, done = cluster_run
    texts = {"driver output": done.stdout + done.stderr}
    places = [spark_conf_dir / "events", cluster.root / "logs", *cluster.work_dirs]
    for path in (p for place in places for p in place.rglob("*") if p.is_file() and p.suffix != ".zip"):
        texts[str(path)] = path.read_bytes().decode(errors="replace")
    assert any("SparkListenerTaskEnd" in t for t in texts.values())  # the event log was read
    assert any(name.endswith("stderr") for name in texts)  # so were executors' logs
    found = {name for name, text in texts.items() for s in SECRETS if s.lower() in text.lower()}
    assert not found


def test_a_stage_submitted_by_the_dags_spark_submit_operator(cluster, cluster_run, spark_conf_dir,
                                                             tmp_path, monkeypatch, capfd):
    """The DAG parsed in spark-submit mode; its `erasure` task's real execute() submits the
    stage to the cluster with spark-submit, for a new run over a copy of the cluster run.
    The task's log (the driver's output included) holds no key."""
    from airflow.dag_processing.dagbag import DagBag

    from jobs.interfaces.spark_submit import StageSubmitOperator

    lakehouse = tmp_path / "lake"
    shutil.copytree(cluster_run[0], lakehouse)
    host, port = cluster.master_url.removeprefix("spark://").split(":")
    environment = _environment(cluster, lakehouse, spark_conf_dir, tmp_path / "unused.toml")
    del environment["FAIRSHELF_CONFIG"], environment["FAIRSHELF_PSEUDONYM_KEY"]
    for name, value in {
        **environment,
        "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "FAIRSHELF_STAGE_RUNNER": "spark-submit", "FAIRSHELF_SPARK_CONN_ID": "fairshelf_cluster",
        "AIRFLOW_CONN_FAIRSHELF_CLUSTER": f"spark://{host}:{port}",
        # the key as the Airflow connection's password (none of its characters needs encoding)
        "AIRFLOW_CONN_FAIRSHELF_PSEUDONYM_KEY": f"generic://:{TEST_KEY.decode()}@",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("FAIRSHELF_CONFIG", "FAIRSHELF_PSEUDONYM_KEY", "FAIRSHELF_PSEUDONYM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors
    task = bag.dags["nightly_recommendations"].get_task("erasure")
    assert isinstance(task, StageSubmitOperator)
    context = {"dag_run": _dag_run(datetime(2026, 11, 26, 2, 30, tzinfo=timezone.utc)),
               "ti": _TaskInstance(), "task": task, "outlet_events": _OutletEvents()}
    summary = task.execute(context)
    captured = capfd.readouterr()  # Airflow's task logging writes to the process's stdout
    log = captured.out + captured.err
    assert "Spark-Submit cmd" in log and '"stage": "erasure"' in log  # the driver's output too
    assert not [secret for secret in SECRETS if secret.lower() in log.lower()]
    assert summary["stage"] == "erasure"
    assert summary["run_id"] == "airflow__scheduled__2026-11-27T02-30-00-00-00__c0"
    assert summary["run_date"] == "2026-11-25"
    assert task.env_vars is None  # the key is in no attribute after the run
