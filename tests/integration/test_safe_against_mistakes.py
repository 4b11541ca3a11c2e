"""Safe against the mistakes operators really make (issue 19), each on a private copy of
the session's finished synthetic lakehouse:

1. a different pseudonymization key is refused everywhere; ``rotate-key`` is the one way
   to change it, and an erased viewer stays erased across a rotation;
2. a mistyped erase is "no such account" (exit 1) and purges nothing; --dry-run changes nothing;
3. a failed run leaves silver and gold as they were (a landing file without a required
   column fails at ingest, before any write; a failure after ingest is undone);
4. after a rollback and an erasure every publication is still readable;
5. landing values outside their domain are quarantined with a reason code, titles lose
   control characters, and a viewer without a region gets a shelf whose label names none;
6. a killed run is recorded as failed ("interrupted") by the next run, which undoes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.compute as pc
import pytest

from jobs.core.errors import ErasureError, KeyMismatch
from jobs.lake import reader, run_marker, tables
from jobs.lake.pseudonym_space import check_key, read_rotation, read_space
from jobs.lake.runs import rollback_table
from jobs.orchestration import pipeline
from jobs.orchestration.pipeline import RunFailed, RunInProgress, run_pipeline
from jobs.orchestration.rotation import rotate_key
from jobs.orchestration.stage_graph import ORDER
from jobs.shared.privacy import pseudonym
from jobs.stages.erasure import erase_accounts, plan_erasure
from jobs.stages.publish import REASONS

pytestmark = [pytest.mark.spark, pytest.mark.integration]

D = date(2026, 11, 25)  # the session run's date (tests/conftest.py, synthetic_run)
REQUESTED_AT = "2026-11-26T08:00:00+00:00"
NEW_KEY = b"the-rotated-key-0123456789abcdef-0123456789"
REPO = Path(__file__).resolve().parents[2]


def fast(config):
    """No model search: the configured model only (a run in seconds, not a minute)."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, selection_trials=1))


def versions(config) -> dict[str, int]:
    return {t.name: t.version for t in tables.list_tables(config.lakehouse)}


def history_lengths(config) -> dict[str, int]:
    return {t.name: len(tables.table_history(t.uri)) for t in tables.list_tables(config.lakehouse)}


def user_keys(config, name: str) -> set[str]:
    layer, table = name.split("/")
    return set(tables.read_arrow(config.table(layer, table)).column("user_key").to_pylist()) - {None}


def accounts(config) -> list[str]:
    lines = (Path(config.landing("users")) / "users.jsonl").read_text().splitlines()
    return sorted(json.loads(line)["account_id"] for line in lines if line.strip())


def shelved_account(config) -> str:
    """An account with a personal shelf (and so events, features and a model row)."""
    shelved = user_keys(config, "gold/recommendations")
    return next(a for a in accounts(config) if pseudonym(config.pseudonym_key, a) in shelved)


