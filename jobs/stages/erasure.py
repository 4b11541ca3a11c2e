"""Erasure stage: remove users from every table, every older table version and every saved
model, and record that it was done (DESIGN.md, "Privacy rules: Erasure").

One erasure (``erase_user_keys``; ``erase_accounts`` for ``fairshelf erase``, ``run`` for the
nightly requests in ``landing/erasure_requests/``):

1. Account ids become pseudonyms with the configured key (``pseudonym``: the HMAC-SHA256
   of ``jobs.stages.privacy``, computed on the driver for a handful of ids).
2. Every silver, gold and quarantine table with a user key column (found by listing the
   lakehouse, so a table added later is covered too), except ``gold/erasure_log``:
   a. ``tables.erase_rows``: each data file holding the users' rows is replaced by a copy
      without them, in one commit of remove + add actions per table;
   b. ``tables.purge_history``: vacuum with retention 0 (``full``, so orphan files of failed
      jobs go too), checkpoint, delete every log entry before the checkpoint;
   c. check: no row of the users left, no file under ``_delta_log`` naming one of them.
      A failed check raises ErasureError and records nothing: the next run retries.
3. Every ``models/<run id>/``: the users' rows leave ``user_factors`` (``model.npz``) and
   ``user_index.parquet`` (rows renumbered); item factors stay. Each file is written to a
   temporary file and renamed over the old one.
4. One ``gold/erasure_log`` row per request: pseudonym, requested_at, erased_at, run id,
   rows removed per table, model files rewritten. Nothing else about the user.

Why no pseudonym is left in a transaction log. ``DeltaTable.delete`` stores its predicate
(``user_key IN (...)``) in the commit's operationParameters; ``erase_rows`` commits file
actions only, no predicate. File statistics never hold user keys (tables are created with
``delta.dataSkippingStatsColumns`` leaving them out; ``erase_rows`` writes its statistics
the same way). ``purge_history`` then deletes every log entry before its checkpoint, so
even a key some other tool logged earlier (a manual delete) is gone; the checkpoint holds
the current files' add actions, tombstones (paths), schema, configuration and app
transactions, no commit information. Step 2c proves it for every table, every time.

Retention. Normally nothing in fairshelf vacuums or drops log entries: a maintenance
vacuum keeps Delta's defaults (deleted files 7 days, ``delta.deletedFileRetentionDuration``;
log entries 30 days, ``delta.logRetentionDuration``) and ``rollback`` can go back that far.
An erasure uses retention 0 for data files and log entries of every table with a user key,
whether or not its current version held the users (an older version may). Afterwards
those tables have one version, the erasure's: time travel to an older one fails with a
TableError (the entries are gone) instead of reading erased rows. Tables without a user
key (``silver/content``, ``gold/default_recommendations``, ``gold/runs``) keep history.
An erasure needs the lakehouse to itself (the vacuum would delete the files of a write in
progress): it is the first stage of the nightly run, before ingest, and a manual
``fairshelf erase`` must not overlap a run.

What keeps a trace on purpose. ``gold/erasure_log`` keeps the pseudonym: it is the record
that the user was erased. ``landing/`` keeps the raw data: it belongs to the source
systems, which get the same request, and fairshelf never rewrites it. So that landing data
(a rerun, a late file, a catch-up ingest of an older day) cannot bring a user back, ingest
and privacy drop every key of ``gold/erasure_log`` (``filter_erased_users``). A person who
returns needs a new account id.

Idempotency. The nightly stage erases requests whose (pseudonym, requested_at) is not in
``gold/erasure_log`` yet; rerunning a date finds nothing new. ``erase_accounts`` always
erases and records: a second erasure of an account is recorded with zero rows everywhere.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import Config
from jobs.core.dates import utc_now
from jobs.core.errors import ErasureError
from jobs.core.schemas import ERASURE_LOG, ERASURE_REQUESTS, USER_KEY_COLUMNS, allowed_columns
from jobs.lake import tables
from jobs.lake.landing import LANDING_FORMATS, has_landing_data, landing_account_ids, landing_frame
from jobs.lake.model_store import drop_users_from_model, model_dirs, model_user_keys
from jobs.lake.pseudonym_space import check_key
from jobs.shared.privacy import ERASURE_LOG_TABLE, pseudonym
from jobs.shared.stage import StageResult, stage_main

STAGE = "erasure"


@dataclass(frozen=True)
class ErasureRequest:
    user_key: str  # the pseudonym, never the account id
    requested_at: str


@dataclass
class ErasureReport:
    """What one erasure did. Holds pseudonyms; ``metrics()`` holds only counts."""

    run_id: str
    run_date: str
    requests: list[ErasureRequest]
    rows_by_key: dict[str, dict[str, int]] = field(default_factory=dict)  # key -> table -> rows
    model_dirs_by_key: dict[str, int] = field(default_factory=dict)  # key -> model dirs
    data_files_rewritten: int = 0
    data_files_removed: int = 0
    data_files_vacuumed: int = 0
    log_files_deleted: int = 0
    model_dirs_rewritten: int = 0
    versions: dict[str, int] = field(default_factory=dict)  # "layer/name" -> version now
    erased_at: str | None = None
    seconds: float = 0.0
    already_erased: int = 0  # accounts asked for that an earlier erasure had removed

    @property
    def user_keys(self) -> list[str]:
        return sorted({r.user_key for r in self.requests})

    @property
    def rows_by_table(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for counts in self.rows_by_key.values():
            for table, rows in counts.items():
                totals[table] = totals.get(table, 0) + rows
        return dict(sorted(totals.items()))

    @property
    def rows(self) -> int:
        return sum(self.rows_by_table.values())

    def model_files_rewritten(self, key: str) -> int:
        """Model files the key's rows were dropped from (factors and index per model)."""
        return 2 * self.model_dirs_by_key.get(key, 0)

    def metrics(self) -> dict[str, Any]:
        """Counts only (they go to gold/runs and the run report: no pseudonym)."""
        return {
            "erased_users": len(self.user_keys),
            "already_erased": self.already_erased,
            "rows_removed": self.rows,
            "rows_removed_by_table": self.rows_by_table,
            "tables_purged": len(self.versions) - (ERASURE_LOG_TABLE in self.versions),
            "data_files_rewritten": self.data_files_rewritten,
            "data_files_removed": self.data_files_removed,
            "data_files_vacuumed": self.data_files_vacuumed,
            "log_files_deleted": self.log_files_deleted,
            "model_dirs_rewritten": self.model_dirs_rewritten,
            "model_files_rewritten": sum(map(self.model_files_rewritten, self.user_keys)),
            "erasure_seconds": round(self.seconds, 2),
        }


