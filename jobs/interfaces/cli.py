"""``fairshelf``: the command line. It parses arguments, checks what it can before Spark
starts, and calls stages; nothing else.

Heavy modules (pyspark, Great Expectations, implicit, fairlearn, Airflow) are imported inside
the commands, after the arguments, the configuration, the lakehouse, the landing partition,
the key and Java have been checked (``jobs.lake.preflight``): a mistake is reported in a
second or two. Every error a user can cause ends in one message on stderr naming the problem
and the fix (exit 1; 2 for a usage error); a traceback, where there is one, goes to a log
file whose path the message gives, or with -v to the terminal. User text is never read as
Rich markup.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator, NoReturn, Optional, Sequence

import click
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from jobs.core.config import Config, ConfigError, java_executable, load_config
from jobs.core.dates import utc_now
from jobs.core.errors import explain, without_stack
from jobs.interfaces.terminal import configure_logging, log_to_file, stage_line, stop_logging_to

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="fairshelf: nightly recommendations that are fair, transparent, inclusive and private.",
)
console = Console()
errors = Console(stderr=True, highlight=False)  # messages and progress; stdout stays clean for --json

ConfigOption = typer.Option(None, "--config", "-c", help="TOML configuration file.")
DateOption = typer.Option(..., "--date", "-d", help="Run date, YYYY-MM-DD.")


@dataclass
class Options:
    """The options before the command (``fairshelf -v run ...``), for this process."""

    verbose: bool = False


OPTIONS = Options()


@app.callback()
def main(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors from loggers."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Every log line (INFO) and Spark's own log on the console; tracebacks."
    ),
) -> None:
    """A run prints one line per stage, the warnings to act on and where its report and
    run log are; the run log (reports/<D>/run.log) holds every log line."""
    OPTIONS.verbose = verbose
    configure_logging(errors, verbose=verbose, quiet=quiet)


# The errors a user can cause, as (module, name): fairshelf's own, whose message says what to
# do. An error of a module that was never imported cannot have been raised, so looking them
# up imports nothing (a usage error must not wait for pyspark to load).
USER_ERRORS = (
    ("jobs.core.config", "ConfigError"),
    ("jobs.core.errors", "StageError"),  # GateFailed, ErasureError, KeyMismatch, RunInProgress, ...
    ("jobs.lake.delta", "TableError"),
    ("jobs.lake.runs", "RollbackRefused"),
    ("jobs.orchestration.pipeline", "RunFailed"),
    ("jobs.datasets.movielens", "MovieLensError"),
    ("jobs.datasets.synthetic.spec", "SyntheticSpecError"),
    ("jobs.evaluation.evaluate", "EVALUATION_ERRORS"),
)


def is_user_error(exc: BaseException) -> bool:
    loaded = [getattr(sys.modules[module], name) for module, name in USER_ERRORS if module in sys.modules]
    return isinstance(exc, tuple(t for found in loaded for t in (found if isinstance(found, tuple) else (found,))))


@dataclass
class ErrorLog:
    """Where a command's traceback goes: ``<lakehouse>/reports/<D>/run.log`` once the checks
    have passed for a run date, else (or when that cannot be written) a file under the
    temporary directory; never a folder in a lakehouse that did not pass the checks."""

    command: str
    lakehouse: str | None = None
    run_date: date | None = None

    def run_log(self) -> Path | None:
        """``<lakehouse>/reports/<D>/run.log``, once the checks have passed for a run date."""
        if self.lakehouse and self.run_date and "://" not in self.lakehouse:
            return Path(self.lakehouse) / "reports" / self.run_date.isoformat() / "run.log"
        return None

    def paths(self) -> list[Path]:
        stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
        spare = Path(tempfile.gettempdir()) / "fairshelf" / f"{self.command}-{stamp}.log"
        return [path for path in (self.run_log(), spare) if path is not None]

    def write(self, exc: BaseException) -> Path | None:
        text = f"--- {utc_now().isoformat()} fairshelf {self.command}\n{''.join(traceback.format_exception(exc))}\n"
        for path in self.paths():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a") as sink:
                    sink.write(text)
                return path
            except OSError:
                continue
        return None


@contextmanager
def _user_errors(command: str) -> Iterator[ErrorLog]:
    """Turn any error into one message on stderr and exit 1 (module doc)."""
    log = ErrorLog(command)
    try:
        yield log
    except (click.exceptions.Exit, click.exceptions.ClickException, click.exceptions.Abort):
        raise
    except Exception as exc:  # noqa: BLE001 (the CLI's boundary: every error ends in a message)
        fail(exc, log)


def message_of(exc: BaseException) -> str:
    """What to tell the user: fairshelf's own errors as written; a run that failed on another
    library's error (Spark, Arrow, a bug) and any other error, in one line (``explain``)."""
    if not is_user_error(exc):
        return explain(exc)
    outcome, cause = getattr(exc, "outcome", None), exc.__cause__
    if outcome is not None and cause is not None and not is_user_error(cause):
        return f"run {outcome.run_id} failed at stage {outcome.failed_stage}: {explain(cause)}"
    return without_stack(str(exc))


