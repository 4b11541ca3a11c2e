"""Item side of the fairness audit: who gets exposure on the shelves.

Spark reduces the shelves and the interactions to one row per catalog title
(the audit stage's ``title_profile``: the title's provider group, primary genre, original language, its
viewers and its slots on each kind of shelf); everything after that is small pandas and
numpy over those catalog-sized rows, pure and tested on hand-made frames:

- exposure share of a group = the group's shelf slots / all shelf slots, next to its
  catalog share (titles) and consumption share (viewers: users who watched a title, summed
  over the group's titles), for ``provider_group``, ``primary_genre`` (one genre per title,
  so the shares add up to 1) and ``original_language``; a missing value is the group
  ``unknown``;
- ``exposure_gini``: Gini index of slots per title over the whole catalog, titles never
  shown included (``jobs.recsys.metrics.gini_index``: 0 equal exposure, 1 all on one title);
- ``coverage``: titles shown / catalog titles;
- ``avg_popularity``: mean viewers of the shown titles, per slot
  (``jobs.recsys.metrics.average_popularity``);
- ``long_tail_share``: share of slots given to titles outside the head, the most-watched
  titles that together make up ``head_share`` of consumption (the title that crosses the
  share belongs to the head).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.recsys.metrics import average_popularity, gini_index

ITEM_DIMENSIONS = ("provider_group", "primary_genre", "original_language")
SHELF_KINDS = ("unconstrained", "reranked")
UNKNOWN_GROUP = "unknown"


# --- Spark: shelves and interactions -> one row per catalog title ----------------------


# --- pandas / numpy over the title profile ----------------------------------------------


def group_shares(titles: pd.DataFrame, dimension: str, weight: str | None) -> pd.Series:
    """Share of ``weight`` (a column; None counts titles) held by each value of
    ``dimension``, missing values as ``unknown``; sums to 1 (all zeros when the weight is
    zero everywhere)."""
    groups = titles[dimension].fillna(UNKNOWN_GROUP).astype(str)
    values = pd.Series(1.0, index=titles.index) if weight is None else titles[weight].astype(float)
    totals = values.groupby(groups).sum().sort_index()
    total = totals.sum()
    return totals / total if total > 0 else totals * 0.0


def head_titles(viewers: np.ndarray, head_share: float) -> np.ndarray:
    """Boolean mask of the head: the most-watched titles, in order, until their viewers
    reach ``head_share`` of all viewers (the title crossing it included). Ties are broken
    by position, so the head is deterministic."""
    viewers = np.asarray(viewers, dtype=np.float64)
    head = np.zeros(len(viewers), dtype=bool)
    total = viewers.sum()
    if total <= 0:
        return head
    order = np.argsort(-viewers, kind="stable")
    before = np.cumsum(viewers[order]) - viewers[order]  # viewers of the titles ranked above
    head[order[before < head_share * total]] = True
    return head


def long_tail_share(slots: np.ndarray, is_head: np.ndarray) -> float:
    """Share of shelf slots given to titles outside the head (0 when there are no slots)."""
    slots = np.asarray(slots, dtype=np.float64)
    total = slots.sum()
    return float(slots[~np.asarray(is_head)].sum() / total) if total > 0 else 0.0


def shelf_exposure_metrics(slots: np.ndarray, viewers: np.ndarray, head_share: float) -> dict[str, float]:
    """exposure_gini, coverage, avg_popularity, long_tail_share of one kind of shelf,
    from the slots and viewers of every catalog title (module doc)."""
    slots = np.asarray(slots, dtype=np.int64)
    viewers = np.asarray(viewers, dtype=np.float64)
    shown = np.repeat(np.arange(len(slots)), slots)[None, :]  # every slot, as one "list"
    return {
        "exposure_gini": gini_index(slots),
        "coverage": float(np.count_nonzero(slots) / len(slots)) if len(slots) else 0.0,
        "avg_popularity": average_popularity(shown, viewers) if slots.sum() else float("nan"),
        "long_tail_share": long_tail_share(slots, head_titles(viewers, head_share)),
    }


def item_side_rows(titles: pd.DataFrame, kinds: tuple[str, ...], head_share: float) -> list[dict]:
    """The item-side audit rows of a title profile (``title_profile`` as pandas):
    per dimension and group, ``catalog_share`` and ``consumption_share`` (shelves None:
    references) and ``exposure_share`` and ``exposure_to_catalog`` (exposure share /
    catalog share) per kind of shelf; overall, ``shelf_exposure_metrics`` per kind.
    Rows are dicts with side, metric, group_dimension, group, shelves, value."""
    rows: list[dict] = []

    def row(metric, value, dimension=None, group=None, shelves=None):
        rows.append(
            {"side": "item", "metric": metric, "group_dimension": dimension, "group": group,
             "shelves": shelves, "value": None if value is None or np.isnan(value) else float(value)}
        )

    for dimension in ITEM_DIMENSIONS:
        catalog = group_shares(titles, dimension, None)
        consumption = group_shares(titles, dimension, "viewers")
        for group in catalog.index:
            row("catalog_share", catalog[group], dimension, group)
            row("consumption_share", consumption[group], dimension, group)
        for kind in kinds:
            exposure = group_shares(titles, dimension, f"slots_{kind}")
            for group in catalog.index:
                row("exposure_share", exposure[group], dimension, group, kind)
                row("exposure_to_catalog", exposure[group] / catalog[group], dimension, group, kind)
    for kind in kinds:
        metrics = shelf_exposure_metrics(titles[f"slots_{kind}"].to_numpy(), titles["viewers"].to_numpy(), head_share)
        for metric, value in metrics.items():
            row(metric, value, shelves=kind)
    return rows