# --- pure parts ----------------------------------------------------------------------------


def with_request_keys(requests: DataFrame, key: bytes) -> DataFrame:
    """Landing requests -> (request_id, user_key, requested_at, valid). A request is valid
    with a non-empty account id and requested_at; the account id never leaves Spark."""
    from jobs.shared.privacy import pseudonymize_accounts

    requested_at = F.trim(F.col("requested_at"))
    valid = (F.coalesce(F.col("account_id"), F.lit("")) != "") & (
        F.coalesce(requested_at, F.lit("")) != ""
    )
    keyed = pseudonymize_accounts(
        requests.withColumn("requested_at", requested_at).withColumn("valid", valid), key
    )
    return keyed.select("request_id", "user_key", "requested_at", "valid")


def pending_requests(requests: Iterable[ErasureRequest],
                     done: set[tuple[str, str]]) -> list[ErasureRequest]:
    """The requests not recorded in the erasure log yet, each once, oldest first."""
    pending = {r for r in requests if (r.user_key, r.requested_at) not in done}
    return sorted(pending, key=lambda r: (r.requested_at, r.user_key))


def erasure_log_rows(report: ErasureReport) -> list[dict[str, Any]]:
    """One erasure log row per request. A key requested twice in one erasure gets its
    counts on its earliest request and zeros on the others."""
    tables_scanned = sorted({t for counts in report.rows_by_key.values() for t in counts})
    rows, seen = [], set()
    for request in sorted(report.requests, key=lambda r: (r.requested_at, r.user_key)):
        first = request.user_key not in seen
        seen.add(request.user_key)
        counts = report.rows_by_key.get(request.user_key, {}) if first else {}
        rows.append({
            "user_key": request.user_key,
            "requested_at": request.requested_at,
            "erased_at": report.erased_at,
            "run_id": report.run_id,
            "rows_by_table_json": json.dumps({t: counts.get(t, 0) for t in tables_scanned},
                                             sort_keys=True),
            "model_files_rewritten": report.model_files_rewritten(request.user_key) if first else 0,
            "run_date": report.run_date,
        })
    return rows


# --- model artifacts -----------------------------------------------------------------------


