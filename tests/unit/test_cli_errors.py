"""Errors a user can cause, as a user meets them (issue 18, items 2, 3, 7 and 8): the real
``fairshelf`` CLI in a subprocess, no mocks, no Spark.

Each error must come in seconds with a message of a line or two that names the problem
and the fix, exit 1 (2 for a usage error), and leave nothing behind. That it came before
Spark started is checked on the imports (``python -X importtime``): none of pyspark, Great
Expectations, implicit, Airflow or fairlearn was even imported.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from jobs.core.config import load_config
from jobs.core.errors import StageError, explain, without_stack
from jobs.interfaces import environment_check
from jobs.lake import run_marker
from jobs.lake.landing import file_columns
from jobs.lake.lock import LOCK_FILE, Holder, is_stale, lakehouse_lock, read_holder
from jobs.lake.pseudonym_space import DEMO_KEY_FILE, with_demo_key

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("pyspark", "great_expectations", "implicit", "airflow", "fairlearn")
KEY = "a-test-key-that-is-long-enough-0123456789abcdef"
DAY = "2026-11-25"
# Issue 18 asks for 5 s on an idle machine (they take about 0.3-1 s there); a loaded CI
# worker gets twice that. "Before Spark" is checked strictly on the imports.
FAST = 10.0


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str  # without -X importtime's lines
    seconds: float
    heavy: list[str]  # heavy modules the command imported
    logs: list[str]  # files written to the temporary directory (TMPDIR)

    @property
    def message(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def fairshelf(tmp_path: Path, *args: str, lakehouse: Path | None = None, java: bool = True,
              prefix: tuple[str, ...] = (), **env: str) -> Done:
    """Run ``fairshelf ARGS`` as a user would (a fresh environment: no FAIRSHELF_* from the
    caller); ``java=False`` leaves Java off PATH and JAVA_HOME."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FAIRSHELF_", "JAVA_HOME"))}
    environ.update(PYTHONPATH=str(REPO), TMPDIR=str(tmp_path / "tmp"), COLUMNS="80")
    if lakehouse is not None:
        environ["FAIRSHELF_LAKEHOUSE"] = str(lakehouse)
    if not java:
        (tmp_path / "empty-bin").mkdir(exist_ok=True)
        environ["PATH"] = str(tmp_path / "empty-bin")
    environ.update(env)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run([*prefix, sys.executable, "-X", "importtime", "-m", "jobs.interfaces.cli", *args],
                          env=environ, cwd=REPO, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    timing = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[-1].strip() for line in timing}
    stderr = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    return Done(done.returncode, done.stdout, stderr, seconds,
                sorted(m for m in imported if m.split(".")[0] in HEAVY), tree(tmp_path / "tmp"))


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (but the test's own TMPDIR and empty PATH folder)."""
    paths = (str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else ()
    return sorted(p for p in paths if p.split("/")[0] not in ("tmp", "empty-bin"))


def landed_lakehouse(tmp_path: Path, days: tuple[str, ...] = (DAY,)) -> Path:
    """A lakehouse with viewing events landed for ``days`` and nothing else."""
    lakehouse = tmp_path / "lake"
    for day in days:
        folder = lakehouse / "landing" / "viewing_events" / f"date={day}"
        folder.mkdir(parents=True)
        (folder / "events.jsonl").write_text(json.dumps({"event_id": "e1", "account_id": "acc-1"}) + "\n")
    return lakehouse


def assert_one_message(done: Done, code: int, *needles: str, lines: int = 2) -> None:
    """Exit ``code``, at most ``lines`` lines on stderr, no traceback, each needle said, before
    any heavy module was imported, in seconds."""
    said = " ".join(done.message)
    assert done.code == code, done.stdout + done.stderr
    assert 1 <= len(done.message) <= lines, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for needle in needles:
        assert needle in said, f"{needle!r} not in {said!r}"
    assert done.heavy == [], f"imported before failing: {done.heavy}"
    assert done.seconds < FAST, f"{done.seconds:.1f} s"
    assert done.logs == []  # a check's message is all there is: no traceback to keep


# --- item 2: fail in seconds, before Spark -------------------------------------------------------

@pytest.mark.parametrize("args", [("run", "--date", "2026-13-45"), ("run", "--date", "yesterday"),
                                  ("report", "--date", "25/11/2026"), ("backfill", "--start", DAY, "--end", "x")])
def test_a_malformed_date_is_a_usage_error(tmp_path, args):
    lakehouse = landed_lakehouse(tmp_path)
    before = tree(tmp_path)
    done = fairshelf(tmp_path, *args, lakehouse=lakehouse, FAIRSHELF_PSEUDONYM_KEY=KEY)
    assert_one_message(done, 2, "is not a date", "YYYY-MM-DD", lines=1)
    assert tree(tmp_path) == before


def test_an_end_before_the_start_is_a_usage_error(tmp_path):
    done = fairshelf(tmp_path, "backfill", "--start", "2026-11-25", "--end", "2026-11-20",
                     lakehouse=landed_lakehouse(tmp_path))
    assert_one_message(done, 2, "--end 2026-11-20 is before --start 2026-11-25", lines=1)


@pytest.mark.parametrize("args", [("run", "--date", DAY), ("backfill", "--start", DAY, "--end", DAY),
                                  ("erase", "--account-id", "acc-1"), ("rollback", "--table", "gold/audit",
                                  "--to-version", "1"), ("runs",), ("tables",), ("report", "--date", DAY)])
def test_a_mistyped_lakehouse_is_named_and_not_created(tmp_path, args):
    mistyped = tmp_path / "lakehuose"
    done = fairshelf(tmp_path, *args, lakehouse=mistyped, FAIRSHELF_PSEUDONYM_KEY=KEY)
    assert_one_message(done, 1, f"the lakehouse {mistyped} does not exist", "FAIRSHELF_LAKEHOUSE", "fairshelf demo")
    assert not mistyped.exists()  # no stray gold/runs, lineage/, reports/


def test_an_unknown_setting_is_named_with_its_section(tmp_path):
    """Rich once ate "[shelf]" as markup: `error: : unknown setting(s)`."""
    settings = tmp_path / "fairshelf.toml"
    settings.write_text("[shelf]\nhistroy_days = 30\n")
    done = fairshelf(tmp_path, "run", "--date", DAY, "--config", str(settings),
                     lakehouse=landed_lakehouse(tmp_path), FAIRSHELF_PSEUDONYM_KEY=KEY)
    assert_one_message(done, 1, "[shelf] histroy_days: unknown setting", "history_days")


def test_a_bad_value_is_named_with_what_is_allowed(tmp_path):
    done = fairshelf(tmp_path, "run", "--date", DAY, lakehouse=landed_lakehouse(tmp_path),
                     FAIRSHELF_PSEUDONYM_KEY=KEY, FAIRSHELF_K_ANONYMITY="1")
    assert_one_message(done, 1, "[privacy] k_anonymity", "greater than or equal to 2")


def test_a_missing_landing_partition_names_the_folder_and_the_days_landed(tmp_path):
    lakehouse = landed_lakehouse(tmp_path, days=("2026-11-23", "2026-11-24"))
    before = tree(tmp_path)
    done = fairshelf(tmp_path, "run", "--date", DAY, lakehouse=lakehouse, FAIRSHELF_PSEUDONYM_KEY=KEY)
    assert_one_message(done, 1, f"no landing data for {DAY}", f"viewing_events/date={DAY}",
                       "landing holds 2026-11-23 to 2026-11-24 (2 days)")
    assert tree(tmp_path) == before


def test_a_backfill_names_every_day_without_landing_data(tmp_path):
    lakehouse = landed_lakehouse(tmp_path, days=("2026-11-24",))
    done = fairshelf(tmp_path, "backfill", "--start", "2026-11-23", "--end", DAY, lakehouse=lakehouse,
                     FAIRSHELF_PSEUDONYM_KEY=KEY)
    assert_one_message(done, 1, "no landing data for 2026-11-23, 2026-11-25")


def test_a_missing_key_lists_the_three_ways_to_provide_one(tmp_path):
    lakehouse = landed_lakehouse(tmp_path)
    before = tree(tmp_path)
    done = fairshelf(tmp_path, "run", "--date", DAY, lakehouse=lakehouse)
    assert_one_message(done, 1, "no pseudonymization key", "FAIRSHELF_PSEUDONYM_KEY ",
                       "FAIRSHELF_PSEUDONYM_KEY_FILE", "Airflow connection `fairshelf_pseudonym_key`")
    assert "demo" not in " ".join(done.message)  # not a demo lakehouse
    assert tree(tmp_path) == before


def test_a_short_key_is_refused(tmp_path):
    done = fairshelf(tmp_path, "erase", "--account-id", "acc-1", lakehouse=landed_lakehouse(tmp_path),
                     FAIRSHELF_PSEUDONYM_KEY="too-short")
    assert_one_message(done, 1, "the pseudonymization key is 9 bytes; at least 32")


@pytest.mark.parametrize("java_home", [None, "no-java-here"])
def test_without_java_the_error_says_how_to_get_it(tmp_path, java_home):
    env = {"FAIRSHELF_PSEUDONYM_KEY": KEY}
    if java_home:
        (tmp_path / java_home).mkdir()
        env["JAVA_HOME"] = str(tmp_path / java_home)
    lakehouse = landed_lakehouse(tmp_path)
    before = tree(tmp_path)
    done = fairshelf(tmp_path, "run", "--date", DAY, lakehouse=lakehouse, java=False, **env)
    assert_one_message(done, 1, "no Java found", "JAVA_HOME", "Java 17")
    assert tree(tmp_path) == before


def read_only(lakehouse: Path) -> tuple[str, ...]:
    """A command prefix under which ``lakehouse`` is read-only: its permission bits for a
    user, a read-only bind mount in a private mount namespace for root (who ignores them)."""
    if os.geteuid() != 0:
        for path in [lakehouse, *lakehouse.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return ()
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("root without unshare: cannot make a read-only lakehouse")
    probe = subprocess.run([unshare, "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("root without mount namespaces: cannot make a read-only lakehouse")
    return (unshare, "--mount", "sh", "-c",
            f'mount --bind "{lakehouse}" "{lakehouse}" && mount -o remount,ro,bind "{lakehouse}" && exec "$0" "$@"')


def test_a_read_only_lakehouse_is_refused_before_spark(tmp_path):
    lakehouse = landed_lakehouse(tmp_path)
    before = tree(tmp_path)
    done = fairshelf(tmp_path, "run", "--date", DAY, lakehouse=lakehouse, prefix=read_only(lakehouse),
                     FAIRSHELF_PSEUDONYM_KEY=KEY)
    assert_one_message(done, 1, f"the lakehouse {lakehouse} is not writable", "FAIRSHELF_LAKEHOUSE")
    assert tree(tmp_path) == before


def test_reading_commands_do_not_need_a_writable_lakehouse(tmp_path):
    lakehouse = landed_lakehouse(tmp_path)
    done = fairshelf(tmp_path, "runs", lakehouse=lakehouse, prefix=read_only(lakehouse))
    assert done.code == 0 and "no runs recorded yet" in done.stdout, done.stderr


def test_a_lakehouse_that_cannot_be_created_is_refused_by_demo(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    before = tree(tmp_path)
    done = fairshelf(tmp_path, "demo", "--date", DAY, lakehouse=blocker / "lake")
    assert_one_message(done, 1, f"cannot create the lakehouse {blocker / 'lake'}", "FAIRSHELF_LAKEHOUSE")
    assert tree(tmp_path) == before


def test_import_movielens_checks_its_source_before_making_a_lakehouse(tmp_path):
    lakehouse = tmp_path / "new-lake"
    done = fairshelf(tmp_path, "import-movielens", str(tmp_path / "ml-100k"), lakehouse=lakehouse)
    assert_one_message(done, 1, "MovieLens-100K directory not found")
    assert not lakehouse.exists()


# --- item 3: the demo lakehouse's key ----------------------------------------------------------

def demo_lakehouse(tmp_path: Path) -> Path:
    lakehouse = landed_lakehouse(tmp_path)
    key = lakehouse / DEMO_KEY_FILE
    key.touch(mode=0o600)
    key.write_text("the-demo-key-of-this-lakehouse-0123456789abcdef\n")
    return lakehouse


def test_a_demo_lakehouse_uses_its_key_and_says_so_once(tmp_path):
    """Java is missing on purpose: the command stops at the check after the key's."""
    lakehouse = demo_lakehouse(tmp_path)
    done = fairshelf(tmp_path, "run", "--date", DAY, lakehouse=lakehouse, java=False)
    notice = f"using the demo key at {lakehouse / DEMO_KEY_FILE}, not for production"
    assert done.message.count(notice) == 1, done.stderr
    assert_one_message(done, 1, "no Java found")  # the key passed its check
    configured = fairshelf(tmp_path, "run", "--date", DAY, lakehouse=lakehouse, java=False,
                           FAIRSHELF_PSEUDONYM_KEY=KEY)
    assert "demo key" not in configured.stderr  # a configured key wins
    assert_one_message(configured, 1, "no Java found", lines=1)


def test_a_demo_key_readable_by_others_is_refused(tmp_path):
    lakehouse = demo_lakehouse(tmp_path)
    (lakehouse / DEMO_KEY_FILE).chmod(0o644)
    done = fairshelf(tmp_path, "run", "--date", DAY, lakehouse=lakehouse)
    assert_one_message(done, 1, "readable by others", "chmod 600")


def test_the_demo_key_is_the_files_key_and_only_without_a_configured_one(tmp_path):
    lakehouse = demo_lakehouse(tmp_path)
    config = load_config(environ={"FAIRSHELF_LAKEHOUSE": str(lakehouse)})
    keyed, path = with_demo_key(config)
    assert path == lakehouse / DEMO_KEY_FILE
    assert keyed.pseudonym_key == b"the-demo-key-of-this-lakehouse-0123456789abcdef"
    assert with_demo_key(config.with_key(KEY)) == (config.with_key(KEY), None)
    elsewhere = load_config(environ={"FAIRSHELF_LAKEHOUSE": str(tmp_path / "other")})
    assert with_demo_key(elsewhere) == (elsewhere, None)


# --- item 8: one message, always ---------------------------------------------------------------

def broken_runs_table(tmp_path: Path) -> Path:
    lakehouse = tmp_path / "lake"
    log = lakehouse / "gold" / "runs" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("this is not a Delta log\n")
    return lakehouse


def test_an_unexpected_error_is_one_message_and_its_traceback_goes_to_a_log(tmp_path):
    done = fairshelf(tmp_path, "runs", lakehouse=broken_runs_table(tmp_path))
    assert done.code == 1 and len(done.message) == 2, done.stderr
    assert done.message[0].startswith("error: ") and "gold/runs" in done.message[0]
    assert not any(line.lstrip().startswith(("0:", "at ")) for line in done.message)  # delta-rs's backtrace dropped
    log = Path(done.message[1].removeprefix("traceback: "))
    assert log.is_relative_to(tmp_path / "tmp") and "Traceback (most recent call last)" in log.read_text()


def test_verbose_prints_the_traceback_instead(tmp_path):
    done = fairshelf(tmp_path, "-v", "runs", lakehouse=broken_runs_table(tmp_path))
    assert done.code == 1 and "Traceback (most recent call last)" in done.stderr
    assert done.message[-1].startswith("error: ") and done.logs == []


def write_runs(lakehouse: Path) -> str:
    run_id = "manual__2026-11-25__20261126T010203Z__1a2b"
    rows = [
        {"run_id": run_id, "run_date": DAY, "status": "succeeded", "kind": "run", "failed_stage": None,
         "message": None, "finished_at": "2026-11-26T01:10:00+00:00", "model_version": "ease_als_blend-3f2a",
         "metrics_json": json.dumps({"ingest": {"seconds": 12.5}, "train": {"seconds": 30}}),
         "published_json": json.dumps({"gold/recommendations": {"version": 3}, "gold/audit": {"version": 2}})},
        {"run_id": "manual__2026-11-26__20261127T010203Z__9f9f", "run_date": "2026-11-26", "status": "failed",
         "kind": "run", "failed_stage": "quality", "finished_at": "2026-11-27T01:10:00+00:00",
         "message": "gate 'quality' failed: [interactions] row count 12, allowed [100, 400]",
         "model_version": None, "metrics_json": "{}", "published_json": None},
    ]
    write_deltalake(str(lakehouse / "gold" / "runs"), pa.Table.from_pylist(rows))
    return run_id


def test_runs_fit_80_columns_without_cutting_values(tmp_path):
    lakehouse = landed_lakehouse(tmp_path)
    run_id = write_runs(lakehouse)
    done = fairshelf(tmp_path, "runs", lakehouse=lakehouse)
    assert done.code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in done.stdout, done.stdout
    for whole in (DAY, "2026-11-26", "succeeded", "failed", "quality"):
        assert whole in done.stdout
    assert "[interactions]" in done.stdout  # not eaten as markup
    header = next(line for line in lines if "run id" in line)
    start, end = header.index("run id"), header.index("secs")
    assert run_id in "".join(line[start:end].strip() for line in lines)  # folded onto lines, whole
    assert done.heavy == []  # reading the runs log needs no Spark


# --- the pieces, without a subprocess ----------------------------------------------------------

def test_spark_failures_are_explained_in_one_line():
    java = ("An error occurred while calling o87.save.\n: org.apache.spark.SparkException: [TASK_WRITE_FAILED] "
            "Task failed while writing rows to file:/data/lake/silver/events.\n\tat org.apache.spark.sql.errors."
            "QueryExecutionErrors$.taskFailedWhileWritingRowsError(QueryExecutionErrors.scala:774)\n"
            "Caused by: java.nio.file.AccessDeniedException: /data/lake/silver/events/part-0.parquet\n\tat x.y(Z.java:1)")
    said = explain(RuntimeError(java))
    assert said.startswith("no permission to write (or read) the lakehouse: SparkException: [TASK_WRITE_FAILED]")
    assert "\n" not in said
    assert "FAIRSHELF_LAKEHOUSE" in said
    parquet = ("An error occurred while calling o55.parquet.\n: org.apache.spark.SparkException: Encountered error "
               "while reading file file:///lake/landing/catalog/catalog.parquet. Details:\n\tat a.b(C.java:2)\n"
               "Caused by: java.lang.RuntimeException: file:/lake/landing/catalog/catalog.parquet is not a Parquet "
               "file. Expected magic number at tail, but found [10, 34, 125, 10]")
    said = explain(RuntimeError(parquet))
    assert said.startswith("a file is not valid Parquet: SparkException: Encountered error while reading file "
                           "file:///lake/landing/catalog/catalog.parquet") and ".jsonl" in said
    assert explain(PermissionError(13, "Permission denied", "/lake/gold")) == (
        "no permission to write (or read) the lakehouse: [Errno 13] Permission denied: '/lake/gold'. Make it "
        "writable by this user, or set FAIRSHELF_LAKEHOUSE to one that is")
    assert explain(KeyError("user_key")) == "KeyError: 'user_key'"  # anything else: its type and first line
    assert without_stack("cannot open gold/runs: Json error\n   0: <unknown>\n             at ./x.c:4:8\n") == \
        "cannot open gold/runs: Json error"
    kept = "invalid configuration:\n  [shelf] size: bad\n  [audit] k: bad"
    assert without_stack(kept) == kept  # a message's own lines stay


def test_a_parquet_landing_file_that_is_text_is_named(tmp_path):
    fake = tmp_path / "catalog.parquet"
    fake.write_text('{"content_id": "c1", "title": "A film"}\n')
    with pytest.raises(StageError, match=f"landing file {fake} is not a Parquet file .*extension of its real format"):
        file_columns(str(fake))


def test_the_environment_check_tries_every_module_and_fails_on_an_exit(tmp_path, monkeypatch, capsys):
    (tmp_path / "exits_on_import.py").write_text("import sys\nprint('Skipping doctests')\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert environment_check.main(("json", "exits_on_import", "no_such_module_fairshelf", "csv")) == 1
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert [line.split()[0] for line in lines] == ["ok", "FAILED", "FAILED", "ok"]  # none skipped
    assert "SystemExit" in lines[1] and "ModuleNotFoundError" in lines[2]
    assert "NOT ready" in out.err and "ready:" not in out.out
    assert environment_check.main(("json",)) == 0 and "environment ready" in capsys.readouterr().out


def test_a_run_that_failed_in_spark_is_one_line_naming_the_run_and_stage():
    """What the CLI prints for a run that failed on another library's error: the stage and
    one line of the cause, not the JVM's stack (imports the pipeline, no Spark started)."""
    from jobs.core.errors import GateFailed
    from jobs.interfaces.cli import message_of
    from jobs.orchestration.pipeline import RunFailed, RunOutcome

    def failed(cause: Exception) -> RunFailed:
        outcome = RunOutcome("manual__2026-11-25__x", date(2026, 11, 25), "failed", [], "ingest", str(cause))
        try:
            raise RunFailed(outcome) from cause
        except RunFailed as exc:
            return exc

    java = RuntimeError("An error occurred while calling o87.save.\n: java.io.IOException: Mkdirs failed to create "
                        "file:/lake/silver/events (Permission denied)\n\tat org.apache.hadoop.fs.X(X.java:1)\n" * 40)
    said = message_of(failed(java))
    assert said.startswith("run manual__2026-11-25__x failed at stage ingest: no permission to write (or read) the lakehouse: "
                           "IOException: Mkdirs failed to create file:/lake/silver/events") and "\n" not in said
    gate = message_of(failed(GateFailed("quality", ["row count 12, allowed [100, 400]"])))
    assert gate == "run manual__2026-11-25__x failed at stage ingest: gate 'quality' failed: row count 12, allowed [100, 400]"


# --- item 7: one writing command at a time ------------------------------------------------------

def hold_lock(lakehouse: Path, pid: int, host: str | None = None) -> Holder:
    holder = Holder("run --date 2026-11-25", pid, host or socket.gethostname(), "2026-11-26T01:00:00+00:00")
    (lakehouse / "_fairshelf").mkdir(parents=True, exist_ok=True)
    (lakehouse / LOCK_FILE).write_text(json.dumps(asdict(holder)))
    return holder


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_second_writing_command_is_refused_naming_the_holder(tmp_path):
    lakehouse = landed_lakehouse(tmp_path)
    holder = hold_lock(lakehouse, os.getpid())  # this test's process: alive
    lock = (lakehouse / LOCK_FILE).read_text()
    done = fairshelf(tmp_path, "erase", "--account-id", "acc-1", lakehouse=lakehouse, FAIRSHELF_PSEUDONYM_KEY=KEY)
    assert_one_message(done, 1, f"in use by {holder.describe()}", "wait for it to finish",
                       f"remove {lakehouse / LOCK_FILE}")
    assert (lakehouse / LOCK_FILE).read_text() == lock  # the holder's lock is untouched


def test_a_live_run_marker_refuses_a_writing_command_and_the_lock_is_given_back(tmp_path):
    lakehouse = landed_lakehouse(tmp_path)
    config = load_config(environ={"FAIRSHELF_LAKEHOUSE": str(lakehouse)})
    run_marker.begin_or_resume(config, "scheduled__2026-11-25__airflow", DAY)  # a run under Airflow
    done = fairshelf(tmp_path, "rollback", "--table", "gold/audit", "--to-version", "1", lakehouse=lakehouse)
    assert_one_message(done, 1, "run scheduled__2026-11-25__airflow (date 2026-11-25", "is writing")
    assert not (lakehouse / LOCK_FILE).exists()


def test_a_stale_lock_of_this_host_is_taken_over_and_a_lock_is_always_given_back(tmp_path):
    lakehouse = tmp_path / "lake"
    stale = hold_lock(lakehouse, dead_pid())
    config = load_config(environ={"FAIRSHELF_LAKEHOUSE": str(lakehouse)})
    taken_over = []
    with pytest.raises(RuntimeError, match="boom"):
        with lakehouse_lock(config, "erase (1 account(s))", on_takeover=taken_over.append) as me:
            assert read_holder(lakehouse / LOCK_FILE) == me and me.pid == os.getpid()
            raise RuntimeError("boom")
    assert taken_over == [stale]
    assert not (lakehouse / LOCK_FILE).exists()  # given back, even on an error


def test_a_lock_held_from_another_host_is_never_stale():
    other = Holder("run --date 2026-11-25", 12345, "another-host", "2026-11-26T01:00:00+00:00")
    assert not is_stale(other, "this-host", alive=lambda pid: False)
    assert is_stale(other, "another-host", alive=lambda pid: False)
    assert not is_stale(other, "another-host", alive=lambda pid: True)
