"""Run identity and the publication pointer.

A run id names its date (``new_run_id``). ``gold/runs`` holds one row per run, and is
also the pointer readers follow (``jobs.lake.reader``): the append of a row with status
``succeeded`` publishes, in one Delta commit, the tables of its ``published_json``,
each at the exact version recorded there. Rows of kind ``erasure`` and ``rollback``
re-point the live publication after an erasure or a ``fairshelf rollback`` changed a
published table (see ``jobs.core.schemas.RUNS``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import date
from typing import Any

import pyarrow as pa

from jobs.core.dates import utc_now
from jobs.lake.delta import (
    CommitInfo,
    TableError,
    list_tables,
    missing_files,
    read_arrow,
    table_version,
)

# The tables a publication pins: the published gold tables, and the user features the
# reader takes a user's region from. A run publishes those of them it wrote.
PUBLISHED_TABLES = (
    "gold/recommendations",
    "gold/default_recommendations",
    "gold/audit",
    "gold/quality_results",
    "gold/lineage",
    "silver/user_features",
)
KINDS = ("run", "erasure", "rollback", "rotation")


def new_run_id(run_date: date, prefix: str = "manual") -> str:
    """``manual__2026-11-25__20261126T010203Z__1a2b``: sortable, unique, names its date."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}__{run_date.isoformat()}__{stamp}__{secrets.token_hex(2)}"


