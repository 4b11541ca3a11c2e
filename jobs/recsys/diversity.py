"""Diversity-constrained shelf selection: pure numpy, vectorized over a batch of users.

From each user's top-N candidates (the model's order and scores) ``select_shelves``
picks a shelf of ``k`` titles greedily, one position per step for every user at once
(``k`` steps of (users x candidates) array operations). At each step the pick is the
candidate with the best objective among those that keep every constraint satisfiable:

- objective, ordinary positions: maximal marginal relevance (Carbonell & Goldstein 1998),
  ``lambda * relevance + (1 - lambda) * (1 - max genre Jaccard similarity to the titles
  already picked) + longtail_weight * long-tail score + exposure_weight * freshness``;
  relevance is the model score min-max scaled within the user's list, the long-tail score
  1 - the title's popularity percentile (``longtail_scores``), the freshness
  ``exp(-shelves of the run already holding the title)`` (see exposure below).
  ``mmr_lambda = 1, longtail_weight = 0, exposure_weight = 0`` keeps the model's order.
- ``max_genre_share``: a genre may be carried by at most ``floor(share * shelf length)``
  titles. A title counts once for EACH of its genres (a "Drama|Comedy" title counts for
  Drama and for Comedy), so a shelf cannot hide a dominant genre behind secondary ones;
  titles without genres count for none. ``1`` turns it off.
- ``min_underrepresented_share``: at least ``ceil(share * shelf length)`` titles from
  under-represented provider groups or original languages (``CatalogArrays.underrepresented``;
  which groups are is decided outside, see ``jobs.shared.shelves.find_underrepresented``). The
  greedy reserves the remaining positions for them as soon as it must. When the candidates
  hold fewer such titles than needed, all of them are taken and the shelf is flagged.
- ``max_titles_per_provider``: at most M titles of one provider (unknown providers do not
  count). ``0`` turns it off.
- calibration (Steck 2018): the genre mix of the shelf, q(g) = mean over its titles of
  p(g | title) (1 / number of the title's genres), against the user's history,
  p(g) = confidence-weighted mean of p(g | title) over the titles watched:
  ``KL(p || (1 - a) q + a p) <= calibration_max_kl`` (a = ``calibration_smoothing``).
  A shelf above the bound is selected again calibration-first (each step picks the title
  that minimizes the KL of the shelf so far, under the other constraints); if that still
  exceeds the bound the candidates cannot meet it and the shelf is flagged. Users whose
  history has no genre are not constrained. ``0`` turns it off.
- explore slots: the last ``explore_slots`` positions go to titles the user has not
  engaged with, preferring titles no shelf holds yet, then genres new to the user and
  long-tail titles (score = ``EXPLORE_FRESHNESS`` x freshness + share of the title's
  genres absent from the history + long-tail score + ``explore_spread`` x a seeded
  per-(user, title) number in [0, 1), so that explore slots spread over many titles across
  users instead of all showing the same few; the model's relevance only breaks ties).
  Flagged when no such title is left.

Exposure (catalog coverage): users are selected in rounds of ``EXPOSURE_ROUND_USERS``; after
each round the titles it placed count as exposed, and a title's freshness, exp(-number of
shelves holding it), falls with each shelf that holds it. Explore slots take fresh titles
first, so they spread over the catalog instead of showing every user the same long-tail
titles: on MovieLens-100K (``jobs.evaluation.evaluate``, random protocol, top-10 with 2 explore slots)
coverage goes from 1.6x to 2.3x that of the plain top-10 at the same nDCG@10 cost (-6.4%).
``exposure_weight`` (default 0) also moves the ordinary positions: a title the model ranks
almost as high as the one most users get goes to the users who come later; it widens
coverage further but costs nDCG. ``select_shelves`` takes the counts so far (e.g. of the
previous Arrow batches of a Spark partition) and returns them updated, so the order of
users matters: callers give a deterministic one.

When no candidate keeps every constraint, constraints are relaxed one by one in the order
max_titles_per_provider, max_genre_share, min_underrepresented_share (the least important
first) until one does; at each of those steps an explore slot keeps its eligibility if any
candidate allows it, and is filled as an ordinary position otherwise. A shelf's flags (``FLAGS``) name the constraints that
were relaxed for it AND that its final shelf indeed violates: every shelf satisfies every
constraint it is not flagged for. Greedy, so "cannot" means "the greedy found no way";
for the under-represented share it is exact (too few such candidates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.recsys.metrics import genre_jaccard_similarity

# Constraint codes, in relaxation order after explore; the ``constraint_flags`` column of
# silver/shelves and gold/recommendations joins those a shelf could not satisfy with ",".
FLAGS = (
    "explore",
    "max_per_provider",
    "max_genre_share",
    "min_underrepresented_share",
    "calibration",
)
# What each flag tells a reader of the shelf.
FLAG_REASONS = {
    "explore": "no candidate the user has not engaged with was left for an explore slot",
    "max_per_provider": "the candidates hold too few providers to cap titles per provider",
    "max_genre_share": "the candidates are too concentrated in some genre to cap its share",
    "min_underrepresented_share": "the candidates hold too few titles of under-represented groups",
    "calibration": "no selection from the candidates brings the genre mix within the KL bound of the history",
}
_TIE_BREAK = 1e-3
# Users selected together before exposure counts are updated: smaller rounds spread titles
# better, larger ones cost fewer numpy passes (32: 0.3 s for MovieLens' 943 + 108 users).
EXPOSURE_ROUND_USERS = 32
# Weight of freshness in the explore score: above genre novelty + long tail (at most 2), so
# an explore slot takes a title no shelf holds yet whenever the user has one.
EXPLORE_FRESHNESS = 3.0


class DiversityError(ValueError):
    """Candidate arrays or re-rank settings that cannot be used."""


@dataclass(frozen=True)
class CatalogArrays:
    """Per-title attributes, indexed by the item ids the candidate arrays hold."""

    genres: np.ndarray  # bool (items, genres)
    provider: np.ndarray  # int64 (items,), -1 when unknown
    underrepresented: np.ndarray  # bool (items,)
    longtail: np.ndarray  # float (items,), 1 for the least popular title, 0 for the most

    def __post_init__(self) -> None:
        n = self.genres.shape[0]
        for name in ("provider", "underrepresented", "longtail"):
            if getattr(self, name).shape != (n,):
                raise DiversityError(f"catalog {name} has shape {getattr(self, name).shape}, expected ({n},)")

    @property
    def genre_share(self) -> np.ndarray:
        """p(genre | title): 1 / number of the title's genres, 0 for genre-less titles."""
        counts = self.genres.sum(axis=1, keepdims=True)
        return np.where(counts > 0, self.genres / np.maximum(counts, 1), 0.0)


