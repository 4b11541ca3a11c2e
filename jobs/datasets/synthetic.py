"""Synthetic landing zone of a streaming service: viewing events, user profiles, the
catalog and (optionally) erasure requests, written under ``<lakehouse>/landing/`` in the
column contract of :data:`jobs.core.schemas.LANDING`.

The data is built to exercise the pipeline the way real data would:

- item popularity follows a Zipf law (exponent 0.9: the top 1% of a 500-title catalog gets
  about a quarter of the views) and user activity is lognormal (sigma 1.2); about half of a
  user's views come from a favourite genre, so a recommender has something to learn;
- group sizes are uneven on every axis the fairness and k-anonymity checks look at:
  gender, age (18-80, mostly 25-45), postcode region (first digit, ten regions of unequal
  size), country (one dominant), provider group, original language, genres;
- a view's ``seconds_watched`` is a beta-distributed completion of the title's duration
  (many partial views), some views repeat an earlier (account, title) pair, and
  ``started_at`` peaks in the evening (UTC);
- about 15% of accounts have not consented to personalization;
- ``malformed_share`` of the events are malformed, in eight kinds spread evenly
  (:data:`MALFORMED_KINDS`), each row with exactly one defect; duplicates are exact copies
  of a valid row of the same day (same ``event_id``), counted once per extra copy;
- names, e-mails, account ids, device ids and IP addresses look real: they are the PII the
  pipeline must keep inside landing/.

Every landing value is written as a string (or null), as the readers apply the explicit
all-string schema: booleans "true"/"false", timestamps "2026-11-25T20:15:03Z", integers in
decimal. A profile without a gender has ``gender`` = "" (the contract's "empty").

Generation is vectorized with numpy and pyarrow, chunk by chunk (``chunk_rows`` events per
chunk, each chunk seeded from ``(seed, day, chunk)``), and written chunk by chunk, so memory
stays bounded. The same spec gives byte-identical files. Files are written under a hidden
temporary name and renamed when complete; the day partitions, profile and catalog files
that a run generates replace earlier ones.

Run standalone: ``python -m jobs.datasets.synthetic --lakehouse ./lakehouse --days 3``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from jobs.core.schemas import LANDING

FILE_FORMATS = ("jsonl", "csv", "parquet")

# Each malformed event has exactly one of these defects.
MALFORMED_KINDS = (
    "negative_seconds",  # seconds_watched < 0
    "absurd_seconds",  # seconds_watched > 6 hours
    "unparseable_started_at",  # started_at is not an ISO-8601 timestamp
    "started_at_other_day",  # started_at falls on another day than the partition
    "unknown_content_id",  # content_id not in the catalog
    "null_account_id",  # account_id is null
    "non_numeric_seconds",  # seconds_watched is not an integer
    "duplicate_event",  # an exact copy of another event (same event_id)
)

ProgressCallback = Callable[[str, int, int], None]


class SyntheticSpecError(ValueError):
    """A synthetic data specification is invalid; the message names the field."""


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 2000
    items: int = 500
    events_per_day: int = 5000
    days: int = 3
    end_date: date = date(2026, 11, 25)  # last day generated; days run end_date-days+1 .. end_date
    seed: int = 42
    malformed_share: float = 0.01
    file_format: str = "jsonl"  # jsonl | csv | parquet
    chunk_rows: int = 200_000
    erasure_requests: int = 0  # > 0 writes landing/erasure_requests/ with that many requests
    rows_per_file: int = 1_000_000  # a day's events roll over to a new part file past this

    def __post_init__(self) -> None:
        for name in ("users", "items", "events_per_day", "days", "chunk_rows", "rows_per_file"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SyntheticSpecError(f"SyntheticSpec.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.end_date, date):
            raise SyntheticSpecError(f"SyntheticSpec.end_date must be a datetime.date, got {self.end_date!r}")
        if not 0.0 <= self.malformed_share < 0.5:
            raise SyntheticSpecError(
                f"SyntheticSpec.malformed_share must be in [0, 0.5), got {self.malformed_share!r}"
            )
        if self.file_format not in FILE_FORMATS:
            raise SyntheticSpecError(
                f"SyntheticSpec.file_format must be one of {', '.join(FILE_FORMATS)}, got {self.file_format!r}"
            )
        if not 0 <= self.erasure_requests <= self.users:
            raise SyntheticSpecError(
                f"SyntheticSpec.erasure_requests must be between 0 and users ({self.users}), "
                f"got {self.erasure_requests!r}"
            )

    @property
    def dates(self) -> list[str]:
        first = self.end_date - timedelta(days=self.days - 1)
        return [(first + timedelta(days=i)).isoformat() for i in range(self.days)]


@dataclass(frozen=True)
class LandingSummary:
    root: str  # the landing directory, <lakehouse>/landing
    dates: list[str]  # the day partitions written, ascending
    users: int
    items: int
    events: int  # rows written to viewing_events, malformed ones included
    malformed_events: int
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    file_format: str = "jsonl"


# --- vocabulary --------------------------------------------------------------------------

GENRES = (
    "Drama", "Comedy", "Action", "Thriller", "Documentary", "Romance", "Crime", "Sci-Fi",
    "Animation", "Family", "Horror", "Fantasy", "Mystery", "Music", "Western",
)  # fmt: skip
GENRE_WEIGHTS = (18, 15, 11, 9, 8, 7, 6, 5, 5, 4, 4, 3, 2, 2, 1)

PROVIDER_GROUPS = (
    ("major_studio", 0.55, ("Apex Pictures", "Northstar Studios", "Meridian Entertainment", "Goldcrest Media")),
    ("independent", 0.30, ("Blue Door Films", "Kettle Lake Pictures", "Small Hours", "Fieldnote Films", "Paper Moon")),
    ("public_broadcaster", 0.10, ("Rundfunk Nord", "Channel Seven Public", "Radio Télévision Libre")),
    ("community", 0.05, ("Open Reel Collective", "Neighbourhood Cinema Club")),
)
LANGUAGES = ("en", "de", "fr", "es", "ja", "ko", "it", "sv", "hi", "pt", "tr", "pl")
LANGUAGE_WEIGHTS = (48, 14, 8, 7, 5, 4, 3, 3, 2, 2, 2, 2)

COUNTRIES = ("DE", "AT", "CH", "NL", "FR")
COUNTRY_WEIGHTS = (72, 10, 8, 6, 4)

GENDERS = ("F", "M", "X", "")
GENDER_WEIGHTS = (47, 46, 3, 4)

# Postcode region = first digit; ten regions of deliberately unequal size.
REGION_WEIGHTS = (4, 6, 9, 7, 11, 14, 8, 10, 18, 13)

DEVICE_TYPES = ("tv", "mobile", "web", "tablet")
DEVICE_WEIGHTS = (45, 30, 15, 10)

OCCUPATIONS = (
    "engineer", "teacher", "student", "nurse", "artist", "sales", "retired", "administrator",
    "programmer", "writer", "lawyer", "doctor", "homemaker", "technician", "other",
)  # fmt: skip

# (display name, ascii spelling for e-mail addresses)
FEMALE_NAMES = (
    ("Anna", "anna"), ("Lena", "lena"), ("Sophie", "sophie"), ("Marie", "marie"), ("Julia", "julia"),
    ("Laura", "laura"), ("Sarah", "sarah"), ("Emma", "emma"), ("Hannah", "hannah"), ("Leonie", "leonie"),
    ("Mia", "mia"), ("Clara", "clara"), ("Zoë", "zoe"), ("Fatma", "fatma"), ("Aylin", "aylin"),
    ("Katarzyna", "katarzyna"), ("Chloé", "chloe"), ("Ingrid", "ingrid"), ("Priya", "priya"), ("Elena", "elena"),
)  # fmt: skip
MALE_NAMES = (
    ("Lukas", "lukas"), ("Jonas", "jonas"), ("Leon", "leon"), ("Finn", "finn"), ("Paul", "paul"),
    ("Felix", "felix"), ("Maximilian", "maximilian"), ("Tim", "tim"), ("Jan", "jan"), ("Thomas", "thomas"),
    ("Jürgen", "juergen"), ("Mehmet", "mehmet"), ("Ahmed", "ahmed"), ("Piotr", "piotr"), ("Luca", "luca"),
    ("Mathis", "mathis"), ("Stefan", "stefan"), ("Noah", "noah"), ("Ravi", "ravi"), ("Daniel", "daniel"),
)  # fmt: skip
LAST_NAMES = (
    ("Müller", "mueller"), ("Schmidt", "schmidt"), ("Schneider", "schneider"), ("Fischer", "fischer"),
    ("Weber", "weber"), ("Meyer", "meyer"), ("Wagner", "wagner"), ("Becker", "becker"), ("Schulz", "schulz"),
    ("Hoffmann", "hoffmann"), ("Koch", "koch"), ("Richter", "richter"), ("Klein", "klein"), ("Wolf", "wolf"),
    ("Yılmaz", "yilmaz"), ("Kaya", "kaya"), ("Nowak", "nowak"), ("Kowalski", "kowalski"), ("Rossi", "rossi"),
    ("Dubois", "dubois"), ("Jansen", "jansen"), ("de Vries", "devries"), ("Gruber", "gruber"),
    ("Huber", "huber"), ("Bauer", "bauer"), ("Sharma", "sharma"), ("Nguyen", "nguyen"), ("Garcia", "garcia"),
)  # fmt: skip
EMAIL_DOMAINS = ("gmail.com", "gmx.de", "web.de", "outlook.com", "yahoo.com", "t-online.de", "icloud.com", "proton.me")
EMAIL_DOMAIN_WEIGHTS = (30, 18, 16, 12, 8, 7, 6, 3)

TITLE_ADJECTIVES = (
    "Silent", "Last", "Broken", "Golden", "Hidden", "Northern", "Crimson", "Lost", "Electric",
    "Quiet", "Midnight", "Wild", "Paper", "Distant", "Burning", "Frozen", "Little", "Secret",
)  # fmt: skip
TITLE_NOUNS = (
    "Harbor", "Orchard", "Signal", "Kingdom", "Letters", "Winter", "Frontier", "Garden", "River",
    "Archive", "Parade", "Lighthouse", "Circuit", "Summer", "Witness", "Station", "Horizon", "Tide",
)  # fmt: skip

# Views by hour of day (UTC): low at night, a lunch bump, an evening peak.
HOUR_WEIGHTS = (
    3, 2, 1, 1, 1, 1, 1, 2, 3, 3, 3, 4, 5, 5, 4, 4, 5, 7, 10, 13, 15, 14, 10, 6,
)  # fmt: skip

# Public-looking IPv4 first octets (home broadband, mobile carriers).
HOME_IP_OCTETS = (31, 37, 46, 62, 77, 78, 79, 80, 84, 85, 87, 88, 89, 91, 93, 95, 109, 178, 188, 212, 217)
MOBILE_IP_OCTETS = (5, 92, 94, 176, 185)
MOBILE_IP_POOL = 4096

ZIPF_EXPONENT = 0.9
ACTIVITY_SIGMA = 1.2
TASTE_SHARE = 0.55  # share of views drawn from the viewer's favourite genre
REPEAT_SHARE = 0.08  # share of views that repeat an (account, title) pair of the same chunk
COMPLETE_SHARE = 0.35  # share of views watched (nearly) to the end
SECONDARY_DEVICE_SHARE = 0.3
AWAY_FROM_HOME_IP_SHARE = 0.2
TRAVEL_SHARE = 0.02
NO_PERSONALIZATION_CONSENT_SHARE = 0.15
MAX_PLAUSIBLE_SECONDS = 6 * 3600

UNPARSEABLE_TIMESTAMPS = ("25/11/2026 20:15", "not-a-date", "2026-13-45T99:00:00Z", "yesterday evening", "1764101703x")
NON_NUMERIC_SECONDS = ("n/a", "12m30s", "abc", "1,234", "forty")


def landing_schema(table: str) -> pa.Schema:
    """The arrow schema of a landing table: the contract's columns, all strings."""
    return pa.schema([(name, pa.string()) for name in LANDING[table].fieldNames()])


