"""The run report: one self-contained HTML page per run date, for the people
accountable for the system, at ``reports/<run date>/index.html``.

When the run wrote a fairness audit (``gold/audit``, ``jobs.stages.audit``) the page has an
audit section: the checks against their thresholds, quality by user group and exposure by
item group before and after re-ranking, and two plots embedded as PNG data URIs (no file
beside the page)."""

from __future__ import annotations

import base64
import io
import json
from html import escape
from pathlib import Path
from typing import Any, Iterable

import numpy as np

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
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


AUDIT_TABLE = ("gold", "audit")


def read_audit(config, run: dict[str, Any]):
    """The run's gold/audit rows as pandas (None when the run wrote none)."""
    from jobs.lake import tables

    uri = config.table(*AUDIT_TABLE)
    if not tables.table_exists(uri):
        return None
    rows = tables.read_arrow(uri, filters=[("run_date", "=", run["run_date"])]).to_pandas()
    rows = rows[rows["run_id"] == run["run_id"]]
    return rows if len(rows) else None


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='plot' src='data:image/png;base64,{encoded}'>"


def audit_plots(audit) -> list[str]:
    """Two figures as <img> tags: user-group nDCG@k before and after re-ranking, per
    dimension; exposure share (both shelves) against catalog share, per item dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    user = audit[(audit["side"] == "user") & audit["group"].notna()]
    ndcg = user[user["metric"].str.fullmatch(r"ndcg@\d+")]
    if len(ndcg):  # the shortest cutoff (audit.k)
        ndcg = ndcg[ndcg["metric"] == min(set(ndcg["metric"]), key=lambda m: int(m.split("@")[1]))]
    if len(ndcg):
        dims = list(dict.fromkeys(ndcg["group_dimension"]))
        fig, axes = plt.subplots(1, len(dims), figsize=(4.5 * len(dims), 3.2), squeeze=False)
        for ax, dim in zip(axes[0], dims):
            table = ndcg[ndcg["group_dimension"] == dim].pivot(index="group", columns="shelves", values="value")
            table[[c for c in ("unconstrained", "reranked") if c in table]].plot.bar(ax=ax, rot=45)
            ax.legend(fontsize="small")
            ax.set_title(f"{ndcg['metric'].iloc[0]} by {dim}")
            ax.set_xlabel("")
        images.append(_png(fig))
        plt.close(fig)
    item = audit[(audit["side"] == "item") & audit["group"].notna()]
    shares = item[item["metric"].isin(["exposure_share", "catalog_share"])]
    if len(shares):
        label = shares["metric"].where(shares["shelves"].isna(), "exposure " + shares["shelves"].fillna(""))
        shares = shares.assign(kind=label.str.replace("catalog_share", "catalog"))
        dims = list(dict.fromkeys(shares["group_dimension"]))
        fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 3.2), squeeze=False)
        for ax, dim in zip(axes[0], dims):
            table = shares[shares["group_dimension"] == dim].pivot(index="group", columns="kind", values="value")
            order = ["catalog", "exposure unconstrained", "exposure reranked"]
            table[[c for c in order if c in table]].plot.bar(ax=ax, rot=60)
            ax.legend(fontsize="small")
            ax.set_title(f"share by {dim}")
            ax.set_xlabel("")
        images.append(_png(fig))
        plt.close(fig)
    return images


def audit_section(audit) -> str:
    """The audit part of the page (``audit``: the run's gold/audit rows as pandas)."""
    checks = audit[audit["threshold"].notna()]
    parts = ["<h2>Fairness audit</h2>", "<h3>Checks</h3>", _table(
        ["side", "metric", "dimension", "shelves", "value", "threshold", "passed", "blocking"],
        checks[["side", "metric", "group_dimension", "shelves", "value", "threshold", "passed", "blocking"]]
        .astype(object).where(checks.notna(), None).itertuples(index=False),
    )]
    parts += audit_plots(audit)
    for side, title in (("user", "Quality by user group (holdout)"), ("item", "Exposure by item group")):
        rows = audit[(audit["side"] == side) & audit["group"].notna()]
        if not len(rows):
            continue
        rows = rows.assign(column=rows["metric"] + " " + rows["shelves"].fillna("reference"))
        wide = rows.pivot_table(index=["group_dimension", "group"], columns="column", values="value", aggfunc="first")
        parts.append(f"<h3>{escape(title)}</h3>")
        parts.append(_table(["dimension", "group", *wide.columns],
                            ([*index, *(None if v != v else float(v) for v in values)]
                             for index, values in zip(wide.index, wide.to_numpy()))))
    overall = audit[audit["group"].isna() & audit["threshold"].isna()]
    parts.append("<h3>Other measures</h3>")
    parts.append(_table(["side", "metric", "dimension", "shelves", "value"],
                        overall[["side", "metric", "group_dimension", "shelves", "value"]]
                        .astype(object).where(overall.notna(), None).itertuples(index=False)))
    return "\n".join(parts)


def render_report(run: dict[str, Any], summaries: list[dict[str, Any]], tables: list[Any], audit=None) -> str:
    """The report page for one run (``run`` is its gold/runs row; ``audit`` its gold/audit
    rows as pandas, if any)."""
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
    if audit is not None:
        parts.append(audit_section(audit))
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
    path.write_text(render_report(run, summaries, tables, read_audit(config, run)))
    return str(path)
