"""Why a title is on a user's shelf: the user's own watched title that contributed most
to the model's score of the pick, for many users at once.

The contribution of watched title j to the score of pick i, by model:

- ``ease``: score(u, i) = sum_j x_uj B[j, i], so j contributes x_uj B[j, i], exactly
  (x_uj: the user's confidence in j as the model saw it, i.e. after the weighting).
- ``als``, and the ALS part of ``blend``: ``implicit``'s ``explain``. With c_j = alpha x_uj
  and A_u = Y'Y + lambda I + sum_j (|c_j| - 1) y_j y_j', the user factor ALS solves for,
  given the item factors Y, is A_u^-1 sum_j c_j y_j; so score(u, i) = sum_j c_j y_j' A_u^-1 y_i
  and j contributes c_j y_j' A_u^-1 y_i (titles with c_j < 0 contribute nothing, as in
  ``implicit``). For the blend this explains its ALS share of the mixed score.
- ``bpr`` (a user's factor is learned, not solved from the history, so its score does
  not decompose over the history): cos(y_i, y_j) x x_uj, a similarity heuristic.

A title explains a pick only when its contribution is positive; a pick nothing supports
gets no title (the shelf then says "Picked for your viewing history").

Everything is numpy over flat, CSR-like arrays of a batch of users (no Python loop over
users): ``seen[seen_ptr[u]:seen_ptr[u + 1]]`` are user u's watched item rows with their raw
``confidence``, ``picks[pick_ptr[u]:pick_ptr[u + 1]]`` the item rows to explain. The batch is
cut into chunks of users so that memory stays bounded (``CHUNK_ELEMENTS``). Ties go to the
watched title with the lower item row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from jobs.recsys.models import ModelSpec, weight_rows

# algorithm -> how its picks are explained (module doc)
EXPLANATION_METHODS = {"ease": "ease", "als": "als", "blend": "als", "bpr": "cosine"}
METHOD_DESCRIPTIONS = {
    "ease": "exact EASE contributions: confidence x B[watched, pick]",
    "als": "implicit ALS explain: confidence x y_watched' A_u^-1 y_pick (for a blend, its ALS part)",
    "cosine": "cosine of item factors x confidence (BPR scores do not decompose over the history)",
}
CHUNK_ELEMENTS = 1 << 22  # float64 elements per chunk of pair-wise work (32 MB)


@dataclass(frozen=True)
class Explainer:
    """What explaining picks needs from a fitted model (``from_model_arrays``)."""

    method: str  # ease | als | cosine
    spec: ModelSpec  # weighting, alpha, regularization of the model
    n_items: int
    item_factors: np.ndarray | None = None  # als: Y (float64); cosine: unit rows of Y
    item_weights: np.ndarray | None = None  # ease: B[:, kept columns]
    columns: np.ndarray | None = None  # ease: item row -> column of item_weights (-1: not kept)
    weighting: dict[str, np.ndarray] = field(default_factory=dict)  # models.weighting_state

    @classmethod
    def from_model_arrays(
        cls, spec: ModelSpec, arrays: dict[str, np.ndarray], n_items: int
    ) -> "Explainer":
        """From a model's ``jobs.recsys.models.model_arrays`` (plus its weighting state arrays)."""
        method = EXPLANATION_METHODS[spec.algorithm]
        weighting = {name: arrays[name] for name in arrays if name.startswith("bm25_")}
        if method == "ease":
            return cls(method, spec, n_items, item_weights=arrays["item_weights"], weighting=weighting)
        factors = np.asarray(arrays["item_factors"], dtype=np.float64)
        if method == "cosine":
            factors = unit_rows(factors)
        return cls(method, spec, n_items, item_factors=factors, weighting=weighting)

    @property
    def description(self) -> str:
        return METHOD_DESCRIPTIONS[self.method]

    def restricted_to(self, picks: np.ndarray) -> "Explainer":
        """The same explainer carrying only what ``picks`` (item rows) need: for EASE the
        columns of B of those titles (B is items x items; a shelf holds far fewer titles),
        so that shipping it to executors stays cheap. Other methods need every factor."""
        if self.method != "ease":
            return self
        kept = np.unique(np.asarray(picks, dtype=np.int64))
        held = kept if self.columns is None else self.columns[kept]
        if np.any(held < 0):
            raise ValueError("restricted_to: some picks are not among the titles this explainer kept")
        columns = np.full(self.n_items, -1, dtype=np.int64)
        columns[kept] = np.arange(len(kept))
        weights = self.item_weights[:, held]
        return dataclasses.replace(self, item_weights=np.ascontiguousarray(weights), columns=columns)

    def contributions(
        self, seen_ptr: np.ndarray, seen: np.ndarray, confidence: np.ndarray,
        pick_ptr: np.ndarray, picks: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (pick, watched title) pair of the same user and the title's contribution
        to the pick's score: (pick position, seen position) index arrays into ``picks`` and
        ``seen``, and the contributions (-inf where a title cannot contribute).

        Positions index ``seen`` sorted by item row within each user (as ``because``
        sorts it). The reference form of ``because`` (all pairs at once), for small inputs
        and tests."""
        seen_ptr, seen, weights, pick_ptr, picks = self._prepare(seen_ptr, seen, confidence, pick_ptr, picks)
        pick_index, seen_index = user_pairs(seen_ptr, pick_ptr)
        values = self._pair_values(seen_ptr, seen, weights, pick_ptr, picks, pick_index, seen_index)
        return pick_index, seen_index, values

    def because(
        self, seen_ptr: np.ndarray, seen: np.ndarray, confidence: np.ndarray,
        pick_ptr: np.ndarray, picks: np.ndarray,
    ) -> np.ndarray:
        """For every pick, the item row of the user's watched title that contributed most
        (positively) to its score, or -1 (no history, or nothing contributes)."""
        seen_ptr, seen, weights, pick_ptr, picks = self._prepare(seen_ptr, seen, confidence, pick_ptr, picks)
        result = np.full(len(picks), -1, dtype=np.int64)
        for first, last in self._chunks(seen_ptr, pick_ptr):
            s0, s1, p0, p1 = seen_ptr[first], seen_ptr[last], pick_ptr[first], pick_ptr[last]
            local_seen_ptr, local_pick_ptr = seen_ptr[first : last + 1] - s0, pick_ptr[first : last + 1] - p0
            pick_index, seen_index = user_pairs(local_seen_ptr, local_pick_ptr)
            values = self._pair_values(
                local_seen_ptr, seen[s0:s1], weights[s0:s1], local_pick_ptr, picks[p0:p1], pick_index, seen_index
            )
            best = best_per_group(pick_index, values, p1 - p0)
            found = best >= 0
            result[p0:p1][found] = seen[s0:s1][seen_index[best[found]]]
        return result

    # -- internals ------------------------------------------------------------------------

    def _prepare(self, seen_ptr, seen, confidence, pick_ptr, picks):
        seen_ptr = np.asarray(seen_ptr, dtype=np.int64)
        pick_ptr = np.asarray(pick_ptr, dtype=np.int64)
        seen = np.asarray(seen, dtype=np.int64)
        picks = np.asarray(picks, dtype=np.int64)
        if len(seen_ptr) != len(pick_ptr) or seen_ptr[-1] != len(seen) or pick_ptr[-1] != len(picks):
            raise ValueError("seen_ptr and pick_ptr must describe the same users and their arrays")
        user_of_seen = np.repeat(np.arange(len(seen_ptr) - 1), np.diff(seen_ptr))
        order = np.lexsort((seen, user_of_seen))  # within each user by item row: ties to the lower
        seen = seen[order]
        weights = weight_rows(seen_ptr, seen, np.asarray(confidence)[order], self.spec, self.n_items, self.weighting)
        if self.method == "als":
            weights = weights * self.spec.alpha
        return seen_ptr, seen, weights, pick_ptr, picks

    def _chunks(self, seen_ptr: np.ndarray, pick_ptr: np.ndarray) -> list[tuple[int, int]]:
        """User ranges whose pair-wise work stays near ``CHUNK_ELEMENTS`` elements."""
        n_seen, n_picks = np.diff(seen_ptr), np.diff(pick_ptr)
        width = 1 if self.item_factors is None else self.item_factors.shape[1]
        cost = n_seen * n_picks * width + (n_seen * width * width if self.method == "als" else 0)
        if len(cost) == 0:
            return []
        bucket = (np.cumsum(cost) - cost) // CHUNK_ELEMENTS
        starts = np.r_[0, np.flatnonzero(np.diff(bucket)) + 1]
        return list(zip(starts.tolist(), np.r_[starts[1:], len(cost)].tolist()))

    def _pair_values(self, seen_ptr, seen, weights, pick_ptr, picks, pick_index, seen_index) -> np.ndarray:
        pair_weights = weights[seen_index]
        if self.method == "ease":
            columns = np.arange(self.n_items) if self.columns is None else self.columns
            values = self.item_weights[seen[seen_index], columns[picks[pick_index]]] * pair_weights
        elif self.method == "cosine":
            factors = self.item_factors
            values = np.einsum("nf,nf->n", factors[seen[seen_index]], factors[picks[pick_index]]) * pair_weights
        else:
            pick_vectors = self._als_pick_vectors(seen_ptr, seen, weights, pick_ptr, picks)
            values = np.einsum("nf,nf->n", self.item_factors[seen[seen_index]], pick_vectors[pick_index])
            values = values * pair_weights
            values[pair_weights < 0] = -np.inf  # as implicit: negative confidence explains nothing
        return np.asarray(values, dtype=np.float64)

    def _als_pick_vectors(self, seen_ptr, seen, weights, pick_ptr, picks) -> np.ndarray:
        """A_u^-1 y_i for every pick i of every user u (module doc), solved for all users of
        the chunk at once."""
        factors = self.item_factors
        n_users, width = len(seen_ptr) - 1, factors.shape[1]
        base = factors.T @ factors + self.spec.regularization * np.eye(width)
        seen_factors = factors[seen]
        outer = ((np.abs(weights) - 1.0)[:, None] * seen_factors)[:, :, None] * seen_factors[:, None, :]
        owner = csr_matrix(
            (np.ones(len(seen)), np.arange(len(seen)), seen_ptr), shape=(n_users, len(seen))
        )  # users x seen rows: sums each user's outer products
        systems = base[None] + (owner @ outer.reshape(len(seen), -1)).reshape(n_users, width, width)
        n_picks = np.diff(pick_ptr)
        user_of_pick = np.repeat(np.arange(n_users), n_picks)
        slot = np.arange(len(picks)) - np.repeat(pick_ptr[:-1], n_picks)
        rhs = np.zeros((n_users, max(int(n_picks.max(initial=0)), 1), width))
        rhs[user_of_pick, slot] = factors[picks]
        solved = np.linalg.solve(systems, rhs.transpose(0, 2, 1)).transpose(0, 2, 1)
        return solved[user_of_pick, slot]


def unit_rows(factors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), for cosine similarity."""
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return factors / np.where(norms == 0, 1, norms)


def user_pairs(seen_ptr: np.ndarray, pick_ptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pick position, seen position) of every pair of a pick and a watched title of the
    same user, grouped by pick, seen positions ascending within a pick."""
    n_seen, n_picks = np.diff(seen_ptr), np.diff(pick_ptr)
    user_of_pick = np.repeat(np.arange(len(n_picks)), n_picks)
    per_pick = n_seen[user_of_pick]
    pick_index = np.repeat(np.arange(len(user_of_pick)), per_pick)
    offsets = np.arange(int(per_pick.sum())) - np.repeat(np.cumsum(per_pick) - per_pick, per_pick)
    seen_index = np.repeat(seen_ptr[:-1][user_of_pick], per_pick) + offsets
    return pick_index, seen_index


def best_per_group(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the position (into ``values``) of its largest positive value, the first
    one on ties; -1 where a group has none."""
    best = np.full(n_groups, -1, dtype=np.int64)
    candidate = np.flatnonzero(values > 0)
    if len(candidate) == 0:
        return best
    order = candidate[np.lexsort((candidate, -values[candidate], group[candidate]))]
    first = np.r_[True, group[order][1:] != group[order][:-1]]
    best[group[order][first]] = order[first]
    return best


def describe(spec: ModelSpec) -> dict[str, Any]:
    """How picks of a model of ``spec`` are explained (for the model card)."""
    method = EXPLANATION_METHODS[spec.algorithm]
    return {"method": method, "description": METHOD_DESCRIPTIONS[method]}


def saved_model_explainer(saved: Any) -> Explainer:
    """The explainer of a model loaded from the model store
    (``jobs.lake.model_store.SavedModel``: its card's parameters, item arrays and index)."""
    return Explainer.from_model_arrays(ModelSpec(**saved.spec_parameters), saved.arrays, len(saved.content_ids))