def fail(exc: BaseException, log: ErrorLog) -> NoReturn:
    """Print ``exc`` as one message, with where its report and traceback are, and exit 1.
    Errors fairshelf raised from nothing (a check before any work) have no traceback to keep."""
    where = []
    report_path = getattr(getattr(exc, "outcome", None), "report_path", None)
    if report_path:
        where.append(f"report: {report_path}")
    if OPTIONS.verbose:
        errors.print(Text("".join(traceback.format_exception(exc)).rstrip()))
    elif exc.__cause__ is not None or not is_user_error(exc):
        path = log.write(exc)
        where.append(f"traceback: {path}" if path else "run again with -v for the traceback")
    errors.print(Text.assemble(("error: ", "bold red"), message_of(exc)), soft_wrap=True)
    if where:
        errors.print(Text("; ".join(where)), soft_wrap=True)
    raise typer.Exit(1)


def _parse_date(value: str, option: str = "--date") -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.print(Text.assemble(("error: ", "bold red"),
                                   f"{option} {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-25"),
                     soft_wrap=True)
        raise typer.Exit(2) from None


def _keyed(config: Config) -> Config:
    """``config`` with its pseudonymization key checked before Spark starts: the configured
    key, or on a lakehouse made by `fairshelf demo` its demo key (said once); a missing, short
    or foreign key is an error that says how to provide the right one."""
    from jobs.lake.pseudonym_space import check_key, with_demo_key

    config, demo_key = with_demo_key(config)
    if demo_key is not None:
        errors.print(Text(f"using the demo key at {demo_key}, not for production"), soft_wrap=True)
    check_key(config)
    return config


def _ready(config: Config, run_dates: Sequence[date] = (), *, key: bool = True, java: bool = True,
           writes: bool = True) -> Config:
    """The checks a command needs before Spark starts (``jobs.lake.preflight``, the key), in
    the order a user fixes them: where, what, with which key, with what."""
    from jobs.lake.preflight import check_java, check_lakehouse, check_landing

    check_lakehouse(config.lakehouse, writes=writes)
    check_landing(config, list(run_dates))
    if key:
        config = _keyed(config)
    if java:
        check_java(java_executable())
    return config


@contextmanager
def _locked(config: Config, command: str) -> Iterator[None]:
    """Hold the lakehouse's lock (``jobs.lake.lock``) while a command writes."""
    from jobs.lake.lock import lakehouse_lock

    def took_over(stale) -> None:
        errors.print(Text(f"took over the lakehouse lock of {stale.describe()}: that process is gone"), soft_wrap=True)

    with lakehouse_lock(config, command, on_takeover=took_over):
        yield


def _create_demo_key(config: Config) -> None:
    """The demo's own pseudonymization key, made once under its lakehouse, mode 0600
    (unless a key is configured)."""
    from jobs.lake.pseudonym_space import DEMO_KEY_FILE

    path = Path(config.lakehouse) / DEMO_KEY_FILE
    if config.pseudonym_key or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_urlsafe(48))
    errors.print(Text(f"created a demo pseudonymization key at {path} (mode 0600)"), soft_wrap=True)


@contextmanager
def _run_log(log: ErrorLog) -> Iterator[Path | None]:
    """While a run of ``log.run_date`` goes on, every log line goes to its run.log too."""
    path = log.run_log()
    if path is None:
        yield None
        return
    handler = log_to_file(path)
    try:
        yield path
    finally:
        stop_logging_to(handler)


