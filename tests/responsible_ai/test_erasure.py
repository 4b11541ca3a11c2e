"""Erasure (DESIGN.md, Privacy rules): an erased user leaves no row in any table, no byte in
any file of any table version or transaction log, and no row in any saved model; other
users are untouched, and the erasure is recorded in gold/erasure_log.

The lakehouse is built once per module by the real pipeline on tiny synthetic data. The
only files allowed to name an erased pseudonym are gold/erasure_log's (the record of the
erasure); the raw account id stays in landing/, which belongs to the source systems.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs.core.config import AuditSettings
from jobs.core.errors import ErasureError, KeyMismatch
from jobs.datasets.synthetic import SyntheticSpec, generate_landing
from jobs.lake import tables
from jobs.lake.model_store import CARD_FILE, MODEL_FILE, USERS_FILE, drop_users_from_model, model_dirs
from jobs.lake.tables import TableError
from jobs.orchestration.pipeline import run_pipeline, timed_stage
from jobs.shared.privacy import filter_erased_users, pseudonym, pseudonymize_accounts
from jobs.stages import erasure
from jobs.stages.erasure import ErasureReport, ErasureRequest, erase_accounts, erasure_log_rows, pending_requests

D = date(2026, 11, 25)
SPEC = SyntheticSpec(users=200, items=80, events_per_day=1200, days=2, end_date=D, seed=7)
REQUESTED_AT = "2026-11-26T09:30:00Z"
LOG = "gold/erasure_log"
RUNS = "gold/runs"


# --- helpers: what the lakehouse holds ------------------------------------------------------

def current_rows(config) -> dict[str, list[dict]]:
    """Every table's rows at its current version, gold/erasure_log excepted."""
    return {t.name: tables.read_arrow(t.uri).to_pylist()
            for t in tables.list_tables(config.lakehouse) if t.name != LOG}


def readable_text(path: Path) -> str:
    """A file's bytes, plus its decoded values for Parquet (compressed pages) and npz."""
    parts = [path.read_bytes().decode("latin-1")]
    if path.suffix == ".parquet":
        parts.append(repr(pq.ParquetFile(path).read().to_pylist()))
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as saved:
            parts += [repr(saved[n].tolist()) for n in saved.files if saved[n].dtype.kind in "USO"]
    return "\n".join(parts)


def files_naming(config, needle: str) -> list[str]:
    """Every file under the lakehouse (all tables, versions, logs, models, reports) holding
    ``needle``, except gold/erasure_log's."""
    root = Path(config.lakehouse)
    skip = root / "gold" / "erasure_log"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and skip not in p.parents and needle in readable_text(p))


def saved_models(config) -> dict[str, SimpleNamespace]:
    models = {}
    for directory in model_dirs(config.path("models")):
        with np.load(directory / MODEL_FILE) as saved:
            arrays = {n: saved[n] for n in saved.files}
        models[directory.name] = SimpleNamespace(
            users=pq.read_table(directory / USERS_FILE).to_pylist(), **arrays,
            card=json.loads((directory / CARD_FILE).read_text()))
    return models


def key_counts(rows: dict[str, list[dict]], key: str) -> dict[str, int]:
    return {name: sum(r["user_key"] == key for r in table)
            for name, table in rows.items() if table and "user_key" in table[0]}


def without(rows: list[dict], keys: set[str]) -> list[str]:
    return sorted(repr(r) for r in rows if r.get("user_key") not in keys)


def landing_accounts(config) -> list[str]:
    users = pajson.read_json(Path(config.landing("users")) / "users.jsonl")
    return sorted(users.column("account_id").to_pylist())


def private_copy(config, tmp_path):
    """A copy of the module's lakehouse for a test that writes (no test depends on another's writes)."""
    shutil.copytree(config.lakehouse, tmp_path / "lake")
    return dataclasses.replace(config, lakehouse=str(tmp_path / "lake"))


# --- the lakehouse: one pipeline run, then a second model and shelf -------------------------

@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory, config_factory):
    """A run for D, then the train stage again under a second run id: two model
    directories, and an older version of silver/candidates on disk."""
    # A published run is what is erased from; whether 200 users' shelves pass the fairness
    # thresholds is the audit's tests' concern: here the audit records and does not block.
    config = config_factory(tmp_path_factory.mktemp("erasure") / "lake", audit=AuditSettings(blocking=()))
    generate_landing(config.lakehouse, SPEC)
    outcome = run_pipeline(spark, config, D, run_id="run-1")
    assert outcome.succeeded
    seconds = {s["stage"]: s["seconds"] for s in outcome.summaries}
    seconds["train again"] = timed_stage("train", spark, config, D, "run-2")["seconds"]
    print(f"lakehouse built: {seconds}")
    return config


