"""
### fairshelf: nightly recommendations

One DAG run builds and publishes the recommendation shelves of **one day D**.

- **Which day.** The DAG runs every night at 02:30 UTC and processes the *previous*
  UTC calendar day: the run with logical date 2026-11-27T02:30Z is for D = 2026-11-26
  (`jobs.interfaces.airflow_tasks.run_date_for`). A manual run or `airflow dags test
  nightly_recommendations 2026-11-27` is for the day before its logical date as well.
  Every task of a run works on that fixed partition, never on "now" or "latest".
- **Tasks.** One task per stage of `jobs.orchestration.stage_graph.UPSTREAM` (`erasure`, `ingest`,
  `privacy`, `features`, ... `publish`), each calling `jobs.orchestration.pipeline.run_stage`, wired
  like it. `record_run` runs when all of them are done, whatever
  their state: it appends the run's row to `gold/runs` and writes
  `reports/<D>/index.html`, as `succeeded` or as `failed` naming the first failed stage
  and its error. After recording a failure it fails too, so the DAG run fails.
- **Run id.** `airflow__<Airflow run id, made safe as a folder name>__c<clear number>`.
  Retries of a task reuse it (the tables layer replaces the day's partition); clearing
  the DAG run starts a new fairshelf run with a new id and model folder.
- **Assets.** `quality` emits `fairshelf.gold.quality_results`, `audit`
  `fairshelf.gold.audit`, `publish` `fairshelf.gold.recommendations` and
  `fairshelf.gold.default_recommendations`, `record_run` `fairshelf.gold.runs` and
  `fairshelf.gold.lineage` (URIs `x-fairshelf://gold/<table>`, relative to the lakehouse;
  each event's extra holds the run id, D, the table's location and the Delta version
  written). A run is published when its `gold/runs` row is written, so downstream DAGs
  schedule on `fairshelf.gold.runs` (emitted for succeeded runs only); see
  `dags/downstream_example.py`.
- **Stage runner.** `[airflow] stage_runner` (`FAIRSHELF_STAGE_RUNNER`), read when this
  file is parsed: `in-process` (default) runs each stage in its task process with local
  Spark (`[spark] master`); `spark-submit` makes each stage task a `SparkSubmitOperator`
  (`jobs.interfaces.spark_submit`) that submits it to the master of the Airflow
  connection `[airflow] spark_conn_id` (`spark_default`). Same task ids, edges, results.
- **Settings.** The lakehouse and Spark come from `FAIRSHELF_*` environment variables
  (`jobs.core.config`). The pseudonymization key is the password of the Airflow connection
  `fairshelf_pseudonym_key`, or `FAIRSHELF_PSEUDONYM_KEY` when that connection does not
  exist. See `infra/airflow/README.md`.
- **Reruns.** Clear the whole DAG run (every task), or run `fairshelf run --date D`.
  Clearing only some tasks starts a new attempt that would build on the old attempt's
  results; the first re-run stage then fails and says so.
- **Backfills.** Days D1..D2: `airflow backfill create --dag-id nightly_recommendations
  --from-date D1+1 --to-date D2+1T02:30:00+00:00 --max-active-runs 1` (logical dates
  are the nights after the days). `--max-active-runs 1` keeps the nights in date order:
  a backfill's concurrency is its own, not the DAG's. Safe to interrupt: each night
  replaces its own partitions and the last recorded run stays published. Pause or cancel
  the backfill (UI, or `PUT /api/v2/backfills/<id>/pause|cancel`); resume with the same
  command and `--reprocess-behavior failed` (succeeded nights are skipped).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import CronTriggerTimetable, TriggerRule, dag, task

from jobs.interfaces.airflow_tasks import RECORD_TASK_ID, STAGE_UPSTREAM, stage_runner, table_asset

# Published tables, by the task that writes them (their Airflow assets).
# A stage not in the pipeline (yet) has no task, so its entry is simply not used.
PUBLISHED = {
    "quality": ("gold/quality_results",),
    "audit": ("gold/audit",),
    "publish": ("gold/recommendations", "gold/default_recommendations"),
    RECORD_TASK_ID: ("gold/runs", "gold/lineage"),
}


@dag(
    dag_id="nightly_recommendations",
    schedule=CronTriggerTimetable("30 2 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args={
        "owner": "fairshelf",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(hours=2),
    },
    tags=["fairshelf", "recommendations", "nightly"],
    doc_md=__doc__,
)
def nightly_recommendations():
    @task
    def run_stage(stage: str, **context) -> dict:
        """Run one stage of jobs.orchestration.pipeline for the DAG run's day."""
        from jobs.interfaces.airflow_tasks import run_stage_task

        return run_stage_task(stage, context)

    @task(task_id=RECORD_TASK_ID, trigger_rule=TriggerRule.ALL_DONE)
    def record(**context) -> dict:
        """Record the run (gold/runs row and report), succeeded or failed."""
        from jobs.interfaces.airflow_tasks import record_run_task

        return record_run_task(context)

    runner, spark_conn_id = stage_runner()
    if runner == "spark-submit":
        from jobs.interfaces.spark_submit import StageSubmitOperator

        stages = {
            name: StageSubmitOperator(
                task_id=name, stage=name, conn_id=spark_conn_id,
                outlets=[table_asset(t) for t in PUBLISHED.get(name, ())],
            )
            for name in STAGE_UPSTREAM
        }
    else:
        stages = {
            name: run_stage.override(
                task_id=name, outlets=[table_asset(t) for t in PUBLISHED.get(name, ())]
            )(stage=name)
            for name in STAGE_UPSTREAM
        }
    for name, upstream in STAGE_UPSTREAM.items():
        for parent in upstream:
            stages[parent] >> stages[name]
    list(stages.values()) >> record.override(
        outlets=[table_asset(t) for t in PUBLISHED[RECORD_TASK_ID]]
    )()


nightly_recommendations()
