"""Lineage of every run: the ``gold/lineage`` table and OpenLineage events.

``gold/lineage`` holds one row per run and stage: the tables read with the Delta version
read (``StageResult.read`` pins and records them), the landing folders read (files and
bytes), the tables written with the version written and the rows that commit added
(summed from the commit's own log entry), code version, config hash, the stage's
expectation results when it has any, timings and status. ``jobs.orchestration.pipeline.record_run``
writes a run's rows in one commit, before the run's ``gold/runs`` row, so a published run
always has its lineage (readers pin ``gold/lineage`` like every published table).

OpenLineage (https://openlineage.io): each stage emits START, then COMPLETE or FAIL,
with job ``<namespace>.<stage>`` (``fairshelf.ingest``), a parent run facet naming the
fairshelf run (job ``<namespace>.nightly``), input and output datasets named
``layer/table`` in the lakehouse's namespace (its URI), each with its schema, its Delta
version, and for outputs the rows written. Events go to files under
``<lakehouse>/lineage/openlineage/`` by default, or to any OpenLineage HTTP backend
(Marquez, ...) by configuration ([lineage]); a transport failure is a warning, never a
failed run. OpenLineage run ids are UUIDs derived from the fairshelf run id and stage, so
START and COMPLETE of one stage, and retries of it, share one id.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Mapping

from jobs.core.config import Config
from jobs.lake import tables

log = logging.getLogger(__name__)

LINEAGE_TABLE = "gold/lineage"
PRODUCER = "https://github.com/fairshelf/fairshelf"
# Landing folders each stage reads (under landing/); ingest's viewing events are listed
# per day from its metrics (the days it ingested, first_ingested_date .. run date).
STAGE_LANDING: dict[str, tuple[str, ...]] = {
    "erasure": ("erasure_requests",),
    "ingest": ("catalog",),
    "privacy": ("users",),
}


# --- gold/lineage rows ------------------------------------------------------------------

def folder_size(path: str) -> dict[str, int] | None:
    """Files and bytes of the data files in a landing folder (None when it is absent)."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def landing_folders(stage: str, run_date: date, metrics: Mapping[str, Any], landing_dates: Iterable[str]) -> list[str]:
    """The landing folders (relative to landing/) a stage read for ``run_date``.

    Ingest reads its catch-up days (the landing days from ``first_ingested_date`` to
    the run date) and the catalog; a stage may also name its own in
    ``metrics["landing_read"]``.
    """
    folders = list(STAGE_LANDING.get(stage, ()))
    if stage == "ingest" and metrics.get("first_ingested_date"):
        first, last = metrics["first_ingested_date"], run_date.isoformat()
        folders += [f"viewing_events/date={d}" for d in sorted(landing_dates) if first <= d <= last]
    folders += [f for f in metrics.get("landing_read", ()) if f not in folders]
    return folders


def landing_read(config: Config, stage: str, run_date: date, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``{"landing/<folder>": {"files": n, "bytes": n}}`` for the folders the stage read."""
    root = Path(config.landing("viewing_events"))
    dates = [p.name[5:] for p in root.glob("date=*")] if root.is_dir() else []
    found = {}
    for folder in landing_folders(stage, run_date, metrics, dates):
        size = folder_size(config.landing(folder))
        if size is not None:
            found[f"landing/{folder}"] = size
    return found


def outputs_with_rows(config: Config, outputs: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """``{table: {"version": v, "rows": rows that commit added}}`` (rows None when the
    commit's log entry is gone, e.g. purged by an erasure)."""
    return {
        table: {"version": version, "rows": tables.rows_in_commit(config.table(*table.split("/")), version)}
        for table, version in sorted(outputs.items())
    }


def expectation_summary(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stage's expectation results (metrics whose name mentions expectations or
    validation, as the quality stage records them); None when it has none."""
    found = {k: v for k, v in metrics.items() if "expectation" in k or "validation" in k}
    return found or None


def lineage_row(config: Config, run_id: str, run_date: date, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The gold/lineage row of one stage's summary (``jobs.orchestration.pipeline.timed_stage``)."""
    metrics = summary.get("metrics") or {}
    expectations = expectation_summary(metrics)
    return {
        "run_id": run_id,
        "stage": summary["stage"],
        "status": summary.get("status", "succeeded"),
        "inputs_json": json.dumps(summary.get("inputs") or {}, sort_keys=True),
        "landing_json": json.dumps(landing_read(config, summary["stage"], run_date, metrics), sort_keys=True),
        "outputs_json": json.dumps(outputs_with_rows(config, summary.get("outputs") or {}), sort_keys=True),
        "code_version": config.code_version,
        "config_hash": config.config_hash,
        "expectations_json": None if expectations is None else json.dumps(expectations, sort_keys=True, default=str),
        "started_at": summary.get("started_at"),
        "finished_at": summary.get("finished_at"),
        "seconds": None if summary.get("seconds") is None else float(summary["seconds"]),
        "run_date": run_date.isoformat(),
    }


# --- OpenLineage --------------------------------------------------------------------------

def openlineage_run_id(run_id: str, stage: str | None = None) -> str:
    """A stable UUID for a fairshelf run (``stage`` None) or one of its stages."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fairshelf:{run_id}" + (f"/{stage}" if stage else "")))


def dataset_namespace(config: Config) -> str:
    """The lakehouse as an OpenLineage dataset namespace (``file:///abs/path``, ``s3://b/p``)."""
    uri = tables.normalize_uri(config.lakehouse)
    return uri if "://" in uri else f"file://{uri}"


def _schema_facet(table: str):
    from openlineage.client.facet_v2 import schema_dataset

    from jobs.core.schemas import TABLES

    schema = TABLES.get(table)
    if schema is None:
        return None
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=f.name, type=f.dataType.simpleString()) for f in schema.fields]
    )