def longtail_scores(popularity: np.ndarray) -> np.ndarray:
    """1 - popularity percentile (ties share the mean rank): 1 for the least popular."""
    popularity = np.asarray(popularity, dtype=np.float64)
    n = len(popularity)
    if n < 2:
        return np.ones(n)
    order = np.argsort(popularity, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n)
    # mean rank among ties, so equally popular titles get the same score
    _, inverse = np.unique(popularity, return_inverse=True)
    ranks = (np.bincount(inverse, weights=ranks) / np.bincount(inverse))[inverse]
    return 1.0 - ranks / (n - 1)


def history_genre_mix(
    owners: np.ndarray, items: np.ndarray, weights: np.ndarray, n_users: int, genre_share: np.ndarray
) -> np.ndarray:
    """(users, genres) p(genre | user) of watched titles (flat owner, item, weight arrays);
    rows of users without a genre in their history are all zero."""
    mix = np.zeros((n_users, genre_share.shape[1]))
    np.add.at(mix, owners, genre_share[items] * np.asarray(weights, dtype=np.float64)[:, None])
    total = mix.sum(axis=1, keepdims=True)
    return np.where(total > 0, mix / np.where(total > 0, total, 1.0), 0.0)


def calibration_kl(history_mix: np.ndarray, shelf_mix: np.ndarray, smoothing: float) -> np.ndarray:
    """KL(p || (1 - a) q + a p) over the last axis (Steck 2018); 0 where p is all zero."""
    p = np.asarray(history_mix, dtype=np.float64)
    q = (1.0 - smoothing) * np.asarray(shelf_mix, dtype=np.float64) + smoothing * p
    ratio = np.where(p > 0, p / np.where(q > 0, q, 1.0), 1.0)
    return np.where(p > 0, p * np.log(ratio), 0.0).sum(axis=-1)