def published_tables(run_id: str, run_date: str, versions: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """What a succeeded run publishes: each table of ``PUBLISHED_TABLES`` it wrote, at the
    version it wrote, holding its rows (``run_id``) or its date's partition."""
    return {
        table: {"version": int(versions[table]), "run_id": run_id, "run_date": run_date}
        for table in PUBLISHED_TABLES
        if table in versions
    }


def repointed(publication: Mapping[str, Any], changes: Mapping[str, Mapping[str, Any]], *,
              kind: str, run_id: str, message: str, now: str) -> dict[str, Any]:
    """A copy of the live ``publication`` row (a gold/runs row) whose tables in ``changes``
    get those entries (``version``, and for a rollback the ``run_id``/``run_date`` whose
    rows the restored version serves): the row an erasure or a rollback appends.

    It keeps the live run's date (so it stays the latest publication) and its model; its
    ``run_id`` is the re-pointing's own, and ``published_json`` still names, per table, the
    run whose rows readers take.
    """
    if kind not in KINDS[1:]:
        raise ValueError(f"kind {kind!r}: a re-pointing row is one of {', '.join(KINDS[1:])}")
    published = json.loads(publication["published_json"])
    for table, change in changes.items():
        if table in published:
            published[table] = {**published[table], **change}
    return {
        **publication,
        "run_id": run_id,
        "kind": kind,
        "status": "succeeded",
        "failed_stage": None,
        "message": message,
        "started_at": now,
        "finished_at": now,
        "versions_json": json.dumps({t: c["version"] for t, c in changes.items()}, sort_keys=True),
        "published_json": json.dumps(published, sort_keys=True),
    }


def repoint_publications(lakehouse: str, versions: Mapping[str, int], *, kind: str, run_id: str,
                         message: str, now: str) -> list[dict[str, Any]]:
    """The re-pointing rows that keep every publication readable after ``versions``
    ({table: its only version now}) replaced the versions they pinned (an erasure or a key
    rotation purges older versions): one row per run date, a copy of that date's
    publication with those tables at their new versions. Readers filter each table by the
    run's date and run id, so the new version serves every date whose rows it holds."""
    from jobs.lake.reader import choose_publication, read_runs

    try:
        runs = read_runs(lakehouse)
    except TableError:
        return []
    rows = []
    for day in sorted({d for d in runs.column("run_date").to_pylist() if d}):
        publication = choose_publication(runs, day)
        if publication is None:
            continue
        pinned = json.loads(publication["published_json"] or "{}")
        moved = {t: {"version": v} for t, v in versions.items() if t in pinned and pinned[t]["version"] != v}
        if moved:
            rows.append(repointed(publication, moved, kind=kind, run_id=f"{run_id}.{day}", message=message, now=now))
    return rows


def serving_at(runs: list[Mapping[str, Any]], table: str, version: int) -> dict[str, Any] | None:
    """Which run's rows ``table`` served at ``version``: the publication that pinned the
    greatest version of it not after ``version`` (``{"run_id", "run_date", "version"}``),
    or None when no publication pinned it that early."""
    best = None
    for row in runs:
        if row["status"] != "succeeded" or not row.get("published_json"):
            continue
        pinned = json.loads(row["published_json"]).get(table)
        if pinned and pinned["version"] <= version:
            key = (pinned["version"], row["finished_at"])
            if best is None or key > best[0]:
                best = (key, pinned)
    return None if best is None else dict(best[1])


def dates_to_run(dates: list[date], runs: list[Mapping[str, Any]], code_version: str,
                 config_hash: str, rerun: bool = False) -> tuple[list[date], list[date]]:
    """(dates to run, dates skipped) of a backfill: a date is skipped when a run of it
    succeeded with the same code version and config hash, unless ``rerun``."""
    done = {
        r["run_date"] for r in runs
        if r["status"] == "succeeded" and r.get("kind", "run") == "run"
        and r["code_version"] == code_version and r["config_hash"] == config_hash
    }
    if rerun:
        return list(dates), []
    return [d for d in dates if d.isoformat() not in done], [d for d in dates if d.isoformat() in done]


def append_runs_row(spark, config, row: Mapping[str, Any], stage: str = "record_run") -> int:
    """Append one row to gold/runs in one commit (the publishing step); its version."""
    return append_runs_rows(spark, config, [row], stage)


def append_runs_rows(spark, config, rows: list[Mapping[str, Any]], stage: str) -> int:
    """Append rows to gold/runs in one commit (stamped with the first row's run); its
    version. With ``spark`` None the rows are written from this process (``write_arrow``):
    a maintenance command that started no Spark."""
    first = rows[0]
    commit = CommitInfo(first["run_id"], first["run_date"], stage, config.code_version, config.config_hash)
    partitions = sorted({r["run_date"] for r in rows})
    if spark is None:
        from jobs.lake.delta_write import write_arrow

        return write_arrow(pa.Table.from_pylist([dict(r) for r in rows]), config.table("gold", "runs"),
                           commit=commit, mode="append", partitions=partitions)
    from jobs.core.schemas import RUNS
    from jobs.lake import tables

    return tables.write_named_table(spark.createDataFrame([dict(r) for r in rows], RUNS), config, "gold/runs",
                                    commit=commit, mode="append", partitions=partitions)


ROLLBACK_TABLES = ("gold/recommendations", "gold/default_recommendations", "gold/audit",
                   "gold/quality_results")


class RollbackRefused(ValueError):
    """A rollback cannot be done as asked; the message says why and what is possible."""


def rollback_table(config, table: str, version: int) -> dict[str, Any]:
    """Restore the partition that ``table`` served at ``version`` (the run date of the
    publication that pinned it) to its content at ``version``, in a new Delta version
    (history kept; other dates' partitions untouched), and re-point the live publication
    at it: one gold/runs row of kind ``rollback``. Returns that row. Refuses (RollbackRefused)
    tables that are not published shelves or audits, unknown versions, and versions erasure
    removed. No Spark: the partition is read with ``deltalake`` and written back from this
    process (``write_arrow``), a few thousand rows."""
    from jobs.lake.delta_write import write_arrow
    from jobs.lake.reader import latest_publication

    if table not in ROLLBACK_TABLES:
        why = {
            "gold/runs": "gold/runs is the publication record itself; roll back a published table instead",
            "gold/lineage": "gold/lineage records what happened; it is never rolled back",
        }.get(table, "only published tables can be rolled back"
              if table in {t.name for t in list_tables(config.lakehouse)} else "unknown table")
        raise RollbackRefused(f"cannot roll back {table!r}: {why}. Tables: {', '.join(ROLLBACK_TABLES)}")
    uri = config.table(*table.split("/"))
    current = table_version(uri)
    if current is None:
        raise RollbackRefused(f"{table} does not exist in {config.lakehouse}")
    if not 0 <= version < current:
        raise RollbackRefused(f"{table} has versions 0..{current} (current {current}); "
                              f"--to-version {version} is not an earlier one")
    try:
        gone = missing_files(uri, version)
    except TableError:
        gone = None
    if gone is None or gone:
        raise RollbackRefused(
            f"version {version} of {table} no longer exists: an erasure purged the history "
            "before it (erased users must not come back), so it cannot be restored. "
            f"`fairshelf runs` and the table's history show the versions still available")
    live = latest_publication(config.lakehouse)
    runs = read_arrow(config.table("gold", "runs")).to_pylist()
    serving = serving_at(runs, table, version)
    if serving is None:
        raise RollbackRefused(f"no publication pinned {table} at or before version {version}: "
                              "it never served readers, so there is nothing to roll back to")
    rollback_id = new_run_id(utc_now().date(), prefix="rollback")
    day = serving["run_date"]
    commit = CommitInfo(rollback_id, day, "rollback", config.code_version, config.config_hash)
    # Only the partition of the publication rolled back: other dates stay as they are now.
    restored = write_arrow(read_arrow(uri, version=version, filters=[("run_date", "=", day)]), uri,
                           commit=commit, mode="overwrite_partition", partitions=[day])
    live.pop("published")
    row = repointed(live, {table: {**serving, "version": restored}}, kind="rollback",
                    run_id=rollback_id, now=utc_now().isoformat(),
                    message=f"{table}: partition {day} restored from version {version} (now version "
                            f"{restored}), serving run {serving['run_id']}")
    append_runs_row(None, config, row, stage="rollback")
    return row