# --- writing -----------------------------------------------------------------------------


class LandingFileWriter:
    """Writes one landing file chunk by chunk under a hidden temporary name and renames it
    into place on a clean close, so a reader never sees a half-written file."""

    def __init__(self, path: Path, schema: pa.Schema, file_format: str) -> None:
        if file_format not in FILE_FORMATS:
            formats = ", ".join(FILE_FORMATS)
            raise SyntheticSpecError(f"file format must be one of {formats}, got {file_format!r}")
        self.path = Path(path)
        self.schema = schema
        self.file_format = file_format
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        if file_format == "parquet":
            self._writer = pq.ParquetWriter(self._sink, schema, compression="snappy")
        elif file_format == "csv":
            self._writer = pa_csv.CSVWriter(self._sink, schema)

    def write(self, table: pa.Table) -> None:
        table = table.select(self.schema.names).cast(self.schema)
        if self._writer is not None:
            self._writer.write_table(table)
        else:
            self._sink.write(json_lines(table))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._sink.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        self._sink.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> LandingFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def json_lines(table: pa.Table) -> bytes:
    """The rows of an all-string table as JSON Lines (UTF-8, nulls as null), assembled with
    one arrow join per table; a table holding control characters goes through pandas'
    encoder instead."""
    if table.num_rows == 0:
        return b""
    segments: list[pa.Array | str] = []
    literal = "{"
    for i, name in enumerate(table.column_names):
        column = table.column(name).combine_chunks()
        data = _string_bytes(column)
        if (data < 0x20).any():
            text = table.to_pandas().to_json(orient="records", lines=True, force_ascii=False)
            return (text if text.endswith("\n") else text + "\n").encode("utf-8")
        if ((data == ord('"')) | (data == ord("\\"))).any():
            column = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
        literal += ("," if i else "") + json.dumps(name, ensure_ascii=False) + ":"
        if column.null_count == 0:
            segments += [literal + '"', column]
            literal = '"'
        else:
            segments += [literal, pc.fill_null(pc.binary_join_element_wise('"', column, '"', ""), "null")]
            literal = ""
    lines = pc.binary_join_element_wise(*segments, literal + "}\n", "")
    return _string_bytes(lines).tobytes()


