"""Offline evaluation data: MovieLens-100K as user x item matrices, and the splits of
the two evaluation protocols (see ``jobs.evaluation.evaluate``).

- ``split_random_per_user``: every user's ratings are split at random, ``round(share * n)``
  to test (seeded; a user with a single rating keeps it in training).
- ``split_temporal``: training is every rating on days (UTC) before the cut-off day, the
  day of the ``quantile`` timestamp; test is the ratings on and after it, for the users
  who also have training ratings. Titles first rated after the cut-off stay in the test
  part: a nightly system cannot recommend what nobody has watched yet.

The training matrix holds the confidence the pipeline would build from the imported
events: completion = seconds watched / duration = rating / 5 (``jobs.datasets.movielens``), without
recency decay. The test matrix is binary: every held-out rating is relevant, whatever its
stars (MovieLens ratings stand for views, as in the importer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from jobs.datasets.movielens import (
    MAX_RATING,
    UNKNOWN_GENRE,
    MovieLensError,
    check_source,
    read_genres,
    read_items,
    read_ratings,
    read_users,
)

TEST_SHARE = 0.25
TEMPORAL_QUANTILE = 0.8


class SplitError(ValueError):
    """A split cannot be made as asked (bad share or quantile, an empty side)."""


@dataclass(frozen=True)
class MovieLensData:
    """Ratings with 0-based user rows and item columns, and the catalog's genres."""

    ratings: pd.DataFrame  # user, item, rating, timestamp
    n_users: int
    n_items: int
    item_genres: np.ndarray  # bool, items x genres ("unknown" is no genre)
    genre_names: list[str]


@dataclass(frozen=True)
class Split:
    """Training and test ratings of one protocol, and how they were cut."""

    train: pd.DataFrame
    test: pd.DataFrame
    info: dict[str, Any]


# --- data ---------------------------------------------------------------------------------


def load_movielens(path: str | Path) -> MovieLensData:
    """MovieLens-100K from its folder (u.data, u.user, u.item, u.genre)."""
    directory = check_source(path)
    genres = read_genres(directory)
    ratings = read_ratings(directory)
    users = np.sort(read_users(directory)["user"].unique())
    items = read_items(directory, genres).sort_values("item")
    user_row = pd.Series(np.arange(len(users)), index=users)
    item_col = pd.Series(np.arange(len(items)), index=items["item"].to_numpy())
    unknown = ~ratings["user"].isin(user_row.index) | ~ratings["item"].isin(item_col.index)
    if unknown.any():
        raise MovieLensError(f"u.data has {int(unknown.sum())} ratings of users or items missing from u.user/u.item")
    named = [g for g in genres if g != UNKNOWN_GENRE]
    frame = pd.DataFrame(
        {
            "user": user_row[ratings["user"]].to_numpy(),
            "item": item_col[ratings["item"]].to_numpy(),
            "rating": ratings["rating"].to_numpy(),
            "timestamp": ratings["timestamp"].to_numpy(),
        }
    )
    return MovieLensData(frame, len(users), len(items), items[named].to_numpy().astype(bool), named)


def split_random_per_user(ratings: pd.DataFrame, test_share: float = TEST_SHARE, seed: int = 42) -> Split:
    """Per-user random split: ``round(test_share * n)`` of each user's n ratings go to test."""
    if not 0.0 < test_share < 1.0:
        raise SplitError(f"test share must be within (0, 1), got {test_share}")
    key = np.random.default_rng(seed).random(len(ratings))
    ranked = ratings.assign(_key=key)
    position = ranked.groupby("user")["_key"].rank(method="first").to_numpy() - 1
    size = ranked.groupby("user")["user"].transform("size").to_numpy()
    n_test = np.where(size >= 2, np.maximum(1, np.floor(test_share * size + 0.5)), 0)
    is_test = position < n_test
    train, test = ratings[~is_test].reset_index(drop=True), ratings[is_test].reset_index(drop=True)
    return Split(train, test, {"kind": "random per user", "test_share": test_share, "seed": seed})


def split_temporal(ratings: pd.DataFrame, quantile: float = TEMPORAL_QUANTILE) -> Split:
    """Train on days before the cut-off day (the day of the ``quantile`` timestamp),
    test on it and later, for users present on both sides."""
    if not 0.0 < quantile < 1.0:
        raise SplitError(f"temporal quantile must be within (0, 1), got {quantile}")
    day = pd.to_datetime(ratings["timestamp"], unit="s", utc=True).dt.floor("D")
    cutoff = day.quantile(quantile, interpolation="lower")
    before = (day < cutoff).to_numpy()
    train = ratings[before]
    test = ratings[~before & ratings["user"].isin(train["user"]).to_numpy()]
    if train.empty or test.empty:
        raise SplitError(f"the temporal cut-off {cutoff.date()} leaves an empty training or test part")
    info = {
        "kind": "temporal",
        "cutoff_day": cutoff.date().isoformat(),
        "quantile": quantile,
        "dropped_test_ratings_of_new_users": int((~before).sum() - len(test)),
    }
    return Split(train.reset_index(drop=True), test.reset_index(drop=True), info)


def confidence_matrix(ratings: pd.DataFrame, n_users: int, n_items: int) -> csr_matrix:
    """User x item confidence: completion = rating / 5, as the pipeline builds it."""
    values = ratings["rating"].to_numpy(dtype=np.float32) / MAX_RATING
    matrix = csr_matrix(
        (values, (ratings["user"].to_numpy(), ratings["item"].to_numpy())), shape=(n_users, n_items), dtype=np.float32
    )
    matrix.sum_duplicates()
    return matrix


def relevance_matrix(ratings: pd.DataFrame, n_users: int, n_items: int) -> csr_matrix:
    """User x item ones for every held-out rating (binary relevance)."""
    ones = np.ones(len(ratings), dtype=np.float32)
    matrix = csr_matrix((ones, (ratings["user"].to_numpy(), ratings["item"].to_numpy())), shape=(n_users, n_items))
    matrix.data[:] = 1.0
    return matrix
