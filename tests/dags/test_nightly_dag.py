"""The nightly DAG: it parses cleanly and cheaply, has one task per pipeline stage wired
like the pipeline, gives every task the intended run date for a logical date, records
and records failures. That it runs end to end under a real Airflow scheduler is
tests/dags/test_airflow_scheduler.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobs.core.config import ConfigError
from jobs.interfaces import airflow_tasks
from jobs.interfaces.airflow_tasks import (
    FAILURE_XCOM_KEY,
    RECORD_TASK_ID,
    first_failure,
    partition_of,
    run_date_for,
    run_id_for,
    table_asset,
)

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
ENV_FILE = REPO / "infra" / "airflow" / "airflow.env"
DAG_ID = "nightly_recommendations"
DOWNSTREAM_DAG_ID = "fairshelf_downstream_example"
VENV_BIN = Path(sys.executable).parent
UTC = timezone.utc


def _airflow_settings(home: Path) -> dict[str, str]:
    """A private Airflow: its own home and SQLite database, this repository's dags."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def _clean_environ() -> dict[str, str]:
    """The caller's environment without any Airflow or fairshelf setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FAIRSHELF_"))}


def _dag_run(logical_date, run_id="scheduled__2026-11-27T02:30:00+00:00", clear_number=0, run_after=None):
    """The part of Airflow's DagRun (as a task sees it) that the tasks read."""
    return SimpleNamespace(
        logical_date=logical_date,
        run_after=run_after or logical_date,
        run_id=run_id,
        clear_number=clear_number,
        start_date=logical_date,
    )


class _TaskInstance:
    """Serves the upstream tasks' return values and records what a task pushes to XCom."""

    def __init__(self, returned=None):
        self.returned = returned or {}
        self.pushed: dict[str, object] = {}

    def xcom_pull(self, task_ids, key="return_value"):
        return self.returned.get(task_ids) if key == "return_value" else None

    def xcom_push(self, key, value):
        self.pushed[key] = value


class _OutletEvents(dict):
    """Airflow's outlet event accessors: one event (with an ``extra`` dict) per asset."""

    def __missing__(self, asset):
        self[asset] = SimpleNamespace(extra={})
        return self[asset]


@pytest.fixture(scope="module")
def dag_bag(tmp_path_factory):
    """The dags folder as Airflow's DagBag parses it, in a throw-away AIRFLOW_HOME."""
    home = tmp_path_factory.mktemp("airflow_home")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _airflow_settings(home).items():
            mp.setenv(name, value)
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture(scope="module")
def dag(dag_bag):
    return dag_bag.dags[DAG_ID]


# -- parsing -------------------------------------------------------------------------------
PARSE_DAGS = """
import json, sys
import airflow.sdk.execution_time.context as context

def looked_up(*args, **kwargs):
    raise RuntimeError("a connection or variable was looked up while parsing")

context._get_connection = context._get_variable = looked_up
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
heavy = ("pyspark", "jobs.orchestration.pipeline", "jobs.shared.stage", "jobs.lake.spark", "jobs.lake.tables", "deltalake", "implicit")
print(json.dumps({
    "errors": bag.import_errors,
    "dag_ids": sorted(bag.dag_ids),
    "heavy_modules": [m for m in heavy if m in sys.modules],
}))
"""


