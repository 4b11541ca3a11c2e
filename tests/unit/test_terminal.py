"""What a command prints for a person (issue 18, item 1): one line per stage, third-party
INFO off the console and in the run log, -v restoring it (``jobs.interfaces.terminal``)."""

from __future__ import annotations

import io
import logging
import warnings

import pytest
from rich.console import Console

from jobs.interfaces.terminal import STAGE_COUNTS, configure_logging, log_to_file, stage_line, stop_logging_to
from jobs.orchestration.stage_graph import ORDER


def test_stage_line_says_stage_seconds_and_counts():
    summary = {"stage": "ingest", "seconds": 12.34,
               "metrics": {"accepted_events": 41580, "quarantined_events": 420, "ingested_dates": 7,
                           "quarantined_by_reason": {"bad_seconds": 3}}}
    assert stage_line(summary) == "ingest" + " " * 6 + "12.3 s  41,580 events accepted, 420 quarantined, 7 day(s) ingested"


def test_stage_line_skips_missing_counts_and_formats_ratios():
    line = stage_line({"stage": "rerank", "seconds": None, "metrics": {"shelf_users": 2000, "coverage_ratio": 1.4567}})
    assert line == "rerank" + " " * 14 + "2,000 shelves, 1.46 coverage vs top-k"
    assert stage_line({"stage": "unknown", "seconds": 1.0, "metrics": {}}) == "unknown" + " " * 6 + "1.0 s"


def test_every_stage_has_counts_to_show():
    assert set(STAGE_COUNTS) == set(ORDER)


@pytest.fixture
def root_logging():
    """The root logger as it was (configure_logging replaces its handlers)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("py4j").level
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("py4j").setLevel(saved[2])
    logging.captureWarnings(False)


def _log_everything() -> None:
    logging.getLogger("openlineage.client.client").info("OpenLineageClient will use `file` transport")
    logging.getLogger("jobs.stages.quality").warning("quality warning: volume of 2026-11-25 is low")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library's deprecation", FutureWarning)


def test_console_shows_warnings_only_and_the_run_log_everything(tmp_path, root_logging):
    screen = io.StringIO()
    configure_logging(Console(file=screen, width=200))
    handler = log_to_file(tmp_path / "reports" / "2026-11-25" / "run.log")
    _log_everything()
    stop_logging_to(handler)
    shown = screen.getvalue()
    assert "quality warning: volume of 2026-11-25 is low" in shown
    assert "OpenLineageClient" not in shown and "INFO" not in shown and "deprecation" not in shown
    logged = (tmp_path / "reports" / "2026-11-25" / "run.log").read_text()
    assert "INFO openlineage.client.client: OpenLineageClient will use `file` transport" in logged
    assert "WARNING jobs.stages.quality: quality warning" in logged
    assert "a library's deprecation" in logged


def test_verbose_shows_every_line(root_logging):
    screen = io.StringIO()
    configure_logging(Console(file=screen, width=200), verbose=True)
    _log_everything()
    shown = screen.getvalue()
    assert "OpenLineageClient will use `file` transport" in shown
    assert "a library's deprecation" in shown


def test_log_lines_are_not_read_as_markup(root_logging):
    screen = io.StringIO()
    configure_logging(Console(file=screen, width=200))
    logging.getLogger("jobs").warning("unknown setting(s) in [shelf]: ['histroy_days']")
    assert "[shelf]" in screen.getvalue()


def test_configuring_twice_keeps_one_console_handler_and_others_handlers(root_logging):
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    screen = io.StringIO()
    configure_logging(Console(file=screen, width=200))
    configure_logging(Console(file=screen, width=200))
    logging.getLogger("jobs").warning("once")
    assert screen.getvalue().count("once") == 1
    assert other in logging.getLogger().handlers
