"""The synthetic landing zone: contract, reproducibility, realism and malformed records.

The statistical tests read the files back (not the generator's internals) and check each
property against what uniform or clean data would give, so each one fails if the property
is lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from jobs.core.schemas import LANDING
from jobs.datasets.synthetic import (
    MALFORMED_KINDS,
    LandingSummary,
    SyntheticSpec,
    SyntheticSpecError,
    generate_landing,
    json_lines,
    main,
)

SPEC = SyntheticSpec()  # 2000 users, 500 titles, 3 days x 5000 events, 1% malformed
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def small(**changes) -> SyntheticSpec:
    """A spec small enough for a test about files rather than statistics."""
    return SyntheticSpec(**{"users": 20, "items": 10, "events_per_day": 100, "days": 1, **changes})


def read_landing_file(path: Path) -> pd.DataFrame:
    """A landing file as a frame of strings and None, whatever its format."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            rows = [json.loads(line) for line in lines]
        return pd.DataFrame(rows)
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:
        header = path.open(encoding="utf-8").readline().strip().replace('"', "").split(",")
        table = pa_csv.read_csv(
            path,
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    assert all(pa.types.is_string(t) for t in table.schema.types), table.schema
    return table.to_pandas().astype(object).where(lambda df: df.notna(), None)


def read_table(root: Path, name: str) -> pd.DataFrame:
    files = sorted((root / name).rglob("*.*"))
    frames = []
    for file in files:
        frame = read_landing_file(file)
        if name == "viewing_events":
            frame["partition"] = file.parent.name.removeprefix("date=")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> tuple[LandingSummary, dict[str, pd.DataFrame]]:
    lakehouse = tmp_path_factory.mktemp("synthetic")
    summary = generate_landing(lakehouse, SPEC)
    root = Path(summary.root)
    return summary, {name: read_table(root, name) for name in ("viewing_events", "users", "catalog")}


@pytest.fixture(scope="module")
def valid_events(landing) -> pd.DataFrame:
    """Events without any defect (duplicates kept once)."""
    _, tables = landing
    events = tables["viewing_events"]
    return events[~defects(events, tables["catalog"]).any(axis=1)]


def defects(events: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """One boolean column per malformed kind, judged from the landing values alone."""
    started = pd.to_datetime(events["started_at"], format="%Y-%m-%dT%H:%M:%SZ", errors="coerce")
    parseable = events["started_at"].fillna("").str.match(TIMESTAMP) & started.notna()
    numeric = events["seconds_watched"].fillna("").str.fullmatch(r"-?\d+")
    seconds = pd.to_numeric(events["seconds_watched"].where(numeric), errors="coerce")
    return pd.DataFrame(
        {
            "negative_seconds": numeric & (seconds < 0),
            "absurd_seconds": numeric & (seconds > 6 * 3600),
            "unparseable_started_at": ~parseable,
            "started_at_other_day": parseable & (events["started_at"].str[:10] != events["partition"]),
            "unknown_content_id": ~events["content_id"].isin(set(catalog["content_id"])),
            "null_account_id": events["account_id"].isna(),
            "non_numeric_seconds": ~numeric,
            "duplicate_event": events.duplicated("event_id", keep="first"),
        }
    )


def file_digests(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# --- contract and files -------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["jsonl", "csv", "parquet"])
def test_files_follow_the_landing_contract(tmp_path, file_format):
    spec = small(users=50, items=30, events_per_day=400, days=2, file_format=file_format, erasure_requests=2)
    summary = generate_landing(tmp_path, spec)
    root = tmp_path / "landing"

    assert summary.root == str(root)
    assert summary.dates == ["2026-11-24", "2026-11-25"]
    assert (summary.users, summary.items, summary.events) == (50, 30, 800)
    assert summary.file_format == file_format
    expected_files = {
        *(f"viewing_events/date={d}/part-00000.{file_format}" for d in summary.dates),
        f"users/users.{file_format}",
        f"catalog/catalog.{file_format}",
        f"erasure_requests/erasure_requests.{file_format}",
    }
    assert set(file_digests(root)) == expected_files
    rows = {"viewing_events": 800, "users": 50, "catalog": 30, "erasure_requests": 2}
    for name, schema in LANDING.items():
        frame = read_table(root, name).drop(columns="partition", errors="ignore")
        assert list(frame.columns) == schema.fieldNames(), name
        assert len(frame) == rows[name], name
        values = frame.to_numpy().ravel()
        assert all(v is None or isinstance(v, str) for v in values), name


def test_the_same_spec_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    for file_format in ("jsonl", "csv", "parquet"):
        spec = small(users=80, items=40, events_per_day=700, days=2, chunk_rows=300, file_format=file_format)
        first = generate_landing(tmp_path / f"{file_format}-a", spec)
        second = generate_landing(tmp_path / f"{file_format}-b", spec)
        reseeded = generate_landing(tmp_path / f"{file_format}-c", dataclasses.replace(spec, seed=7))
        digests = file_digests(Path(first.root))
        assert digests == file_digests(Path(second.root)), file_format
        other = file_digests(Path(reseeded.root))
        assert set(other) == set(digests)
        assert all(other[name] != digest for name, digest in digests.items()), file_format


def test_a_rerun_replaces_the_partitions_it_generates(tmp_path):
    generate_landing(tmp_path, small(events_per_day=300, chunk_rows=100, rows_per_file=100))
    day = tmp_path / "landing" / "viewing_events" / "date=2026-11-25"
    assert sorted(p.name for p in day.iterdir()) == [f"part-0000{i}.jsonl" for i in range(3)]
    generate_landing(tmp_path, small(events_per_day=300))
    assert sorted(p.name for p in day.iterdir()) == ["part-00000.jsonl"]
    assert len(read_table(tmp_path / "landing", "viewing_events")) == 300

    # Another format replaces the files (readers reject a folder that mixes formats),
    # and requests of an earlier generation do not outlive it.
    generate_landing(tmp_path, small(erasure_requests=1))
    generate_landing(tmp_path, small(file_format="parquet"))
    landing = tmp_path / "landing"
    assert sorted(p.name for p in (landing / "users").iterdir()) == ["users.parquet"]
    assert sorted(p.name for p in (landing / "catalog").iterdir()) == ["catalog.parquet"]
    assert sorted(p.name for p in day.iterdir()) == ["part-00000.parquet"]
    assert not (landing / "erasure_requests").exists()


def test_chunks_are_written_one_by_one_and_reported(tmp_path):
    calls = []
    spec = SyntheticSpec(users=30, items=20, events_per_day=2500, days=2, chunk_rows=1000, rows_per_file=2000)
    summary = generate_landing(tmp_path, spec, progress=lambda *call: calls.append(call))

    event_calls = [(done, total) for stage, done, total in calls if stage == "viewing_events"]
    assert event_calls == [(1000, 5000), (2000, 5000), (2500, 5000), (3500, 5000), (4500, 5000), (5000, 5000)]
    assert {stage for stage, _, _ in calls} == {"catalog", "users", "viewing_events"}
    for day in summary.dates:
        parts = sorted((tmp_path / "landing" / "viewing_events" / f"date={day}").iterdir())
        assert [len(read_landing_file(p)) for p in parts] == [2000, 500]
    assert not list(tmp_path.rglob(".*"))  # no temporary file left behind


def test_erasure_requests_name_existing_accounts_and_only_when_asked(tmp_path):
    generate_landing(tmp_path / "none", small(users=40))
    assert not (tmp_path / "none" / "landing" / "erasure_requests").exists()

    summary = generate_landing(tmp_path / "two", small(users=40, erasure_requests=2))
    requests = read_table(Path(summary.root), "erasure_requests")
    users = read_table(Path(summary.root), "users")
    assert len(requests) == 2 and requests["request_id"].is_unique
    assert requests["account_id"].is_unique and requests["account_id"].isin(users["account_id"]).all()
    assert requests["requested_at"].str.match(TIMESTAMP).all()


@pytest.mark.parametrize(
    "change",
    [
        {"users": 0},
        {"days": -1},
        {"malformed_share": 0.7},
        {"file_format": "xml"},
        {"chunk_rows": 0},
        {"erasure_requests": 5, "users": 3},
    ],
)
def test_an_invalid_spec_is_rejected_with_the_field_named(change):
    with pytest.raises(SyntheticSpecError, match=next(iter(change))):
        SyntheticSpec(**change)


def test_the_command_line_writes_a_landing_zone(tmp_path, capsys):
    code = main(["--lakehouse", str(tmp_path), "--users", "30", "--items", "15", "--events-per-day", "200",
                 "--days", "2", "--format", "parquet", "--quiet"])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["events"] == 400 and printed["file_format"] == "parquet"
    assert len(list((tmp_path / "landing" / "viewing_events").rglob("*.parquet"))) == 2
    assert main(["--lakehouse", str(tmp_path), "--users", "0"]) == 2


def test_json_lines_escape_quotes_backslashes_and_nulls():
    table = pa.table(
        {"a": pa.array(['say "hi"', None, "back\\slash", "Zoë"]), "b": ["1", "", "x/y", "line\nbreak"]}
    )
    text = json_lines(table).decode("utf-8")
    assert [json.loads(line) for line in text.splitlines()] == table.to_pylist()
    assert json_lines(table.slice(0, 3)).decode().splitlines() == [
        '{"a":"say \\"hi\\"","b":"1"}', '{"a":null,"b":""}', '{"a":"back\\\\slash","b":"x/y"}'
    ]  # fmt: skip


# --- realism ------------------------------------------------------------------------------


def test_item_popularity_follows_a_power_law(valid_events):
    counts = valid_events["content_id"].value_counts().to_numpy()
    top_one_percent = int(np.ceil(SPEC.items * 0.01))
    assert counts[:top_one_percent].sum() / counts.sum() > 0.15  # uniform: 0.01
    ranks = np.arange(1, 51)
    slope = np.polyfit(np.log(ranks), np.log(counts[:50]), 1)[0]
    assert -1.5 < slope < -0.5, slope  # Zipf-like rank-frequency


def test_user_activity_is_skewed(valid_events):
    counts = valid_events["account_id"].value_counts().to_numpy()
    top_tenth = counts[: SPEC.users // 10].sum() / counts.sum()
    assert top_tenth > 0.3, top_tenth  # uniform activity: about 0.13 with Poisson noise


def test_profile_groups_have_uneven_sizes(landing):
    _, tables = landing
    users = tables["users"]

    gender = users["gender"].value_counts(normalize=True)
    assert set(gender.index) == {"F", "M", "X", ""}
    assert gender["F"] > 0.35 and gender["M"] > 0.35 and gender["X"] < 0.1 and gender[""] < 0.1

    end = pd.Timestamp(SPEC.end_date)
    born = pd.to_datetime(users["birth_date"], format="%Y-%m-%d")
    before_birthday = (born.dt.month > end.month) | ((born.dt.month == end.month) & (born.dt.day > end.day))
    age = end.year - born.dt.year - before_birthday
    assert age.between(18, 80).all()
    assert age.between(25, 45).mean() > 0.5  # uniform 18-80: 0.33
    assert (age < 25).any() and (age > 60).any()

    assert users["postcode"].str.fullmatch(r"\d{5}").all()
    regions = users["postcode"].str[0].value_counts()
    assert len(regions) == 10
    assert regions.max() / regions.min() > 2.5

    countries = users["country"].value_counts(normalize=True)
    assert len(countries) >= 3 and countries.iloc[0] > 0.6
    assert countries.index.str.fullmatch(r"[A-Z]{2}").all()

    no_consent = (users["consent_personalization"] == "false").mean()
    assert 0.11 < no_consent < 0.19
    assert set(users["consent_personalization"]) == {"true", "false"}
    assert set(users["consent_analytics"]) == {"true", "false"}
    signup = pd.to_datetime(users["signup_date"], format="%Y-%m-%d")
    assert signup.lt(end).all() and signup.ge(end - pd.DateOffset(years=8, days=1)).all()
    assert (signup >= born + pd.DateOffset(years=18)).all()  # nobody signed up as a minor


def test_catalog_groups_have_uneven_sizes(landing):
    _, tables = landing
    catalog = tables["catalog"]
    assert catalog["content_id"].is_unique and len(catalog) == SPEC.items

    groups = catalog["provider_group"].value_counts(normalize=True)
    targets = {"major_studio": 0.55, "independent": 0.30, "public_broadcaster": 0.10, "community": 0.05}
    assert list(groups.index) == list(targets)  # sizes in this order
    for group, share in targets.items():
        assert abs(groups[group] - share) < 0.07, (group, groups[group])

    languages = catalog["original_language"].value_counts(normalize=True)
    assert languages.index[0] == "en" and languages.iloc[0] > 0.35 and len(languages) >= 6

    genre_lists = catalog["genres"].str.split("|")
    assert genre_lists.map(len).between(1, 3).all()
    assert genre_lists.map(lambda g: len(set(g)) == len(g)).all()
    genre_counts = genre_lists.explode().value_counts()
    assert 12 <= len(genre_counts) <= 15
    assert genre_counts.iloc[0] > 3 * genre_counts.iloc[-1]

    minutes = catalog["duration_seconds"].astype(int) / 60
    episodes, films = minutes.between(20, 60), minutes.between(80, 180)
    assert (episodes | films).all()
    assert episodes.mean() > 0.2 and films.mean() > 0.2

    years = catalog["release_year"].astype(int)
    assert years.between(1950, SPEC.end_date.year).all() and years.median() >= 2010 and years.nunique() > 20


def test_views_look_like_viewing(valid_events, landing):
    _, tables = landing
    durations = tables["catalog"].set_index("content_id")["duration_seconds"].astype(int)
    completion = valid_events["seconds_watched"].astype(int) / valid_events["content_id"].map(durations)
    assert completion.between(0, 1, inclusive="right").all()
    assert (completion < 0.9).mean() > 0.4  # many partial views
    assert (completion >= 0.9).mean() > 0.2  # and many finished ones

    # Accounts come back to titles they watched more often than chance would have them.
    pair = ["account_id", "content_id"]
    repeated = valid_events.duplicated(pair, keep=False).mean()
    titles = np.random.default_rng(0).permutation(valid_events["content_id"].to_numpy())
    shuffled = valid_events.assign(content_id=titles)
    assert repeated > shuffled.duplicated(pair, keep=False).mean() + 0.08, repeated

    hours = valid_events["started_at"].str[11:13].astype(int)
    evening, small_hours = hours.between(18, 21).mean(), hours.between(2, 5).mean()
    assert evening > 4 * small_hours and 18 <= hours.mode()[0] <= 22

    devices = valid_events["device_type"].value_counts()
    assert set(devices.index) == {"tv", "mobile", "tablet", "web"} and devices.index[0] == "tv"
    assert valid_events["device_id"].str.fullmatch(r"[0-9a-f]{16}").all()
    addresses = valid_events["ip_address"].map(ipaddress.ip_address)
    assert addresses.map(lambda a: a.version == 4 and a.is_global).all()
    assert set(valid_events["country"]) <= set(tables["users"]["country"])


def test_direct_identifiers_look_real(landing):
    _, tables = landing
    users, events = tables["users"], tables["viewing_events"]
    assert users["account_id"].str.fullmatch(r"acc-\d{6}").all() and users["account_id"].is_unique
    assert users["email"].str.fullmatch(r"[a-z]+[._]?[a-z]+\d+@[a-z-]+\.[a-z]{2,3}").all()
    assert users["email"].is_unique
    assert users["full_name"].str.fullmatch(r"\w+ \w+( \w+)?").all() and users["full_name"].nunique() > 100
    assert events["event_id"].str.fullmatch(UUID4).all()
    known = events["account_id"].dropna()
    assert known.isin(set(users["account_id"])).all()


# --- malformed records --------------------------------------------------------------------


def test_every_malformed_kind_is_present_once_per_row_and_counted(landing):
    summary, tables = landing
    found = defects(tables["viewing_events"], tables["catalog"])

    assert found.sum(axis=1).max() == 1  # one defect per malformed row
    counted = found.sum().to_dict()
    assert counted == summary.malformed_by_kind
    assert all(counted[kind] > 0 for kind in MALFORMED_KINDS)
    assert summary.malformed_events == sum(counted.values()) == round(SPEC.malformed_share * summary.events)
    assert len(tables["viewing_events"]) == summary.events


def test_duplicates_are_exact_copies_and_other_ids_are_unique(landing):
    _, tables = landing
    events = tables["viewing_events"]
    repeated_ids = events["event_id"].duplicated(keep=False)
    assert repeated_ids.any()
    copies = events[repeated_ids].fillna("<null>").groupby("event_id").nunique()
    assert (copies == 1).all().all()  # every column identical within a duplicated id


def test_no_malformed_rows_when_the_share_is_zero(tmp_path):
    summary = generate_landing(tmp_path, small(users=50, items=20, events_per_day=1000, malformed_share=0.0))
    root = Path(summary.root)
    assert summary.malformed_events == 0
    assert not defects(read_table(root, "viewing_events"), read_table(root, "catalog")).any().any()


def test_the_end_date_sets_the_partitions(tmp_path):
    summary = generate_landing(tmp_path, small(days=3, end_date=date(2024, 3, 1)))
    assert summary.dates == ["2024-02-28", "2024-02-29", "2024-03-01"]
    events = read_table(Path(summary.root), "viewing_events")
    assert sorted(events["partition"].unique()) == summary.dates