def test_dags_folder_parses_without_errors_or_heavy_work(tmp_path):
    """In a fresh interpreter (this one may have pyspark loaded already)."""
    env = {**_clean_environ(), **_airflow_settings(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", PARSE_DAGS, str(DAGS)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert parsed["dag_ids"] == sorted([DAG_ID, DOWNSTREAM_DAG_ID])
    assert parsed["heavy_modules"] == []


# -- structure -------------------------------------------------------------------------------
def test_one_task_per_stage_wired_like_the_pipeline(dag):
    from jobs.orchestration.pipeline import ORDER, UPSTREAM

    # The DAG is wired from the stage graph; the graph itself is checked against what a
    # real run read and wrote (tests/integration/test_nightly_run.py).
    assert set(dag.task_ids) == {*ORDER, RECORD_TASK_ID}
    for stage in ORDER:
        assert dag.get_task(stage).upstream_task_ids == set(UPSTREAM[stage]), stage
    record = dag.get_task(RECORD_TASK_ID)
    assert record.upstream_task_ids == set(ORDER)
    assert record.downstream_task_ids == set()
    assert record.trigger_rule == "all_done"


def test_tasks_retry_and_runs_do_not_overlap(dag):
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_delay >= timedelta(minutes=1), task.task_id
        assert task.execution_timeout is not None, task.task_id
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.dagrun_timeout is not None and dag.dagrun_timeout <= timedelta(hours=24)
    assert "fairshelf" in dag.tags
    assert "run date" in dag.doc_md.lower() or "which day" in dag.doc_md.lower()


def test_published_tables_are_assets(dag):
    from jobs.orchestration.stage_graph import ORDER

    outlets = {task.task_id: {a.name for a in task.outlets} for task in dag.tasks}
    published = {  # by the task that writes them; stages not in the pipeline have no task
        "quality": {"fairshelf.gold.quality_results"},
        "audit": {"fairshelf.gold.audit"},
        "publish": {"fairshelf.gold.recommendations", "fairshelf.gold.default_recommendations"},
    }
    for stage in ORDER:
        assert outlets[stage] == published.get(stage, set()), stage
    assert outlets[RECORD_TASK_ID] == {"fairshelf.gold.runs", "fairshelf.gold.lineage"}
    asset = table_asset("gold/recommendations")
    assert asset.uri == "x-fairshelf://gold/recommendations"
    assert airflow_tasks.asset_table(asset) == "gold/recommendations"


# -- the example downstream DAG ---------------------------------------------------------------
def test_the_downstream_example_is_scheduled_on_the_runs_asset(dag_bag, dag):
    downstream = dag_bag.dags[DOWNSTREAM_DAG_ID]
    # scheduled on exactly the asset the nightly DAG's record task emits
    (record_outlet,) = [a for a in dag.get_task(RECORD_TASK_ID).outlets if a.name == "fairshelf.gold.runs"]
    assert downstream.timetable.asset_condition.objects == (record_outlet,)
    assert downstream.task_ids == ["read_published_shelves"]
    task = downstream.get_task("read_published_shelves")
    assert task.retries >= 1 and task.execution_timeout is not None
    assert downstream.max_active_runs == 1 and downstream.catchup is False
    assert "jobs.lake.reader" in downstream.doc_md


def _runs_event(extra: dict, minute: int):
    """A real Airflow task-context asset event of ``gold/runs`` with ``extra``."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult

    return AssetEventDagRunReferenceResult(
        asset={"name": "fairshelf.gold.runs", "uri": "x-fairshelf://gold/runs", "extra": {}},
        extra=extra, source_task_id=RECORD_TASK_ID, source_dag_id=DAG_ID,
        source_run_id="scheduled__x", source_map_index=-1, source_aliases=[],
        timestamp=datetime(2026, 11, 27, 3, minute, tzinfo=UTC),
    )


def test_a_downstream_run_reads_the_newest_announced_night():
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    runs = table_asset("gold/runs")
    newer = {"run_id": "airflow__b__c0", "run_date": "2026-11-26", "location": "/x", "delta_version": None}
    older = {"run_id": "airflow__a__c0", "run_date": "2026-11-25", "location": "/x", "delta_version": None}
    events = TriggeringAssetEventsAccessor.build([_runs_event(newer, 5), _runs_event(older, 1)])
    assert airflow_tasks.published_run_of({"triggering_asset_events": events}, runs) == {
        "run_id": "airflow__b__c0", "run_date": "2026-11-26"}
    # a manual run has no triggering event: the live publication is read
    assert airflow_tasks.published_run_of({"triggering_asset_events": TriggeringAssetEventsAccessor.build([])}, runs) == {}
    assert airflow_tasks.published_run_of({}, runs) == {}


def test_a_shelves_summary_counts_users_rows_and_reasons():
    import pyarrow as pa

    shelves = pa.table({
        "user_key": ["u1", "u1", "u1", "u2", "u2"],
        "rank": [1, 2, 3, 1, 2],
        "reason": ["Because you watched Alien", "Because you watched Heat", "Picked for your viewing history",
                   "New and diverse pick", "Because you watched Alien"],
    })
    assert airflow_tasks.shelves_summary(shelves) == {
        "users": 2, "rows": 5, "shortest_shelf": 2, "longest_shelf": 3,
        "reasons": {"Because you watched ...": 3, "Picked for your viewing history": 1, "New and diverse pick": 1},
    }
    assert airflow_tasks.shelves_summary(shelves.slice(0, 0))["users"] == 0


# -- which day a run is for -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("logical_date", "run_date"),
    [
        (datetime(2026, 11, 27, 2, 30, tzinfo=UTC), date(2026, 11, 26)),
        (datetime(2026, 11, 27, 0, 0, tzinfo=UTC), date(2026, 11, 26)),
        (datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC), date(2026, 11, 25)),
        (datetime(2027, 1, 1, 2, 30, tzinfo=UTC), date(2026, 12, 31)),
        (datetime(2028, 3, 1, 2, 30, tzinfo=UTC), date(2028, 2, 29)),
        # 01:00 in UTC+2 is 23:00 UTC of the day before: the day is taken in UTC
        (datetime(2026, 11, 27, 1, 0, tzinfo=timezone(timedelta(hours=2))), date(2026, 11, 25)),
    ],
)
def test_run_date_is_the_utc_day_before_the_logical_date(logical_date, run_date):
    assert run_date_for(logical_date) == run_date


def test_run_date_needs_an_aware_logical_date():
    with pytest.raises(ValueError, match="timezone"):
        run_date_for(datetime(2026, 11, 27, 2, 30))


def test_each_scheduled_run_processes_the_complete_previous_day(dag):
    """Walk the DAG's own timetable: consecutive runs cover consecutive days, and each
    run starts only after its day has ended."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = coerce_to_core_timetable(dag.timetable)
    restriction = TimeRestriction(earliest=datetime(2026, 11, 25, 12, tzinfo=UTC), latest=None, catchup=True)
    info, days = None, []
    for _ in range(3):
        info = timetable.next_dagrun_info(
            last_automated_data_interval=info.data_interval if info else None, restriction=restriction
        )
        day = run_date_for(info.logical_date)
        assert info.run_after >= datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        days.append(day)
    assert days == [date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 27)]


def test_a_stage_task_runs_its_stage_on_the_run_partition(dag, monkeypatch, config):
    """Call the DAG's own `publish` task with an Airflow-like context."""
    import jobs.orchestration.pipeline

    calls = []

    def run_stage(name, run_date, run_id, config=None, spark=None):
        calls.append((name, run_date, run_id))
        return {"stage": name, "run_id": run_id, "run_date": run_date.isoformat(),
                "outputs": {"gold/recommendations": 7, "gold/default_recommendations": 3}, "metrics": {}}

    monkeypatch.setattr(jobs.orchestration.pipeline, "run_stage", run_stage)
    monkeypatch.setattr(airflow_tasks, "pipeline_config", lambda: config)
    task = dag.get_task("publish")
    events = _OutletEvents()
    run_id = "airflow__scheduled__2026-11-27T02-30-00-00-00__c1"
    context = {
        "dag_run": _dag_run(datetime(2026, 11, 27, 2, 30, tzinfo=UTC), clear_number=1),
        "ti": _TaskInstance({"train": {"stage": "train", "run_id": run_id}}),
        "task": task,
        "outlet_events": events,
    }
    summary = task.python_callable(**task.op_kwargs, **context)

    assert calls == [("publish", date(2026, 11, 26), run_id)]
    assert summary["run_id"] == run_id
    extra = events[table_asset("gold/recommendations")].extra
    assert extra == {
        "run_id": run_id,
        "run_date": "2026-11-26",
        "location": config.table("gold", "recommendations"),
        "delta_version": 7,
    }
    assert events[table_asset("gold/default_recommendations")].extra["delta_version"] == 3


def test_a_run_without_logical_date_uses_its_run_after():
    run = _dag_run(None, run_id="manual__2026-11-27T08:00:00+00:00",
                   run_after=datetime(2026, 11, 27, 8, tzinfo=UTC))
    assert partition_of({"dag_run": run}).run_date == date(2026, 11, 26)


def test_a_stage_of_a_partly_cleared_run_fails_before_any_work(monkeypatch, config):
    """Clearing only `publish` bumps the clear number: its upstream ran under the old id."""
    from airflow.sdk.exceptions import AirflowFailException

    import jobs.orchestration.pipeline

    monkeypatch.setattr(jobs.orchestration.pipeline, "run_stage", lambda *a, **k: pytest.fail("the stage ran"))
    monkeypatch.setattr(airflow_tasks, "pipeline_config", lambda: config)
    old_attempt = run_id_for("scheduled__2026-11-27T02:30:00+00:00", 0)
    context = {
        "dag_run": _dag_run(datetime(2026, 11, 27, 2, 30, tzinfo=UTC), clear_number=1),
        "ti": _TaskInstance({parent: {"stage": parent, "run_id": old_attempt}
                             for parent in airflow_tasks.STAGE_UPSTREAM["publish"]}),
    }
    with pytest.raises(AirflowFailException, match="clear the whole DAG run"):
        airflow_tasks.run_stage_task("publish", context)
    assert "ran as " + old_attempt in context["ti"].pushed[FAILURE_XCOM_KEY]["message"]


# -- run ids -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "airflow_run_id",
    [
        "scheduled__2026-11-27T02:30:00+00:00",
        "manual__2026-11-27T08:01:02.123456+00:00",
        "backfill__2026-11-03T02:30:00+00:00",
        "my rerun/of ../nov 26: ünïcode",
        "x" * 250,
    ],
)
def test_run_ids_are_safe_folder_names(airflow_run_id):
    run_id = run_id_for(airflow_run_id, 0)
    assert re.fullmatch(r"airflow__[A-Za-z0-9._-]+__c0", run_id)
    assert ".." not in run_id.split("/") and len(run_id) <= 200