# --- tables --------------------------------------------------------------------------------

def erase_from_table(info: tables.TableInfo, keys: Sequence[str], commit: tables.CommitInfo,
                     report: ErasureReport) -> None:
    """Remove ``keys``' rows from one table and purge its history; then check both."""
    columns = [c for c in USER_KEY_COLUMNS if c in tables.table_columns(info.uri)]
    for column in columns:
        erased = tables.erase_rows(info.uri, keys, commit=commit, column=column,
                                   stats_exclude=USER_KEY_COLUMNS)
        for key in keys:
            counts = report.rows_by_key.setdefault(key, {})
            counts[info.name] = counts.get(info.name, 0) + erased.rows_by_key.get(key, 0)
        report.data_files_rewritten += erased.files_rewritten
        report.data_files_removed += erased.files_removed
    purged = tables.purge_history(info.uri, commit=commit)
    report.data_files_vacuumed += purged.data_files_deleted
    report.log_files_deleted += purged.log_files_deleted
    report.versions[info.name] = purged.version
    left = sum(sum(tables.key_rows(info.uri, keys, c).values()) for c in columns)
    mentions = tables.log_files_mentioning(info.uri, keys)
    if left or mentions:
        raise ErasureError(
            f"{info.name}: erasure incomplete ({left} rows of erased users left; log files "
            f"naming one: {mentions}). Nothing was recorded: make sure no other job writes "
            "the table, then erase again")


def logged_requests(config: Config) -> set[tuple[str, str]]:
    """(user_key, requested_at) of every request in gold/erasure_log."""
    uri = config.table("gold", "erasure_log")
    if not tables.table_exists(uri):
        return set()
    log = tables.read_arrow(uri).select(["user_key", "requested_at"]).to_pylist()
    return {(r["user_key"], r["requested_at"]) for r in log}


# --- entry points --------------------------------------------------------------------------

def erase_user_keys(spark: SparkSession | None, config: Config, requests: Sequence[ErasureRequest],
                    run_id: str, run_date: date) -> ErasureReport:
    """Erase the requests' users everywhere and append their gold/erasure_log rows.

    A repeat with the same ``run_id`` and ``run_date`` erases again but records nothing
    new (the log append is the run's idempotent write). Everything but the two small
    appends (erasure log, gold/runs) is delta-rs and pyarrow already; with ``spark`` None
    those are written from this process too (``fairshelf erase``: no Spark at all).
    """
    started = time.perf_counter()
    result = StageResult(STAGE, run_date, run_id, config)
    report = ErasureReport(run_id, run_date.isoformat(), list(requests))
    keys = report.user_keys
    if not keys:
        return report
    check_key(config)
    for info in tables.user_key_tables(config.lakehouse, exclude=(ERASURE_LOG_TABLE,)):
        erase_from_table(info, keys, result.commit, report)
    for directory in model_dirs(config.path("models")):
        found = drop_users_from_model(directory, keys)
        report.model_dirs_rewritten += bool(found)
        for key in found:
            report.model_dirs_by_key[key] = report.model_dirs_by_key.get(key, 0) + 1
    report.erased_at = utc_now().isoformat()
    append_erasure_log(spark, result, erasure_log_rows(report))
    report.versions.update(result.outputs)
    repoint_publication(spark, config, report)
    report.seconds = time.perf_counter() - started
    return report


def append_erasure_log(spark: SparkSession | None, result: StageResult, rows: list[dict[str, Any]]) -> int:
    """Append ``rows`` to gold/erasure_log as ``result``'s write (through Spark, or with
    ``spark`` None from this process: the same files, statistics and commit)."""
    columns = allowed_columns(ERASURE_LOG_TABLE)
    if spark is not None:
        return result.write(spark.createDataFrame(rows, ERASURE_LOG).select(*columns), ERASURE_LOG_TABLE,
                            mode="append")
    from jobs.lake.delta_write import write_arrow

    data = pa.Table.from_pylist(rows, schema=tables.arrow_schema(ERASURE_LOG)).select(columns)
    version = write_arrow(data, result.config.table(*ERASURE_LOG_TABLE.split("/")), commit=result.commit,
                          mode="append", schema=data.schema, stats_exclude=USER_KEY_COLUMNS)
    result.outputs[ERASURE_LOG_TABLE] = version
    return version


