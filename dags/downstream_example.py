"""
### fairshelf: example downstream consumer of the published shelves

A DAG of a downstream team (say, the service that loads shelves into its cache), scheduled
on the **`fairshelf.gold.runs`** asset (`x-fairshelf://gold/runs`): it runs once a nightly
run of `nightly_recommendations` is published, since a run becomes visible in one step, the
append of its row to `gold/runs` (the `record_run` task emits the asset event only for a
succeeded run; a failed run triggers nothing and the previous shelves stay live).

- **What it reads.** The publication the triggering event announced (the event's extra
  names the run id and day D), through `jobs.lake.reader` — `deltalake` and pyarrow, no Spark,
  each table at the Delta version the publication pinned. A backfill's events each
  trigger a run for their own day; a manual run reads the live publication.
- **What it does.** Summarizes the shelves (users with a shelf, rows, shortest and longest
  shelf, titles by reason) and returns the summary (its XCom), where a real consumer would
  load them. Replace the task body with your own; keep reading through `jobs.lake.reader`.
- **Settings.** `FAIRSHELF_LAKEHOUSE` (and `FAIRSHELF_CONFIG`) as for the nightly DAG; no
  pseudonymization key is needed to read.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import dag, task

from jobs.interfaces.airflow_tasks import table_asset

RUNS = table_asset("gold/runs")


@dag(
    dag_id="fairshelf_downstream_example",
    schedule=[RUNS],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "downstream",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=30),
    },
    tags=["fairshelf", "downstream", "example"],
    doc_md=__doc__,
)
def fairshelf_downstream_example():
    @task
    def read_published_shelves(**context) -> dict:
        """Summarize the shelves of the publication that triggered this run."""
        from jobs.interfaces.airflow_tasks import read_publication_task

        return read_publication_task(context, RUNS)

    read_published_shelves()


fairshelf_downstream_example()