def test_clearing_a_run_gives_a_new_id_and_a_retry_does_not():
    scheduled = "scheduled__2026-11-27T02:30:00+00:00"
    assert run_id_for(scheduled, 0) == run_id_for(scheduled, 0) == "airflow__scheduled__2026-11-27T02-30-00-00-00__c0"
    assert run_id_for(scheduled, 1) != run_id_for(scheduled, 0)
    assert run_id_for("y" * 240 + "a", 0) != run_id_for("y" * 240 + "b", 0)


# -- recording a failed run ----------------------------------------------------------------------
PIPELINE_ORDER = ("ingest", "privacy", "features", "train", "publish")


def test_a_run_whose_stages_all_returned_succeeded():
    assert first_failure(PIPELINE_ORDER, {name: {"stage": name} for name in PIPELINE_ORDER}, {}) is None


def test_the_first_failed_stage_in_pipeline_order_is_named_with_its_error():
    summaries = {"ingest": {"stage": "ingest"}}
    failures = {
        "publish": None,
        "privacy": {"stage": "privacy", "message": "k-anonymity gate failed"},
    }
    assert first_failure(PIPELINE_ORDER, summaries, failures) == ("privacy", "k-anonymity gate failed")
    failures["ingest"] = {"stage": "ingest", "message": "no landing data"}
    assert first_failure(PIPELINE_ORDER, {}, failures) == ("ingest", "no landing data (also failed: privacy)")