@pytest.fixture(scope="module")
def erased(spark, lake):
    """Erase one account that has events and a published shelf; the lakehouse before and
    after, and the erasure's report."""
    config = lake
    key_of = {pseudonym(config.pseudonym_key, a): a for a in landing_accounts(config)}
    before = current_rows(config)
    shelved = {r["user_key"] for r in before["gold/recommendations"]}
    watched = {r["user_key"] for r in before["silver/events"]}
    key = sorted(shelved & watched & set(key_of))[0]
    account = key_of[key]
    state = SimpleNamespace(
        config=config, key=key, account=account, before=before,
        infos={t.name: t for t in tables.list_tables(config.lakehouse)},
        files_before=files_naming(config, key), models_before=saved_models(config),
        recommendations_v0=tables.read_arrow(config.table("gold", "recommendations"), version=0),
    )
    state.report = erase_accounts(spark, config, [account], REQUESTED_AT, "erase-1",
                                  run_date=D + timedelta(days=1))
    state.after = current_rows(config)
    state.log = tables.read_arrow(config.table("gold", "erasure_log")).to_pylist()
    state.models_after = saved_models(config)
    print(f"erasure of one user: {state.report.seconds:.2f} s, {state.report.metrics()}")
    return state


# --- pure parts ---------------------------------------------------------------------------

def test_pending_requests_skip_logged_and_repeated_ones():
    a1, a2 = ErasureRequest("uk-a", "2026-11-26T01:00:00Z"), ErasureRequest("uk-a", "2026-11-27")
    b = ErasureRequest("uk-b", "2026-11-26T00:00:00Z")

    assert pending_requests([a2, a1, b, a1], done={("uk-a", "2026-11-26T01:00:00Z")}) == [b, a2]


def test_erasure_log_rows_count_a_repeated_key_once():
    report = ErasureReport("erase-9", "2026-11-26", [
        ErasureRequest("uk-a", "2026-11-26T02:00:00Z"), ErasureRequest("uk-a", "2026-11-26T01:00:00Z"),
        ErasureRequest("uk-b", "2026-11-26T03:00:00Z")],
        rows_by_key={"uk-a": {"silver/events": 4, "gold/recommendations": 0},
                     "uk-b": {"silver/events": 0, "gold/recommendations": 0}},
        model_dirs_by_key={"uk-a": 2}, erased_at="2026-11-26T04:00:00+00:00")

    rows = erasure_log_rows(report)

    assert [(r["user_key"], r["requested_at"], json.loads(r["rows_by_table_json"]),
             r["model_files_rewritten"]) for r in rows] == [
        ("uk-a", "2026-11-26T01:00:00Z", {"gold/recommendations": 0, "silver/events": 4}, 4),
        ("uk-a", "2026-11-26T02:00:00Z", {"gold/recommendations": 0, "silver/events": 0}, 0),
        ("uk-b", "2026-11-26T03:00:00Z", {"gold/recommendations": 0, "silver/events": 0}, 0)]
    assert {r["run_id"] for r in rows} == {"erase-9"} and report.rows == 4
    assert "uk-" not in json.dumps(report.metrics()), "metrics hold counts, never pseudonyms"


def tiny_model(directory: Path, factor_rows: int = 3) -> None:
    directory.mkdir(parents=True)
    np.savez(directory / MODEL_FILE, user_factors=np.arange(factor_rows * 2.0).reshape(-1, 2),
             item_factors=np.ones((4, 2)))
    pq.write_table(pa.table({"user_key": ["uk-a", "uk-b", "uk-c"], "row": np.arange(3)}),
                   directory / USERS_FILE)
    (directory / CARD_FILE).write_text(json.dumps({"users": 3}))


def test_a_model_loses_the_users_rows_and_keeps_the_rest(tmp_path):
    tiny_model(tmp_path / "m")

    assert drop_users_from_model(tmp_path / "m", ["uk-b", "uk-x"]) == ["uk-b"]

    with np.load(tmp_path / "m" / MODEL_FILE) as saved:
        assert saved["user_factors"].tolist() == [[0.0, 1.0], [4.0, 5.0]]
        assert saved["item_factors"].tolist() == np.ones((4, 2)).tolist()
    assert pq.read_table(tmp_path / "m" / USERS_FILE).to_pylist() == [
        {"user_key": "uk-a", "row": 0}, {"user_key": "uk-c", "row": 1}]
    assert json.loads((tmp_path / "m" / CARD_FILE).read_text()) == {"users": 3, "erased_users": 1}
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(
        [MODEL_FILE, USERS_FILE, CARD_FILE]), "no temporary file left"
    assert drop_users_from_model(tmp_path / "m", ["uk-b"]) == []


