"""Importer of MovieLens-100K into the landing contract of :data:`jobs.core.schemas.LANDING`.

MovieLens-100K (GroupLens; F. M. Harper and J. A. Konstan, 2015, ACM TiiS 5(4):19) may not
be redistributed: it is read from where it lies (``../shared/data/movielens-100k``) and
never copied into the repository; only the landing zone derived from it is written.

Mapping (deterministic; the same source always gives the same files):

- ``u.data`` (user, item, rating, unix time) -> ``viewing_events``, one partition per UTC
  date of the rating, ``date=YYYY-MM-DD/part-00000.<ext>``. Each rating is one view:
  ``event_id`` "ml-<user>-<item>-<unix time>", ``account_id`` "ml-<user>", ``content_id``
  "ml-<item>", ``started_at`` the rating time (UTC), ``seconds_watched`` =
  round(rating / 5 x 6000), i.e. the rating read as the completed share of a 6000-second
  film (1 star -> 1200 s, 5 stars -> 6000 s); ``country`` "US"; ``device_id``,
  ``device_type`` and ``ip_address`` null (MovieLens has none).
- ``u.user`` (id, age, gender, occupation, zip) -> ``users``: ``account_id`` "ml-<id>";
  ``birth_date`` 1 January of (1998 - age), 1998 being the year the data was collected, so
  the age is recoverable and no finer than the source; ``gender`` M/F as given; ``postcode``
  the zip code as given (a few are Canadian, alphanumeric); ``occupation`` as given;
  ``country`` "US"; ``signup_date`` the UTC date of the user's first rating; both consents
  "true" (the users rated films in order to get recommendations); ``email`` and
  ``full_name`` null (MovieLens holds no direct identifiers).
- ``u.item`` (latin-1) with ``u.genre`` -> ``catalog``: ``content_id`` "ml-<id>";
  ``title`` as given (it includes the year); ``genres`` the names of the set flags, in
  u.genre order, pipe-joined; the "unknown" flag is no genre, and a film with no other flag
  has null ``genres``; ``release_year`` the year of the release date (null where the date is
  missing); ``provider`` "MovieLens"; ``original_language`` "en"; ``duration_seconds``
  6000; ``provider_group`` from the release year, so that the fairness audit has groups of
  uneven size to look at: before 1970 "classic", 1970-1989 "catalog", 1990-1994 "recent",
  1995 and later "new_release"; a film without a release date is "catalog".
- No ``erasure_requests`` are written, and nothing is malformed.

The partitions, profile and catalog files written replace earlier ones of the same names;
other partitions already in the landing zone are left alone, so import into a lakehouse
of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from jobs.datasets.synthetic import (
    FILE_FORMATS,
    LandingSummary,
    landing_schema,
    replace_directory,
    timestamp_strings,
    write_landing_file,
)

REQUIRED_FILES = ("u.data", "u.user", "u.item", "u.genre")
REFERENCE_YEAR = 1998  # MovieLens-100K was collected from September 1997 to April 1998
DURATION_SECONDS = 6000
MAX_RATING = 5
UNKNOWN_GENRE = "unknown"
PROVIDER = "MovieLens"
COUNTRY = "US"
LANGUAGE = "en"


class MovieLensError(ValueError):
    """The MovieLens-100K source is missing or not what the importer expects."""


def provider_group_for(release_year: float | int | None) -> str:
    """The provider group of a MovieLens film, from its release year (see module doc)."""
    if release_year is None or pd.isna(release_year):
        return "catalog"
    if release_year < 1970:
        return "classic"
    if release_year < 1990:
        return "catalog"
    if release_year < 1995:
        return "recent"
    return "new_release"


# --- reading the source -------------------------------------------------------------------


def check_source(source: str | Path) -> Path:
    """The source directory, once every file the importer needs is found in it."""
    directory = Path(source)
    if not directory.is_dir():
        raise MovieLensError(
            f"MovieLens-100K directory not found: {directory}. Pass the folder that holds "
            f"{', '.join(REQUIRED_FILES)} (unpacked ml-100k.zip from grouplens.org)."
        )
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise MovieLensError(f"MovieLens-100K file(s) missing in {directory}: {', '.join(missing)}")
    return directory


def _read(path: Path, columns: list[str], sep: str, dtype: dict | type) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep=sep, header=None, dtype=dtype, encoding="latin-1", keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as error:
        raise MovieLensError(f"{path.name} is not a MovieLens-100K file: {error}") from error
    if frame.shape[1] != len(columns):
        raise MovieLensError(f"{path.name} has {frame.shape[1]} columns, expected {len(columns)}: {path}")
    frame.columns = columns
    return frame


def read_genres(directory: Path) -> list[str]:
    """Genre names in flag order (u.genre lines are "name|index")."""
    pairs = []
    for line in (directory / "u.genre").read_text(encoding="latin-1").splitlines():
        if line.strip():
            name, _, index = line.rpartition("|")
            if not name or not index.isdigit():
                raise MovieLensError(f"u.genre line {line!r} is not 'name|index': {directory / 'u.genre'}")
            pairs.append((int(index), name))
    if sorted(i for i, _ in pairs) != list(range(len(pairs))):
        raise MovieLensError(f"u.genre indices are not 0..{len(pairs) - 1}: {directory / 'u.genre'}")
    return [name for _, name in sorted(pairs)]


def read_ratings(directory: Path) -> pd.DataFrame:
    return _read(directory / "u.data", ["user", "item", "rating", "timestamp"], "\t", "int64")


def read_users(directory: Path) -> pd.DataFrame:
    users = _read(directory / "u.user", ["user", "age", "gender", "occupation", "zip"], "|", str)
    try:
        return users.astype({"user": "int64", "age": "int64"})
    except ValueError as error:
        raise MovieLensError(f"u.user has a non-numeric id or age: {error}") from error


def read_items(directory: Path, genres: list[str]) -> pd.DataFrame:
    columns = ["item", "title", "release_date", "video_release_date", "url", *genres]
    items = _read(directory / "u.item", columns, "|", str)
    try:
        return items.astype({"item": "int64", **{genre: "int64" for genre in genres}})
    except ValueError as error:
        raise MovieLensError(f"u.item has a non-numeric id or genre flag: {error}") from error


# --- mapping to the landing contract (pure) ---------------------------------------------


def viewing_events_from_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """Landing viewing events (all strings, plus a ``date`` partition column), ordered by
    time, then user, then item."""
    ratings = ratings.sort_values(["timestamp", "user", "item"], kind="stable").reset_index(drop=True)
    started = pd.Series(timestamp_strings(ratings["timestamp"].to_numpy()).to_numpy(zero_copy_only=False))
    user, item, ts = (ratings[c].astype(str) for c in ("user", "item", "timestamp"))
    seconds = (ratings["rating"] / MAX_RATING * DURATION_SECONDS).round().astype("int64")
    events = pd.DataFrame(
        {
            "event_id": "ml-" + user + "-" + item + "-" + ts,
            "account_id": "ml-" + user,
            "content_id": "ml-" + item,
            "started_at": started,
            "seconds_watched": seconds.astype(str),
            "device_id": None,
            "device_type": None,
            "ip_address": None,
            "country": COUNTRY,
            "date": started.str[:10],
        }
    )
    return events


def profiles_from_users(users: pd.DataFrame, ratings: pd.DataFrame) -> pd.DataFrame:
    first_rating = pd.to_datetime(ratings.groupby("user")["timestamp"].min(), unit="s", utc=True)
    users = users.sort_values("user")
    profiles = pd.DataFrame(
        {
            "account_id": "ml-" + users["user"].astype(str),
            "email": None,
            "full_name": None,
            "birth_date": (REFERENCE_YEAR - users["age"]).astype(str) + "-01-01",
            "postcode": users["zip"],
            "gender": users["gender"],
            "country": COUNTRY,
            "signup_date": users["user"].map(first_rating.dt.strftime("%Y-%m-%d")),
            "consent_personalization": "true",
            "consent_analytics": "true",
            "occupation": users["occupation"],
        }
    )
    return profiles[landing_schema("users").names].reset_index(drop=True)


def catalog_from_items(items: pd.DataFrame, genres: list[str]) -> pd.DataFrame:
    named = [g for g in genres if g != UNKNOWN_GENRE]
    flags = items[named].to_numpy().astype(bool)
    genre_names = ["|".join(g for g, on in zip(named, row, strict=True) if on) or None for row in flags]
    year = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    if (year.isna() & (items["release_date"] != "")).any():
        bad = items.loc[year.isna() & (items["release_date"] != ""), "release_date"].iloc[0]
        raise MovieLensError(f"u.item has a release date that is not DD-Mon-YYYY: {bad!r}")
    items = items.assign(_genres=genre_names, _year=year)
    catalog = pd.DataFrame(
        {
            "content_id": "ml-" + items["item"].astype(str),
            "title": items["title"],
            "genres": items["_genres"],
            "provider": PROVIDER,
            "provider_group": items["_year"].map(provider_group_for),
            "original_language": LANGUAGE,
            "release_year": items["_year"].map(lambda y: None if pd.isna(y) else str(int(y))),
            "duration_seconds": str(DURATION_SECONDS),
        }
    ).sort_values("content_id", key=lambda ids: ids.str[3:].astype(int))
    return catalog[landing_schema("catalog").names].reset_index(drop=True)


def _arrow(frame: pd.DataFrame, landing_table: str) -> pa.Table:
    schema = landing_schema(landing_table)
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


# --- the import -------------------------------------------------------------------------


def import_movielens(
    source: str | Path,
    lakehouse: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
    file_format: str = "jsonl",
) -> LandingSummary:
    """Write the landing zone of MovieLens-100K at ``source`` under ``<lakehouse>/landing``."""
    if file_format not in FILE_FORMATS:
        raise MovieLensError(f"file format must be one of {', '.join(FILE_FORMATS)}, got {file_format!r}")
    report = progress or (lambda stage, done, total: None)
    directory = check_source(source)
    genres = read_genres(directory)
    ratings, users, items = read_ratings(directory), read_users(directory), read_items(directory, genres)
    unknown_users = set(ratings["user"]) - set(users["user"])
    unknown_items = set(ratings["item"]) - set(items["item"])
    if unknown_users or unknown_items:
        raise MovieLensError(
            f"u.data rates {len(unknown_users)} user(s) missing from u.user and "
            f"{len(unknown_items)} item(s) missing from u.item (e.g. user {min(unknown_users, default='-')}, "
            f"item {min(unknown_items, default='-')})"
        )

    root = Path(lakehouse) / "landing"
    catalog = catalog_from_items(items, genres)
    write_landing_file(_arrow(catalog, "catalog"), root / "catalog" / f"catalog.{file_format}", "catalog", file_format)
    report("catalog", len(catalog), len(catalog))
    profiles = profiles_from_users(users, ratings)
    write_landing_file(_arrow(profiles, "users"), root / "users" / f"users.{file_format}", "users", file_format)
    report("users", len(profiles), len(profiles))

    events = viewing_events_from_ratings(ratings)  # in time order: each day is one slice
    dates, starts = np.unique(events["date"].to_numpy(dtype=str), return_index=True)
    table = _arrow(events, "viewing_events")
    for day, start, end in zip(dates, starts, [*starts[1:], len(events)], strict=True):
        day_dir = replace_directory(root / "viewing_events" / f"date={day}")
        part = day_dir / f"part-00000.{file_format}"
        write_landing_file(table.slice(start, end - start), part, "viewing_events", file_format)
        report("viewing_events", int(end), len(events))

    return LandingSummary(
        root=str(root),
        dates=[str(day) for day in dates],
        users=len(profiles),
        items=len(catalog),
        events=len(events),
        malformed_events=0,
        malformed_by_kind={},
        file_format=file_format,
    )
