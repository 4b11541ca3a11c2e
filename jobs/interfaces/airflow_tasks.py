"""What the Airflow DAG calls: no business logic, only the Airflow side of a run.

- which partition a DAG run is for: the run date D from the logical date, and a
  fairshelf run id from the Airflow run id (``partition_of``);
- the configuration, with the pseudonymization key taken from the Airflow connection
  ``fairshelf_pseudonym_key`` when it exists (``pipeline_config``);
- the bodies of the stage tasks and of the task that records the run; each stage is
  ``jobs.orchestration.pipeline.run_stage`` and the record is ``jobs.orchestration.pipeline.record_run``;
- the body of the example downstream DAG's task (``read_publication_task``), which reads
  the publication a ``gold/runs`` asset event announced through ``jobs.lake.reader``.

The DAG file imports this module when it is parsed, so nothing heavy is imported at
its top: pyspark, ``jobs.orchestration.pipeline`` and Airflow are imported inside the functions that
run in a task.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

from jobs.orchestration.stage_graph import UPSTREAM as STAGE_UPSTREAM

RECORD_TASK_ID = "record_run"
PSEUDONYM_KEY_CONN_ID = "fairshelf_pseudonym_key"
# XCom key under which a failing stage task leaves its error for the record task.
FAILURE_XCOM_KEY = "stage_failure"
MAX_MESSAGE_CHARS = 2000
# Asset URIs: scheme + path of the table inside the lakehouse, so they do not depend
# on where the lakehouse is (each asset event carries the real location in its extra).
ASSET_SCHEME = "x-fairshelf"
_MAX_RUN_ID_CHARS = 180
_UNSAFE_IN_RUN_ID = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class RunPartition:
    """What every task of one DAG run works on: the day D and the run id."""

    run_date: date
    run_id: str


# -- the partition of a DAG run -------------------------------------------------------
def run_date_for(logical_date: datetime) -> date:
    """The day a DAG run processes: the UTC calendar day before its logical date.

    The DAG is scheduled after midnight UTC, so its run at 2026-11-27T02:30Z (logical
    date) processes the complete day 2026-11-26. A manual run processes the day before
    its logical date in the same way.
    """
    if logical_date.tzinfo is None:
        raise ValueError(f"logical date {logical_date!r} has no timezone")
    day = logical_date.astimezone(timezone.utc)
    return date(day.year, day.month, day.day) - timedelta(days=1)


def run_id_for(airflow_run_id: str, clear_number: int) -> str:
    """A fairshelf run id for an Airflow DAG run attempt, safe as a directory name.

    ``scheduled__2026-11-27T02:30:00+00:00`` cleared once becomes
    ``airflow__scheduled__2026-11-27T02-30-00-00-00__c1``. Retries of a task keep the
    id (the tables layer deduplicates their writes); clearing the DAG run bumps the
    clear number, so a cleared rerun writes as a new run.
    """
    safe = _UNSAFE_IN_RUN_ID.sub("-", airflow_run_id).strip("-.") or "run"
    if len(safe) > _MAX_RUN_ID_CHARS:
        digest = hashlib.sha256(airflow_run_id.encode()).hexdigest()[:10]
        safe = f"{safe[:_MAX_RUN_ID_CHARS - 11]}-{digest}"
    return f"airflow__{safe}__c{int(clear_number)}"


def partition_of(context: Mapping[str, Any]) -> RunPartition:
    """The partition of the DAG run a task belongs to (fixed for the run, never now())."""
    dag_run = context["dag_run"]
    # Airflow 3 allows a manual run without a logical date; its run_after is as fixed.
    when = dag_run.logical_date or dag_run.run_after
    return RunPartition(run_date_for(when), run_id_for(dag_run.run_id, dag_run.clear_number or 0))


# -- configuration and secrets ----------------------------------------------------------
def pseudonym_key_from_connection() -> bytes | None:
    """The key from the password of the Airflow connection ``fairshelf_pseudonym_key``,
    or None when the connection is not defined (the environment is used then)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from jobs.core.config import ConfigError

    try:
        connection = Connection.get(PSEUDONYM_KEY_CONN_ID)
    except AirflowNotFoundException:
        return None
    if not connection.password:
        raise ConfigError(
            f"the Airflow connection {PSEUDONYM_KEY_CONN_ID!r} has no password: put the "
            "pseudonymization key in its password field"
        )
    return connection.password.encode()


def pipeline_config():
    """``jobs.core.config.load_config()``, with the key from the Airflow connection if any.

    The key is registered with Airflow's secrets masker wherever it came from (a
    connection's password is masked already; ``FAIRSHELF_PSEUDONYM_KEY`` is not), so a
    task log or rendered field that would show it shows ``***``."""
    from airflow.sdk.log import mask_secret

    from jobs.core.config import load_config

    key = pseudonym_key_from_connection()
    config = load_config(pseudonym_key=key) if key else load_config()
    if config.pseudonym_key:
        mask_secret(config.pseudonym_key.decode(errors="replace"))
    return config