def test_a_model_left_half_rewritten_is_finished_or_refused(tmp_path):
    tiny_model(tmp_path / "crashed", factor_rows=2)  # factors renamed, index not yet
    tiny_model(tmp_path / "broken", factor_rows=5)

    assert drop_users_from_model(tmp_path / "crashed", ["uk-b"]) == ["uk-b"]

    with np.load(tmp_path / "crashed" / MODEL_FILE) as saved:
        assert saved["user_factors"].shape == (2, 2)
    assert len(pq.read_table(tmp_path / "crashed" / USERS_FILE)) == 2
    with pytest.raises(ErasureError, match="5 user factor rows for 3 users"):
        drop_users_from_model(tmp_path / "broken", ["uk-b"])


# --- Spark parts on tiny frames -------------------------------------------------------------

@pytest.mark.spark
@pytest.mark.parametrize("key", [b"fairshelf-test-key-0123456789abcdef", b"long-key-" * 10],
                         ids=["short-key", "longer-than-a-block"])
def test_driver_pseudonyms_equal_the_spark_expression(spark, key):
    ids = ["acct-000123", "Zoë-ü-✓", " padded ", "x" * 200]
    df = spark.createDataFrame([(i,) for i in ids], "account_id string")

    in_spark = {r["account_id"]: r["user_key"] for r in pseudonymize_accounts(
        df.withColumn("account", F.col("account_id")), key, column="account").collect()}

    assert {i: pseudonym(key, i) for i in ids} == in_spark


@pytest.mark.spark
def test_filter_erased_users_drops_only_erased_keys(spark):
    events = spark.createDataFrame(
        [("c1", "uk-a", 1), ("c2", "uk-b", 2), ("c3", None, 3), ("c4", "uk-a", 4)],
        "content_id string, user_key string, seconds int")
    erased_keys = spark.createDataFrame([("uk-a",), ("uk-a",), ("uk-z",)], "user_key string")

    kept = filter_erased_users(events, erased_keys)

    assert kept.columns == events.columns
    assert sorted(kept.collect(), key=lambda r: r["content_id"]) == [
        ("c2", "uk-b", 2), ("c3", None, 3)]


@pytest.mark.spark
def test_nightly_stage_without_requests_erases_nothing(spark, config):
    result = erasure.run(spark, config, D, "run-empty")
    Path(config.landing("erasure_requests")).mkdir(parents=True)
    Path(config.landing("erasure_requests"), "requests.jsonl").write_text("")
    again = erasure.run(spark, config, D, "run-empty-2")

    for outcome in (result, again):
        assert outcome.metrics["erased"] == 0 and outcome.metrics["requests"] == 0
        assert outcome.outputs == {}
    assert not tables.table_exists(config.table("gold", "erasure_log"))


@pytest.mark.spark
def test_erase_accounts_rejects_missing_ids(spark, config):
    for ids, message in ((["ok", ""], "is empty"), ([], "non-empty list"), ("acct", "list")):
        with pytest.raises(ErasureError, match=message):
            erase_accounts(spark, config, ids, REQUESTED_AT, "run-x")
    with pytest.raises(ErasureError, match="requested_at is empty"):
        erase_accounts(spark, config, ["acct"], " ", "run-x")


# --- the erasure, on the lakehouse the pipeline built ---------------------------------------

@pytest.mark.spark
@pytest.mark.integration
def test_before_the_erasure_the_user_is_everywhere(erased):
    """The controls: the scanner finds the user in data files, in an older version's file
    and in both models, so the checks after the erasure can fail."""
    files = erased.files_before
    assert any(f.startswith("silver/events/run_date=") for f in files)
    assert {f"models/{run}/{USERS_FILE}" for run in ("run-1", "run-2")} <= set(files)
    candidates = erased.infos["silver/candidates"]
    current = {str(Path(p).relative_to(erased.config.lakehouse))
               for p in DeltaTable(candidates.uri).file_uris()}
    assert any(f.startswith("silver/candidates/run_date=") and f not in current
               for f in files), "an older version's file holds the user"
    assert erased.key in erased.recommendations_v0.column("user_key").to_pylist()
    assert erased.key in {r["user_key"] for r in erased.models_before["run-1"].users}