def _run_date(config: Config, log: ErrorLog) -> list[str]:
    """Run the nightly pipeline for ``log.run_date``: a spinner for the running stage, one
    line per finished stage; every log line goes to the run log. Returns the lines that say
    where the report and the run log are, for the end of the command's output."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from jobs.lake.spark import build_spark
    from jobs.orchestration.pipeline import run_pipeline

    with _run_log(log) as run_log, Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task("starting Spark", total=None)
        spark = build_spark(config, quiet=not OPTIONS.verbose)
        try:
            def on_stage(name: str) -> None:
                progress.reset(task, description=name)

            def on_stage_done(summary: dict) -> None:
                progress.console.print(Text(stage_line(summary)))
                progress.reset(task, description="recording the run, writing the report")

            outcome = run_pipeline(spark, config, log.run_date, on_stage=on_stage, on_stage_done=on_stage_done)
            progress.console.print(Text.assemble((f"{log.run_date}: run {outcome.run_id} succeeded", "green")))
        finally:
            spark.stop()
    return [f"run report:       {outcome.report_path}"] + ([f"run log:          {run_log}"] if run_log else [])


def _print_lines(lines: Sequence[str]) -> None:
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def demo(
    config_file: Optional[Path] = ConfigOption,
    run_date: str = typer.Option(
        None, "--date", "-d", help="Last day generated and run (default: yesterday, UTC)."
    ),
    users: int = typer.Option(2000, help="Synthetic users."),
    items: int = typer.Option(600, help="Synthetic titles."),
    events_per_day: int = typer.Option(6000, help="Synthetic viewing events per day."),
    days: int = typer.Option(7, help="Days of synthetic history."),
    seed: int = typer.Option(42, help="Seed of the generator."),
) -> None:
    """Generate a synthetic landing zone and run the nightly pipeline for its last day."""
    end = _parse_date(run_date) if run_date else date.today() - timedelta(days=1)
    with _user_errors("demo") as log:
        config = load_config(config_file)
        from jobs.lake.preflight import check_java, check_lakehouse

        check_lakehouse(config.lakehouse, creates=True)
        check_java(java_executable())
        from jobs.datasets.synthetic import SyntheticSpec, generate_landing

        spec = SyntheticSpec(
            users=users, items=items, events_per_day=events_per_day, days=days, end_date=end, seed=seed
        )
        _create_demo_key(config)
        config = _keyed(config)
        log.lakehouse, log.run_date = config.lakehouse, end
        with _locked(config, f"demo --date {end}"):
            with console.status("generating the synthetic landing zone"):
                summary = generate_landing(config.lakehouse, spec)
            console.print(
                f"landing zone: {summary.events:,} events ({summary.malformed_events:,} malformed on "
                f"purpose) of {summary.users:,} users over {len(summary.dates)} days in {summary.root}", markup=False
            )
            where = _run_date(config, log)
        _print_tables(config)
        _print_lines([f"published tables: {config.path('gold')}", *where])


@app.command("run")
def run_command(run_date: str = DateOption, config_file: Optional[Path] = ConfigOption) -> None:
    """Run the nightly pipeline for one date."""
    day = _parse_date(run_date)
    with _user_errors("run") as log:
        config = _ready(load_config(config_file), [day])
        log.lakehouse, log.run_date = config.lakehouse, day
        with _locked(config, f"run --date {day}"):
            _print_lines(_run_date(config, log))


@app.command()
def backfill(
    start: str = typer.Option(..., "--start", help="First date, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last date (inclusive), YYYY-MM-DD."),
    rerun: bool = typer.Option(False, "--rerun", help="Run dates that already succeeded too."),
    keep_going: bool = typer.Option(
        False, "--keep-going", help="After a failed date, go on with the next (exit 1 at the end)."
    ),
    config_file: Optional[Path] = ConfigOption,
) -> None:
    """Run the nightly pipeline for every date from START to END, one after another.

    Safe to stop and start again: a date that already has a succeeded run with the same
    code version and config hash is skipped (said on stderr; --rerun runs it again), and
    rerunning a date replaces its partitions. The backfill stops at the first failed date
    and exits 1 naming it (--keep-going runs the rest, then exits 1 naming every failure).
    Progress, one line per date, goes to stderr.
    """
    first, last = _parse_date(start, "--start"), _parse_date(end, "--end")
    if last < first:
        errors.print(Text.assemble(("error: ", "bold red"), f"--end {last} is before --start {first}"), soft_wrap=True)
        raise typer.Exit(2)
    dates = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    with _user_errors("backfill") as log:
        config = load_config(config_file)
        from jobs.lake.delta import read_arrow, table_exists
        from jobs.lake.runs import dates_to_run

        runs_uri = config.table("gold", "runs")
        done = read_arrow(runs_uri).to_pylist() if table_exists(runs_uri) else []
        todo, skipped = dates_to_run(dates, done, config.code_version, config.config_hash, rerun)
        config = _ready(config, todo, key=bool(todo), java=bool(todo))
        for day in skipped:
            errors.print(f"{day}: skipped, already succeeded with code {config.code_version} and "
                         f"config {config.config_hash} (--rerun to run it again)", markup=False)
        failed: list[str] = []
        if todo:
            with _locked(config, f"backfill --start {first} --end {last}"):
                from jobs.lake.spark import build_spark
                from jobs.orchestration.pipeline import RunFailed, run_pipeline

                log.lakehouse = config.lakehouse
                spark = build_spark(config, quiet=not OPTIONS.verbose)
                try:
                    for n, day in enumerate(todo, 1):
                        log.run_date = day
                        errors.print(f"{day}: running ({n}/{len(todo)})")
                        try:
                            with _run_log(log):
                                outcome = run_pipeline(
                                    spark, config, day,
                                    on_stage_done=lambda s, day=day: errors.print(Text(f"{day}:   {stage_line(s)}")))
                        except RunFailed as exc:
                            errors.print(Text.assemble((f"{day}: failed ", "red"), message_of(exc)))
                            failed.append(f"{day} ({exc.outcome.failed_stage})")
                            if not keep_going:
                                break
                            continue
                        errors.print(Text.assemble((f"{day}: succeeded", "green"), f" as {outcome.run_id}"))
                finally:
                    spark.stop()
        if failed:
            errors.print(Text.assemble(("error: ", "bold red"), f"backfill failed for {', '.join(failed)}; fix the "
                                       "cause and run the same command again (succeeded dates are skipped)"),
                         soft_wrap=True)
            raise typer.Exit(1)
        errors.print(f"backfill {first}..{last}: {len(todo)} run, {len(skipped)} skipped")


@app.command("import-movielens")
def import_movielens_command(
    path: Path = typer.Argument(..., help="Folder holding MovieLens-100K (u.data, u.user, u.item)."),
    config_file: Optional[Path] = ConfigOption,
) -> None:
    """Turn MovieLens-100K into a landing zone (one partition per rating day).

    Then `fairshelf run --date 1998-04-22` trains on its whole history.
    """
    with _user_errors("import-movielens"):
        config = load_config(config_file)
        from jobs.datasets.movielens import check_source, import_movielens
        from jobs.lake.preflight import check_lakehouse

        check_source(path)
        check_lakehouse(config.lakehouse, creates=True)
        with console.status(f"importing {escape(str(path))}"):
            summary = import_movielens(path, config.lakehouse)
        console.print(
            f"landing zone: {summary.events:,} events of {summary.users:,} users on "
            f"{summary.items:,} titles, {len(summary.dates)} days "
            f"({summary.dates[0]} to {summary.dates[-1]}) in {summary.root}", markup=False
        )


@app.command()
def evaluate(
    movielens: Path = typer.Option(..., "--movielens", help="Folder holding MovieLens-100K (u.data, u.item, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (DESIGN.md, Interfaces)."),
    budget: float = typer.Option(120.0, "--budget", help="Seconds of hyperparameter search per protocol."),
    configured: bool = typer.Option(
        False, "--configured", help="Evaluate the configured [model] instead of searching for one."
    ),
    config_file: Optional[Path] = ConfigOption,
) -> None:
    """Offline evaluation on MovieLens-100K: random 75/25 and temporal protocols, the model
    chosen on a validation split of the training part, unconstrained and re-ranked lists."""
    import json
    from functools import partial

    with _user_errors("evaluate"):
        config = load_config(config_file)
        from jobs.evaluation.evaluate import evaluate_movielens, results_table

        settings = config.model if configured else None
        run = partial(
            evaluate_movielens, movielens, settings=settings, time_budget_s=budget, rerank_settings=config.rerank
        )
        if as_json:
            result = run()
            typer.echo(json.dumps(result, sort_keys=True))
            return
        with console.status("choosing the model on a validation split, then evaluating on the test part"):
            result = run()
        console.print(results_table(result), markup=False)


def _print_tables(config: Config) -> None:
    from jobs.lake.delta import list_tables

    listing = Table("table", "version", "rows", title=Text(f"tables in {config.lakehouse}"))
    for info in list_tables(config.lakehouse):
        listing.add_row(Text(info.name), str(info.version), f"{info.rows:,}")
    console.print(listing)


@app.command()
def erase(
    account_id: list[str] = typer.Option(..., "--account-id", help="Account to erase (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed; change nothing."),
    config_file: Optional[Path] = ConfigOption,
) -> None:
    """Erase accounts from every table, older table versions and saved models.

    An account id found nowhere is refused (exit 1) and nothing is purged. --dry-run
    shows the rows, files and rollback versions an erasure would remove. It holds the
    lakehouse's lock, so it is refused while a run or another command writes (erasure
    vacuums with zero retention). No Spark (delta-rs and pyarrow), unless an account is in
    no table, model or erasure log: then Spark looks for it in the landing zone.
    """
    import json

    with _user_errors("erase"):
        config = _ready(load_config(config_file), java=False)
        with _locked(config, f"erase ({len(account_id)} account(s))"):
            from jobs.lake.runs import new_run_id
            from jobs.stages.erasure import erase_accounts, plan_erasure

            today = utc_now().date()
            spark = None  # started only to look for accounts in the landing zone alone
            try:
                plan = plan_erasure(None, config, account_id)
                if plan.unscanned:
                    spark = _start_spark(config, "fairshelf-erase")
                    plan = plan_erasure(spark, config, account_id)
                if dry_run:
                    console.print_json(json.dumps({"dry_run": True, **plan.summary()}))
                    if plan.unknown:
                        raise typer.Exit(1)
                    return
                report = erase_accounts(
                    spark, config, account_id, utc_now().isoformat(),
                    new_run_id(today, prefix="erase"), run_date=today, plan=plan,
                )
            finally:
                if spark is not None:
                    spark.stop()
        console.print_json(json.dumps({**report.metrics(), "rollback_versions_removed": plan.versions_lost
                                       if report.user_keys else 0}))


def _start_spark(config: Config, app_name: str):
    """A Spark session for a command that needs one only sometimes, Java checked first."""
    from jobs.lake.preflight import check_java
    from jobs.lake.spark import build_spark

    check_java(java_executable())
    return build_spark(config, app_name=app_name, quiet=not OPTIONS.verbose)


@app.command("rotate-key")
def rotate_key_command(
    new_key_file: Path = typer.Option(..., "--new-key-file", help="A 0600 file holding the new key."),
    config_file: Optional[Path] = ConfigOption,
) -> None:
    """Move the lakehouse to a new pseudonymization key: every user key of every table, the
    erasure log and the saved models, from the account ids in landing.

    FAIRSHELF_PSEUDONYM_KEY (or _FILE) is the current key. Resumable: after an
    interruption, run it again with the same keys. Afterwards use the new key.
    """
    import json

    with _user_errors("rotate-key"):
        config = _ready(load_config(config_file), key=False)
        from jobs.lake.pseudonym_space import with_demo_key
        from jobs.lake.spark import build_spark
        from jobs.orchestration.rotation import read_new_key, rotate_key

        config = with_demo_key(config)[0]
        new_key = read_new_key(new_key_file)
        with _locked(config, "rotate-key"):
            spark = build_spark(config, app_name="fairshelf-rotate-key", quiet=not OPTIONS.verbose)
            try:
                with console.status("rotating the key") as status:
                    report = rotate_key(spark, config, new_key, progress=status.update)
            finally:
                spark.stop()
        console.print_json(json.dumps(report.summary()))
        console.print(f"the lakehouse now uses the key in {new_key_file}: set FAIRSHELF_PSEUDONYM_KEY "
                      "(or FAIRSHELF_PSEUDONYM_KEY_FILE) to it for every later command", markup=False)


@app.command()
def runs(
    config_file: Optional[Path] = ConfigOption,
    limit: int = typer.Option(20, help="Newest runs shown."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON lines instead."),
) -> None:
    """List gold/runs, newest first: runs (succeeded or failed), erasure and rollback
    re-pointings, the table versions each published, and the stages' seconds. The live
    publication (what readers see) is marked *."""
    import json

    with _user_errors("runs"):
        config = _ready(load_config(config_file), key=False, java=False, writes=False)
        from jobs.lake.delta import read_arrow, table_exists
        from jobs.lake.reader import choose_publication

        uri = config.table("gold", "runs")
        if not table_exists(uri):
            console.print(f"no runs recorded yet in {config.lakehouse}", markup=False)
            return
        runs_table = read_arrow(uri)
        live = choose_publication(runs_table)
        rows = sorted(runs_table.to_pylist(), key=lambda r: r["finished_at"], reverse=True)[:limit]
        if as_json:
            for row in rows:
                typer.echo(json.dumps({**row, "live": live is not None and row["run_id"] == live["run_id"]}))
            return
        console.print(runs_listing(rows, live and live["run_id"]))


@app.command()
def rollback(
    table: str = typer.Option(..., "--table", help="Published table, e.g. gold/recommendations."),
    to_version: int = typer.Option(..., "--to-version", help="The Delta version to restore."),
    config_file: Optional[Path] = ConfigOption,
) -> None:
    """Restore a published table to an earlier Delta version and point readers at it.

    The restore is a new version (history kept); one gold/runs row of kind rollback
    re-points the live publication. Versions an erasure purged cannot be restored.
    No Spark: delta-rs and pyarrow.
    """
    with _user_errors("rollback"):
        config = _ready(load_config(config_file), key=False, java=False)
        with _locked(config, f"rollback --table {table} --to-version {to_version}"):
            from jobs.lake.runs import rollback_table

            row = rollback_table(config, table, to_version)
        console.print(Text.assemble((row["message"], "green"), f"; readers now see it (gold/runs row {row['run_id']})"))


@app.command()
def report(run_date: str = DateOption, config_file: Optional[Path] = ConfigOption) -> None:
    """Print where the run report of a date is."""
    day = _parse_date(run_date)
    with _user_errors("report"):
        config = _ready(load_config(config_file), key=False, java=False, writes=False)
        path = Path(config.report_dir(day.isoformat())) / "index.html"
        if not path.is_file():
            raise ConfigError(f"no report at {path}: run `fairshelf run --date {day}` first")
        console.print(str(path), markup=False)


@app.command()
def tables(config_file: Optional[Path] = ConfigOption) -> None:
    """List the lakehouse's tables with their current version and row count."""
    with _user_errors("tables"):
        _print_tables(_ready(load_config(config_file), key=False, java=False, writes=False))


