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

Modules: ``spec`` (SyntheticSpec, LandingSummary), ``vocabulary`` (the values drawn from
and their weights), ``builders`` (catalog, users, viewing events and erasure requests, with
their skew), ``corruption`` (the malformed events), ``formatting`` (arrow string columns
from numpy arrays), ``writers`` (landing files: JSONL, CSV, Parquet, atomic renames),
``landing`` (generate_landing, which ties them together) and ``cli``.

Run standalone: ``python -m jobs.datasets.synthetic --lakehouse ./lakehouse --days 3``.
"""

from jobs.datasets.synthetic.builders import (
    ACTIVITY_SIGMA,
    AWAY_FROM_HOME_IP_SHARE,
    COMPLETE_SHARE,
    MOBILE_IP_POOL,
    NO_PERSONALIZATION_CONSENT_SHARE,
    REPEAT_SHARE,
    SECONDARY_DEVICE_SHARE,
    TASTE_SHARE,
    TRAVEL_SHARE,
    ZIPF_EXPONENT,
    build_catalog,
    build_erasure_requests,
    build_event_chunk,
    build_users,
)
from jobs.datasets.synthetic.cli import main
from jobs.datasets.synthetic.corruption import (
    MALFORMED_KINDS,
    MAX_PLAUSIBLE_SECONDS,
    NON_NUMERIC_SECONDS,
    UNPARSEABLE_TIMESTAMPS,
)
from jobs.datasets.synthetic.formatting import timestamp_strings
from jobs.datasets.synthetic.landing import ProgressCallback, generate_landing
from jobs.datasets.synthetic.spec import FILE_FORMATS, LandingSummary, SyntheticSpec, SyntheticSpecError
from jobs.datasets.synthetic.vocabulary import (
    COUNTRIES,
    COUNTRY_WEIGHTS,
    DEVICE_TYPES,
    DEVICE_WEIGHTS,
    EMAIL_DOMAIN_WEIGHTS,
    EMAIL_DOMAINS,
    FEMALE_NAMES,
    GENDER_WEIGHTS,
    GENDERS,
    GENRE_WEIGHTS,
    GENRES,
    HOME_IP_OCTETS,
    HOUR_WEIGHTS,
    LANGUAGE_WEIGHTS,
    LANGUAGES,
    LAST_NAMES,
    MALE_NAMES,
    MOBILE_IP_OCTETS,
    OCCUPATIONS,
    PROVIDER_GROUPS,
    REGION_WEIGHTS,
    TITLE_ADJECTIVES,
    TITLE_NOUNS,
)
from jobs.datasets.synthetic.writers import (
    LandingFileWriter,
    json_lines,
    landing_schema,
    remove_landing_files,
    replace_directory,
    write_landing_file,
)

__all__ = [
    "ACTIVITY_SIGMA",
    "AWAY_FROM_HOME_IP_SHARE",
    "COMPLETE_SHARE",
    "COUNTRIES",
    "COUNTRY_WEIGHTS",
    "DEVICE_TYPES",
    "DEVICE_WEIGHTS",
    "EMAIL_DOMAINS",
    "EMAIL_DOMAIN_WEIGHTS",
    "FEMALE_NAMES",
    "FILE_FORMATS",
    "GENDERS",
    "GENDER_WEIGHTS",
    "GENRES",
    "GENRE_WEIGHTS",
    "HOME_IP_OCTETS",
    "HOUR_WEIGHTS",
    "LANGUAGES",
    "LANGUAGE_WEIGHTS",
    "LAST_NAMES",
    "MALE_NAMES",
    "MALFORMED_KINDS",
    "MAX_PLAUSIBLE_SECONDS",
    "MOBILE_IP_OCTETS",
    "MOBILE_IP_POOL",
    "NON_NUMERIC_SECONDS",
    "NO_PERSONALIZATION_CONSENT_SHARE",
    "OCCUPATIONS",
    "PROVIDER_GROUPS",
    "REGION_WEIGHTS",
    "REPEAT_SHARE",
    "SECONDARY_DEVICE_SHARE",
    "TASTE_SHARE",
    "TITLE_ADJECTIVES",
    "TITLE_NOUNS",
    "TRAVEL_SHARE",
    "UNPARSEABLE_TIMESTAMPS",
    "ZIPF_EXPONENT",
    "LandingFileWriter",
    "LandingSummary",
    "ProgressCallback",
    "SyntheticSpec",
    "SyntheticSpecError",
    "build_catalog",
    "build_erasure_requests",
    "build_event_chunk",
    "build_users",
    "generate_landing",
    "json_lines",
    "landing_schema",
    "main",
    "remove_landing_files",
    "replace_directory",
    "timestamp_strings",
    "write_landing_file",
]
