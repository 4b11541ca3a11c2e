"""The nightly DAG under a REAL Airflow 3: API server, scheduler (LocalExecutor) and DAG
processor, started by infra/airflow/start-local.sh in a temporary AIRFLOW_HOME with SQLite
on a free port, over a small synthetic lakehouse.

One night is triggered and must be published (gold/recommendations, gold/runs, lineage,
every published table an asset event; pseudonymized with the connection's key, not the
environment's) and announced through the gold/runs asset to the example downstream DAG,
which must read it; then `airflow backfill create` runs two more nights, one after another. Everything
the fixture started is stopped afterwards, also when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pytest

from jobs.core.config import load_config
from jobs.interfaces.airflow_tasks import run_date_for, run_id_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO / "infra" / "airflow" / "start-local.sh"
ENV_FILE = REPO / "infra" / "airflow" / "airflow.env"
AIRFLOW = Path(sys.executable).parent / "airflow"
NIGHTLY, DOWNSTREAM = "nightly_recommendations", "fairshelf_downstream_example"

# Landing days 2026-11-20..23. The triggered night builds D = 11-21 (logical date: the
# night after it), the backfill D = 11-22 and 11-23: two nights show the order and that
# they never overlap (each night starts some 10 JVMs, so a third costs minutes, not proof).
LAST_LANDING_DAY = date(2026, 11, 23)
TRIGGERED = "2026-11-22T02:30:00+00:00"
BACKFILL_FROM, BACKFILL_TO = "2026-11-23", "2026-11-24T02:30:00+00:00"
BACKFILLED_DAYS = [date(2026, 11, 22), date(2026, 11, 23)]

# Small and quick: one core and a small driver per task's SparkSession, no model search.
SMALL_RUN_CONFIG = """
[spark]
master = "local[1]"
driver_memory = "1g"
shuffle_partitions = 2

