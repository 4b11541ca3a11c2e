"""The model card of a nightly run, written beside the model in ``models/<run id>/`` as
JSON (``model_card.json``, for tools) and Markdown (``model_card.md``, for people).

What a card holds (``build_model_card``): the model version, run and run date; the data
window and row counts; the chosen model's parameters (and the configured ones); its
validation metrics and the whole hyperparameter search (every trial with its validation
scores and fit seconds); seconds spent on selection, training and candidates; how picks
are explained; the code version and config hash; and the fairness results, stated
plainly as not available until the fairness audit (issue 7) exists.

The erasure stage later counts users erased from the model in the JSON card
(``erased_users``); the Markdown card says so rather than going stale silently.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from jobs.recsys.models import ModelSpec

FAIRNESS_NOT_AVAILABLE = {
    "status": "not available yet",
    "detail": (
        "No fairness audit has been run on this model: the audit of quality and exposure "
        "across user and provider groups is not built yet (issue 7). Nothing here claims "
        "that this model is fair or unfair."
    ),
}


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
        "fairness": fairness or FAIRNESS_NOT_AVAILABLE,
        "code_version": code_version,
        "config_hash": config_hash,
    }


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value).replace("|", "\\|")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_value(v) for v in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(card: dict[str, Any]) -> str:
    """The card for people: the same facts as the JSON, as headed sections and tables."""
    selection = card["selection"]
    window = card["data_window"]
    metrics = card.get("validation_metrics") or {}
    lines = [
        f"# Model card: {card['model_version']}",
        "",
        f"Nightly run `{card['run_id']}` for {card['run_date']}; code version `{card['code_version']}`, "
        f"config hash `{card['config_hash']}`.",
        "",
        "## Data",
        "",
        f"Viewing history from {window['first_day']} to {window['last_day']} ({window['days']} days; a view "
        f"loses half its weight every {window['recency_half_life_days']} days), users with personalization "
        "consent only.",
        "",
        *_table(["rows", "count"], [[name, count] for name, count in card["rows"].items()]),
        "## Model",
        "",
        f"Algorithm **{card['algorithm']}**.",
        "",
        *_table(["parameter", "value"], [[k, v] for k, v in card["model"]["parameters"].items()]),
        "## Validation",
        "",
        f"Criterion: {selection['criterion']}. Split: "
        + ", ".join(f"{k} {_value(v)}" for k, v in (selection.get("validation_split") or {}).items())
        + ".",
        "",
    ]
    if metrics:
        lines += _table(["metric", "value"], [[k, v] for k, v in metrics.items()])
    else:
        lines += ["No validation metrics: nothing could be held out.", ""]
    lines += [
        "## Hyperparameter search",
        "",
        f"{selection['tried']} of {selection['candidates']} candidates tried in {selection['seconds']} s "
        f"(budget {selection['time_budget_s']} s; the trial running when the budget ends finishes).",
        "",
    ]
    if selection["trials"]:
        score_keys = [k for k in selection["trials"][0] if k.startswith("validation_")]
        lines += _table(
            ["#", "model", *score_keys, "fit s"],
            [[i + 1, _describe(t["model"]), *(t[k] for k in score_keys), t["fit_seconds"]]
             for i, t in enumerate(selection["trials"])],
        )
    lines += [
        "## Time",
        "",
        *_table(["step", "seconds"], [[k, v] for k, v in card["seconds"].items()]),
        "## Explanations",
        "",
        f"\"Because you watched ...\" names the watched title with the largest contribution: "
        f"{card['explanations']['description']}.",
        "",
        "## Fairness",
        "",
        f"**{card['fairness']['status']}.** {card['fairness'].get('detail', '')}",
        "",
        "## Erasure",
        "",
        "Users erased after training are removed from the user factors and index; "
        "`model_card.json` counts them (`erased_users`).",
        "",
    ]
    return "\n".join(lines)


def _describe(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in parameters.items())


def write_model_card(card: dict[str, Any], json_path: Path, markdown_path: Path) -> None:
    """Write both forms of the card."""
    json_path.write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    markdown_path.write_text(render_markdown(card))