def runs_listing(rows: list[dict], live_run_id: str | None) -> Table:
    """``fairshelf runs`` as a table that fits 80 columns: long values fold onto more lines
    instead of being cut ("2026…"); model, versions and message share the last column."""
    import json

    listing = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    listing.add_column("", width=1, no_wrap=True)
    for name in ("run date", "kind", "status"):
        listing.add_column(name, no_wrap=True)
    listing.add_column("run id", overflow="fold", min_width=14, ratio=1)
    listing.add_column("secs", justify="right", no_wrap=True)
    listing.add_column("model, versions, message", overflow="fold", min_width=20, ratio=2)
    for row in rows:
        published = json.loads(row.get("published_json") or "{}")
        versions = " ".join(f"{t.split('/')[1]}@{p['version']}" for t, p in sorted(published.items()))
        seconds = sum(m.get("seconds") or 0 for m in json.loads(row.get("metrics_json") or "{}").values())
        problem = f"{row['failed_stage']}: {row['message']}" if row.get("failed_stage") else (row.get("message") or "")
        details = "\n".join(x for x in (row.get("model_version"), versions, problem[:300]) if x)
        listing.add_row(
            "*" if row["run_id"] == live_run_id else "", row["run_date"], row["kind"],
            Text(row["status"], style="green" if row["status"] == "succeeded" else "red"),
            Text(row["run_id"]), f"{seconds:.0f}" if seconds else "", Text(details),
        )
    return listing


if __name__ == "__main__":
    app()
