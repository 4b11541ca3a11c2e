"""``fairshelf``: the command line. It parses arguments and calls stages; nothing else.

Errors a user can meet print as one clear message (no traceback) and exit non-zero.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from jobs.core.config import Config, ConfigError, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="fairshelf: nightly recommendations that are fair, transparent, inclusive and private.",
)
console = Console()

ConfigOption = typer.Option(None, "--config", "-c", help="TOML configuration file.")


@app.callback()
def main(quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors.")) -> None:
    """Progress of long steps (model search, training) is logged to the console."""
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],  # stdout stays clean for --json
    )
    for noisy in ("py4j", "pyspark"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
DateOption = typer.Option(..., "--date", "-d", help="Run date, YYYY-MM-DD.")


def _known_errors() -> tuple[type[BaseException], ...]:
    from jobs.core.errors import ErasureError, StageError
    from jobs.datasets.movielens import MovieLensError
    from jobs.datasets.synthetic import SyntheticSpecError
    from jobs.evaluation.evaluate import EVALUATION_ERRORS
    from jobs.lake.runs import RollbackRefused
    from jobs.lake.tables import TableError
    from jobs.orchestration.pipeline import RunFailed

    return (ConfigError, StageError, TableError, RunFailed, MovieLensError, SyntheticSpecError,
            ErasureError, RollbackRefused, *EVALUATION_ERRORS)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Print fairshelf's own errors as a message and exit 1; let real bugs raise."""
    try:
        yield
    except _known_errors() as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


def _demo_key(config: Config) -> Config:
    """The demo's own pseudonymization key: created once under the lakehouse, mode 0600."""
    if config.pseudonym_key:
        return config
    from jobs.lake.pseudonym_space import DEMO_KEY_FILE

    path = Path(config.lakehouse) / DEMO_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
        console.print(f"created a demo pseudonymization key at {path} (mode 0600)")
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"the demo key file {path} is readable by others; run `chmod 600 {path}`")
    return config.with_key(path.read_bytes().strip())


def _run_dates(config: Config, dates: list[date]) -> None:
    """Run the nightly pipeline for each date in order, with progress; stop at a failure."""
    from jobs.lake.pseudonym_space import check_key
    from jobs.lake.spark import build_spark
    from jobs.orchestration.pipeline import ORDER, run_pipeline

    check_key(config)  # before Spark starts: a wrong key fails in a second
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("starting Spark", total=len(dates) * len(ORDER))
        spark = build_spark(config)
        try:
            for run_date in dates:
                def on_stage(name: str, run_date: date = run_date) -> None:
                    progress.update(task, description=f"{run_date}: {name}")
                    progress.advance(task)

                outcome = run_pipeline(spark, config, run_date, on_stage=on_stage)
                progress.console.print(
                    f"[green]{run_date}: run {outcome.run_id} succeeded[/]; report: {outcome.report_path}"
                )
        finally:
            spark.stop()


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
    from jobs.datasets.synthetic import SyntheticSpec, generate_landing

    with _user_errors():
        config = _demo_key(load_config(config_file))
        end = _parse_date(run_date) if run_date else date.today() - timedelta(days=1)
        spec = SyntheticSpec(
            users=users, items=items, events_per_day=events_per_day, days=days, end_date=end, seed=seed
        )
        with console.status("generating the synthetic landing zone"):
            summary = generate_landing(config.lakehouse, spec)
        console.print(
            f"landing zone: {summary.events:,} events ({summary.malformed_events:,} malformed on "
            f"purpose) of {summary.users:,} users over {len(summary.dates)} days in {summary.root}"
        )
        _run_dates(config, [end])
        _print_tables(config)
        console.print(f"\npublished tables: {config.path('gold')}")
        console.print(f"run report:       {Path(config.report_dir(end.isoformat())) / 'index.html'}")