def stage_runner() -> tuple[str, str]:
    """(``[airflow] stage_runner``, ``spark_conn_id``): how the DAG runs its stages. Read
    when the DAG file is parsed: the config file and ``FAIRSHELF_*`` variables only."""
    from jobs.core.config import load_config

    settings = load_config().airflow
    return settings.stage_runner, settings.spark_conn_id


# -- assets ------------------------------------------------------------------------------
def table_asset(table: str):
    """The Airflow asset of a published table: ``gold/recommendations`` ->
    ``Asset("fairshelf.gold.recommendations", uri="x-fairshelf://gold/recommendations")``."""
    from airflow.sdk import Asset

    layer, name = table.split("/")
    return Asset(name=f"fairshelf.{layer}.{name}", uri=f"{ASSET_SCHEME}://{layer}/{name}", group="fairshelf")


def asset_table(asset: Any) -> str | None:
    """The table (``layer/name``) of a fairshelf asset, or None for any other outlet."""
    uri = getattr(asset, "uri", "")
    prefix = f"{ASSET_SCHEME}://"
    return uri[len(prefix):] if uri.startswith(prefix) else None


def annotate_outlets(context: Mapping[str, Any], partition: RunPartition, config: Any, versions: Mapping[str, int]) -> None:
    """Put the run, the table's location and the Delta version written on each asset event."""
    for outlet in getattr(context["task"], "outlets", None) or ():
        table = asset_table(outlet)
        if table is None:
            continue
        layer, name = table.split("/")
        context["outlet_events"][outlet].extra = {
            "run_id": partition.run_id,
            "run_date": partition.run_date.isoformat(),
            "location": config.table(layer, name),
            "delta_version": versions.get(table),
        }


# -- task bodies ---------------------------------------------------------------------------
def run_stage_task(stage: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """Body of a stage task: ``jobs.orchestration.pipeline.run_stage`` on the run's partition.

    A failure leaves its message for the record task; a configuration error or a partly
    cleared DAG run fails the task without retries (retrying cannot fix either).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.core.config import ConfigError

    partition = partition_of(context)
    try:
        from jobs.orchestration.pipeline import run_stage

        require_upstream_of_same_attempt(stage, context, partition)
        config = pipeline_config()
        summary = run_stage(stage, partition.run_date, partition.run_id, config=config)
    except (ConfigError, MixedAttemptsError) as exc:
        leave_failure(context, stage, exc)
        raise AirflowFailException(str(exc)) from exc
    except Exception as exc:
        leave_failure(context, stage, exc)
        raise
    annotate_outlets(context, partition, config, summary.get("outputs", {}))
    return summary


class MixedAttemptsError(RuntimeError):
    """A stage would build on the results of another attempt of its DAG run."""


def require_upstream_of_same_attempt(stage: str, context: Mapping[str, Any], partition: RunPartition) -> None:
    """Fail when an upstream stage's result belongs to another attempt of this DAG run.

    Clearing any task bumps the DAG run's clear number, so clearing only part of a run
    gives the cleared stages a new run id while their upstream results (and the model
    in models/<run id>/) keep the old one.
    """
    for parent in STAGE_UPSTREAM[stage]:
        upstream_run_id = (context["ti"].xcom_pull(task_ids=parent) or {}).get("run_id")
        if upstream_run_id and upstream_run_id != partition.run_id:
            raise MixedAttemptsError(
                f"stage {stage} runs as {partition.run_id}, but its upstream stage {parent} "
                f"ran as {upstream_run_id}: only part of this DAG run was cleared. To rerun "
                f"{partition.run_date}, clear the whole DAG run (every task)"
            )


def leave_failure(context: Mapping[str, Any], stage: str, exc: BaseException) -> None:
    """Push the stage's error for the record task (the last try's error is kept)."""
    message = (str(exc) or type(exc).__name__)[:MAX_MESSAGE_CHARS]
    context["ti"].xcom_push(key=FAILURE_XCOM_KEY, value={"stage": stage, "message": message})


def first_failure(
    order: tuple[str, ...],
    summaries: Mapping[str, Any],
    failures: Mapping[str, Any],
) -> tuple[str, str] | None:
    """(stage, message) of the first stage, in pipeline order, that did not succeed;
    None when every stage returned its summary."""
    failed = [name for name in order if failures.get(name)]
    if failed:
        first = failed[0]
        message = failures[first].get("message") or "failed"
        if failed[1:]:
            message += f" (also failed: {', '.join(failed[1:])})"
        return first, message
    for name in order:
        if not summaries.get(name):
            return name, (
                f"stage {name} ended without a result: killed, timed out, marked failed, or "
                "not run because an upstream stage failed; see its Airflow task log"
            )
    return None


def record_run_task(context: Mapping[str, Any]) -> dict[str, Any]:
    """Body of the record task: the gold/runs row and the report, for success and failure.

    It runs when every stage task is done. After recording a failed run it fails
    (without retries), so the DAG run fails too and names the stage.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.core.config import ConfigError
    from jobs.lake.spark import build_spark
    from jobs.orchestration.pipeline import ORDER, RunOutcome, record_run

    partition = partition_of(context)
    ti = context["ti"]
    summaries = {name: ti.xcom_pull(task_ids=name) for name in ORDER}
    failures = {name: ti.xcom_pull(task_ids=name, key=FAILURE_XCOM_KEY) for name in ORDER}
    failure = first_failure(ORDER, summaries, failures)
    done = [summaries[name] for name in ORDER if summaries.get(name)]
    if failure is None:
        outcome = RunOutcome(partition.run_id, partition.run_date, "succeeded", done)
    else:
        outcome = RunOutcome(partition.run_id, partition.run_date, "failed", done, *failure)

    # The DAG run's start; `airflow dags test` sets it to the logical date, which may
    # lie after now, so it is capped by this task's own start.
    started_at = min(context["dag_run"].start_date or ti.start_date, ti.start_date)
    started_at = started_at.astimezone(timezone.utc).isoformat()
    try:
        config = pipeline_config()
    except ConfigError as exc:  # nowhere to record to; retrying cannot fix it
        raise AirflowFailException(f"cannot record run {outcome.run_id}: {exc}") from exc
    spark = build_spark(config, app_name=f"fairshelf-{RECORD_TASK_ID}")
    try:
        outcome.report_path = record_run(spark, config, outcome, started_at)
    finally:
        spark.stop()
    annotate_outlets(context, partition, config, {})
    if not outcome.succeeded:
        raise AirflowFailException(
            f"run {outcome.run_id} for {outcome.run_date} failed at stage "
            f"{outcome.failed_stage}: {outcome.message} (recorded in gold/runs; report: "
            f"{outcome.report_path})"
        )
    return {
        "run_id": outcome.run_id,
        "run_date": outcome.run_date.isoformat(),
        "status": outcome.status,
        "report_path": outcome.report_path,
    }