def repoint_publication(spark: SparkSession | None, config: Config, report: ErasureReport) -> None:
    """Keep every publication readable: the versions they pinned were just purged, so
    append, for each run date whose publication pinned one of them, a gold/runs row of
    kind ``erasure`` pointing its tables at their post-erasure versions (the same rows
    minus the erased users; ``jobs.lake.runs.repoint_publications``)."""
    from jobs.lake.runs import append_runs_rows, repoint_publications

    rows = repoint_publications(config.lakehouse, report.versions, kind="erasure",
                                run_id=f"{report.run_id}.erasure.{uuid.uuid4().hex[:6]}",
                                message=f"{len(report.user_keys)} user(s) erased by {report.run_id}",
                                now=utc_now().isoformat())
    if rows:
        append_runs_rows(spark, config, rows, stage=STAGE)


@dataclass
class ErasurePlan:
    """What ``fairshelf erase`` would do for some account ids, found before anything is
    changed. Account ids are the operator's own input; no pseudonym is kept here."""

    unknown: list[str]  # in no landing folder, table or model, and never erased
    already_erased: list[str]  # in the erasure log and in no table or model any more
    to_erase: list[str]
    tables: list[dict[str, Any]] = field(default_factory=list)  # table, rows, files, versions_lost
    model_dirs: int = 0  # saved models holding one of them
    unscanned: list[str] = field(default_factory=list)  # found nowhere; landing not scanned (no Spark)

    @property
    def rows(self) -> int:
        return sum(t["rows"] for t in self.tables)

    @property
    def versions_lost(self) -> int:
        """Table versions an erasure removes: every user-key table keeps only its newest."""
        return sum(t["versions_lost"] for t in self.tables)

    def summary(self) -> dict[str, Any]:
        return {
            "accounts": {"to_erase": len(self.to_erase), "already_erased": len(self.already_erased),
                         "unknown": self.unknown},
            "rows_to_remove": self.rows,
            "tables": self.tables,
            "model_dirs_to_rewrite": self.model_dirs,
            "rollback_versions_removed": self.versions_lost,
        }


def plan_erasure(spark: SparkSession | None, config: Config, account_ids: Sequence[str]) -> ErasurePlan:
    """Where ``account_ids`` are (landing, every table with a user key, saved models, the
    erasure log) and what erasing them would remove; reads only, changes nothing.

    Only an account found in no table, model or log needs the landing zone scanned, with
    Spark (its readers judge malformed landing rows as ingest does); with ``spark`` None
    such accounts are only listed in ``plan.unscanned`` and nothing else is decided: plan
    again with Spark."""
    key = config.require_pseudonym_key()
    check_key(config)
    keys = {account: pseudonym(key, account) for account in dict.fromkeys(account_ids)}
    wanted = list(keys.values())
    held: set[str] = set()
    plan = ErasurePlan([], [], [])
    for info in tables.user_key_tables(config.lakehouse, exclude=(ERASURE_LOG_TABLE,)):
        rows, files = 0, 0
        for column in [c for c in USER_KEY_COLUMNS if c in tables.table_columns(info.uri)]:
            found, holding = tables.key_files(info.uri, wanted, column)
            held.update(found)
            rows, files = rows + sum(found.values()), files + holding
        plan.tables.append({"table": info.name, "rows": rows, "files_to_rewrite": files,
                            "versions_lost": len(tables.table_history(info.uri))})
    for directory in model_dirs(config.path("models")):
        in_model = model_user_keys(directory) & set(wanted)
        held.update(in_model)
        plan.model_dirs += bool(in_model)
    logged = {user_key for user_key, _ in logged_requests(config)}
    unseen = [a for a, user_key in keys.items() if user_key not in held and user_key not in logged]
    in_landing = set()
    if unseen and spark is None:
        plan.unscanned = unseen
        return plan
    if unseen:  # a scan of the whole landing zone, only for accounts found nowhere else
        in_landing = {r["account_id"] for r in landing_account_ids(spark, config)
                      .where(F.col("account_id").isin(unseen)).collect()}
    for account, user_key in keys.items():
        if user_key in held:
            plan.to_erase.append(account)
        elif user_key in logged:
            plan.already_erased.append(account)
        elif account in in_landing:
            plan.to_erase.append(account)  # not ingested yet: the log entry keeps it out
        else:
            plan.unknown.append(account)
    return plan


