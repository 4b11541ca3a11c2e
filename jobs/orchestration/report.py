"""The run report: one self-contained HTML page per run date, for the people
accountable for the system, at ``reports/<run date>/index.html``.

When the run wrote a fairness audit (``gold/audit``, ``jobs.stages.audit``) the page has an
audit section: the checks against their thresholds, quality by user group and exposure by
item group before and after re-ranking, and two plots embedded as PNG data URIs (no file
beside the page).

The page opens with what matters (``jobs.orchestration.report_overview``): published or
not, the gates' failures and warnings in words, fairness and diversity before and after
re-ranking, what changed since the previous run, and links to the Data Docs, the model card
and the run log; the per-stage tables follow.

This module gathers the facts; the page's layout is the template
``templates/report.html.j2`` (the audit part ``templates/audit.html.j2``), its tables drawn
by ``jobs.core.render.render_table``."""

from __future__ import annotations

import base64
import functools
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment

from jobs.core.render import template_environment
from jobs.orchestration.report_overview import (
    changes, gate_findings, gates_checked, headline, previous_run, selection_rows,
)


def _fmt(value: Any) -> str:
    """A table cell's text (None cells are left empty by the table renderer)."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.4g}"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


@functools.cache
def _templates() -> Environment:
    return template_environment("jobs.orchestration", cell=_fmt)


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


def _readable(ax, title: str) -> None:
    """Group labels slanted and anchored at their bar, the legend beside the plot (never on
    a bar), the title."""
    for label in ax.get_xticklabels():
        label.set_rotation(35)
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title)
    ax.set_xlabel("")


def _png(figure) -> str:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def audit_plots(audit) -> list[str]:
    """``audit_figures`` as PNG data URIs."""
    import matplotlib.pyplot as plt

    images = []
    for fig in audit_figures(audit):
        images.append(_png(fig))
        plt.close(fig)
    return images


def audit_figures(audit) -> list:
    """Two matplotlib figures: user-group nDCG@k before and after re-ranking, per
    dimension; exposure share (both shelves) against catalog share, per item dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    user = audit[(audit["side"] == "user") & audit["group"].notna()]
    ndcg = user[user["metric"].str.fullmatch(r"ndcg@\d+")]
    if len(ndcg):  # the shortest cutoff (audit.k)
        ndcg = ndcg[ndcg["metric"] == min(set(ndcg["metric"]), key=lambda m: int(m.split("@")[1]))]
    if len(ndcg):
        dims = list(dict.fromkeys(ndcg["group_dimension"]))
        fig, axes = plt.subplots(1, len(dims), figsize=(6 * len(dims), 3.4), squeeze=False)
        for ax, dim in zip(axes[0], dims):
            table = ndcg[ndcg["group_dimension"] == dim].pivot(index="group", columns="shelves", values="value")
            table[[c for c in ("unconstrained", "reranked") if c in table]].plot.bar(ax=ax)
            _readable(ax, f"{ndcg['metric'].iloc[0]} by {dim}")
        figures.append(fig)
    item = audit[(audit["side"] == "item") & audit["group"].notna()]
    shares = item[item["metric"].isin(["exposure_share", "catalog_share"])]
    if len(shares):
        label = shares["metric"].where(shares["shelves"].isna(), "exposure " + shares["shelves"].fillna(""))
        shares = shares.assign(kind=label.str.replace("catalog_share", "catalog"))
        dims = list(dict.fromkeys(shares["group_dimension"]))
        fig, axes = plt.subplots(1, len(dims), figsize=(6.5 * len(dims), 3.6), squeeze=False)
        for ax, dim in zip(axes[0], dims):
            table = shares[shares["group_dimension"] == dim].pivot(index="group", columns="kind", values="value")
            order = ["catalog", "exposure unconstrained", "exposure reranked"]
            table[[c for c in order if c in table]].plot.bar(ax=ax)
            _readable(ax, f"share by {dim}")
        figures.append(fig)
    return figures


def _records(rows) -> list[dict[str, Any]]:
    """Audit rows as dicts, ``group_dimension`` as "dimension", missing values as None."""
    rows = rows.rename(columns={"group_dimension": "dimension"})
    return rows.astype(object).where(rows.notna(), None).to_dict("records")