def test_a_stage_that_left_no_result_counts_as_failed():
    summaries = {name: {"stage": name} for name in ("ingest", "privacy", "features")}
    stage, message = first_failure(PIPELINE_ORDER, summaries, {})
    assert stage == "train" and "without a result" in message


def test_a_failing_stage_leaves_its_error_and_config_errors_are_not_retried(monkeypatch, config):
    from airflow.sdk.exceptions import AirflowFailException

    import jobs.orchestration.pipeline

    monkeypatch.setattr(airflow_tasks, "pipeline_config", lambda: config)
    context = {"dag_run": _dag_run(datetime(2026, 11, 27, 2, 30, tzinfo=UTC)), "ti": _TaskInstance()}

    def broken(*args, **kwargs):
        raise RuntimeError("landing folder is empty")

    monkeypatch.setattr(jobs.orchestration.pipeline, "run_stage", broken)
    with pytest.raises(RuntimeError, match="landing folder"):
        airflow_tasks.run_stage_task("ingest", context)
    assert context["ti"].pushed[FAILURE_XCOM_KEY] == {"stage": "ingest", "message": "landing folder is empty"}

    def misconfigured(*args, **kwargs):
        raise ConfigError("no pseudonymization key")

    monkeypatch.setattr(jobs.orchestration.pipeline, "run_stage", misconfigured)
    with pytest.raises(AirflowFailException, match="no pseudonymization key"):
        airflow_tasks.run_stage_task("privacy", context)
    assert context["ti"].pushed[FAILURE_XCOM_KEY]["stage"] == "privacy"


