"""The first screen of the run report: what the accountable person needs before any
per-stage table (issue 18, item 6). Pure functions over what the report already has: the
run's gold/runs row, its stages' metrics (``{stage: {metric: value}}``), its gold/audit rows
(pandas) and the previous run's gold/runs row.

- ``gate_findings``: blocking failures and warnings, each one sentence with its observed value;
- ``headline``: fairness and diversity numbers, unconstrained (top-k) against re-ranked;
- ``changes``: volumes, model and metrics against the previous run;
- ``selection_rows``: the model search's trials as table rows.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

Metrics = Mapping[str, Mapping[str, Any]]

SHELVES = ("unconstrained", "reranked")


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _shelves(name: str | None) -> str:
    return {"unconstrained": "unconstrained top-k", "reranked": "re-ranked shelves"}.get(name or "", name or "")


def audit_finding(row: Mapping[str, Any]) -> str:
    """A failed audit check in words: ``"ndcg@10_ratio by gender on the re-ranked shelves is
    0.1, below the minimum 0.6"``."""
    value, threshold = _number(row.get("value")), _number(row.get("threshold"))
    side = "below the minimum" if value is not None and threshold is not None and value < threshold \
        else "above the maximum"
    by = f" by {row['group_dimension']}" if row.get("group_dimension") else ""
    return (f"{row['metric']}{by} on the {_shelves(row.get('shelves'))} is {value:.3g}, {side} "
            f"{threshold:.3g}")


def gate_findings(run: Mapping[str, Any], metrics: Metrics, audit=None) -> dict[str, list[str]]:
    """``{"blocking": [...], "warnings": [...]}``: the failed stage's message (a blocking gate
    names itself there), the quality gate's warnings, and the failed fairness checks (blocking
    or not, as the audit judged them)."""
    blocking: list[str] = []
    warnings = [f"quality: {line}" for line in (metrics.get("quality", {}).get("warning_messages") or [])]
    if run.get("failed_stage"):
        blocking.append(f"stage {run['failed_stage']} failed: {run.get('message') or 'no message'}")
    if audit is not None and len(audit):
        checked = audit[audit["threshold"].notna() & audit["passed"].notna()]
        for row in checked.astype(object).where(checked.notna(), None).to_dict("records"):
            if row["passed"] or _number(row["value"]) is None:
                continue
            (blocking if row["blocking"] else warnings).append(f"fairness: {audit_finding(row)}")
    unmet = metrics.get("rerank", {}).get("unmet_constraint_shelves")
    if unmet:
        warnings.append(f"diversity: {unmet:,} shelves could not meet every constraint")
    return {"blocking": blocking, "warnings": warnings}


def gates_checked(metrics: Metrics) -> str:
    """What the gates looked at, in one sentence (empty when no gate stage ran)."""
    quality, audit = metrics.get("quality", {}), metrics.get("audit", {})
    parts = []
    if quality.get("expectations") is not None:
        parts.append(f"{quality['expectations']:,} quality and representation expectations "
                     f"({quality.get('blocking_failures') or 0:,} blocking failures, {quality.get('warnings') or 0:,} warnings)")
    if audit.get("checks") is not None:
        parts.append(f"{audit['checks']:,} fairness checks ({audit.get('checks_failed') or 0:,} failed, "
                     f"{audit.get('blocking_failed') or 0:,} of them blocking)")
    return f"Checked: {' and '.join(parts)}." if parts else ""


def _audit_value(audit, side: str, metric: str, shelves: str, reduce=None) -> float | None:
    rows = audit[(audit["side"] == side) & (audit["metric"] == metric) & (audit["shelves"] == shelves)]
    values = [v for v in (_number(v) for v in rows["value"]) if v is not None]
    if not values:
        return None
    return reduce(values) if reduce else values[0]


