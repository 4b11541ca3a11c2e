"""The model card of a nightly run, written beside the model in ``models/<run id>/`` as
JSON (``model_card.json``, for tools) and Markdown (``model_card.md``, for people).

What a card holds (``build_model_card``): the model version, run and run date; the data
window and row counts; the chosen model's parameters (and the configured ones); its
validation metrics and the whole hyperparameter search (every trial with its validation
scores and fit seconds); seconds spent on selection, training and candidates; how picks
are explained; the code version and config hash; and the fairness results: "pending" when
the train stage writes the card, then the audit stage's checks (``with_fairness_audit``).

The erasure stage later counts users erased from the model in the JSON card
(``erased_users``); the Markdown card says so rather than going stale silently.

The Markdown's layout is the template ``templates/model_card.md.j2``, its tables drawn by
``jobs.core.render.render_table``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment

from jobs.core.render import template_environment
from jobs.recsys.models import ModelSpec


def fairness_pending(run_id: str) -> dict[str, Any]:
    """What the card says of fairness until the run's audit stage has run."""
    return {
        "status": "pending",
        "detail": (
            f"The fairness audit of run {run_id} runs after re-ranking and writes its results here "
            "and to gold/audit. A card that still says pending belongs to a run that stopped before "
            "its audit: nothing here claims that this model is fair or unfair."
        ),
    }


def fairness_audited(run_id: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit stage's verdict on the run's re-ranked shelves: every check with a
    threshold (``metric``, ``group_dimension``, ``shelves``, ``value``, ``threshold``,
    ``passed``, ``blocking``), and a status that counts the missed ones."""
    judged = [c for c in checks if c.get("passed") is not None]
    missed = [c for c in judged if not c["passed"]]
    blocking = [c for c in missed if c.get("blocking")]
    status = ("audited: every check met its threshold" if not missed else
              f"audited: {len(missed)} of {len(judged)} checks missed their threshold"
              f" ({len(blocking)} blocking)")
    return {
        "status": status,
        "detail": (
            f"By the audit stage of run {run_id}: quality (nDCG and recall) by age band, gender "
            "and region, and exposure by provider group, genre and language (Gini, coverage, long "
            "tail), of the shelves before and after re-ranking. Every value, with and without a "
            f"threshold, is in gold/audit (run id {run_id}) and the run report."
        ),
        "checks": [{key: c.get(key) for key in ("side", "metric", "group_dimension", "shelves", "value",
                                                 "threshold", "passed", "blocking")} for c in judged],
    }


def with_fairness_audit(json_path: Path, markdown_path: Path, fairness: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a saved card (both forms) with the audit's ``fairness`` section."""
    card = {**json.loads(json_path.read_text()), "fairness": fairness}
    write_model_card(card, json_path, markdown_path)
    return card


def build_model_card(
    *,
    model_version: str,
    run_id: str,
    run_date: str,
    spec: ModelSpec,
    configured: dict[str, Any],
    data_window: dict[str, Any],
    rows: dict[str, int],
    selection: dict[str, Any],
    seconds: dict[str, float],
    explanations: dict[str, Any],
    code_version: str,
    config_hash: str,
    fairness: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card as a JSON-able dict (module doc)."""
    return {
        "model_version": model_version,
        "run_id": run_id,
        "run_date": run_date,
        "algorithm": spec.algorithm,
        "model": {"parameters": spec.parameters(), "spec": dataclasses.asdict(spec)},
        "configured": configured,
        "data_window": data_window,
        "rows": rows,
        # kept at the top level too: readers (and the erasure stage's tests) use them
        "users": rows["users"],
        "items": rows["items"],
        "interactions": rows["interactions"],
        "validation_metrics": selection.get("chosen_metrics"),
        "selection": selection,
        "seconds": seconds,
        "explanations": explanations,
        "fairness": fairness or fairness_pending(run_id),
        "code_version": code_version,
        "config_hash": config_hash,
    }


def _value(value: Any) -> str:
    """A value's text in the card (the table renderer escapes ``|`` in table cells)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value)


@functools.cache
def _templates() -> Environment:
    return template_environment("jobs.recsys", cell=_value, missing="-", filters={"card_value": _value})


def render_markdown(card: dict[str, Any]) -> str:
    """The card for people: the same facts as the JSON, as headed sections and tables
    (``templates/model_card.md.j2``)."""
    trials = card["selection"]["trials"]
    score_keys = [k for k in trials[0] if k.startswith("validation_")] if trials else []
    return _templates().get_template("model_card.md.j2").render(
        card=card,
        trials={
            "columns": ["#", "model", *score_keys, "fit s"],
            "rows": [[i + 1, _describe(t["model"]), *(t[k] for k in score_keys), t["fit_seconds"]]
                     for i, t in enumerate(trials)],
        },
    )


def _describe(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in parameters.items())


def write_model_card(card: dict[str, Any], json_path: Path, markdown_path: Path) -> None:
    """Write both forms of the card."""
    json_path.write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    markdown_path.write_text(render_markdown(card), encoding="utf-8")
