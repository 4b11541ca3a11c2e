"""The nightly run: which stages exist, in what order, and how a run is recorded.

The CLI, the Airflow DAG and the tests all go through here; no business logic lives
in them. A run either publishes everything or fails and leaves a ``failed`` row in
``gold/runs`` and a report saying which stage failed and why.

Publication (``jobs.lake.reader``): the stages write their tables, then ``record_run`` writes
the run's ``gold/lineage`` rows (one commit) and appends its ``gold/runs`` row, which
pins the exact version of every published table: that one append makes the run visible.
Each stage also emits OpenLineage START/COMPLETE/FAIL events (``jobs.orchestration.lineage``).

A failed or killed run changes neither silver nor gold (``jobs.lake.run_marker``): the run
keeps a marker with every table's version after its erasure stage; ``record_run`` of a
failed run restores them and removes its model folder, and the next run records a killed
run (a marker without heartbeat) as failed, "interrupted", and undoes it the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

from pyspark.sql import SparkSession

from jobs.core.config import Config, ConfigError, load_config
from jobs.core.dates import utc_now
from jobs.core.errors import StageError
from jobs.core.schemas import LINEAGE
from jobs.lake import run_marker, tables
from jobs.lake.pseudonym_space import check_key
from jobs.lake.runs import append_runs_row, new_run_id, published_tables
from jobs.orchestration import report
from jobs.orchestration.lineage import LINEAGE_TABLE, emit_stage_event, lineage_row
from jobs.orchestration.stage_graph import ORDER, UPSTREAM  # noqa: F401 (re-exported)
from jobs.shared.stage import StageResult
from jobs.stages import audit, erasure, features, ingest, privacy, publish, quality, rerank, train

# Stage name -> entry point. Each is ``run(spark, config, run_date, run_id)``.
STAGES: dict[str, Callable[..., StageResult]] = {
    "erasure": erasure.run,
    "ingest": ingest.run,
    "privacy": privacy.run,
    "features": features.run,
    "quality": quality.run,
    "train": train.run,
    "rerank": rerank.run,
    "audit": audit.run,
    "publish": publish.run,
}
assert tuple(STAGES) == ORDER, "jobs.orchestration.stage_graph and STAGES must name the same stages"


@dataclass
class RunOutcome:
    run_id: str
    run_date: date
    status: str
    summaries: list[dict[str, Any]] = field(default_factory=list)
    failed_stage: str | None = None
    message: str | None = None
    report_path: str | None = None
    # the failed stage's timing ({"stage", "started_at", "finished_at", "seconds"}), if known
    failed_timing: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


def preflight(config: Config, run_id: str) -> None:
    """Checks that must pass before any work starts (fails fast, names the fix): the key
    is there and is the key of the lakehouse's pseudonym space (a first run records it)."""
    check_key(config, claim_by=run_id)


class RunInProgress(StageError):
    """Another run is writing the lakehouse (its marker has a fresh heartbeat)."""


def start_run(spark: SparkSession, config: Config, run_id: str, run_date: date) -> None:
    """Before a run's first stage: record earlier runs that were killed (no heartbeat for
    ``run_marker.STALE_AFTER``) as failed and undo them; refuse while another run is alive;
    then create (or, for a retry, keep) this run's marker."""
    now = utc_now()
    for marker in run_marker.other_runs(config, run_id):
        if not marker.is_stale(now):
            raise RunInProgress(
                f"run {marker.run_id} (date {marker.run_date}, stage {marker.last_stage}) is writing "
                f"{config.lakehouse}: its last heartbeat was at {marker.heartbeat_at}. Wait for it to "
                f"finish; if its process is gone, it is recorded as interrupted once "
                f"{run_marker.STALE_AFTER} have passed without a heartbeat")
        record_interrupted(spark, config, marker)
    run_marker.begin_or_resume(config, run_id, run_date.isoformat())


