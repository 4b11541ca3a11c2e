"""The population and its behaviour: the catalog, the users and the viewing events, with
the skew that makes them look like a streaming service's (see the package documentation);
each builder draws from its own random stream of the spec's seed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from jobs.datasets.synthetic.corruption import corrupt
from jobs.datasets.synthetic.formatting import (
    fixed_width_strings,
    hex_chars,
    ipv4_strings,
    iso_dates,
    prefixed_ids,
    timestamp_strings,
    uuid4_strings,
)
from jobs.datasets.synthetic.spec import SyntheticSpec
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
from jobs.datasets.synthetic.writers import landing_schema

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


# --- sampling ----------------------------------------------------------------------------

# Each builder has its own random stream, so changing one table leaves the others alone.
_STREAM_CATALOG, _STREAM_USERS, _STREAM_EVENTS, _STREAM_ERASURE = 1, 2, 3, 4


def _weighted(rng: np.random.Generator, weights: Sequence[float], n: int) -> np.ndarray:
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return _draw(rng, cdf / cdf[-1], n)


def _draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """Indices drawn from a normalized cumulative distribution."""
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


def _rng(spec: SyntheticSpec, *stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([spec.seed, *stream])))


def event_chunk_rng(spec: SyntheticSpec, day_index: int, chunk_index: int) -> np.random.Generator:
    """The random stream of one chunk of one day's events (see :func:`build_event_chunk`)."""
    return _rng(spec, _STREAM_EVENTS, day_index, chunk_index)


# --- population: catalog and users -------------------------------------------------------


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
    content_ids = prefixed_ids("cnt-", numbers, 6)

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
    account_ids = prefixed_ids("acc-", np.arange(1, n + 1), 6)

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
    birth_date = iso_dates(born)

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
    signup = iso_dates(end - 1 - np.minimum(days_ago, 8 * 365))
    consent_personalization = rng.random(n) >= NO_PERSONALIZATION_CONSENT_SHARE
    consent_analytics = consent_personalization & (rng.random(n) >= 0.1)
    occupation = np.asarray(OCCUPATIONS, dtype=object)[rng.integers(0, len(OCCUPATIONS), n)]
    occupation[rng.random(n) < 0.3] = None

    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, n)
    favourite_genre = _weighted(rng, GENRE_WEIGHTS, n)

    device_types = np.asarray(DEVICE_TYPES)[_weighted(rng, DEVICE_WEIGHTS, 2 * n)]
    device_ids = fixed_width_strings(hex_chars(rng, 2 * n, 8))
    home_octets = np.column_stack(
        [np.asarray(HOME_IP_OCTETS)[rng.integers(0, len(HOME_IP_OCTETS), n)],
         rng.integers(0, 256, (n, 2)), rng.integers(1, 255, n)]
    )  # fmt: skip
    mobile_octets = np.column_stack(
        [np.asarray(MOBILE_IP_OCTETS)[rng.integers(0, len(MOBILE_IP_OCTETS), MOBILE_IP_POOL)],
         rng.integers(0, 256, (MOBILE_IP_POOL, 2)), rng.integers(1, 255, MOBILE_IP_POOL)]
    )  # fmt: skip
    ip_addresses = pa.array(np.concatenate([ipv4_strings(home_octets), ipv4_strings(mobile_octets)]))

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
        "event_id": uuid4_strings(rng, n),
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
        table = corrupt(table, rng, malformed_kinds, started, duration, spec.items)
    return table.select(landing_schema("viewing_events").names)


# --- erasure requests ------------------------------------------------------------------------


def build_erasure_requests(spec: SyntheticSpec, account_ids: pa.Array) -> pa.Table:
    """``spec.erasure_requests`` requests for distinct existing accounts, made on end_date."""
    rng = _rng(spec, _STREAM_ERASURE)
    n = spec.erasure_requests
    chosen = np.sort(rng.choice(len(account_ids), size=n, replace=False))
    day_start = (np.datetime64(spec.end_date.isoformat(), "D") - np.datetime64("1970-01-01", "D")).astype(np.int64)
    requested = day_start * 86400 + np.sort(rng.integers(6 * 3600, 18 * 3600, n))
    return pa.table(
        {
            "request_id": pa.array(prefixed_ids("er-", np.arange(1, n + 1), 6)),
            "account_id": account_ids.take(pa.array(chosen)),
            "requested_at": timestamp_strings(requested),
        }
    )