def _dataset_facets(table: str, version: int) -> dict[str, Any]:
    from openlineage.client.facet_v2 import dataset_version_dataset

    facets: dict[str, Any] = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(version))}
    schema = _schema_facet(table)
    if schema is not None:
        facets["schema"] = schema
    return facets


def stage_event(
    config: Config,
    event_type: str,
    stage: str,
    run_id: str,
    run_date: date,
    event_time: str,
    summary: Mapping[str, Any] | None = None,
    error: str | None = None,
):
    """The OpenLineage RunEvent of a stage: ``event_type`` START, COMPLETE or FAIL."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import (
        error_message_run,
        nominal_time_run,
        output_statistics_output_dataset,
        parent_run,
    )

    namespace = config.lineage.namespace
    run_facets: dict[str, Any] = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=openlineage_run_id(run_id)),
            job=parent_run.Job(namespace=namespace, name=f"{namespace}.nightly"),
        ),
        "nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime=f"{run_date.isoformat()}T00:00:00Z"),
    }
    if error is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(message=error[:2000], programmingLanguage="python")
    inputs, outputs = [], []
    lake = dataset_namespace(config)
    if summary is not None:
        for table, version in sorted((summary.get("inputs") or {}).items()):
            inputs.append(InputDataset(namespace=lake, name=table, facets=_dataset_facets(table, version)))
        for table, written in outputs_with_rows(config, summary.get("outputs") or {}).items():
            stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=written["rows"])
            outputs.append(
                OutputDataset(
                    namespace=lake,
                    name=table,
                    facets=_dataset_facets(table, written["version"]),
                    outputFacets={"outputStatistics": stats},
                )
            )
    return RunEvent(
        eventType=getattr(RunState, event_type),
        eventTime=event_time,
        run=Run(runId=openlineage_run_id(run_id, stage), facets=run_facets),
        job=Job(namespace=namespace, name=f"{namespace}.{stage}"),
        producer=PRODUCER,
        inputs=inputs,
        outputs=outputs,
    )


def openlineage_client(config: Config):
    """The client for the configured transport, or None when events are turned off."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    settings = config.lineage
    if settings.transport == "none":
        return None
    if settings.transport == "http":
        http = {"url": settings.url, "endpoint": settings.endpoint, "timeout": settings.timeout_seconds}
        if settings.api_key:
            http["auth"] = {"type": "api_key", "apiKey": settings.api_key}
        return OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict(http)))
    folder = Path(settings.directory or config.path("lineage", "openlineage"))
    folder.mkdir(parents=True, exist_ok=True)
    # append=False: one file per event, named <prefix>-<time>.json
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(folder / "event"))))


def emit_stage_event(config: Config, event_type: str, stage: str, run_id: str, run_date: date,
                     event_time: str, summary: Mapping[str, Any] | None = None,
                     error: str | None = None) -> bool:
    """Build and send a stage's event; a failure (transport down, bad URL) is logged as a
    warning and returns False: lineage delivery never fails a run."""
    try:
        client = openlineage_client(config)
        if client is None:
            return False
        client.emit(stage_event(config, event_type, stage, run_id, run_date, event_time, summary, error))
        return True
    except Exception as exc:  # never fail the run for its lineage events
        log.warning("OpenLineage %s event of %s/%s not sent (%s): %s", event_type, run_id, stage,
                    config.lineage.transport, exc)
        return False