def erase_accounts(spark: SparkSession | None, config: Config, account_ids: list[str],
                   requested_at: str, run_id: str, run_date: date | None = None,
                   plan: ErasurePlan | None = None) -> ErasureReport:
    """Erase ``account_ids`` now (``fairshelf erase``): every table, older versions and
    models; one gold/erasure_log row per account, and the request kept in
    ``landing/erasure_requests`` (a key rotation needs the account id: module doc of
    ``jobs.orchestration.rotation``). ``run_date`` defaults to today (UTC). With ``spark``
    None no Spark is used (``erase_user_keys``); ``plan``, if given, must then have scanned
    the landing zone for the accounts found nowhere else (``plan_erasure``).

    Refuses, before anything changes, account ids found nowhere (a typo must not purge
    history); accounts already erased and gone everywhere are skipped."""
    key = config.require_pseudonym_key()
    if isinstance(account_ids, str) or not account_ids:
        raise ErasureError("give the account ids to erase as a non-empty list")
    if any(not isinstance(a, str) or not a for a in account_ids):
        raise ErasureError("an account id to erase is empty; give each account's id")
    if not requested_at or not requested_at.strip():
        raise ErasureError("requested_at is empty: give the time the erasure was requested")
    plan = plan or plan_erasure(spark, config, account_ids)
    if plan.unscanned:
        raise ErasureError(f"{len(plan.unscanned)} account(s) are in no table, model or erasure log: "
                           "finding them in the landing zone needs Spark; plan the erasure with Spark")
    if plan.unknown:
        raise ErasureError(
            f"no such account: {', '.join(plan.unknown)} (in no landing folder, table or model, and "
            "never erased). Nothing was erased or purged: check the account id")
    run_date = run_date or utc_now().date()
    if plan.to_erase:
        retain_requests(config, plan.to_erase, requested_at.strip(), run_id)
    requests = [ErasureRequest(pseudonym(key, a), requested_at.strip()) for a in plan.to_erase]
    report = erase_user_keys(spark, config, requests, run_id, run_date)
    report.already_erased = len(plan.already_erased)
    return report


def retain_requests(config: Config, account_ids: Sequence[str], requested_at: str, run_id: str) -> Path:
    """A manual erasure's requests as a landing file of ``landing/erasure_requests`` (in the
    folder's format): what a later key rotation re-keys the erasure log from. A nightly
    run finds them already in the erasure log and skips them."""
    folder = Path(config.landing("erasure_requests"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"request_id": f"{run_id}-{n}", "account_id": a, "requested_at": requested_at}
            for n, a in enumerate(account_ids)]
    formats = {p.suffix.lower() for p in folder.iterdir() if p.is_file() and p.suffix.lower() in LANDING_FORMATS}
    suffix = formats.pop() if len(formats) == 1 else ".jsonl"
    path = folder / f"fairshelf-erase-{run_id}{suffix}"
    table = pa.Table.from_pylist(rows, schema=pa.schema([(f.name, pa.string()) for f in ERASURE_REQUESTS]))
    temporary = path.with_name(f".{path.name}.tmp")
    if suffix == ".parquet":
        pq.write_table(table, temporary)
    elif suffix == ".csv":
        pacsv.write_csv(table, temporary)
    else:
        temporary.write_text("".join(json.dumps(r) + "\n" for r in rows))
    temporary.rename(path)
    return path


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """landing/erasure_requests -> every request not in gold/erasure_log yet erased from
    every table, older version and model, and recorded. Runs first in the nightly run."""
    key = config.require_pseudonym_key()
    result = StageResult(STAGE, run_date, run_id, config)
    counts = {"requests": 0, "invalid_requests": 0, "invalid_request_ids": [],
              "skipped_requests": 0, "erased": 0}
    if not has_landing_data(config.landing("erasure_requests")):
        result.metrics.update(counts)
        return result
    rows = with_request_keys(landing_frame(spark, config, "erasure_requests", ERASURE_REQUESTS),
                             key).collect()
    valid = [ErasureRequest(r["user_key"], r["requested_at"]) for r in rows if r["valid"]]
    todo = pending_requests(valid, logged_requests(config))
    report = erase_user_keys(spark, config, todo, run_id, run_date)
    result.outputs.update(report.versions)
    counts.update(
        requests=len(rows),
        invalid_requests=len(rows) - len(valid),
        invalid_request_ids=sorted(str(r["request_id"]) for r in rows if not r["valid"]),
        skipped_requests=len(valid) - len(todo),
        erased=len(report.user_keys),
    )
    result.metrics.update(counts, **report.metrics())
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
