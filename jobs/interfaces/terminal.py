"""What a command prints for a person, and where the rest goes.

- ``configure_logging``: every logger's INFO reaches the root logger; the console shows
  WARNING and above (fairshelf's own and third-party: Spark/py4j, Great Expectations,
  OpenLineage, Airflow), or everything with -v. Python warnings (deprecations of libraries)
  go to the log file only, unless -v.
- ``log_to_file``: a run's ``reports/<D>/run.log`` receives every INFO record (the CLI
  writes tracebacks there too).
- ``stage_line``: one line per finished stage: name, seconds and the counts that say what
  it did, from the stage's metrics.

Under Airflow none of this is used: the task logs keep Airflow's own configuration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Per stage, the metrics its line shows, each with the words after its value.
STAGE_COUNTS: dict[str, tuple[tuple[str, str], ...]] = {
    "erasure": (("requests", "erasure requests"), ("erased", "erased")),
    "ingest": (("accepted_events", "events accepted"), ("quarantined_events", "quarantined"),
               ("ingested_dates", "day(s) ingested")),
    "privacy": (("users", "users"), ("k_suppressed_users", "suppressed (k-anonymity)"),
                ("users_without_consent", "without consent")),
    "features": (("interactions", "interactions"), ("users", "users"), ("items", "titles")),
    "quality": (("expectations", "expectations"), ("blocking_failures", "blocking failures"),
                ("warnings", "warnings")),
    "train": (("trained_users", "users"), ("trained_items", "titles"), ("candidates", "candidates")),
    "rerank": (("shelf_users", "shelves"), ("shelf_titles", "titles"), ("coverage_ratio", "coverage vs top-k")),
    "audit": (("checks", "fairness checks"), ("checks_failed", "failed")),
    "publish": (("shelf_users", "shelves"), ("shelf_rows", "rows"), ("default_regions", "default regions")),
}


def _count(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def stage_line(summary: Mapping[str, Any]) -> str:
    """``"ingest     12.3 s  9,000 events accepted, 90 quarantined, 7 day(s) ingested"``: a
    finished stage in one line (``summary``: a stage's summary, with its metrics and seconds)."""
    metrics = summary.get("metrics") or {}
    counts = [f"{_count(metrics[key])} {words}" for key, words in STAGE_COUNTS.get(summary["stage"], ())
              if metrics.get(key) is not None]
    seconds = summary.get("seconds")
    elapsed = f"{seconds:6.1f} s" if seconds is not None else " " * 8
    return f"{summary['stage']:<9} {elapsed}  {', '.join(counts)}".rstrip()


class _NotPythonWarnings(logging.Filter):
    """Drops ``warnings.warn`` records (logger ``py.warnings``): libraries' deprecation
    notices are nothing a person running fairshelf can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "py.warnings"


def configure_logging(console: Console, *, verbose: bool = False, quiet: bool = False) -> None:
    """The root logger at INFO (for ``log_to_file``); on ``console`` WARNING and above, or
    with ``verbose`` INFO and Python warnings too; ``quiet``: errors only."""
    from rich.logging import RichHandler

    logging.captureWarnings(False)  # anew, whoever captured them before (GE does, at import)
    logging.captureWarnings(True)
    handler = RichHandler(console=console, show_path=False, show_time=verbose, markup=False)
    handler.setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)
    if not verbose:
        handler.addFilter(_NotPythonWarnings())
    root = logging.getLogger()
    for earlier in [h for h in root.handlers if getattr(h, "fairshelf_console", False)]:
        root.removeHandler(earlier)  # a second call (the CLI run in-process) replaces it
    handler.fairshelf_console = True
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # py4j's INFO is its socket traffic (a line per connection closed), not the run's.
    logging.getLogger("py4j").setLevel(logging.INFO if verbose else logging.WARNING)


def log_to_file(path: Path) -> logging.Handler:
    """Append every INFO record of every logger to ``path`` (created with its folder);
    returns the handler, for ``stop_logging_to``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


def stop_logging_to(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