def relevance(candidates: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    """Model scores min-max scaled to [0, 1] within each user's list (rank-based when no
    scores are given: 1 at the top, 0 at the bottom); 0 on padding."""
    valid = candidates >= 0
    if scores is None:
        width = candidates.shape[1]
        rel = 1.0 - np.arange(width) / max(width - 1, 1)
        return np.where(valid, rel[None, :], 0.0)
    scores = np.where(valid, np.asarray(scores, dtype=np.float64), 0.0)
    low = np.min(np.where(valid, scores, np.inf), axis=1, keepdims=True)
    high = np.max(np.where(valid, scores, -np.inf), axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return np.where(valid, (scores - np.where(np.isfinite(low), low, 0.0)) / span, 0.0)


@dataclass
class Shelves:
    """The selection of a batch: (users, k) arrays, -1 / False where a shelf is shorter."""

    positions: np.ndarray  # column of the candidate arrays picked at each rank
    items: np.ndarray  # item id picked at each rank
    explore: np.ndarray  # bool: the rank is an explore slot
    flags: np.ndarray  # bool (users, len(FLAGS)): constraint the shelf could not satisfy
    exposure: np.ndarray  # float (items,): shelves holding each title, counts given plus this batch's

    def flag_strings(self) -> list[str | None]:
        """The ``constraint_flags`` value of each shelf ("a,b" or None)."""
        return [",".join(FLAGS[j] for j in np.flatnonzero(row)) or None for row in self.flags]


@dataclass(frozen=True)
class _Batch:
    """A batch's candidate arrays with the catalog attributes looked up."""

    valid: np.ndarray
    items: np.ndarray  # (U, N) item ids, 0 on padding
    relevance: np.ndarray
    genres: np.ndarray  # (U, N, g) bool
    genre_bits: np.ndarray | None  # (U, N) uint64 genre masks (None beyond 64 genres)
    genre_share: np.ndarray  # (U, N, g)
    provider: np.ndarray  # (U, N), -1 unknown or padding
    underrepresented: np.ndarray  # (U, N)
    longtail: np.ndarray  # (U, N)
    explore_score: np.ndarray  # (U, N) without freshness (which changes from round to round)
    eligible_explore: np.ndarray  # (U, N)
    history_mix: np.ndarray  # (U, g)
    length: np.ndarray  # (U,) shelf length
    genre_cap: np.ndarray  # (U,)
    underrepresented_target: np.ndarray  # (U,) the share asks for this many
    underrepresented_needed: np.ndarray  # (U,) this many can be had from the candidates
    explore_slots: np.ndarray  # (U,)

    def subset(self, rows: np.ndarray) -> "_Batch":
        return _Batch(*(None if getattr(self, f) is None else getattr(self, f)[rows] for f in self.__dataclass_fields__))


def spread(user_seeds: np.ndarray, items: np.ndarray) -> np.ndarray:
    """A deterministic pseudo-random number in [0, 1) per (user seed, item id): the same
    user and title always get the same value, different users different ones."""
    seeds = np.asarray(user_seeds).astype(np.uint64)[:, None]
    x = (seeds * np.uint64(0x9E3779B97F4A7C15)) ^ (np.asarray(items).astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9))
    x ^= x >> np.uint64(31)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(29)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _batch(candidates, scores, engaged, history_mix, catalog: CatalogArrays, settings, k: int, user_seeds) -> _Batch:
    valid = candidates >= 0
    ids = np.where(valid, candidates, 0)
    genres = catalog.genres[ids] & valid[:, :, None]
    share = catalog.genre_share[ids] * valid[:, :, None]
    under = catalog.underrepresented[ids] & valid
    unfamiliar = np.where(
        genres.any(axis=2), (genres & (history_mix[:, None, :] <= 0)).sum(axis=2) / np.maximum(genres.sum(axis=2), 1), 0.0
    )
    rel = relevance(candidates, scores)
    length = np.minimum(k, valid.sum(axis=1))
    share_cap = settings.max_genre_share
    genre_cap = np.floor(share_cap * length + 1e-9).astype(np.int64) if share_cap < 1 else length.copy()
    needed = _underrepresented_target(settings, length, catalog)
    return _Batch(
        valid=valid,
        items=ids,
        relevance=rel,
        genres=genres,
        genre_bits=_genre_bits(genres),
        genre_share=share,
        provider=np.where(valid, catalog.provider[ids], -1),
        underrepresented=under,
        longtail=catalog.longtail[ids] * valid,
        explore_score=unfamiliar + catalog.longtail[ids] + settings.explore_spread * spread(user_seeds, ids)
        + _TIE_BREAK * rel,
        eligible_explore=valid & ~np.asarray(engaged, dtype=bool),
        history_mix=history_mix,
        length=length,
        genre_cap=np.maximum(genre_cap, 1),
        underrepresented_target=needed,
        underrepresented_needed=np.minimum(needed, under.sum(axis=1)),
        explore_slots=np.minimum(settings.explore_slots, length),
    )


def _underrepresented_target(settings, length: np.ndarray, catalog: CatalogArrays) -> np.ndarray:
    """Titles of under-represented groups a shelf of ``length`` must hold: none when the
    catalog has no such title (nothing is under-represented)."""
    if not catalog.underrepresented.any():
        return np.zeros_like(length)
    return np.ceil(settings.min_underrepresented_share * length - 1e-9).astype(np.int64)


def _genre_bits(genres: np.ndarray) -> np.ndarray | None:
    """Genre sets as 64-bit masks (None beyond 64 genres): set operations in one word."""
    if genres.shape[-1] > 64:
        return None
    weights = np.left_shift(np.uint64(1), np.arange(genres.shape[-1], dtype=np.uint64))
    return (genres.astype(np.uint64) * weights).sum(axis=-1, dtype=np.uint64)


def _within_genre_cap(b: _Batch, genre_counts: np.ndarray) -> np.ndarray:
    """(U, N): adding the candidate keeps every genre within the cap (counts grow by one
    per pick, so a genre is closed once it reaches the cap)."""
    full = genre_counts >= b.genre_cap[:, None]
    if b.genre_bits is None:
        return ~(b.genres & full[:, None, :]).any(axis=2)
    return (b.genre_bits & _genre_bits(full)[:, None]) == 0


def _genre_similarity(b: _Batch, rows: np.ndarray, best: np.ndarray) -> np.ndarray:
    """(U, N) Jaccard similarity of each candidate's genres with the pick's (two genre-less
    titles are identical), as ``jobs.recsys.metrics.genre_jaccard_similarity``."""
    if b.genre_bits is None:
        return genre_jaccard_similarity(b.genres, b.genres[rows, best][:, None, :])
    picked = b.genre_bits[rows, best][:, None]
    inter = np.bitwise_count(b.genre_bits & picked).astype(np.float64)
    union = np.bitwise_count(b.genre_bits | picked).astype(np.float64)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)