# -- the example downstream DAG -----------------------------------------------------------
def published_run_of(context: Mapping[str, Any], asset: Any) -> dict[str, Any]:
    """The run id and day D of the newest asset event of ``asset`` that triggered this
    DAG run (the extra ``annotate_outlets`` put on it); empty for a manual run."""
    events = (context.get("triggering_asset_events") or {}).get(asset) or []
    if not events:
        return {}
    newest = max(events, key=lambda event: event.timestamp)
    extra = dict(newest.extra or {})
    return {key: extra[key] for key in ("run_id", "run_date") if extra.get(key)}


def shelves_summary(shelves: Any) -> dict[str, Any]:
    """What a downstream consumer checks before it takes a day's shelves: how many users
    have a shelf, how many rows, the shortest and longest shelf, and the titles by
    reason kind (``Because you watched ...`` counted as one kind)."""
    import pyarrow.compute as pc

    if shelves.num_rows == 0:
        return {"users": 0, "rows": 0, "shortest_shelf": 0, "longest_shelf": 0, "reasons": {}}
    per_user = shelves.group_by("user_key").aggregate([("rank", "count")]).column("rank_count")
    reasons = pc.if_else(
        pc.starts_with(shelves.column("reason"), "Because you watched "),
        "Because you watched ...",
        shelves.column("reason"),
    )
    kinds = pc.value_counts(reasons)
    return {
        "users": len(per_user),
        "rows": shelves.num_rows,
        "shortest_shelf": pc.min(per_user).as_py(),
        "longest_shelf": pc.max(per_user).as_py(),
        "reasons": {k["values"]: k["counts"] for k in kinds.to_pylist()},
    }


def read_publication_task(context: Mapping[str, Any], runs_asset: Any) -> dict[str, Any]:
    """Body of the downstream example's task: read, without Spark, the publication the
    triggering ``gold/runs`` event announced (through ``jobs.lake.reader``) and summarize it.

    A manual run (no triggering event) reads the live publication. Reading the day the
    event names, not "the latest", keeps a backfill's downstream runs on their own days.
    """
    from jobs.core.config import load_config
    from jobs.lake import reader

    announced = published_run_of(context, runs_asset)
    lakehouse = load_config().lakehouse
    publication = reader.publication_for(lakehouse, announced.get("run_date"))
    shelves = reader.published_table(lakehouse, publication, "gold/recommendations")
    return {
        "run_id": publication["run_id"],
        "run_date": publication["run_date"],
        "announced_run_id": announced.get("run_id"),
        "live_run_date": reader.latest_publication(lakehouse)["run_date"],
        **shelves_summary(shelves),
    }