def record_interrupted(spark: SparkSession, config: Config, marker: run_marker.RunMarker) -> str:
    """Record a killed run as failed (its last stage, "interrupted") and undo it."""
    outcome = RunOutcome(
        marker.run_id, date.fromisoformat(marker.run_date), "failed", [], marker.last_stage or ORDER[0],
        f"interrupted: no heartbeat since {marker.heartbeat_at} (the process was killed or lost); "
        "found and undone by the next run")
    return record_run(spark, config, outcome, marker.started_at)


def run_stage_in_run(name: str, spark: SparkSession, config: Config, run_date: date, run_id: str) -> dict[str, Any]:
    """One stage of a run, with the run's marker: a heartbeat while it runs, and after the
    erasure stage the snapshot of table versions that a failure restores."""
    with run_marker.heartbeat(config, run_id, name):
        summary = timed_stage(name, spark, config, run_date, run_id)
    if name == ORDER[0]:
        run_marker.snapshot(config, run_id)
    return summary


def run_stage(
    name: str,
    run_date: date | str,
    run_id: str,
    config: Config | None = None,
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Run one stage; builds the config and the Spark session when not given (the
    Airflow task path). Returns the stage's small JSON-able summary."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; stages are {', '.join(ORDER)}")
    run_date = date.fromisoformat(run_date) if isinstance(run_date, str) else run_date
    config = config or load_config()
    preflight(config, run_id)
    own_session = spark is None
    if own_session:
        from jobs.lake.spark import build_spark

        spark = build_spark(config, app_name=f"fairshelf-{name}")
    try:
        if name == ORDER[0]:
            start_run(spark, config, run_id, run_date)
        else:
            run_marker.begin_or_resume(config, run_id, run_date.isoformat())
        return run_stage_in_run(name, spark, config, run_date, run_id)
    finally:
        if own_session:
            spark.stop()


def timed_stage(
    name: str, spark: SparkSession, config: Config, run_date: date, run_id: str
) -> dict[str, Any]:
    """Run a stage and return its summary with its start, end and wall-clock seconds;
    emits its OpenLineage START, then COMPLETE (with its datasets) or FAIL.

    A failure is re-raised with the stage's timing attached (``fairshelf_timing``), for
    the failed stage's lineage row."""
    started_at = utc_now().isoformat()
    emit_stage_event(config, "START", name, run_id, run_date, started_at)
    start = time.perf_counter()
    try:
        summary = STAGES[name](spark, config, run_date, run_id).summary()
    except Exception as exc:
        timing = {"stage": name, "started_at": started_at, "finished_at": utc_now().isoformat(),
                  "seconds": round(time.perf_counter() - start, 2)}
        emit_stage_event(config, "FAIL", name, run_id, run_date, timing["finished_at"],
                         error=str(exc) or type(exc).__name__)
        exc.fairshelf_timing = timing  # for the failed stage's lineage row
        raise
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["started_at"] = started_at
    summary["finished_at"] = utc_now().isoformat()
    emit_stage_event(config, "COMPLETE", name, run_id, run_date, summary["finished_at"], summary)
    return summary


def run_pipeline(
    spark: SparkSession,
    config: Config,
    run_date: date,
    run_id: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_stage_done: Callable[[dict[str, Any]], None] | None = None,
) -> RunOutcome:
    """All stages in order for ``run_date``, then the lineage, the run row (the
    publishing step) and the report. ``on_stage`` is called with a stage's name before it
    runs, ``on_stage_done`` with its summary after it succeeded (progress for a person)."""
    run_id = run_id or new_run_id(run_date)
    preflight(config, run_id)
    start_run(spark, config, run_id, run_date)
    started_at = utc_now().isoformat()
    summaries: list[dict[str, Any]] = []
    for name in ORDER:
        if on_stage:
            on_stage(name)
        try:
            summaries.append(run_stage_in_run(name, spark, config, run_date, run_id))
        except Exception as exc:  # recorded, then re-raised by the caller's choice
            outcome = RunOutcome(run_id, run_date, "failed", summaries, name, str(exc))
            outcome.failed_timing = getattr(exc, "fairshelf_timing", None)
            outcome.report_path = record_run(spark, config, outcome, started_at)
            raise RunFailed(outcome) from exc
        if on_stage_done:
            on_stage_done(summaries[-1])
    outcome = RunOutcome(run_id, run_date, "succeeded", summaries)
    outcome.report_path = record_run(spark, config, outcome, started_at)
    return outcome


class RunFailed(RuntimeError):
    """A run failed; ``outcome`` says at which stage and why."""

    def __init__(self, outcome: RunOutcome):
        super().__init__(f"run {outcome.run_id} failed at stage {outcome.failed_stage}: {outcome.message}")
        self.outcome = outcome


def lineage_rows(config: Config, outcome: RunOutcome) -> list[dict[str, Any]]:
    """The run's gold/lineage rows: each stage that ran, the failed one included."""
    summaries = [{**s, "status": "succeeded"} for s in outcome.summaries]
    if outcome.failed_stage:
        timing = outcome.failed_timing or {"stage": outcome.failed_stage}
        summaries.append({**timing, "status": "failed", "inputs": {}, "outputs": {}, "metrics": {}})
    return [lineage_row(config, outcome.run_id, outcome.run_date, s) for s in summaries]


def record_run(spark: SparkSession, config: Config, outcome: RunOutcome, started_at: str) -> str:
    """Write the run's lineage, then append its gold/runs row (for a succeeded run: the
    publication, pinning every published table's version), then its report; returns the
    report path. A failed run is undone first (module doc): its tables restored, its
    model folder removed; what was undone goes into the row's message."""
    marker = run_marker.read_marker(config, outcome.run_id)
    if marker is not None and not outcome.succeeded:
        commit = tables.CommitInfo(outcome.run_id, outcome.run_date.isoformat(), "undo_failed_run",
                                   config.code_version, config.config_hash)
        undone = run_marker.undo_run(config, marker, commit)
        outcome.message = (f"{outcome.message} [undone: {len(undone['restored'])} table(s) restored to their "
                           f"versions before the run, {len(undone['removed_tables'])} new table(s) removed"
                           f"{', model folder removed' if undone['model_dir_removed'] else ''}]")
    metrics = {s["stage"]: {**s["metrics"], "seconds": s.get("seconds")} for s in outcome.summaries}
    versions = {table: v for s in outcome.summaries for table, v in s["outputs"].items()}
    result = StageResult("record_run", outcome.run_date, outcome.run_id, config)
    versions[LINEAGE_TABLE] = result.write(
        spark.createDataFrame(lineage_rows(config, outcome), LINEAGE), LINEAGE_TABLE, mode="append"
    )
    model_version = metrics.get("train", {}).get("model_version")
    run_date = outcome.run_date.isoformat()
    row = {
        "run_id": outcome.run_id,
        "run_date": run_date,
        "status": outcome.status,
        "kind": "run",
        "failed_stage": outcome.failed_stage,
        "message": outcome.message,
        "started_at": started_at,
        "finished_at": utc_now().isoformat(),
        "code_version": config.code_version,
        "config_hash": config.config_hash,
        "key_fingerprint": config.key_fingerprint,
        "model_version": model_version,
        "metrics_json": json.dumps(metrics, sort_keys=True, default=str),
        "versions_json": json.dumps(versions, sort_keys=True),
        "published_json": (
            json.dumps(published_tables(outcome.run_id, run_date, versions), sort_keys=True)
            if outcome.succeeded else None
        ),
    }
    append_runs_row(spark, config, row)
    if marker is not None:
        run_marker.remove_marker(config, outcome.run_id)
    return report.write_report(config, row, outcome.summaries, tables.list_tables(config.lakehouse))