def _greedy(
    b: _Batch, freshness: np.ndarray, settings, k: int, calibrate: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (U, k), explore (U, k) and relaxed flags (U, len(FLAGS)) of one pass."""
    n_users, width = b.valid.shape
    rows = np.arange(n_users)
    available = b.valid.copy()
    positions = np.full((n_users, k), -1, dtype=np.int64)
    explore = np.zeros((n_users, k), dtype=bool)
    relaxed = np.zeros((n_users, len(FLAGS)), dtype=bool)
    genre_counts = np.zeros((n_users, b.genres.shape[2]), dtype=np.int64)
    provider_counts = np.zeros((n_users, width), dtype=np.int64)  # picked titles sharing each candidate's provider
    max_similarity = np.zeros((n_users, width))
    shelf_mix_sum = np.zeros((n_users, b.genres.shape[2]))
    under_picked = np.zeros(n_users, dtype=np.int64)
    cap_provider = settings.max_titles_per_provider
    lam = settings.mmr_lambda
    explore_score = b.explore_score + EXPLORE_FRESHNESS * freshness
    for step in range(k):
        active = step < b.length
        remaining = b.length - step
        explore_step = active & (step >= b.length - b.explore_slots)
        genre_ok = _within_genre_cap(b, genre_counts)
        provider_ok = (provider_counts < cap_provider) | (b.provider < 0) if cap_provider > 0 else available
        forced = (b.underrepresented_needed - under_picked) >= remaining
        under_ok = ~forced[:, None] | b.underrepresented
        explore_ok = ~explore_step[:, None] | b.eligible_explore
        # relaxation ladder: provider, genre, under-represented dropped cumulatively; at
        # each rung the explore slot's eligibility is kept if possible, dropped if not
        rungs = [available & under_ok & genre_ok & provider_ok, available & under_ok & genre_ok,
                 available & under_ok, available]
        levels = np.stack([mask for rung in rungs for mask in (rung & explore_ok, rung)])
        level = np.argmax(levels.any(axis=2), axis=0)  # first level with a candidate
        allowed = levels[level, rows]
        relaxed[:, 0] |= active & explore_step & (level % 2 == 1)
        for flag in (1, 2, 3):  # rung r dropped the first r of provider, genre, under-represented
            relaxed[:, flag] |= active & (level // 2 >= flag)
        if calibrate:
            mix_after = (shelf_mix_sum[:, None, :] + b.genre_share) / (step + 1)
            kl = calibration_kl(b.history_mix[:, None, :], mix_after, settings.calibration_smoothing)
            objective = -kl + _TIE_BREAK * b.relevance
        else:
            objective = (
                lam * b.relevance + (1.0 - lam) * (1.0 - max_similarity)
                + settings.longtail_weight * b.longtail + settings.exposure_weight * freshness
            )
        # an explore slot whose eligibility had to be relaxed is filled as an ordinary position
        explore_step = explore_step & (level % 2 == 0)
        objective = np.where(explore_step[:, None], explore_score, objective)
        best = np.argmax(np.where(allowed, objective, -np.inf), axis=1)
        picked = active & allowed[rows, best]
        positions[picked, step] = best[picked]
        explore[picked, step] = explore_step[picked]
        available[rows[picked], best[picked]] = False
        genre_counts += b.genres[rows, best] * picked[:, None]
        shelf_mix_sum += b.genre_share[rows, best] * picked[:, None]
        under_picked += b.underrepresented[rows, best] & picked
        best_provider = np.where(picked, b.provider[rows, best], -1)
        provider_counts += (b.provider == best_provider[:, None]) & (best_provider[:, None] >= 0)
        similarity = _genre_similarity(b, rows, best)
        max_similarity = np.where(picked[:, None], np.maximum(max_similarity, similarity), max_similarity)
    return positions, explore, relaxed


def _violations(b: _Batch, positions: np.ndarray, explore: np.ndarray, settings) -> np.ndarray:
    """(U, len(FLAGS)) bool: which constraints each selected shelf violates, recomputed
    from the shelf itself (not from the greedy's bookkeeping)."""
    n_users = len(positions)
    picked = positions >= 0
    cols = np.where(picked, positions, 0)
    rows = np.arange(n_users)[:, None]
    genres = b.genres[rows, cols] & picked[:, :, None]
    out = np.zeros((n_users, len(FLAGS)), dtype=bool)
    out[:, 0] = explore.sum(axis=1) < b.explore_slots
    if settings.max_titles_per_provider > 0:
        provider = np.where(picked, b.provider[rows, cols], -1)
        same = (provider[:, :, None] == provider[:, None, :]) & (provider[:, :, None] >= 0)
        out[:, 1] = same.sum(axis=2).max(axis=1, initial=0) > settings.max_titles_per_provider
    out[:, 2] = genres.sum(axis=1).max(axis=1, initial=0) > b.genre_cap
    out[:, 3] = (b.underrepresented[rows, cols] & picked).sum(axis=1) < b.underrepresented_target
    out[:, 4] = _shelf_kl(b, positions, settings) > settings.calibration_max_kl if settings.calibration_max_kl > 0 else False
    return out


def _shelf_kl(b: _Batch, positions: np.ndarray, settings) -> np.ndarray:
    picked = positions >= 0
    cols = np.where(picked, positions, 0)
    share = (b.genre_share[np.arange(len(positions))[:, None], cols] * picked[:, :, None]).sum(axis=1)
    mix = share / np.maximum(picked.sum(axis=1), 1)[:, None]
    return calibration_kl(b.history_mix, mix, settings.calibration_smoothing)


def select_shelves(
    candidates: np.ndarray,
    scores: np.ndarray | None,
    engaged: np.ndarray,
    history_mix: np.ndarray,
    catalog: CatalogArrays,
    settings: Any,
    k: int,
    user_seeds: np.ndarray | None = None,
    exposure: np.ndarray | None = None,
) -> Shelves:
    """Shelves of ``k`` titles for a batch of users (module doc).

    ``candidates``: (users, N) item ids best first, -1 padded; ``scores``: the model's
    scores, same shape (or None: rank order); ``engaged``: (users, N) bool, the user
    watched the candidate; ``history_mix``: (users, genres) p(genre | user)
    (``history_genre_mix``); ``settings``: a ``jobs.core.config.RerankSettings``;
    ``user_seeds``: (users,) integers that seed each user's explore spread (``spread``;
    default the row numbers), e.g. a hash of the user key; ``exposure``: (items,) shelves
    already holding each title (default none), returned updated as ``Shelves.exposure``.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    if candidates.ndim != 2:
        raise DiversityError(f"candidates must be 2-D (users, N), got shape {candidates.shape}")
    if scores is not None and np.shape(scores) != candidates.shape:
        raise DiversityError(f"scores shape {np.shape(scores)} differs from candidates {candidates.shape}")
    if np.shape(engaged) != candidates.shape:
        raise DiversityError(f"engaged shape {np.shape(engaged)} differs from candidates {candidates.shape}")
    history_mix = np.asarray(history_mix, dtype=np.float64)
    if history_mix.shape != (candidates.shape[0], catalog.genres.shape[1]):
        raise DiversityError(
            f"history_mix shape {history_mix.shape} is not (users, genres) = "
            f"{(candidates.shape[0], catalog.genres.shape[1])}"
        )
    if candidates.size and candidates.max() >= catalog.genres.shape[0]:
        raise DiversityError(f"candidate ids reach {candidates.max()}, the catalog has {catalog.genres.shape[0]} titles")
    if k < 1:
        raise DiversityError(f"k must be at least 1, got {k}")
    seeds = np.arange(len(candidates)) if user_seeds is None else np.asarray(user_seeds)
    n_items = catalog.genres.shape[0]
    exposure = np.zeros(n_items) if exposure is None else np.array(exposure, dtype=np.float64)
    if exposure.shape != (n_items,):
        raise DiversityError(f"exposure shape {exposure.shape} is not (items,) = ({n_items},)")
    b = _batch(candidates, scores, engaged, history_mix, catalog, settings, k, seeds)
    positions = np.full((len(candidates), k), -1, dtype=np.int64)
    explore = np.zeros((len(candidates), k), dtype=bool)
    flags = np.zeros((len(candidates), len(FLAGS)), dtype=bool)
    for start in range(0, len(candidates), EXPOSURE_ROUND_USERS):
        rows = np.arange(start, min(start + EXPOSURE_ROUND_USERS, len(candidates)))
        part = b.subset(rows)
        freshness = np.exp(-exposure[part.items]) * part.valid
        positions[rows], explore[rows], flags[rows] = _select(part, freshness, settings, k)
        users, ranks = np.nonzero(positions[rows] >= 0)
        np.add.at(exposure, part.items[users, positions[rows][users, ranks]], 1.0)
    items = np.where(positions >= 0, np.take_along_axis(candidates, np.maximum(positions, 0), axis=1), -1)
    return Shelves(positions=positions, items=items, explore=explore, flags=flags, exposure=exposure)


def _select(b: _Batch, freshness: np.ndarray, settings, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, explore and flags of one round's shelves (module doc)."""
    positions, explore, relaxed = _greedy(b, freshness, settings, k, calibrate=False)
    if settings.calibration_max_kl > 0:
        over = np.flatnonzero(_shelf_kl(b, positions, settings) > settings.calibration_max_kl)
        if len(over):
            sub = b.subset(over)
            again, again_explore, again_relaxed = _greedy(sub, freshness[over], settings, k, calibrate=True)
            fixed = _shelf_kl(sub, again, settings) <= settings.calibration_max_kl
            positions[over[fixed]] = again[fixed]
            explore[over[fixed]] = again_explore[fixed]
            relaxed[over[fixed]] = again_relaxed[fixed]
            relaxed[over[~fixed], 4] = True
    relaxed[:, 3] |= b.underrepresented_needed < b.underrepresented_target
    return positions, explore, relaxed & _violations(b, positions, explore, settings)


def underrepresented_groups(
    catalog_titles: dict[str, int], consumption: dict[str, float], ratio: float, minority_share: float
) -> set[str]:
    """The groups (provider groups, or original languages) the audience sees less of than
    the catalog offers, or hardly at all: share of consumption below ``ratio`` x their
    share of the catalog, or below ``minority_share``. ``catalog_titles``: titles per group;
    ``consumption``: interactions per group. Deterministic; null groups never count."""
    titles = {g: n for g, n in catalog_titles.items() if g is not None and n > 0}
    total_titles = sum(titles.values())
    total_consumption = sum(v for g, v in consumption.items() if g is not None)
    if not total_titles or total_consumption <= 0:
        return set()
    return {
        group
        for group, n in titles.items()
        if consumption.get(group, 0.0) / total_consumption < max(ratio * n / total_titles, minority_share)
    }