@pytest.mark.spark
@pytest.mark.integration
def test_no_table_holds_a_row_of_the_erased_user(erased):
    for name, rows in erased.after.items():
        assert erased.key not in repr(rows), name
    assert erased.account not in repr(erased.after)


@pytest.mark.spark
@pytest.mark.integration
def test_no_file_of_any_version_log_or_model_names_the_erased_user(erased):
    assert files_naming(erased.config, erased.key) == []
    for info in erased.infos.values():
        assert tables.log_files_mentioning(info.uri, [erased.key]) == []


def repointings(before: list[dict], after: list[dict]) -> list[dict]:
    """The gold/runs rows added between ``before`` and ``after``: an erasure appends one
    of kind ``erasure`` re-pointing the live publication at the post-erasure versions."""
    added = [r for r in after if r not in before]
    assert all(r["kind"] == "erasure" for r in added), added
    return added


@pytest.mark.spark
@pytest.mark.integration
def test_other_users_rows_are_untouched(erased):
    assert set(erased.after) == set(erased.before)
    for name, rows in erased.before.items():
        if name != RUNS:
            assert without(erased.after[name], set()) == without(rows, {erased.key}), name
    [repointed] = repointings(erased.before[RUNS], erased.after[RUNS])
    assert erased.key not in repr(repointed)
    counts = key_counts(erased.before, erased.key)
    after = {t.name: t.rows for t in tables.list_tables(erased.config.lakehouse)}
    for name, info in erased.infos.items():
        if name not in (LOG, RUNS):
            assert after[name] == info.rows - counts.get(name, 0), name


@pytest.mark.spark
@pytest.mark.integration
def test_every_model_loses_only_the_erased_users_rows(erased):
    assert set(erased.models_after) == {"run-1", "run-2"}
    for run_id, old in erased.models_before.items():
        new = erased.models_after[run_id]
        old_rows = {u["user_key"]: u["row"] for u in old.users}
        assert [u["user_key"] for u in new.users] == [k for k in old_rows if k != erased.key]
        assert [u["row"] for u in new.users] == list(range(len(old.users) - 1))
        if hasattr(old, "user_factors"):  # an EASE model (chosen by validation) has none
            assert new.user_factors.shape == (len(old.users) - 1, old.user_factors.shape[1])
            for user in new.users:
                assert np.array_equal(new.user_factors[user["row"]],
                                      old.user_factors[old_rows[user["user_key"]]])
        for name in ("item_factors", "item_weights"):
            assert np.array_equal(getattr(new, name, None), getattr(old, name, None))
        assert new.card == {**old.card, "erased_users": 1}


@pytest.mark.spark
@pytest.mark.integration
def test_the_erasure_log_holds_one_record_with_rows_per_table(erased):
    counts = key_counts(erased.before, erased.key)
    [record] = erased.log
    assert {k: record[k] for k in ("user_key", "requested_at", "run_id", "run_date",
                                   "model_files_rewritten")} == {
        "user_key": erased.key, "requested_at": REQUESTED_AT, "run_id": "erase-1",
        "run_date": (D + timedelta(days=1)).isoformat(), "model_files_rewritten": 4}
    assert json.loads(record["rows_by_table_json"]) == counts
    assert counts["silver/events"] > 0 and counts["gold/recommendations"] > 0
    assert set(counts) == {"silver/events", "silver/user_features", "silver/interactions",
                           "silver/candidates", "silver/holdout", "silver/holdout_candidates",
                           "silver/shelves", "quarantine/viewing_events", "gold/recommendations"}
    assert erased.report.rows == sum(counts.values())
    metrics = json.dumps(erased.report.metrics())
    assert erased.key not in metrics and erased.account not in metrics


@pytest.mark.spark
@pytest.mark.integration
def test_time_travel_to_before_the_erasure_fails_cleanly(spark, erased):
    uri = erased.infos["gold/recommendations"].uri
    with pytest.raises(TableError, match="cannot open version 0"):
        tables.read_arrow(uri, version=0)
    with pytest.raises(TableError, match="cannot open version 0"):
        tables.read_table(spark, uri, version=0)
    for name, rows in key_counts(erased.before, erased.key).items():
        history = tables.table_history(erased.infos[name].uri)
        assert len(history) == 1, f"{name}: one version left"
        assert history[0]["stage"] == "erasure" or not rows, name
    untouched = erased.infos["silver/content"]
    assert tables.table_version(untouched.uri) == untouched.version, "no user key: kept"