def _string_bytes(column: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of a string array's values, end to end."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)
    data = column.buffers()[2]
    if data is None:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]


def write_landing_file(table: pa.Table, path: Path, landing_table: str, file_format: str) -> None:
    """Write a whole table as one landing file of ``landing_table``'s contract."""
    with LandingFileWriter(path, landing_schema(landing_table), file_format) as writer:
        writer.write(table)


def replace_directory(path: Path) -> Path:
    """Empty ``path`` (a directory this generator owns, such as a day partition)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def remove_landing_files(directory: Path, stem: str, keep: str | None = None) -> None:
    """Remove ``<stem>.<format>`` files (this generator's own names) but the ``keep`` format,
    so a folder never mixes formats after a rerun in another one."""
    for file_format in FILE_FORMATS:
        if file_format != keep:
            (directory / f"{stem}.{file_format}").unlink(missing_ok=True)


# --- vectorized string building ----------------------------------------------------------


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """An arrow string array from an (n, width) uint8 array of ASCII characters."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars).tobytes()))


def _hex_chars(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    return np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(n, 2 * nbytes)


def _uuid4_strings(rng: np.random.Generator, n: int) -> pa.Array:
    """Random RFC 4122 version-4 UUIDs ("3f2b...-4...-8...")."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(n, 32)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst in ((slice(0, 8), slice(0, 8)), (slice(8, 12), slice(9, 13)), (slice(12, 16), slice(14, 18)),
                     (slice(16, 20), slice(19, 23)), (slice(20, 32), slice(24, 36))):  # fmt: skip
        out[:, dst] = hexed[:, src]
    return _fixed_width_strings(out)


def timestamp_strings(seconds: np.ndarray) -> pa.Array:
    """'YYYY-MM-DDTHH:MM:SSZ' strings from epoch seconds, built digit by digit (the dates,
    few in practice, are formatted once each)."""
    seconds = np.asarray(seconds, dtype=np.int64)
    days, second_of_day = np.divmod(seconds, 86400)
    first = int(days.min()) if len(days) else 0
    span = (int(days.max()) - first + 1) if len(days) else 0
    date_text = np.datetime_as_string(np.arange(first, first + span).astype("datetime64[D]"), unit="D")
    date_chars = np.frombuffer(date_text.astype("S10").tobytes(), dtype=np.uint8).reshape(span, 10)
    chars = np.empty((len(seconds), 20), dtype=np.uint8)
    chars[:, :10] = date_chars[days - first]
    chars[:, [10, 13, 16, 19]] = np.frombuffer(b"T::Z", dtype=np.uint8)
    for position, value in ((11, second_of_day // 3600), (14, second_of_day // 60 % 60), (17, second_of_day % 60)):
        chars[:, position] = ord("0") + value // 10
        chars[:, position + 1] = ord("0") + value % 10
    return _fixed_width_strings(chars)


def _iso_dates(days_since_epoch: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(days_since_epoch.astype("datetime64[D]"), unit="D")


def _prefixed_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.strings.add(prefix, np.strings.zfill(numbers.astype(str), width))


def _ipv4(octets: np.ndarray) -> np.ndarray:
    """Dotted quads from an (n, 4) integer array."""
    text = octets.astype(str)
    out = text[:, 0]
    for i in range(1, 4):
        out = np.strings.add(np.strings.add(out, "."), text[:, i])
    return out


def _weighted(rng: np.random.Generator, weights: Sequence[float], n: int) -> np.ndarray:
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return _draw(rng, cdf / cdf[-1], n)


def _draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """Indices drawn from a normalized cumulative distribution."""
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


def _rng(spec: SyntheticSpec, *stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([spec.seed, *stream])))


# --- population: catalog and users -------------------------------------------------------

_STREAM_CATALOG, _STREAM_USERS, _STREAM_EVENTS, _STREAM_ERASURE = 1, 2, 3, 4


@dataclass(frozen=True)
class _Catalog:
    table: pa.Table
    content_ids: pa.Array
    durations: np.ndarray  # seconds, per item
    popularity_cdf: np.ndarray  # Zipf, over all items
    genre_items: tuple[np.ndarray, ...]  # per genre: items whose first genre it is
    genre_cdfs: tuple[np.ndarray, ...]  # per genre: popularity cdf over those items


def build_catalog(spec: SyntheticSpec) -> _Catalog:
    rng = _rng(spec, _STREAM_CATALOG)
    n = spec.items
    numbers = np.arange(1, n + 1)
    content_ids = _prefixed_ids("cnt-", numbers, 6)

    is_episode = rng.random(n) < 0.4
    durations = np.where(
        is_episode,
        np.clip(np.round(rng.normal(42 * 60, 10 * 60, n)), 20 * 60, 60 * 60),
        np.clip(np.round(rng.normal(108 * 60, 20 * 60, n)), 80 * 60, 180 * 60),
    ).astype(np.int64)
    age_in_years = np.floor(rng.exponential(np.where(is_episode, 4.0, 9.0)))
    release_year = np.maximum(spec.end_date.year - age_in_years, 1950).astype(np.int64)

    adjective = rng.integers(0, len(TITLE_ADJECTIVES), n)
    noun = rng.integers(0, len(TITLE_NOUNS), n)
    season = rng.integers(1, 6, n)
    episode = rng.integers(1, 13, n)
    names = [f"{TITLE_ADJECTIVES[a]} {TITLE_NOUNS[b]}" for a, b in zip(adjective, noun, strict=True)]
    titles = [
        f"{name} S{s:02d}E{e:02d}" if ep else f"The {name}"
        for name, s, e, ep in zip(names, season, episode, is_episode, strict=True)
    ]

    genre_count = _weighted(rng, (50, 35, 15), n) + 1
    genre_probs = np.asarray(GENRE_WEIGHTS, dtype=np.float64) / sum(GENRE_WEIGHTS)
    # Gumbel top-k: weighted sampling of distinct genres per title, vectorized.
    keys = np.log(genre_probs) - np.log(-np.log(rng.random((n, len(GENRES)))))
    ranked = np.argsort(-keys, axis=1, kind="stable")
    genres = ["|".join(GENRES[g] for g in row[:k]) for row, k in zip(ranked, genre_count, strict=True)]
    primary_genre = ranked[:, 0]

    group_idx = _weighted(rng, [share for _, share, _ in PROVIDER_GROUPS], n)
    provider_pick = rng.integers(0, 1 << 30, n)
    providers = [
        PROVIDER_GROUPS[g][2][p % len(PROVIDER_GROUPS[g][2])] for g, p in zip(group_idx, provider_pick, strict=True)
    ]
    groups = [PROVIDER_GROUPS[g][0] for g in group_idx]
    languages = np.asarray(LANGUAGES)[_weighted(rng, LANGUAGE_WEIGHTS, n)]

    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** ZIPF_EXPONENT
    weights = weights[rng.permutation(n)]  # popularity rank is unrelated to the id
    popularity_cdf = np.cumsum(weights) / weights.sum()
    genre_items, genre_cdfs = [], []
    for g in range(len(GENRES)):
        members = np.flatnonzero(primary_genre == g)
        genre_items.append(members)
        cdf = np.cumsum(weights[members])
        genre_cdfs.append(cdf / cdf[-1] if len(members) else cdf)

    table = pa.table(
        {
            "content_id": pa.array(content_ids),
            "title": pa.array(titles, pa.string()),
            "genres": pa.array(genres, pa.string()),
            "provider": pa.array(providers, pa.string()),
            "provider_group": pa.array(groups, pa.string()),
            "original_language": pa.array(languages),
            "release_year": pa.array(release_year.astype(str)),
            "duration_seconds": pa.array(durations.astype(str)),
        }
    ).select(landing_schema("catalog").names)
    return _Catalog(
        table=table,
        content_ids=table.column("content_id").combine_chunks(),
        durations=durations,
        popularity_cdf=popularity_cdf,
        genre_items=tuple(genre_items),
        genre_cdfs=tuple(genre_cdfs),
    )


@dataclass(frozen=True)
class _Users:
    table: pa.Table
    account_ids: pa.Array
    activity_cdf: np.ndarray  # lognormal activity, over all users
    favourite_genre: np.ndarray  # per user, an index into GENRES
    country: np.ndarray  # per user, an index into COUNTRIES
    device_ids: pa.Array  # two per user: 2u (primary), 2u + 1 (secondary)
    device_types: pa.Array  # likewise
    ip_addresses: pa.Array  # one home address per user, then MOBILE_IP_POOL carrier addresses


def build_users(spec: SyntheticSpec) -> _Users:
    rng = _rng(spec, _STREAM_USERS)
    n = spec.users
    account_ids = _prefixed_ids("acc-", np.arange(1, n + 1), 6)

    gender = _weighted(rng, GENDER_WEIGHTS, n)
    female_first = np.asarray(FEMALE_NAMES)[rng.integers(0, len(FEMALE_NAMES), n)]
    male_first = np.asarray(MALE_NAMES)[rng.integers(0, len(MALE_NAMES), n)]
    other_first = np.where((rng.random(n) < 0.5)[:, None], female_first, male_first)
    first = np.where((gender == 0)[:, None], female_first, np.where((gender == 1)[:, None], male_first, other_first))
    last = np.asarray(LAST_NAMES)[rng.integers(0, len(LAST_NAMES), n)]
    full_name = np.strings.add(np.strings.add(first[:, 0], " "), last[:, 0])
    # A per-account number from a permutation keeps every address unique.
    suffix = (rng.permutation(n) + 1).astype(str)
    separator = np.asarray((".", "_", ""))[_weighted(rng, (60, 15, 25), n)]
    domain = np.asarray(EMAIL_DOMAINS)[_weighted(rng, EMAIL_DOMAIN_WEIGHTS, n)]
    email = first[:, 1]
    for part in (separator, last[:, 1], suffix, "@", domain):
        email = np.strings.add(email, part)

    # Ages 18-80 at end_date, most of them 25-45.
    age = np.where(
        rng.random(n) < 0.7, np.round(rng.normal(35, 7, n)), rng.integers(18, 81, n)
    ).clip(18, 80).astype(np.int64)
    end = np.datetime64(spec.end_date.isoformat(), "D")
    day_of_year = (end - end.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    anniversary = (spec.end_date.year - age - 1970).astype("datetime64[Y]").astype("datetime64[D]") + day_of_year
    # 2..363 days before the anniversary: the age at end_date is `age` despite leap days.
    born = anniversary - rng.integers(2, 364, n)
    birth_date = _iso_dates(born)

    region = _weighted(rng, REGION_WEIGHTS, n)
    town_rank = np.minimum(np.floor(rng.pareto(1.2, n) * 3).astype(np.int64), 99)
    town = (town_rank * 37 + region * 11) % 100  # a region's towns: a few big, many small
    postcode = np.strings.add(
        np.strings.add(region.astype(str), np.strings.zfill(town.astype(str), 2)),
        np.strings.zfill(rng.integers(0, 100, n).astype(str), 2),
    )
    country = _weighted(rng, COUNTRY_WEIGHTS, n)
    # Signed up in the last eight years (most recently), never before turning 18.
    days_as_adult = (end - born).astype(np.int64) - (18 * 365 + 5)  # 18 years have at most 5 leap days
    days_ago = np.minimum(np.floor(rng.exponential(500, n)).astype(np.int64), np.maximum(days_as_adult - 1, 0))
    signup = _iso_dates(end - 1 - np.minimum(days_ago, 8 * 365))
    consent_personalization = rng.random(n) >= NO_PERSONALIZATION_CONSENT_SHARE
    consent_analytics = consent_personalization & (rng.random(n) >= 0.1)
    occupation = np.asarray(OCCUPATIONS, dtype=object)[rng.integers(0, len(OCCUPATIONS), n)]
    occupation[rng.random(n) < 0.3] = None

    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, n)
    favourite_genre = _weighted(rng, GENRE_WEIGHTS, n)

    device_types = np.asarray(DEVICE_TYPES)[_weighted(rng, DEVICE_WEIGHTS, 2 * n)]
    device_ids = _fixed_width_strings(_hex_chars(rng, 2 * n, 8))
    home_octets = np.column_stack(
        [np.asarray(HOME_IP_OCTETS)[rng.integers(0, len(HOME_IP_OCTETS), n)],
         rng.integers(0, 256, (n, 2)), rng.integers(1, 255, n)]
    )  # fmt: skip
    mobile_octets = np.column_stack(
        [np.asarray(MOBILE_IP_OCTETS)[rng.integers(0, len(MOBILE_IP_OCTETS), MOBILE_IP_POOL)],
         rng.integers(0, 256, (MOBILE_IP_POOL, 2)), rng.integers(1, 255, MOBILE_IP_POOL)]
    )  # fmt: skip
    ip_addresses = pa.array(np.concatenate([_ipv4(home_octets), _ipv4(mobile_octets)]))

    bools = np.asarray(("false", "true"))
    table = pa.table(
        {
            "account_id": pa.array(account_ids),
            "email": pa.array(email),
            "full_name": pa.array(full_name),
            "birth_date": pa.array(birth_date),
            "postcode": pa.array(postcode),
            "gender": pa.array(np.asarray(GENDERS)[gender]),
            "country": pa.array(np.asarray(COUNTRIES)[country]),
            "signup_date": pa.array(signup),
            "consent_personalization": pa.array(bools[consent_personalization.astype(np.int64)]),
            "consent_analytics": pa.array(bools[consent_analytics.astype(np.int64)]),
            "occupation": pa.array(occupation, pa.string()),
        }
    ).select(landing_schema("users").names)
    cdf = np.cumsum(activity)
    return _Users(
        table=table,
        account_ids=table.column("account_id").combine_chunks(),
        activity_cdf=cdf / cdf[-1],
        favourite_genre=favourite_genre,
        country=country,
        device_ids=device_ids,
        device_types=pa.array(device_types),
        ip_addresses=ip_addresses,
    )


# --- viewing events -------------------------------------------------------------------------


def build_event_chunk(
    spec: SyntheticSpec,
    users: _Users,
    catalog: _Catalog,
    day: date,
    n: int,
    rng: np.random.Generator,
    malformed_kinds: np.ndarray,
) -> pa.Table:
    """``n`` viewing events of ``day``; ``malformed_kinds`` (indices into MALFORMED_KINDS)
    says how many rows, and which defects, to corrupt."""
    user = _draw(rng, users.activity_cdf, n)
    item = _draw(rng, catalog.popularity_cdf, n)
    taste = rng.random(n) < TASTE_SHARE
    favourite = users.favourite_genre[user]
    for g, (members, cdf) in enumerate(zip(catalog.genre_items, catalog.genre_cdfs, strict=True)):
        chosen = np.flatnonzero(taste & (favourite == g))
        if len(members) and len(chosen):
            item[chosen] = members[_draw(rng, cdf, len(chosen))]
    repeat = np.flatnonzero(rng.random(n) < REPEAT_SHARE)
    source = rng.integers(0, n, len(repeat))
    user[repeat], item[repeat] = user[source], item[source]

    day_start = (np.datetime64(day.isoformat(), "D") - np.datetime64("1970-01-01", "D")).astype(np.int64) * 86400
    second_of_day = _weighted(rng, HOUR_WEIGHTS, n) * 3600 + rng.integers(0, 3600, n)
    started = day_start + second_of_day

    duration = catalog.durations[item]
    completion = np.where(rng.random(n) < COMPLETE_SHARE, rng.beta(30.0, 1.0, n), rng.beta(1.1, 2.2, n))
    seconds = np.clip(np.round(completion * duration), 1, duration).astype(np.int64)

    device_slot = 2 * user + (rng.random(n) < SECONDARY_DEVICE_SHARE)
    away = rng.random(n) < AWAY_FROM_HOME_IP_SHARE
    ip_slot = np.where(away, spec.users + rng.integers(0, MOBILE_IP_POOL, n), user)
    travel = rng.random(n) < TRAVEL_SHARE
    country = np.where(travel, rng.integers(0, len(COUNTRIES), n), users.country[user])

    columns = {
        "event_id": _uuid4_strings(rng, n),
        "account_id": users.account_ids.take(pa.array(user)),
        "content_id": catalog.content_ids.take(pa.array(item)),
        "started_at": timestamp_strings(started),
        "seconds_watched": pa.array(seconds).cast(pa.string()),
        "device_id": users.device_ids.take(pa.array(device_slot)),
        "device_type": users.device_types.take(pa.array(device_slot)),
        "ip_address": users.ip_addresses.take(pa.array(ip_slot)),
        "country": pa.array(np.asarray(COUNTRIES)).take(pa.array(country)),
    }
    table = pa.table(columns)
    if len(malformed_kinds):
        table = _corrupt(table, rng, malformed_kinds, started, duration, spec.items)
    return table.select(landing_schema("viewing_events").names)


def _corrupt(
    table: pa.Table,
    rng: np.random.Generator,
    kinds: np.ndarray,
    started: np.ndarray,
    duration: np.ndarray,
    items: int,
) -> pa.Table:
    n = table.num_rows
    rows = np.sort(rng.choice(n, size=len(kinds), replace=False))
    kinds = rng.permutation(kinds)

    def rows_of(kind: str) -> np.ndarray:
        return rows[kinds == MALFORMED_KINDS.index(kind)]

    def replace(column: str, at: np.ndarray, values: Sequence[str | None] | pa.Array) -> None:
        nonlocal table
        if not len(at):
            return
        mask = np.zeros(n, dtype=bool)
        mask[at] = True  # `at` is sorted, so values land in row order
        col = table.column(column).combine_chunks()
        patched = pc.replace_with_mask(col, pa.array(mask), pa.array(values, pa.string()))
        table = table.set_column(table.schema.get_field_index(column), column, patched)

    def pick(choices: Sequence[str], count: int) -> list[str]:
        return [choices[i] for i in rng.integers(0, len(choices), count)]

    at = rows_of("negative_seconds")
    replace("seconds_watched", at, [str(-int(v)) for v in rng.integers(1, duration[at] + 1)])
    at = rows_of("absurd_seconds")
    replace("seconds_watched", at, [str(int(v)) for v in rng.integers(MAX_PLAUSIBLE_SECONDS + 1, 72 * 3600, len(at))])
    at = rows_of("non_numeric_seconds")
    replace("seconds_watched", at, pick(NON_NUMERIC_SECONDS, len(at)))
    at = rows_of("unparseable_started_at")
    replace("started_at", at, pick(UNPARSEABLE_TIMESTAMPS, len(at)))
    at = rows_of("started_at_other_day")
    shift = np.asarray((-3, -2, -1, 1, 2))[rng.integers(0, 5, len(at))] * 86400
    replace("started_at", at, timestamp_strings(started[at] + shift))
    at = rows_of("unknown_content_id")
    replace("content_id", at, [f"cnt-{items + 1 + int(v):06d}" for v in rng.integers(0, 10_000, len(at))])
    replace("account_id", rows_of("null_account_id"), [None] * len(rows_of("null_account_id")))

    at = rows_of("duplicate_event")
    if len(at):
        valid = np.setdiff1d(np.arange(n), rows, assume_unique=True)
        order = np.arange(n)
        order[at] = valid[rng.integers(0, len(valid), len(at))]
        table = table.take(pa.array(order))
    return table


def _malformed_plan(spec: SyntheticSpec) -> list[list[tuple[int, np.ndarray]]]:
    """Per day, per chunk: (rows, malformed kinds). The malformed count follows the running
    total round(share * rows so far) and kinds cycle, so every kind appears once there are
    at least eight malformed events."""
    plan, rows_so_far, malformed_so_far = [], 0, 0
    for _ in range(spec.days):
        chunks = []
        for start in range(0, spec.events_per_day, spec.chunk_rows):
            rows = min(spec.chunk_rows, spec.events_per_day - start)
            rows_so_far += rows
            target = min(int(math.floor(spec.malformed_share * rows_so_far + 0.5)), malformed_so_far + rows - 1)
            count = max(target - malformed_so_far, 0)
            kinds = (np.arange(malformed_so_far, malformed_so_far + count) % len(MALFORMED_KINDS)).astype(np.int64)
            malformed_so_far += count
            chunks.append((rows, kinds))
        plan.append(chunks)
    return plan


# --- the landing zone ------------------------------------------------------------------------


def generate_landing(
    lakehouse: str | Path,
    spec: SyntheticSpec,
    progress: ProgressCallback | None = None,
) -> LandingSummary:
    """Write a synthetic landing zone for ``spec.dates`` under ``<lakehouse>/landing``."""
    report = progress or (lambda stage, done, total: None)
    root = Path(lakehouse) / "landing"
    ext = spec.file_format

    catalog = build_catalog(spec)
    catalog_dir = root / "catalog"
    write_landing_file(catalog.table, catalog_dir / f"catalog.{ext}", "catalog", ext)
    remove_landing_files(catalog_dir, "catalog", keep=ext)
    report("catalog", spec.items, spec.items)

    users = build_users(spec)
    users_dir = root / "users"
    with LandingFileWriter(users_dir / f"users.{ext}", landing_schema("users"), ext) as writer:
        for start in range(0, spec.users, spec.chunk_rows):
            writer.write(users.table.slice(start, spec.chunk_rows))
            report("users", min(start + spec.chunk_rows, spec.users), spec.users)
    remove_landing_files(users_dir, "users", keep=ext)

    total = spec.days * spec.events_per_day
    done = 0
    by_kind = np.zeros(len(MALFORMED_KINDS), dtype=np.int64)
    chunks_per_file = max(spec.rows_per_file // spec.chunk_rows, 1)
    events_schema = landing_schema("viewing_events")
    for day_index, (day, chunks) in enumerate(zip(spec.dates, _malformed_plan(spec), strict=True)):
        day_dir = replace_directory(root / "viewing_events" / f"date={day}")
        writer: LandingFileWriter | None = None
        try:
            for chunk_index, (rows, kinds) in enumerate(chunks):
                if chunk_index % chunks_per_file == 0:
                    if writer is not None:
                        writer.close()
                    part = chunk_index // chunks_per_file
                    writer = LandingFileWriter(day_dir / f"part-{part:05d}.{ext}", events_schema, ext)
                rng = _rng(spec, _STREAM_EVENTS, day_index, chunk_index)
                writer.write(build_event_chunk(spec, users, catalog, date.fromisoformat(day), rows, rng, kinds))
                by_kind += np.bincount(kinds, minlength=len(MALFORMED_KINDS))
                done += rows
                report("viewing_events", done, total)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()

    # Requests of an earlier generation must not outlive it (they would erase accounts).
    erasure_dir = root / "erasure_requests"
    remove_landing_files(erasure_dir, "erasure_requests", keep=ext if spec.erasure_requests else None)
    if erasure_dir.is_dir() and not any(erasure_dir.iterdir()):
        erasure_dir.rmdir()
    if spec.erasure_requests:
        requests = build_erasure_requests(spec, users.account_ids)
        write_landing_file(requests, erasure_dir / f"erasure_requests.{ext}", "erasure_requests", ext)
        report("erasure_requests", spec.erasure_requests, spec.erasure_requests)

    return LandingSummary(
        root=str(root),
        dates=spec.dates,
        users=spec.users,
        items=spec.items,
        events=total,
        malformed_events=int(by_kind.sum()),
        malformed_by_kind={kind: int(c) for kind, c in zip(MALFORMED_KINDS, by_kind, strict=True)},
        file_format=ext,
    )


def build_erasure_requests(spec: SyntheticSpec, account_ids: pa.Array) -> pa.Table:
    """``spec.erasure_requests`` requests for distinct existing accounts, made on end_date."""
    rng = _rng(spec, _STREAM_ERASURE)
    n = spec.erasure_requests
    chosen = np.sort(rng.choice(len(account_ids), size=n, replace=False))
    day_start = (np.datetime64(spec.end_date.isoformat(), "D") - np.datetime64("1970-01-01", "D")).astype(np.int64)
    requested = day_start * 86400 + np.sort(rng.integers(6 * 3600, 18 * 3600, n))
    return pa.table(
        {
            "request_id": pa.array(_prefixed_ids("er-", np.arange(1, n + 1), 6)),
            "account_id": account_ids.take(pa.array(chosen)),
            "requested_at": timestamp_strings(requested),
        }
    )


# --- command line --------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(
        prog="python -m jobs.datasets.synthetic", description="Generate a synthetic fairshelf landing zone."
    )
    parser.add_argument("--lakehouse", default="./lakehouse", help="lakehouse root (landing/ is written inside)")
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--items", type=int, default=defaults.items)
    parser.add_argument("--events-per-day", type=int, default=defaults.events_per_day)
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument("--end-date", type=date.fromisoformat, default=defaults.end_date, help="YYYY-MM-DD")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--malformed-share", type=float, default=defaults.malformed_share)
    parser.add_argument("--format", dest="file_format", choices=FILE_FORMATS, default=defaults.file_format)
    parser.add_argument("--chunk-rows", type=int, default=defaults.chunk_rows)
    parser.add_argument("--rows-per-file", type=int, default=defaults.rows_per_file)
    parser.add_argument("--erasure-requests", type=int, default=defaults.erasure_requests)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticSpec)}
    try:
        spec = SyntheticSpec(**options)
    except SyntheticSpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def show(stage: str, done: int, total: int) -> None:
        print(f"{stage}: {done:,}/{total:,}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    summary = generate_landing(args.lakehouse, spec, None if args.quiet else show)
    result = dataclasses.asdict(summary) | {"seconds": round(time.perf_counter() - started, 2)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