def headline(audit) -> list[dict[str, Any]]:
    """Fairness and diversity in a few numbers, each for the unconstrained top-k ("before")
    and the re-ranked shelves ("after"), from the run's audit rows."""
    if audit is None or not len(audit):
        return []
    ndcg = sorted({m for m in audit["metric"] if m.startswith("ndcg@") and m[5:].isdigit()}, key=lambda m: int(m[5:]))
    k = ndcg[0][5:] if ndcg else "10"
    overall = audit[audit["group_dimension"].isna()]
    grouped = audit[audit["group_dimension"].notna() & audit["group"].isna()]
    measures = [
        (f"nDCG@{k}, all holdout users", overall, "user", f"ndcg@{k}", None),
        (f"nDCG@{k} ratio of the worst user group to the best", grouped, "user", f"ndcg@{k}_ratio", min),
        ("catalogue coverage (share of titles shown)", overall, "item", "coverage", None),
        ("exposure Gini over titles (0 = even)", overall, "item", "exposure_gini", None),
        ("long-tail share of slots", overall, "item", "long_tail_share", None),
        ("average popularity of shown titles", overall, "item", "avg_popularity", None),
    ]
    rows = []
    for name, frame, side, metric, reduce in measures:
        before, after = (_audit_value(frame, side, metric, s, reduce) for s in SHELVES)
        if before is not None or after is not None:
            rows.append({"measure": name, "before": before, "after": after})
    return rows


# What "changes since the previous run" compares: (stage, metric, label).
COMPARED = (
    ("ingest", "accepted_events", "events accepted"),
    ("ingest", "quarantined_events", "events quarantined"),
    ("features", "interactions", "interactions"),
    ("features", "users", "users with interactions"),
    ("features", "items", "titles with interactions"),
    ("train", "model_version", "model version"),
    ("train", "model", "model parameters"),
    ("rerank", "shelf_titles", "titles on shelves"),
    ("rerank", "coverage_ratio", "coverage re-ranked / top-k"),
    ("audit", "reranked_ndcg@10", "nDCG@10 of the re-ranked shelves"),
    ("audit", "checks_failed", "fairness checks failed"),
    ("quality", "warnings", "quality warnings"),
)


def _text(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def changes(metrics: Metrics, previous: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """This run against ``previous`` (a gold/runs row): one row per compared metric that
    either run has, with the difference of numbers, or "changed"/"same"."""
    if previous is None:
        return []
    before_metrics = json.loads(previous.get("metrics_json") or "{}")
    rows = []
    for stage, metric, label in COMPARED:
        now, before = metrics.get(stage, {}).get(metric), before_metrics.get(stage, {}).get(metric)
        if now is None and before is None:
            continue
        a, b = _number(now), _number(before)
        if a is not None and b is not None:
            change = f"{a - b:+,.4g}" + (f" ({(a - b) / b:+.1%})" if b else "")
        else:
            change = "same" if _text(now) == _text(before) else "changed"
        rows.append({"what": label, "previous": _text(before), "this run": _text(now), "change": change})
    return rows


def previous_run(runs: list[Mapping[str, Any]], run: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The last succeeded nightly run finished before ``run`` (rows of gold/runs)."""
    earlier = [r for r in runs if r.get("kind", "run") == "run" and r["status"] == "succeeded"
               and r["run_id"] != run["run_id"] and r["finished_at"] < run["finished_at"]]
    return max(earlier, key=lambda r: r["finished_at"], default=None)


def selection_rows(selection: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The model search's trials as rows: trial, parameters (``name=value``), validation
    nDCG and precision, fit seconds, and whether it was chosen."""
    rows = []
    for n, trial in enumerate((selection or {}).get("trials") or [], 1):
        model = trial.get("model") or {}
        ndcg = next((v for k, v in trial.items() if k.startswith("validation_ndcg@")), None)
        precision = next((v for k, v in trial.items() if k.startswith("validation_precision@")), None)
        rows.append({
            "trial": n,
            "parameters": ", ".join(f"{k}={v}" for k, v in sorted(model.items())),
            "validation nDCG@10": ndcg,
            "validation precision@10": precision,
            "fit seconds": trial.get("fit_seconds"),
            "chosen": model == selection.get("chosen"),
        })
    return rows