# -- the settings file -------------------------------------------------------------------------
def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


PATH_SETTINGS = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "FAIRSHELF_LAKEHOUSE")


def test_settings_file_names_sqlite_local_executor_and_no_secret():
    settings = _read_env_file(ENV_FILE)
    assert set(PATH_SETTINGS) <= set(settings)
    assert settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:////")
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert int(settings["AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME"]) >= 600
    assert not [name for name in settings if re.search("KEY|SECRET|PASSWORD|TOKEN", name)]


def test_task_tokens_outlive_the_longest_task(dag_bag):
    """A task's execution-API token must not expire before the task may end: Airflow does
    not always refresh it for a long task (apache/airflow#67939), so its lifetime covers
    every task's execution_timeout, in both DAGs."""
    lifetime = timedelta(seconds=int(_read_env_file(ENV_FILE)["AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME"]))
    longest = max(task.execution_timeout for d in dag_bag.dags.values() for task in d.tasks)
    assert lifetime >= longest


# -- the spark-submit mode ---------------------------------------------------------------------
def test_spark_submit_mode_submits_each_stage_to_the_configured_cluster(tmp_path, monkeypatch, dag):
    """`[airflow] stage_runner = "spark-submit"`: the same tasks and edges, each a
    SparkSubmitOperator; the command its hook builds for the DAG run's partition, the key
    only in spark-submit's environment and masked. (It runs against a real cluster in
    tests/integration/test_cluster.py.)"""
    from airflow.sdk._shared.secrets_masker import redact

    from jobs.interfaces.spark_submit import KEY_VARIABLE, LAUNCHER, StageSubmitOperator
    from tests.conftest import TEST_KEY

    settings = {**_airflow_settings(tmp_path), "FAIRSHELF_STAGE_RUNNER": "spark-submit",
                "FAIRSHELF_SPARK_CONN_ID": "fairshelf_cluster",
                "AIRFLOW_CONN_FAIRSHELF_CLUSTER": "spark://spark-master.example:7077",
                "FAIRSHELF_PSEUDONYM_KEY": TEST_KEY.decode()}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    submitting = bag.dags[DAG_ID]
    assert set(submitting.task_ids) == set(dag.task_ids)
    for task in dag.tasks:
        assert submitting.get_task(task.task_id).upstream_task_ids == task.upstream_task_ids
        assert submitting.get_task(task.task_id).retries == task.retries
    task = submitting.get_task("ingest")
    assert isinstance(task, StageSubmitOperator)

    run_id = "airflow__scheduled__2026-11-27T02-30-00-00-00__c0"
    context = {"dag_run": _dag_run(datetime(2026, 11, 27, 2, 30, tzinfo=UTC)),
               "ti": _TaskInstance({"erasure": {"stage": "erasure", "run_id": run_id}}), "task": task}
    result = tmp_path / "result.json"
    _, config, environment = task.prepare(context, result)
    task.env_vars = environment
    command = task._get_hook()._build_spark_submit_command(task.application)
    assert command == [
        "spark-submit", "--master", "spark://spark-master.example:7077",
        "--conf", f"spark.pyspark.driver.python={sys.executable}", "--name", "fairshelf-ingest",
        str(LAUNCHER), "--stage", "ingest", "--date", "2026-11-26", "--run-id", run_id,
        "--result", str(result),
    ]
    assert TEST_KEY.decode() not in " ".join(command)
    assert environment[KEY_VARIABLE] == TEST_KEY.decode()
    assert environment["PATH"].split(os.pathsep)[0] == str(VENV_BIN)
    assert (VENV_BIN / "spark-submit").is_file()
    assert redact(f"a log line with {TEST_KEY.decode()}") == "a log line with ***"