[model]
selection_trials = 1
"""
CONNECTION_KEY = "fairshelf-scheduler-test-connection-key-0123456789"
ENVIRONMENT_KEY = "fairshelf-scheduler-test-environment-key-012345678"  # must not be used
RUN_TIMEOUT_S = 2700  # one DAG run, at worst: 5-20 min on 2 cores, depending on their load


# -- the local Airflow -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_with(marker: str) -> list[int]:
    """Pids of processes whose environment holds ``marker`` (our AIRFLOW_HOME): whatever
    the start left behind, even outside its process group (Spark JVMs, task processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _stop(process: subprocess.Popen, marker: str) -> None:
    """SIGTERM to the start's process group (the script stops its components), then
    SIGKILL to anything of ours still alive."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _processes_with(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LocalAirflow:
    """A running local Airflow: its environment, CLI and REST API."""

    def __init__(self, home: Path, lake: Path, env: dict[str, str], port: int):
        self.home, self.lake, self.env, self.port = home, lake, env, port

    def cli(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([str(AIRFLOW), *args], env=self.env, cwd=self.home, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, f"`airflow {' '.join(args)}` exited {done.returncode}:\n{done.stderr[-4000:]}"
        return done.stdout

    def api(self, path: str, method: str = "GET", body: dict | None = None, **query) -> dict:
        url = f"http://localhost:{self.port}/api/v2/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.api(f"dags/{dag_id}/dagRuns", order_by="run_after", limit=100)["dag_runs"]

    def wait_until_parsed(self, *dag_ids: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            parsed = {d["dag_id"] for d in self.api("dags", limit=100)["dags"]}
            if set(dag_ids) <= parsed:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"DAGs {sorted(set(dag_ids) - parsed)} not parsed in {timeout} s; "
                            f"dag-processor log:\n{self.log_tail('dag-processor.log')}")
            time.sleep(3)

    def take_out_the_due_tick(self, dag_id: str) -> None:
        """With catchup=False, unpausing a DAG starts its most recent past tick at once (the
        night before today, by the machine's clock): not a night of this test's lakehouse.
        While the DAG is still paused, that tick gets a run marked failed before any task
        starts, so the scheduler finds it taken and moves on to the next tick."""
        from datetime import datetime, timezone

        due = self.api(f"dags/{dag_id}/details")
        logical_date, run_after = due.get("next_dagrun_logical_date"), due.get("next_dagrun_run_after")
        if logical_date is None or _parse(run_after) > datetime.now(timezone.utc) + timedelta(minutes=30):
            return
        run = self.api(f"dags/{dag_id}/dagRuns", method="POST",
                       body={"dag_run_id": "not-this-test__due-tick", "logical_date": logical_date})
        self.api(f"dags/{dag_id}/dagRuns/{run['dag_run_id']}", method="PATCH", body={"state": "failed"})

    def wait_for_runs(self, dag_id: str, count: int, timeout: float, **match) -> list[dict]:
        """The finished runs of ``dag_id`` matching ``match``, once ``count`` of them are;
        fails naming every unfinished or failed task with its log's last lines."""
        deadline = time.monotonic() + timeout
        while True:
            runs = [r for r in self.dag_runs(dag_id) if all(r.get(k) == v for k, v in match.items())]
            finished = [r for r in runs if r["state"] in ("success", "failed")]
            failed = [r for r in finished if r["state"] == "failed"]
            if failed or len(finished) >= count:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(5)
        if failed or len(finished) < count:
            pytest.fail(f"{dag_id}: wanted {count} successful runs matching {match}, got "
                        f"{[(r['dag_run_id'], r['state']) for r in runs]}\n" + self.explain(dag_id, runs))
        return finished

    def explain(self, dag_id: str, runs: list[dict]) -> str:
        """Task states of each run, and the log tail of every task that did not succeed."""
        lines = []
        for run in runs:
            tis = self.api(f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}/taskInstances")
            for ti in tis["task_instances"]:
                lines.append(f"{run['dag_run_id']} {ti['task_id']}: {ti['state']} (try {ti['try_number']})")
                if ti["state"] not in ("success", None):
                    for log in sorted(self.home.glob(f"logs/dag_id={dag_id}/run_id={run['dag_run_id']}/"
                                                     f"task_id={ti['task_id']}/attempt=*.log")):
                        lines.append(f"--- {log.relative_to(self.home)}\n{log.read_text()[-3000:]}")
        lines.append(f"--- scheduler log\n{self.log_tail('scheduler.log')}")
        return "\n".join(lines)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.home / "logs" / name
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> object:
        path = (f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
                "/xcomEntries/return_value")
        return self.api(path, deserialize="true")["value"]


@pytest.fixture(scope="module")
def local_airflow(tmp_path_factory):
    """infra/airflow/start-local.sh on a free port over a small synthetic lakehouse; the
    key in the Airflow connection (as in production) and another in the environment, which
    the connection overrides; stopped whatever happens."""
    from jobs.datasets.synthetic import SyntheticSpec, generate_landing

    root = tmp_path_factory.mktemp("real_airflow")
    home, lake = root / "airflow_home", root / "lake"
    home.mkdir()
    generate_landing(lake, SyntheticSpec(users=300, items=120, events_per_day=1500, days=4,
                                         end_date=LAST_LANDING_DAY, seed=13))
    (root / "fairshelf.toml").write_text(SMALL_RUN_CONFIG)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FAIRSHELF_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        # the REST API without logging in: this Airflow listens on localhost only, for the test
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "FAIRSHELF_LAKEHOUSE": str(lake),
        "FAIRSHELF_CONFIG": str(root / "fairshelf.toml"),
        "AIRFLOW_CONN_FAIRSHELF_PSEUDONYM_KEY": json.dumps({"conn_type": "generic", "password": CONNECTION_KEY}),
        "FAIRSHELF_PSEUDONYM_KEY": ENVIRONMENT_KEY,
        # Each task's JVM lives for one small stage: the quick JIT tier only and one GC
        # thread spend less CPU warming up (the other test worker shares the 2 cores).
        "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    })
    started = time.monotonic()
    with (root / "start-local.out").open("w") as out:
        process = subprocess.Popen([str(START_SCRIPT), "--port", str(port)], env=env, cwd=root, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "airflow ready on port" not in (root / "start-local.out").read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"start-local.sh did not start Airflow:\n{(root / 'start-local.out').read_text()}\n"
                            f"{(home / 'logs' / 'db-migrate.log').read_text()[-3000:] if (home / 'logs' / 'db-migrate.log').exists() else ''}")
            time.sleep(1)
        airflow = LocalAirflow(home, lake, env, port)
        airflow.wait_until_parsed(NIGHTLY, DOWNSTREAM)
        airflow.take_out_the_due_tick(NIGHTLY)
        for dag_id in (NIGHTLY, DOWNSTREAM):  # paused at creation (airflow.env)
            airflow.api(f"dags/{dag_id}", method="PATCH", body={"is_paused": False})
        print(f"\nlocal Airflow up in {time.monotonic() - started:.0f} s")
        yield airflow
    finally:
        _stop(process, str(home))
        leftovers = _processes_with(str(home))
        print(f"local Airflow stopped; {time.monotonic() - started:.0f} s in all; leftovers: {leftovers}")
        assert not leftovers, f"processes of the local Airflow still running: {leftovers}"


# -- what a published night must look like ----------------------------------------------------
def _table(lake: Path, name: str):
    from deltalake import DeltaTable

    return DeltaTable(str(lake / "gold" / name))


def _published_night(lake: Path, day: date, run_id: str) -> None:
    """gold/recommendations holds D's shelves of exactly this run, gold/runs a succeeded row
    for it, and gold/lineage (when the pipeline writes it) a row per stage whose output
    versions are commits of this run in the tables' Delta history."""
    from jobs.orchestration.stage_graph import ORDER

    shelves = _table(lake, "recommendations").to_pyarrow_table(filters=[("run_date", "=", day.isoformat())])
    assert shelves.num_rows > 0, f"no shelves for {day}"
    assert set(shelves.column("run_id").to_pylist()) == {run_id}

    runs = [r for r in _table(lake, "runs").to_pyarrow_table().to_pylist() if r["run_id"] == run_id]
    assert [(r["run_date"], r["status"]) for r in runs] == [(day.isoformat(), "succeeded")]

    if not (lake / "gold" / "lineage").exists():
        return
    lineage = [r for r in _table(lake, "lineage").to_pyarrow_table().to_pylist() if r["run_id"] == run_id]
    assert sorted(r["stage"] for r in lineage) == sorted(ORDER)
    assert {r["status"] for r in lineage} == {"succeeded"}
    for row in lineage:
        for table, written in json.loads(row["outputs_json"]).items():
            if not table.startswith("gold/") or written.get("version") is None:
                continue
            history = {c["version"]: c for c in _table(lake, table.split("/")[1]).history()}
            commit = history.get(written["version"])
            assert commit is not None, f"{row['stage']} wrote {table} v{written['version']}: not in its history"
            assert commit.get("run_id") == run_id, (table, written, commit)


# -- the tests -------------------------------------------------------------------------------------
def test_a_triggered_night_is_published_and_announced_downstream(local_airflow):
    started = time.monotonic()
    local_airflow.cli("dags", "trigger", NIGHTLY, "--logical-date", TRIGGERED, "--run-id", "manual__night-1")
    (run,) = local_airflow.wait_for_runs(NIGHTLY, 1, RUN_TIMEOUT_S, dag_run_id="manual__night-1")
    print(f"\ntriggered night: {time.monotonic() - started:.0f} s")
    assert run["state"] == "success"

    day = run_date_for(_parse(TRIGGERED))
    run_id = run_id_for("manual__night-1", 0)
    _published_night(local_airflow.lake, day, run_id)
    (row,) = [r for r in _table(local_airflow.lake, "runs").to_pyarrow_table().to_pylist() if r["run_id"] == run_id]
    assert row["key_fingerprint"] == load_config(environ={}, pseudonym_key=CONNECTION_KEY.encode()).key_fingerprint
    assert (local_airflow.lake / "models" / run_id).is_dir()
    assert (local_airflow.lake / "reports" / day.isoformat() / "index.html").is_file()

    # Every published table is an asset event of this run, with its Delta version.
    with sqlite3.connect(local_airflow.home / "airflow.db") as db:
        events = db.execute("SELECT asset.name, asset_event.extra FROM asset_event "
                            "JOIN asset ON asset.id = asset_event.asset_id").fetchall()
    extras = {name: json.loads(extra) for name, extra in events if json.loads(extra).get("run_id") == run_id}
    assert set(extras) == {f"fairshelf.gold.{table}" for table in
                           ("recommendations", "default_recommendations", "quality_results", "audit", "runs", "lineage")}
    assert extras["fairshelf.gold.recommendations"]["run_date"] == day.isoformat()
    assert extras["fairshelf.gold.recommendations"]["delta_version"] == \
        json.loads(row["versions_json"])["gold/recommendations"]

    # The succeeded run's gold/runs asset event triggers the downstream DAG, which reads
    # that publication without Spark.
    (downstream,) = local_airflow.wait_for_runs(DOWNSTREAM, 1, 300)
    assert downstream["state"] == "success" and downstream["run_type"] == "asset_triggered"
    summary = local_airflow.xcom(DOWNSTREAM, downstream["dag_run_id"], "read_published_shelves")
    shelves = _table(local_airflow.lake, "recommendations").to_pyarrow_table(filters=[("run_id", "=", run_id)])
    assert summary["run_id"] == summary["announced_run_id"] == run_id
    assert summary["run_date"] == day.isoformat()
    assert summary["rows"] == shelves.num_rows
    assert summary["users"] == len(set(shelves.column("user_key").to_pylist()))


def test_a_backfill_runs_two_nights_one_after_another(local_airflow):
    started = time.monotonic()
    local_airflow.cli("backfill", "create", "--dag-id", NIGHTLY, "--from-date", BACKFILL_FROM,
                      "--to-date", BACKFILL_TO, "--max-active-runs", "1")
    nights = len(BACKFILLED_DAYS)
    runs = local_airflow.wait_for_runs(NIGHTLY, nights, nights * RUN_TIMEOUT_S, run_type="backfill")
    print(f"\nbackfill of {nights} nights: {time.monotonic() - started:.0f} s")
    runs.sort(key=lambda r: r["logical_date"])
    assert [run_date_for(_parse(r["logical_date"])) for r in runs] == BACKFILLED_DAYS
    assert all(r["state"] == "success" for r in runs)
    for earlier, later in zip(runs, runs[1:]):  # in date order, never two at once
        assert earlier["end_date"] <= later["start_date"], (earlier, later)

    for day, run in zip(BACKFILLED_DAYS, runs):
        _published_night(local_airflow.lake, day, run_id_for(run["dag_run_id"], 0))
    days = set(_table(local_airflow.lake, "recommendations").to_pyarrow_table().column("run_date").to_pylist())
    assert {d.isoformat() for d in BACKFILLED_DAYS} <= days

    # Each backfilled night is announced too (events that arrive while the downstream DAG
    # runs are served by its next run): its runs succeed and the last one reads the last day.
    last = BACKFILLED_DAYS[-1].isoformat()
    deadline = time.monotonic() + 300
    while True:
        downstream = local_airflow.wait_for_runs(DOWNSTREAM, 2, 300)
        summaries = [local_airflow.xcom(DOWNSTREAM, r["dag_run_id"], "read_published_shelves") for r in downstream]
        if any(s["run_date"] == last for s in summaries) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert last in {s["run_date"] for s in summaries}, summaries


def _parse(timestamp: str):
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