def audit_context(audit) -> dict[str, Any]:
    """What ``templates/audit.html.j2`` shows of the run's gold/audit rows (pandas): the
    checks, the plots, one wide table per side (a row per group, a column per metric and
    shelves) and the other measures."""
    groups = []
    for side, title in (("user", "Quality by user group (holdout)"), ("item", "Exposure by item group")):
        rows = audit[(audit["side"] == side) & audit["group"].notna()]
        if not len(rows):
            continue
        rows = rows.assign(column=rows["metric"] + " " + rows["shelves"].fillna("reference"))
        wide = rows.pivot_table(index=["group_dimension", "group"], columns="column", values="value", aggfunc="first")
        groups.append({
            "title": title,
            "columns": ["dimension", "group", *wide.columns],
            "rows": [[*index, *(None if v != v else float(v) for v in values)]
                     for index, values in zip(wide.index, wide.to_numpy())],
        })
    return {
        "checks": _records(audit[audit["threshold"].notna()]),
        "plots": audit_plots(audit),
        "groups": groups,
        "other": _records(audit[audit["group"].isna() & audit["threshold"].isna()]),
    }


def audit_section(audit) -> str:
    """The audit part of the page (``audit``: the run's gold/audit rows as pandas)."""
    return _templates().get_template("audit.html.j2").render(audit=audit_context(audit))


# Metrics the page shows elsewhere than in their stage's metric table.
SHOWN_APART = {"model_selection", "warning_messages"}


def selection_facts(selection: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The model search's record but its trials (their own table) and the chosen model
    (the ``model`` metric), as metric rows: criterion, tried, candidates, seconds, split."""
    return [(f"model_selection {k}", v) for k, v in (selection or {}).items() if k not in ("trials", "chosen")]


def render_report(run: dict[str, Any], summaries: list[dict[str, Any]], tables: list[Any], audit=None,
                  previous: dict[str, Any] | None = None, links: list[tuple[str, str]] = ()) -> str:
    """The report page for one run (``run`` is its gold/runs row; ``audit`` its gold/audit
    rows as pandas, if any; ``previous`` the gold/runs row of the run before it; ``links``
    (label, relative address) pairs for the first screen)."""
    metrics = {summary["stage"]: summary["metrics"] for summary in summaries}
    stages = [
        {
            "name": summary["stage"],
            "seconds": summary.get("seconds"),
            "metrics": sorted([(k, v) for k, v in summary["metrics"].items() if k not in SHOWN_APART]
                              + selection_facts(summary["metrics"].get("model_selection"))),
            "outputs": sorted(summary["outputs"].items()),
            "selection": selection_rows(summary["metrics"].get("model_selection")),
        }
        for summary in summaries
    ]
    overview = {
        "published": run["status"] == "succeeded",
        "findings": gate_findings(run, metrics, audit),
        "checked": gates_checked(metrics),
        "headline": headline(audit),
        "previous": previous,
        "changes": changes(metrics, previous),
        "links": list(links),
    }
    return _templates().get_template("report.html.j2").render(
        run=run,
        overview=overview,
        stages=stages,
        lakehouse=[[t.name, t.version, t.rows] for t in tables],
        audit=None if audit is None else audit_context(audit),
    )


def read_previous_run(config, run: dict[str, Any]) -> dict[str, Any] | None:
    """The gold/runs row of the last succeeded run before ``run`` (None on a first run)."""
    from jobs.lake import tables

    uri = config.table("gold", "runs")
    if not tables.table_exists(uri):
        return None
    return previous_run(tables.read_arrow(uri).to_pylist(), run)


def report_links(config, run: dict[str, Any], summaries: list[dict[str, Any]], directory: Path) -> list[tuple[str, str]]:
    """The first screen's links that exist, relative to the report's folder: Data Docs, the
    model card, the run log (written by the CLI, not under Airflow)."""
    docs = next((s["metrics"].get("data_docs") for s in summaries if s["stage"] == "quality"), None)
    candidates = [
        ("Great Expectations Data Docs", Path(docs) if docs else None),
        ("model card", Path(config.model_dir(run["run_id"])) / "model_card.md"),
        ("run log", directory / "run.log"),
    ]
    return [(label, os.path.relpath(path, directory)) for label, path in candidates
            if path is not None and path.is_file()]


def write_report(config, run: dict[str, Any], summaries: list[dict[str, Any]], tables: list[Any]) -> str:
    """Write the page under ``reports/<run date>/index.html``; returns its path."""
    directory = Path(config.report_dir(run["run_date"]))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index.html"
    page = render_report(run, summaries, tables, read_audit(config, run), read_previous_run(config, run),
                         report_links(config, run, summaries, directory))
    path.write_text(page, encoding="utf-8")
    return str(path)