def cli(config, *args: str, key: bytes | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRSHELF_")}
    env.update(FAIRSHELF_LAKEHOUSE=config.lakehouse,
               FAIRSHELF_PSEUDONYM_KEY=(key or config.pseudonym_key).decode())
    return subprocess.run([sys.executable, "-m", "jobs.interfaces.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def sorted_rows(config, name: str, version: int | None = None) -> list[str]:
    layer, table = name.split("/")
    return sorted(map(repr, tables.read_arrow(config.table(layer, table), version=version).to_pylist()))


# --- 1. one pseudonym space per lakehouse -------------------------------------------------------

def test_another_key_is_refused_before_anything_is_read_or_written(copy_of_synthetic_run, spark):
    config, _, _ = copy_of_synthetic_run
    before = versions(config)
    other = config.with_key(b"a-newcomers-freshly-generated-key-0123456789")
    with pytest.raises(KeyMismatch, match="not the key of the lakehouse.*rotate-key"):
        run_pipeline(spark, other, D)
    with pytest.raises(KeyMismatch, match="not the key of the lakehouse"):
        erase_accounts(spark, other, [shelved_account(config)], REQUESTED_AT, "erase-other-key")
    assert versions(config) == before
    # the CLI says so before Spark starts, and exits 1
    started = time.perf_counter()
    done = cli(config, "run", "--date", D.isoformat(), key=other.pseudonym_key)
    assert done.returncode == 1 and "rotate-key" in done.stderr, done.stdout + done.stderr  # errors go to stderr
    assert "Traceback" not in done.stdout + done.stderr
    print(f"refused in {time.perf_counter() - started:.1f} s")
    assert versions(config) == before


def add_landing_lines(folder: Path, name: str, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_an_erased_viewer_stays_erased_across_a_key_rotation(copy_of_synthetic_run, spark):
    config, _, _ = copy_of_synthetic_run
    config = fast(config)
    account = shelved_account(config)
    erase_accounts(spark, config, [account], REQUESTED_AT, "erase-before-rotation", run_date=D)
    retained = list(Path(config.landing("erasure_requests")).glob("fairshelf-erase-*.jsonl"))
    assert retained and account in retained[0].read_text()  # the account id a rotation needs
    old_space = {t.name: user_keys(config, t.name) for t in tables.user_key_tables(config.lakehouse)}

    report = rotate_key(spark, config, NEW_KEY)
    new = config.with_key(NEW_KEY)
    assert read_space(config.lakehouse).fingerprint == new.key_fingerprint
    assert report.publications_repointed >= 1 and report.rows_by_table
    with pytest.raises(KeyMismatch):
        check_key(config)  # the old key is refused now
    known = {pseudonym(NEW_KEY, a) for a in accounts(config)}
    for info in tables.user_key_tables(config.lakehouse):
        keys = user_keys(config, info.name)
        assert not keys & set().union(*old_space.values()), f"{info.name} keeps keys of the old space"
        assert keys <= known, f"{info.name} holds keys of no account"
        if info.version > 0:
            with pytest.raises(tables.TableError):  # no older version of the old space is left
                tables.read_arrow(info.uri, version=0)
    erased_now = pseudonym(NEW_KEY, account)
    assert erased_now in user_keys(config, "gold/erasure_log")

    # the night after: landing still holds the account's events; add values out of domain
    day_folder = Path(config.landing(f"viewing_events/date={D.isoformat()}"))
    template = json.loads((day_folder / "part-00000.jsonl").read_text().splitlines()[0])
    add_landing_lines(day_folder, "part-00001.jsonl", [
        {**template, "event_id": "bad-device", "device_type": "\U0001F4F1 phone"},
        {**template, "event_id": "bad-country", "country": "\U0001F1E9\U0001F1EA"},
        {**template, "event_id": "from-the-erased", "account_id": account},
    ])
    add_landing_lines(Path(config.landing("catalog")), "catalog-late.jsonl", [
        {"content_id": "cnt-newline", "title": "Line\nbreak\ttitle\u200b", "genres": "Drama",
         "provider": "p", "provider_group": "independent", "original_language": "xx",
         "release_year": "1999", "duration_seconds": "-5"}])
    outcome = run_pipeline(spark, new, D)
    assert outcome.succeeded
    for info in tables.user_key_tables(config.lakehouse, exclude=("gold/erasure_log",)):
        assert erased_now not in user_keys(config, info.name), f"the erased viewer is back in {info.name}"
    assert user_keys(config, "silver/user_features") <= known  # one pseudonym space, no mix

    # 5. domain checks: reason codes, clean titles, an honest fallback label
    quarantine = tables.read_arrow(config.table("quarantine", "viewing_events"),
                                   filters=[("run_date", "=", D.isoformat())]).to_pylist()
    reasons = [r["reason"] for r in quarantine]
    assert reasons.count("bad_device_type") == 1 and reasons.count("bad_country") == 1
    content = {r["content_id"]: r for r in tables.read_arrow(config.table("silver", "content")).to_pylist()}
    late = content["cnt-newline"]
    assert late["title"] == "Line break title"
    assert late["original_language"] is None and late["duration_seconds"] is None and late["release_year"] == 1999
    ingest = next(s for s in outcome.summaries if s["stage"] == "ingest")["metrics"]
    assert ingest["catalog_values_nulled"] == {"original_language": 1, "duration_seconds": 1}
    shelf = reader.shelf_for(config.lakehouse, erased_now)
    assert shelf and {r["shelf"] for r in shelf} == {"ALL"} and {r["reason"] for r in shelf} == {REASONS["popular_all"]}
    # every publication is readable after the rotation
    for day in sorted(set(tables.read_arrow(config.table("gold", "runs")).column("run_date").to_pylist())):
        assert reader.recommendations(config.lakehouse, day).num_rows > 0


def test_an_interrupted_rotation_blocks_other_commands_and_resumes(copy_of_synthetic_run, spark, monkeypatch):
    config, _, _ = copy_of_synthetic_run
    real_purge, died = tables.purge_history, []

    def purge_then_die(uri, *, commit):
        purged = real_purge(uri, commit=commit)
        if uri.endswith("gold/recommendations") and not died:  # re-keyed and purged, then the process dies
            died.append(uri)
            raise RuntimeError("injected: killed mid-rotation")
        return purged

    monkeypatch.setattr(tables, "purge_history", purge_then_die)
    with pytest.raises(RuntimeError, match="injected"):
        rotate_key(spark, config, NEW_KEY)
    monkeypatch.undo()
    state = read_rotation(config.lakehouse)
    assert state is not None and state.tables_done  # some tables were done ...
    assert "gold/recommendations" not in state.tables_done  # ... this one re-keyed but not marked done
    for key in (config, config.with_key(NEW_KEY)):  # both keys refused until it is finished
        with pytest.raises(KeyMismatch, match="rotation .* is unfinished"):
            check_key(key)

    report = rotate_key(spark, config, NEW_KEY)
    assert report.resumed and read_rotation(config.lakehouse) is None
    check_key(config.with_key(NEW_KEY))
    known = {pseudonym(NEW_KEY, a) for a in accounts(config)}
    for info in tables.user_key_tables(config.lakehouse):
        assert user_keys(config, info.name) <= known, info.name
    # the table re-keyed by the interrupted attempt is re-pointed too: every date stays readable
    for day in sorted(set(tables.read_arrow(config.table("gold", "runs")).column("run_date").to_pylist())):
        publication = reader.publication_for(config.lakehouse, day)
        for table in publication["published"]:
            reader.published_table(config.lakehouse, publication, table)


# --- 2. erasure that cannot be mistyped into damage ---------------------------------------------

def test_a_mistyped_erase_is_no_such_account_and_purges_nothing(copy_of_synthetic_run, spark):
    config, _, _ = copy_of_synthetic_run
    before, lengths = versions(config), history_lengths(config)
    with pytest.raises(ErasureError, match="no such account: acc-999999.*Nothing was erased or purged"):
        erase_accounts(spark, config, ["acc-999999"], REQUESTED_AT, "erase-typo")
    with pytest.raises(ErasureError, match="no such account: acc-999999"):  # one typo stops them all
        erase_accounts(spark, config, [shelved_account(config), "acc-999999"], REQUESTED_AT, "erase-typo-2")
    assert versions(config) == before and history_lengths(config) == lengths

    plan = plan_erasure(spark, config, [shelved_account(config)])
    assert plan.to_erase and not plan.unknown and plan.rows > 0 and plan.model_dirs >= 1
    assert plan.versions_lost >= sum(lengths[t["table"]] for t in plan.tables) > 0
    assert versions(config) == before  # planning changed nothing

    done = cli(config, "erase", "--account-id", "acc-999999")
    assert done.returncode == 1 and "no such account" in done.stderr, done.stdout + done.stderr
    dry = cli(config, "erase", "--account-id", shelved_account(config), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    summary = json.loads(dry.stdout)
    assert summary["dry_run"] and summary["rows_to_remove"] == plan.rows
    assert summary["rollback_versions_removed"] == plan.versions_lost
    assert versions(config) == before and history_lengths(config) == lengths


# --- 3. a failed run leaves silver and gold as they were ----------------------------------------

def test_a_landing_file_without_a_required_column_fails_at_ingest_before_any_write(copy_of_synthetic_run, spark):
    config, _, _ = copy_of_synthetic_run
    next_day = D + timedelta(days=1)
    source = Path(config.landing(f"viewing_events/date={D.isoformat()}")) / "part-00000.jsonl"
    renamed = []
    for line in source.read_text().splitlines():
        row = json.loads(line)
        row["user_id"] = row.pop("account_id")
        row["started_at"] = str(row["started_at"]).replace(D.isoformat(), next_day.isoformat())
        renamed.append(row)
    folder = Path(config.landing(f"viewing_events/date={next_day.isoformat()}"))
    add_landing_lines(folder, "part-00000.jsonl", renamed)
    before = versions(config)
    with pytest.raises(RunFailed, match=r"part-00000.jsonl has no column account_id"):
        run_pipeline(spark, fast(config), next_day)
    after = versions(config)
    moved = {t for t in after if after[t] != before.get(t)}
    assert moved <= {"gold/runs", "gold/lineage"}, moved  # only the record of the failed run
    failed = [r for r in tables.read_arrow(config.table("gold", "runs")).to_pylist() if r["status"] == "failed"]
    assert [r["failed_stage"] for r in failed] == ["ingest"]


def test_a_run_failing_after_ingest_is_undone(copy_of_synthetic_run, spark, monkeypatch):
    config, _, _ = copy_of_synthetic_run
    before = versions(config)
    contents = {name: sorted_rows(config, name) for name in ("silver/events", "silver/interactions",
                                                             "silver/candidates", "quarantine/viewing_events")}
    real_rerank = pipeline.STAGES["rerank"]

    def rerank_then_crash(spark, config, run_date, run_id):
        real_rerank(spark, config, run_date, run_id)
        raise RuntimeError("injected: the executor was lost")

    monkeypatch.setitem(pipeline.STAGES, "rerank", rerank_then_crash)
    with pytest.raises(RunFailed, match="injected") as failure:
        run_pipeline(spark, fast(config), D, run_id="run-that-fails")
    outcome = failure.value.outcome
    written = {t for s in outcome.summaries for t in s["outputs"]}
    assert {"silver/events", "silver/interactions", "silver/candidates"} <= written  # it did write ...
    for name, rows in contents.items():
        assert sorted_rows(config, name) == rows, f"{name} was not restored"  # ... and was undone
    for name in set(versions(config)) - set(run_marker.KEPT_TABLES):
        history = tables.table_history(tables.normalize_uri(config.table(*name.split("/"))))
        assert versions(config)[name] == before[name] or history[0]["operation"] == "RESTORE", name
    assert not Path(config.model_dir("run-that-fails")).exists()
    row = next(r for r in tables.read_arrow(config.table("gold", "runs")).to_pylist() if r["run_id"] == "run-that-fails")
    assert row["status"] == "failed" and "undone" in row["message"]
    assert not run_marker.read_markers(config)


# --- 4. publications stay readable --------------------------------------------------------------

def test_rollback_then_erasure_keeps_every_publication_readable(copy_of_synthetic_run, spark):
    config, _, _ = copy_of_synthetic_run
    config = fast(config)
    live = reader.latest_publication(config.lakehouse)
    target = live["published"]["gold/recommendations"]["version"]
    older = run_pipeline(spark, config, D - timedelta(days=1))  # a backfill: an older date's publication
    uri = config.table("gold", "recommendations")
    older_day = [("run_date", "=", older.run_date.isoformat())]
    older_rows = sorted(map(repr, tables.read_arrow(uri, filters=older_day).to_pylist()))
    assert older_rows

    pipeline_runs = tables.read_arrow(config.table("gold", "runs"))
    rollback_table(config, "gold/recommendations", target)
    kept = sorted(map(repr, tables.read_arrow(uri, filters=older_day).to_pylist()))
    assert kept == older_rows, "the rollback of one publication dropped another date's shelves"

    account = shelved_account(config)
    erase_accounts(spark, config, [account], REQUESTED_AT, "erase-after-rollback", run_date=D)
    days = sorted(set(pipeline_runs.column("run_date").to_pylist()))
    assert len(days) >= 2
    erased = pseudonym(config.pseudonym_key, account)
    for day in days:
        publication = reader.publication_for(config.lakehouse, day)
        shelves = reader.recommendations(config.lakehouse, day)
        assert shelves.num_rows > 0, day
        assert not pc.any(pc.equal(shelves.column("user_key"), erased)).as_py()
        for table in publication["published"]:
            reader.published_table(config.lakehouse, publication, table)  # every pinned version readable
    listed = cli(config, "runs", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert {json.loads(line)["run_date"] for line in listed.stdout.splitlines()} >= set(days)


# --- 6. a killed run ------------------------------------------------------------------------------

def test_a_killed_run_is_recorded_as_interrupted_and_undone_by_the_next(copy_of_synthetic_run, spark, tmp_path):
    config, _, _ = copy_of_synthetic_run
    config = fast(config)
    contents = {name: sorted_rows(config, name) for name in ("silver/events", "silver/interactions")}
    settings = tmp_path / "fast.toml"
    settings.write_text("[model]\nselection_trials = 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRSHELF_")}
    env.update(FAIRSHELF_LAKEHOUSE=config.lakehouse, FAIRSHELF_PSEUDONYM_KEY=config.pseudonym_key.decode(),
               FAIRSHELF_CONFIG=str(settings))
    process = subprocess.Popen([sys.executable, "-m", "jobs.interfaces.cli", "run", "--date", D.isoformat()],
                               env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and process.poll() is None:
            markers = run_marker.read_markers(config)
            if markers and markers[0].last_stage in ORDER[ORDER.index("privacy"):]:  # tables written
                break
            time.sleep(0.5)
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    killed = run_marker.read_markers(config)[0]
    assert killed.versions_before is not None  # killed after its erasure stage, mid-run

    with pytest.raises(RunInProgress, match=killed.run_id):  # its heartbeat is still fresh
        run_pipeline(spark, config, D)
    killed.heartbeat_at = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()  # the next night
    run_marker.write_marker(config, killed)
    outcome = run_pipeline(spark, config, D)
    assert outcome.succeeded
    row = next(r for r in tables.read_arrow(config.table("gold", "runs")).to_pylist() if r["run_id"] == killed.run_id)
    assert row["status"] == "failed" and row["failed_stage"] == killed.last_stage and "interrupted" in row["message"]
    assert not Path(config.model_dir(killed.run_id)).exists()
    assert not run_marker.read_markers(config)
    for name, rows in contents.items():  # the same landing data: the new run rebuilt the same rows
        assert len(sorted_rows(config, name)) == len(rows)