@app.command("run")
def run_command(run_date: str = DateOption, config_file: Optional[Path] = ConfigOption) -> None:
    """Run the nightly pipeline for one date."""
    with _user_errors():
        _run_dates(load_config(config_file), [_parse_date(run_date)])


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
    from jobs.lake.delta import read_arrow, table_exists
    from jobs.lake.runs import dates_to_run
    from jobs.lake.spark import build_spark
    from jobs.orchestration.pipeline import RunFailed, run_pipeline

    errors = Console(stderr=True)
    with _user_errors():
        first, last = _parse_date(start), _parse_date(end)
        if last < first:
            raise typer.BadParameter(f"--end {last} is before --start {first}")
        dates = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        config = load_config(config_file)
        runs_uri = config.table("gold", "runs")
        done = read_arrow(runs_uri).to_pylist() if table_exists(runs_uri) else []
        todo, skipped = dates_to_run(dates, done, config.code_version, config.config_hash, rerun)
        for day in skipped:
            errors.print(f"{day}: skipped, already succeeded with code {config.code_version} and "
                         f"config {config.config_hash} (--rerun to run it again)")
        failed: list[str] = []
        if todo:
            spark = build_spark(config)
            try:
                for n, day in enumerate(todo, 1):
                    errors.print(f"{day}: running ({n}/{len(todo)})")
                    try:
                        outcome = run_pipeline(spark, config, day, on_stage=lambda name, day=day: errors.print(f"{day}:   {name}"))
                    except RunFailed as exc:
                        errors.print(f"[red]{day}: failed[/] {exc}")
                        failed.append(f"{day} ({exc.outcome.failed_stage})")
                        if not keep_going:
                            break
                        continue
                    errors.print(f"[green]{day}: succeeded[/] as {outcome.run_id}")
            finally:
                spark.stop()
        if failed:
            console.print(f"[bold red]error:[/] backfill failed for {', '.join(failed)}; "
                          "fix the cause and run the same command again (succeeded dates are skipped)")
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
    from jobs.datasets.movielens import import_movielens

    with _user_errors():
        config = load_config(config_file)
        with console.status(f"importing {path}"):
            summary = import_movielens(path, config.lakehouse)
        console.print(
            f"landing zone: {summary.events:,} events of {summary.users:,} users on "
            f"{summary.items:,} titles, {len(summary.dates)} days "
            f"({summary.dates[0]} to {summary.dates[-1]}) in {summary.root}"
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

    from jobs.evaluation.evaluate import evaluate_movielens, results_table

    with _user_errors():
        config = load_config(config_file)
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

    listing = Table("table", "version", "rows", title=f"tables in {config.lakehouse}")
    for info in list_tables(config.lakehouse):
        listing.add_row(info.name, str(info.version), f"{info.rows:,}")
    console.print(listing)


@app.command()
def erase(
    account_id: list[str] = typer.Option(..., "--account-id", help="Account to erase (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed; change nothing."),
    config_file: Optional[Path] = ConfigOption,
) -> None:
    """Erase accounts from every table, older table versions and saved models.

    An account id found nowhere is refused (exit 1) and nothing is purged. --dry-run
    shows the rows, files and rollback versions an erasure would remove. Do not run it
    while a nightly run writes: erasure vacuums with zero retention.
    """
    import json

    from jobs.core.dates import utc_now
    from jobs.lake.pseudonym_space import check_key
    from jobs.lake.runs import new_run_id
    from jobs.lake.spark import build_spark
    from jobs.stages.erasure import erase_accounts, plan_erasure

    with _user_errors():
        config = load_config(config_file)
        check_key(config)  # before Spark starts
        today = utc_now().date()
        spark = build_spark(config, app_name="fairshelf-erase")
        try:
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
            spark.stop()
        console.print_json(json.dumps({**report.metrics(), "rollback_versions_removed": plan.versions_lost
                                       if report.user_keys else 0}))


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

    from jobs.lake.spark import build_spark
    from jobs.orchestration.rotation import read_new_key, rotate_key

    with _user_errors():
        config = load_config(config_file)
        new_key = read_new_key(new_key_file)
        spark = build_spark(config, app_name="fairshelf-rotate-key")
        try:
            with console.status("rotating the key") as status:
                report = rotate_key(spark, config, new_key, progress=status.update)
        finally:
            spark.stop()
        console.print_json(json.dumps(report.summary()))
        console.print(f"the lakehouse now uses the key in {new_key_file}: set FAIRSHELF_PSEUDONYM_KEY "
                      "(or FAIRSHELF_PSEUDONYM_KEY_FILE) to it for every later command")


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

    from jobs.lake.delta import read_arrow, table_exists
    from jobs.lake.reader import choose_publication

    with _user_errors():
        config = load_config(config_file)
        uri = config.table("gold", "runs")
        if not table_exists(uri):
            console.print(f"no runs recorded yet in {config.lakehouse}")
            return
        runs_table = read_arrow(uri)
        live = choose_publication(runs_table)
        rows = sorted(runs_table.to_pylist(), key=lambda r: r["finished_at"], reverse=True)[:limit]
        if as_json:
            for row in rows:
                typer.echo(json.dumps({**row, "live": live is not None and row["run_id"] == live["run_id"]}))
            return
        listing = Table("", "run date", "kind", "status", "run id", "finished", "model",
                        "published versions", "seconds", "failed stage / message")
        for row in rows:
            problem = f"{row['failed_stage']}: {row['message']}" if row["failed_stage"] else (row["message"] or "")
            colour = "green" if row["status"] == "succeeded" else "red"
            published = json.loads(row["published_json"] or "{}")
            versions = " ".join(f"{t.split('/')[1]}@{p['version']}" for t, p in sorted(published.items()))
            seconds = sum(m.get("seconds") or 0 for m in json.loads(row["metrics_json"] or "{}").values())
            listing.add_row(
                "*" if live is not None and row["run_id"] == live["run_id"] else "",
                row["run_date"], row["kind"], f"[{colour}]{row['status']}[/]", row["run_id"],
                row["finished_at"][:19], row["model_version"] or "", versions,
                f"{seconds:.0f}" if seconds else "", problem[:120],
            )
        console.print(listing)


@app.command()
def rollback(
    table: str = typer.Option(..., "--table", help="Published table, e.g. gold/recommendations."),
    to_version: int = typer.Option(..., "--to-version", help="The Delta version to restore."),
    config_file: Optional[Path] = ConfigOption,
) -> None:
    """Restore a published table to an earlier Delta version and point readers at it.

    The restore is a new version (history kept); one gold/runs row of kind rollback
    re-points the live publication. Versions an erasure purged cannot be restored.
    """
    from jobs.lake.runs import rollback_table
    from jobs.lake.spark import build_spark

    with _user_errors():
        config = load_config(config_file)
        spark = build_spark(config, app_name="fairshelf-rollback")
        try:
            row = rollback_table(spark, config, table, to_version)
        finally:
            spark.stop()
        console.print(f"[green]{row['message']}[/]; readers now see it (gold/runs row {row['run_id']})")


@app.command()
def report(run_date: str = DateOption, config_file: Optional[Path] = ConfigOption) -> None:
    """Print where the run report of a date is."""
    with _user_errors():
        config = load_config(config_file)
        path = Path(config.report_dir(_parse_date(run_date).isoformat())) / "index.html"
        if not path.is_file():
            raise ConfigError(f"no report at {path}: run `fairshelf run --date {run_date}` first")
        console.print(str(path))


@app.command()
def tables(config_file: Optional[Path] = ConfigOption) -> None:
    """List the lakehouse's tables with their current version and row count."""
    with _user_errors():
        _print_tables(load_config(config_file))


if __name__ == "__main__":
    app()
