"""Erasure without Spark (issue 18, item 5): ``fairshelf erase`` of an account erases it
with delta-rs and pyarrow alone, and leaves the lakehouse exactly as the Spark erasure does.

The same account is erased from two copies of the session's synthetic run, once with a
SparkSession and once with none; every table (rows and version), every saved model, the
retained erasure request and the report's counts must be the same. Only what names the
moment or a random id differs by construction: erased_at, the re-pointing rows' times and
the random part of their run id.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.core.errors import ErasureError
from jobs.lake import delta
from jobs.lake.model_store import MODEL_FILE, USERS_FILE, model_dirs
from jobs.shared.privacy import pseudonym
from jobs.stages.erasure import erase_accounts, plan_erasure

REQUESTED_AT = "2026-11-26T09:30:00Z"
ERASED_ON = date(2026, 11, 26)
MOMENTS = ("erased_at", "started_at", "finished_at")


def lakehouse_copy(config, target: Path):
    shutil.copytree(config.lakehouse, target, symlinks=True)
    return dataclasses.replace(config, lakehouse=str(target))


def without_moments(row: dict) -> str:
    row = {k: (None if k in MOMENTS else v) for k, v in row.items()}
    if isinstance(row.get("run_id"), str):  # repoint_publication's "<run>.erasure.<6 hex>.<date>"
        row["run_id"] = re.sub(r"\.erasure\.[0-9a-f]{6}\.", ".erasure.*.", row["run_id"])
    return json.dumps(row, sort_keys=True, default=str)


def lakehouse_state(config) -> dict:
    """Every table's version and rows (moments blanked), every model's users and factors,
    and the retained erasure requests."""
    state: dict = {}
    for info in delta.list_tables(config.lakehouse):
        rows = sorted(map(without_moments, delta.read_arrow(info.uri).to_pylist()))
        state[info.name] = (info.version, rows)
    for directory in model_dirs(config.path("models")):
        with np.load(directory / MODEL_FILE) as saved:
            arrays = {n: saved[n].tolist() for n in saved.files}
        state[f"models/{directory.name}"] = (pq.read_table(directory / USERS_FILE).to_pylist(), arrays)
    requests = Path(config.landing("erasure_requests"))
    state["landing/erasure_requests"] = sorted((p.name, p.read_text()) for p in requests.glob("*"))
    return state


def shelved_and_watched_account(config) -> str:
    keys = set(delta.read_arrow(config.table("gold", "recommendations")).column("user_key").to_pylist())
    keys &= set(delta.read_arrow(config.table("silver", "events")).column("user_key").to_pylist())
    return next(f"acc-{n:06d}" for n in range(1, 1000) if pseudonym(config.pseudonym_key, f"acc-{n:06d}") in keys)


def test_erasure_without_spark_leaves_the_lakehouse_as_the_spark_erasure(synthetic_run, spark, tmp_path):
    config = synthetic_run[0]
    with_spark, without_spark = lakehouse_copy(config, tmp_path / "a"), lakehouse_copy(config, tmp_path / "b")
    account = shelved_and_watched_account(config)
    assert lakehouse_state(with_spark) == lakehouse_state(without_spark)

    by_spark = erase_accounts(spark, with_spark, [account], REQUESTED_AT, "erase-1", run_date=ERASED_ON)
    plan = plan_erasure(None, without_spark, [account])
    assert plan.unscanned == [] and plan.to_erase == [account]
    by_delta_rs = erase_accounts(None, without_spark, [account], REQUESTED_AT, "erase-1", run_date=ERASED_ON,
                                 plan=plan)

    assert by_delta_rs.rows > 0 and by_delta_rs.model_dirs_rewritten >= 1
    counts = {k: v for k, v in by_delta_rs.metrics().items() if k != "erasure_seconds"}
    assert counts == {k: v for k, v in by_spark.metrics().items() if k != "erasure_seconds"}
    after = lakehouse_state(without_spark)
    assert after == lakehouse_state(with_spark)
    assert after != lakehouse_state(config)  # the comparison sees an erasure
    log = delta.read_arrow(without_spark.table("gold", "erasure_log")).to_pylist()
    assert [r["user_key"] for r in log] == [pseudonym(config.pseudonym_key, account)]
    for info in delta.list_tables(without_spark.lakehouse):  # no statistics name a user key
        stats = [json.loads(line).get("add", {}).get("stats") or "{}"
                 for f in sorted(Path(info.uri, "_delta_log").glob("*.json"))
                 for line in f.read_text().splitlines() if line.strip()]
        assert not any("user_key" in json.loads(s).get("minValues", {}) for s in stats), info.name


def test_an_account_found_only_in_landing_needs_the_landing_scan(synthetic_run, tmp_path):
    """Without Spark the plan does not guess: an account in no table is left unscanned, and
    erasing with that plan is refused before anything changes."""
    config = lakehouse_copy(synthetic_run[0], tmp_path / "lake")
    plan = plan_erasure(None, config, ["acc-999999"])
    assert plan.unscanned == ["acc-999999"] and plan.unknown == [] and plan.to_erase == []
    before = lakehouse_state(config)
    with pytest.raises(ErasureError, match="needs Spark"):
        erase_accounts(None, config, ["acc-999999"], REQUESTED_AT, "erase-typo", plan=plan)
    assert lakehouse_state(config) == before
