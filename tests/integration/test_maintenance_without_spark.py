"""Maintenance commands without Spark (issue 18, item 5): ``fairshelf rollback``, ``erase``
(one account), ``runs``, ``tables`` and ``report`` on a finished lakehouse, run as a user
runs them, with no Java on PATH: Spark cannot start, so a command that needed it would fail.
``rollback``, ``runs``, ``tables`` and ``report`` do not even import pyspark
(``python -X importtime``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc

from jobs.lake import delta
from jobs.lake.delta_write import write_arrow
from jobs.lake.reader import latest_publication
from jobs.shared.privacy import pseudonym

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("pyspark", "py4j", "great_expectations", "implicit", "airflow", "fairlearn")


def fairshelf(config, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str], float]:
    """``fairshelf ARGS`` on ``config``'s lakehouse with its key, Java off PATH and
    JAVA_HOME; (the process, the heavy top-level modules it imported, its seconds)."""
    (tmp_path / "empty-bin").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAIRSHELF_", "JAVA_HOME"))}
    env.update(PYTHONPATH=str(REPO), PATH=str(tmp_path / "empty-bin"), COLUMNS="200",
               FAIRSHELF_LAKEHOUSE=config.lakehouse, FAIRSHELF_PSEUDONYM_KEY=config.pseudonym_key.decode())
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "jobs.interfaces.cli", *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    done.stderr = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    return done, sorted({m.split(".")[0] for m in imported} & set(HEAVY)), seconds


def test_rollback_runs_tables_and_report_start_no_spark(copy_of_synthetic_run, tmp_path):
    config, _, outcome = copy_of_synthetic_run
    uri = config.table("gold", "recommendations")
    served = latest_publication(config.lakehouse)["published"]["gold/recommendations"]["version"]
    assert served == delta.table_version(uri)
    day = outcome.run_date.isoformat()
    before = sorted(map(repr, delta.read_arrow(uri, filters=[("run_date", "=", day)]).to_pylist()))
    shelves = delta.read_arrow(uri, filters=[("run_date", "=", day)])
    # a later (unpublished) write halves the date's shelves: the version to roll back from
    commit = delta.CommitInfo("manual-write", day, "test", config.code_version, config.config_hash)
    write_arrow(shelves.slice(0, shelves.num_rows // 2), uri, commit=commit, mode="overwrite_partition")

    done, heavy, seconds = fairshelf(config, tmp_path, "rollback", "--table", "gold/recommendations",
                                     "--to-version", str(served))
    assert done.returncode == 0, done.stdout + done.stderr
    assert heavy == [], heavy
    print(f"rollback: {seconds:.1f} s")
    assert sorted(map(repr, delta.read_arrow(uri, filters=[("run_date", "=", day)]).to_pylist())) == before
    live = latest_publication(config.lakehouse)
    assert live["kind"] == "rollback"
    assert live["published"]["gold/recommendations"]["version"] == delta.table_version(uri) == served + 2
    assert delta.table_history(uri)[0]["stage"] == "rollback"

    for args in (("runs", "--json"), ("tables",), ("report", "--date", day)):
        done, heavy, _ = fairshelf(config, tmp_path, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert heavy == [], (args, heavy)


def test_erase_of_one_account_starts_no_spark(copy_of_synthetic_run, tmp_path):
    config, _, _ = copy_of_synthetic_run
    shelves = delta.read_arrow(config.table("gold", "recommendations"))
    keys = set(shelves.column("user_key").to_pylist())
    account = next(f"acc-{n:06d}" for n in range(1, 1000) if pseudonym(config.pseudonym_key, f"acc-{n:06d}") in keys)
    key = pseudonym(config.pseudonym_key, account)

    done, heavy, seconds = fairshelf(config, tmp_path, "erase", "--account-id", account)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"erase: {seconds:.1f} s, imported {heavy}")
    report = json.loads(done.stdout)
    assert report["erased_users"] == 1 and report["rows_removed"] > 0 and report["model_dirs_rewritten"] >= 1
    for info in delta.list_tables(config.lakehouse):
        table = delta.read_arrow(info.uri)
        if "user_key" in table.column_names and info.name != "gold/erasure_log":
            assert not pc.any(pc.equal(table.column("user_key"), key)).as_py(), info.name
    assert latest_publication(config.lakehouse)["kind"] == "erasure"

    done, _, _ = fairshelf(config, tmp_path, "erase", "--account-id", "acc-999999")  # found nowhere:
    assert done.returncode == 1 and "no Java found" in done.stderr  # only the landing scan needs Spark
