"""The run report: one self-contained HTML page per run date, for the people
accountable for the system, at ``reports/<run date>/index.html``."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any, Iterable

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f3f3f3}.succeeded{color:#176b1d}.failed{color:#a11}code{background:#f6f6f6;padding:0 .2rem}
"""


def _table(headers: list[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def render_report(run: dict[str, Any], summaries: list[dict[str, Any]], tables: list[Any]) -> str:
    """The report page for one run (``run`` is its gold/runs row)."""
    status = run["status"]
    parts = [
        f"<h1>fairshelf run {escape(run['run_date'])}</h1>",
        f"<p>Status: <strong class='{escape(status)}'>{escape(status)}</strong>"
        + (
            f" at stage <code>{escape(run['failed_stage'])}</code>: {escape(run['message'] or '')}"
            if run.get("failed_stage")
            else ""
        )
        + "</p>",
        _table(
            ["run id", "started", "finished", "code version", "config hash", "key fingerprint", "model"],
            [[run["run_id"], run["started_at"], run["finished_at"], run["code_version"],
              run["config_hash"], run["key_fingerprint"], run["model_version"]]],
        ),
        "<h2>Stages</h2>",
    ]
    for summary in summaries:
        seconds = summary.get("seconds")
        took = f" ({seconds:.1f} s)" if seconds is not None else ""
        parts.append(f"<h3>{escape(summary['stage'])}{took}</h3>")
        parts.append(_table(["metric", "value"], sorted(summary["metrics"].items())))
        if summary["outputs"]:
            parts.append(_table(["table written", "Delta version"], sorted(summary["outputs"].items())))
    parts.append("<h2>Tables in the lakehouse</h2>")
    parts.append(_table(["table", "version", "rows"], [[t.name, t.version, t.rows] for t in tables]))
    body = "\n".join(parts)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>fairshelf {escape(run['run_date'])}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def write_report(config, run: dict[str, Any], summaries: list[dict[str, Any]], tables: list[Any]) -> str:
    """Write the page under ``reports/<run date>/index.html``; returns its path."""
    directory = Path(config.report_dir(run["run_date"]))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index.html"
    path.write_text(render_report(run, summaries, tables))
    return str(path)