@pytest.mark.spark
@pytest.mark.integration
def test_an_erasure_with_another_key_than_the_runs_is_refused(spark, erased):
    versions = {t.name: t.version for t in tables.list_tables(erased.config.lakehouse)}
    other = erased.config.with_key(b"another-key-0123456789abcdefghijklmnop")

    with pytest.raises(KeyMismatch, match="not the key of the lakehouse .* recorded by run-1"):
        erase_accounts(spark, other, [erased.account], REQUESTED_AT, "erase-other")

    assert {t.name: t.version for t in tables.list_tables(erased.config.lakehouse)} == versions


@pytest.mark.spark
@pytest.mark.integration
def test_a_second_erasure_of_the_account_finds_it_erased_and_purges_nothing(spark, erased):
    config = erased.config
    versions = {t.name: t.version for t in tables.list_tables(config.lakehouse)}

    report = erase_accounts(spark, config, [erased.account], "2026-11-27T10:00:00Z",
                            "erase-2", run_date=D + timedelta(days=2))

    assert report.user_keys == [] and report.already_erased == 1 and report.rows == 0
    assert {t.name: t.version for t in tables.list_tables(config.lakehouse)} == versions  # no purge
    records = [r for r in tables.read_arrow(config.table("gold", "erasure_log")).to_pylist()
               if r["run_id"] == "erase-2"]
    assert records == []
    assert files_naming(config, erased.key) == []


@pytest.mark.spark
@pytest.mark.integration
def test_nightly_stage_erases_each_pending_request_once(spark, erased, tmp_path):
    config = private_copy(erased.config, tmp_path)
    generate_landing(config.lakehouse, dataclasses.replace(SPEC, erasure_requests=2))
    folder = Path(config.landing("erasure_requests"))
    synthetic = pajson.read_json(folder / "erasure_requests.jsonl").to_pylist()
    late = [{"request_id": "er-again", "account_id": erased.account, "requested_at": REQUESTED_AT},
            {"request_id": "er-bad", "account_id": None, "requested_at": REQUESTED_AT}]
    (folder / "late.jsonl").write_text("".join(json.dumps(r) + "\n" for r in late))
    # `fairshelf erase` kept its request here: already carried out, so skipped like er-again
    [retained] = [json.loads(line) for p in folder.glob("fairshelf-erase-*.jsonl") for line in p.read_text().splitlines()]
    assert retained["account_id"] == erased.account and retained["requested_at"] == REQUESTED_AT
    keys = {pseudonym(config.pseudonym_key, r["account_id"]) for r in synthetic}
    log_uri = config.table("gold", "erasure_log")
    logged = tables.read_arrow(log_uri).num_rows

    result = erasure.run(spark, config, D + timedelta(days=3), "nightly-1")

    metrics = result.metrics
    assert (metrics["requests"], metrics["invalid_requests"], metrics["invalid_request_ids"],
            metrics["skipped_requests"], metrics["erased"]) == (5, 1, ["er-bad"], 2, len(keys))
    assert result.outputs[LOG] == tables.table_version(log_uri)
    log = tables.read_arrow(log_uri).to_pylist()
    assert {r["user_key"] for r in log if r["run_id"] == "nightly-1"} == keys
    rows = current_rows(config)
    for key in keys:
        assert key not in repr(rows) and files_naming(config, key) == []
    assert not any(k in json.dumps(metrics) for k in keys | {erased.key})

    again = erasure.run(spark, config, D + timedelta(days=3), "nightly-2")

    assert (again.metrics["erased"], again.metrics["skipped_requests"]) == (0, 4)
    assert tables.read_arrow(log_uri).num_rows == logged + len(keys)


@pytest.mark.spark
@pytest.mark.integration
def test_a_rerun_over_landing_data_does_not_bring_the_user_back(spark, erased, tmp_path):
    """landing/ still holds the erased user's profile and events (it belongs to the
    source systems); rerunning the night must not ingest them again."""
    config = private_copy(erased.config, tmp_path)
    assert erased.account in landing_accounts(config)
    outcome = run_pipeline(spark, config, D, run_id="run-after-erasure")
    assert outcome.succeeded
    assert erased.key not in repr(current_rows(config))
    assert files_naming(config, erased.key) == []
