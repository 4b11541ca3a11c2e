"""Proofs of the privacy rules (DESIGN.md, Privacy rules; issue 4, "Proof, as tests"),
checked on what real pipeline runs wrote, never on what the code says it does.

- No direct identifier of the landing data (e-mail, IP address, account id, device id,
  postcode, birth date, full name) is in any file outside landing/: every Parquet file of
  every table version, every transaction-log file, the saved models and the report.
- MovieLens-100K's profiles are published k-anonymous (k = 10) over region, age band and
  gender, although the raw zip/age/gender data is far from it; an attacker holding the
  landing profiles and joining them to the published features never narrows anybody down
  to fewer than k users, and the default shelves list no title watched by fewer than k
  people of a region.
- Users without personalization consent are in no training input, candidate list or
  personal shelf, and get the default shelf.
- Every malformed record lands in quarantine with its reason; input = accepted + quarantined.

The tests read the session runs (``synthetic_run``, ``movielens_run``); none starts a run.
The reference computations here (HMAC pseudonyms, age bands, regions, the contract rules)
are written again from the definitions, so the pipeline's code is not checked against itself.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from jobs.core.schemas import USERS
from jobs.datasets.synthetic import SyntheticSpec, build_users, landing_schema
from jobs.lake import tables
from jobs.shared.privacy import SUPPRESSED, build_user_features, with_k_sized_suppression_group

pytestmark = pytest.mark.spark

QUASI_IDENTIFIERS = ["region", "age_band", "gender"]
OUTPUT_LAYERS = ("silver", "gold", "quarantine")
# Names a column holding a direct identifier would have, compared without case or separators.
DIRECT_IDENTIFIER_NAMES = (
    "email", "ip_address", "account_id", "device_id", "full_name", "birth_date", "postcode",
    "ip", "zip", "zip_code", "postal_code", "date_of_birth", "dob", "first_name", "last_name",
)  # fmt: skip
# Generator defect -> the reason code ingest must give it (jobs.stages.ingest.REASONS).
REASON_OF_KIND = {
    "negative_seconds": "negative_seconds",
    "absurd_seconds": "absurd_seconds",
    "unparseable_started_at": "bad_timestamp",
    "started_at_other_day": "outside_run_date",
    "unknown_content_id": "unknown_content",
    "null_account_id": "missing_account_id",
    "non_numeric_seconds": "bad_seconds",
    "duplicate_event": "duplicate_event",
}


def pseudonym(key: bytes, account_id: str) -> str:
    """HMAC-SHA256(key, account id) in hex: the user key DESIGN.md defines."""
    return hmac.new(key, account_id.encode("utf-8"), hashlib.sha256).hexdigest()


def read_landing(directory: Path, table: str) -> pa.Table:
    """Every file of a landing folder, all columns as strings (as the contract says)."""
    schema = landing_schema(table)
    parts = []
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.suffix in (".jsonl", ".json"):
            options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
            parts.append(pajson.read_json(path, parse_options=options))
        elif path.suffix == ".csv":
            options = pacsv.ConvertOptions(column_types=schema, strings_can_be_null=True)
            parts.append(pacsv.read_csv(path, convert_options=options))
        elif path.suffix == ".parquet":
            parts.append(pq.read_table(path))
    assert parts, f"no landing files in {directory}"
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in parts])


def landing_events(lakehouse: str) -> pd.DataFrame:
    """All landing viewing events, with ``landing_date`` (the partition's date)."""
    frames = []
    for day_dir in sorted((Path(lakehouse) / "landing" / "viewing_events").glob("date=*")):
        frame = read_landing(day_dir, "viewing_events").to_pandas()
        frames.append(frame.assign(landing_date=day_dir.name[len("date="):]))
    return pd.concat(frames, ignore_index=True)


def landing_users(lakehouse: str) -> pd.DataFrame:
    return read_landing(Path(lakehouse) / "landing" / "users", "users").to_pandas()


def table_frame(config, name: str, run_date: str | None = None) -> pd.DataFrame:
    """A table's current version (one run date's partition when given) as pandas."""
    layer, table = name.split("/")
    filters = [("run_date", "=", run_date)] if run_date else None
    return tables.read_arrow(config.table(layer, table), filters=filters).to_pandas()


def values_on_disk(config, name: str, column: str) -> set:
    """The values of ``column`` in every data file of a table on disk: all versions,
    files no longer in the current one included."""
    layer, table = name.split("/")
    files = sorted(Path(config.table(layer, table)).rglob("*.parquet"))
    files = [f for f in files if "_delta_log" not in f.parts]
    assert files, f"{name} has no data files"
    return {v for f in files for v in pq.read_table(f, columns=[column]).column(column).to_pylist()}


def stage_metrics(outcome, stage: str) -> dict:
    return next(s["metrics"] for s in outcome.summaries if s["stage"] == stage)


# --- 1. PII scanner -----------------------------------------------------------------------
#
# How a value counts as found, by kind (chosen so that the scan has no false positive on
# legitimate data and still catches a value copied, embedded or re-encoded):
# - e-mail, account id, IP address, device id, full name, birth date: found anywhere inside
#   any text (cells, JSON, HTML, raw file bytes). Each is distinctive: "acc-000123", an
#   address with "@", a dotted quad (taken whole: "5.1.2.3" is not found inside
#   "85.1.2.3"), 16 hex digits (the chance that a 64-hex pseudonym contains one of ~800 by
#   accident is about 1e-15), "First Last" (case-insensitive), a pre-2009 ISO date (every
#   date the pipeline writes is a 2026 event date).
# - postcode: five digits, which a duration, a count or a hex run can equal by chance. It
#   is found as a whole string value: a string cell, a string in a JSON document (delta log,
#   metrics, model card), an HTML table cell, a partition value. Numbers are compared per
#   column: a numeric column leaks postcodes when most of its distinct values are postcodes
#   (a postcode cast to int), not when one duration happens to equal one.
# - A string column whose contract is a number in text form (quarantine keeps the raw
#   seconds_watched) is judged like a numeric column for postcodes.

NUMERIC_TEXT_COLUMNS = {("quarantine/viewing_events", "seconds_watched")}

ACCOUNT_ID = re.compile(r"acc-\d{6}")  # the generator's account ids
IPV4 = re.compile(r"(?=(?<!\d)((?:\d{1,3}\.){3}\d{1,3})(?!\d))")  # overlapping matches
HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
ISO_DATE = re.compile(r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)")
HTML_CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)
TAG = re.compile(r"<[^>]+>")


@dataclass
class LandingPII:
    """The direct identifiers of a landing zone, and how to find them in text."""

    emails: set[str]
    account_ids: set[str]
    ips: set[str]
    device_ids: set[str]
    full_names: set[str]
    postcodes: set[str]
    birth_dates: set[str]
    name_pattern: re.Pattern = field(init=False)
    email_shapes: set[tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.device_ids = {d.lower() for d in self.device_ids}
        self.full_names = {n.casefold() for n in self.full_names}
        # Any first name followed by any last name of the landing data; hits are then
        # looked up among the real full names.
        firsts, lasts = set(), set()
        for name in self.full_names:
            for i in (i for i, ch in enumerate(name) if ch == " "):
                firsts.add(name[:i])
                lasts.add(name[i + 1:])
        alternatives = lambda words: "|".join(map(re.escape, sorted(words, key=len, reverse=True)))  # noqa: E731
        self.name_pattern = re.compile(rf"(?:{alternatives(firsts)})\s+(?:{alternatives(lasts)})", re.I)
        self.email_shapes = {(e.index("@"), len(e)) for e in self.emails}

    @classmethod
    def of_landing(cls, lakehouse: str) -> LandingPII:
        users, events = landing_users(lakehouse), landing_events(lakehouse)

        def values(frame: pd.DataFrame, column: str) -> set[str]:
            return {v for v in frame[column].dropna() if v != ""}

        return cls(
            emails=values(users, "email"),
            account_ids=values(users, "account_id") | values(events, "account_id"),
            ips=values(events, "ip_address"),
            device_ids=values(events, "device_id"),
            full_names=values(users, "full_name"),
            postcodes=values(users, "postcode"),
            birth_dates=values(users, "birth_date"),
        )

    def in_text(self, text: str) -> list[tuple[str, str]]:
        """(kind, value) of every identifier found anywhere inside ``text``."""
        found = [("account_id", m) for m in ACCOUNT_ID.findall(text) if m in self.account_ids]
        found += [("ip_address", m) for m in IPV4.findall(text) if m in self.ips]
        found += [("birth_date", m) for m in ISO_DATE.findall(text) if m in self.birth_dates]
        names = {" ".join(m.split()).casefold() for m in self.name_pattern.findall(text)}
        found += [("full_name", n) for n in sorted(names & self.full_names)]
        for run in HEX_RUN.findall(text):
            run = run.lower()
            windows = {run[i:i + 16] for i in range(len(run) - 15)}
            found += [("device_id", d) for d in sorted(windows & self.device_ids)]
        at = text.find("@")
        while at >= 0:  # every landing e-mail placed around this "@"
            for local, length in self.email_shapes:
                candidate = text[at - local:at - local + length] if at >= local else ""
                if candidate in self.emails:
                    found.append(("email", candidate))
            at = text.find("@", at + 1)
        return found

    def in_strings(self, strings: set[str]) -> list[tuple[str, str]]:
        """Identifiers inside any of ``strings``, plus postcodes equal to a whole one."""
        found = self.in_text("\n".join(strings))
        return found + [("postcode", s) for s in strings & self.postcodes]

    def in_numbers(self, values: set) -> list[tuple[str, str]]:
        """Postcodes as a numeric column: most of its distinct values are postcodes."""
        as_text = {str(v) for v in values if v is not None}
        postcodes = self.postcodes | {p.lstrip("0") for p in self.postcodes}
        hits = as_text & postcodes
        if len(hits) >= 10 and len(hits) >= len(as_text) / 2:
            return [("postcode", v) for v in sorted(hits)]
        return []


def json_strings(value) -> set[str]:
    """Every string in a JSON-like value (keys included), JSON inside strings opened too."""
    out: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            out.update(str(k) for k in item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, str):
            out.add(item)
            if item[:1] in "{[":
                try:
                    stack.append(json.loads(item))
                except ValueError:
                    pass
    return out


def scan_parquet(path: Path, table: str, pii: LandingPII) -> list[tuple[str, str, str]]:
    """Every column, every value of a Parquet file."""
    data = pq.read_table(path)
    found = []
    for name in data.column_names:
        column = data.column(name)
        distinct = set(column.to_pylist()) if not pa.types.is_nested(column.type) else None
        if distinct is None:  # lists, structs, maps (checkpoints): every string inside
            hits = pii.in_strings(json_strings(column.to_pylist()))
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            strings = {v for v in distinct if v is not None}
            opened = set().union(*[json_strings(v) for v in strings]) if strings else set()
            if (table, name) in NUMERIC_TEXT_COLUMNS:
                hits = pii.in_text("\n".join(opened)) + pii.in_numbers(strings)
            else:
                hits = pii.in_strings(opened)
        elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            hits = pii.in_text("\n".join(v.decode("latin-1") for v in distinct if v is not None))
        else:  # numbers, booleans, dates: their text, and postcodes by the column rule
            hits = pii.in_text("\n".join(str(v) for v in distinct)) + pii.in_numbers(distinct)
        found += [(name, kind, value) for kind, value in hits]
    return found


def scan_file(path: Path, root: Path, pii: LandingPII) -> list[tuple[str, str, str, str]]:
    """(file, where, kind, value) of every identifier in one file of the lakehouse."""
    rel = path.relative_to(root)
    table = "/".join(rel.parts[:2])
    raw = path.read_bytes()
    # The path itself (partition values are in folder names, not in the Parquet data).
    hits = [("path", k, v) for k, v in pii.in_strings({seg.partition("=")[2] or seg for seg in rel.parts})]
    # Raw bytes, whatever the format: catches text the parsers below would not show.
    hits += [("bytes", k, v) for k, v in pii.in_text(raw.decode("utf-8", errors="replace"))]
    if path.suffix == ".parquet":
        hits += [(f"column {c}", k, v) for c, k, v in scan_parquet(path, table, pii)]
    elif path.suffix in (".json", ".jsonl", ".crc") or path.name == "_last_checkpoint":
        text = raw.decode("utf-8")
        try:  # one document (a model card) or JSON Lines (a Delta commit)
            documents = [json.loads(text)]
        except ValueError:
            documents = [json.loads(line) for line in text.splitlines() if line.strip()]
        strings = json_strings(documents)
        hits += [("json", k, v) for k, v in pii.in_strings(strings)]
    elif path.suffix in (".html", ".htm"):
        text = html.unescape(raw.decode("utf-8"))
        cells = {html.unescape(TAG.sub("", c)).strip() for c in HTML_CELL.findall(raw.decode("utf-8"))}
        cells |= set().union(*[json_strings(c) for c in cells]) if cells else set()
        hits += [("html", k, v) for k, v in pii.in_text(text)]
        hits += [("html cell", k, v) for k, v in pii.in_strings(cells) if k == "postcode"]
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as saved:
            for name in saved.files:
                array = saved[name]
                if array.dtype.kind in "US":
                    hits += [(f"array {name}", k, v) for k, v in pii.in_strings({str(x) for x in array.ravel()})]
                else:
                    hits += [(f"array {name}", k, v) for k, v in pii.in_numbers(set(array.ravel().tolist()))]
    return [(str(rel), where, kind, value) for where, kind, value in hits]


def scan_lakehouse(root: Path, pii: LandingPII, skip: tuple[str, ...] = ("landing",)):
    """Every file under ``root`` but the skipped top-level folders: findings and the
    number of files scanned per top-level folder."""
    findings, scanned = [], Counter()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        top = path.relative_to(root).parts[0]
        if top in skip:
            continue
        scanned[top] += 1
        findings += scan_file(path, root, pii)
    return findings, scanned


@pytest.fixture(scope="module")
def synthetic_pii(synthetic_run) -> LandingPII:
    config, _, _ = synthetic_run
    return LandingPII.of_landing(config.lakehouse)


def test_pii_scanner_finds_every_kind_in_the_landing_zone(synthetic_run, synthetic_pii):
    """The scanner works: run over landing/ itself, it finds every kind of identifier, and
    every e-mail, account id and postcode of the profiles."""
    config, _, _ = synthetic_run
    pii = synthetic_pii
    assert min(map(len, (pii.emails, pii.account_ids, pii.ips, pii.device_ids, pii.full_names,
                         pii.postcodes, pii.birth_dates))) > 0
    landing = Path(config.lakehouse) / "landing"
    findings = [f for p in sorted(landing.rglob("*")) if p.is_file() for f in scan_file(p, landing, pii)]
    found = {kind: {value for _, _, k, value in findings if k == kind} for kind in
             ("email", "account_id", "ip_address", "device_id", "full_name", "postcode", "birth_date")}
    assert all(found.values()), {k: len(v) for k, v in found.items()}
    assert found["email"] == pii.emails
    assert found["account_id"] == pii.account_ids
    assert found["postcode"] == pii.postcodes
    assert found["full_name"] == pii.full_names
    # and a value embedded in other text, or cast to a number, is found too
    email, account, ip = sorted(pii.emails)[0], sorted(pii.account_ids)[0], sorted(pii.ips)[0]
    device, name = sorted(pii.device_ids)[0], sorted(pii.full_names)[0]
    text = f"x{email}; user={account}, from {ip}. dev:{device.upper()}ff name={name.upper()}"
    assert {k for k, _ in pii.in_text(text)} == {"email", "account_id", "ip_address", "device_id", "full_name"}
    assert pii.in_numbers({int(p) for p in pii.postcodes})


def test_no_direct_identifier_in_any_file_outside_landing(synthetic_run, synthetic_pii):
    """Every file the pipeline wrote (all table versions and files on disk, transaction
    logs, models, the report) holds none of the landing zone's direct identifiers."""
    config, _, outcome = synthetic_run
    assert outcome.succeeded
    root = Path(config.lakehouse)
    findings, scanned = scan_lakehouse(root, synthetic_pii)
    print(f"files scanned outside landing/: {dict(scanned)}")
    for layer in (*OUTPUT_LAYERS, "models", "reports"):
        assert scanned[layer] > 0, f"nothing scanned under {layer}/"
    logs = [p for p in root.rglob("_delta_log/*") if p.is_file()]
    assert logs and all(root / "landing" not in p.parents for p in logs)
    assert not findings, f"{len(findings)} direct identifier(s) outside landing/, e.g. {findings[:20]}"


def test_no_column_is_named_after_a_direct_identifier(synthetic_run):
    """No column of any data file, partition or table schema in silver/, gold/ or
    quarantine/ is a direct identifier's column."""
    config, _, _ = synthetic_run
    root = Path(config.lakehouse)
    forbidden = {re.sub(r"[^a-z0-9]", "", n) for n in DIRECT_IDENTIFIER_NAMES}
    columns: dict[str, set[str]] = {}
    for layer in OUTPUT_LAYERS:
        for path in (root / layer).rglob("*"):
            if not path.is_file():
                continue
            rel = path.relative_to(root)
            names = columns.setdefault("/".join(rel.parts[:2]), set())
            names |= {seg.partition("=")[0] for seg in rel.parts if "=" in seg}
            if "_delta_log" in rel.parts and path.suffix == ".json":
                for line in path.read_text().splitlines():
                    meta = json.loads(line).get("metaData")
                    if meta:
                        names |= {f["name"] for f in json.loads(meta["schemaString"])["fields"]}
            elif path.suffix == ".parquet" and "_delta_log" not in rel.parts:
                names |= set(pq.read_schema(path).names)
    assert {"silver/events", "silver/user_features", "quarantine/viewing_events",
            "gold/recommendations", "gold/default_recommendations"} <= set(columns)
    bad = {t: sorted(n for n in names if re.sub(r"[^a-z0-9]", "", n.lower()) in forbidden)
           for t, names in columns.items()}
    assert not any(bad.values()), bad


# --- 2. k-anonymity on MovieLens-100K -------------------------------------------------------

def age_band(age: float, bands: tuple[int, ...]) -> str | None:
    """The band of DESIGN.md's age bands: "<18", "18-24", ..., "65+"."""
    if age is None or np.isnan(age) or age < 0 or age > 120:
        return None
    if age < bands[0]:
        return f"<{bands[0]}"
    for low, high in zip(bands, bands[1:]):
        if age < high:
            return f"{low}-{high - 1}"
    return f"{bands[-1]}+"


def attacker_view(profiles: pd.DataFrame, run_date: date, config) -> pd.DataFrame:
    """What anyone holding the landing profiles computes: each account's age band at the
    run date, region (first postcode characters) and gender, as the rules define them."""
    birth = pd.to_datetime(profiles["birth_date"], format="%Y-%m-%d", errors="coerce")
    before_birthday = (birth.dt.month > run_date.month) | (
        (birth.dt.month == run_date.month) & (birth.dt.day > run_date.day)
    )
    age = run_date.year - birth.dt.year - before_birthday.astype(int)
    postcode = profiles["postcode"].fillna("").str.strip().str.upper()
    chars = config.privacy.postcode_region_chars
    gender = profiles["gender"].fillna("").str.strip().str.upper()
    return pd.DataFrame(
        {
            "account_id": profiles["account_id"],
            "region": [("R" + p[:chars]) if re.match(r"[0-9A-Z]", p) else None for p in postcode],
            "age_band": [age_band(a, config.privacy.age_bands) for a in age],
            "gender": gender.where(gender.isin(["F", "M", "X"]), None),
        }
    )


def group_sizes(frame: pd.DataFrame) -> pd.Series:
    return frame[QUASI_IDENTIFIERS].fillna("<null>").value_counts()


@pytest.fixture(scope="module")
def movielens_features(movielens_run) -> pd.DataFrame:
    config, _, outcome = movielens_run
    assert outcome.succeeded
    return table_frame(config, "silver/user_features", outcome.run_date.isoformat())


@pytest.mark.movielens
def test_movielens_user_features_are_k_anonymous(movielens_run, movielens_dir, movielens_features):
    config, summary, outcome = movielens_run
    k = config.privacy.k_anonymity
    raw = pd.read_csv(movielens_dir / "u.user", sep="|", header=None, dtype=str, encoding="latin-1",
                      names=["user", "age", "gender", "occupation", "zip"])
    raw_groups = raw.groupby(["zip", "age", "gender"]).size()
    raw_unique = int((raw_groups == 1).sum())
    raw_below_k = int(raw_groups[raw_groups < k].sum())
    coarse = attacker_view(landing_users(config.lakehouse), outcome.run_date, config)
    coarse_groups = group_sizes(coarse)
    coarse_below_k = int(coarse_groups[coarse_groups < k].sum())

    published = group_sizes(movielens_features)
    metrics = stage_metrics(outcome, "privacy")
    generalized = int((movielens_features[QUASI_IDENTIFIERS] == SUPPRESSED).any(axis=1).sum())
    star = int(published.get((SUPPRESSED,) * 3, 0))
    print(
        f"MovieLens-100K, k={k}: raw zip/age/gender: {len(raw)} users in {len(raw_groups)} "
        f"combinations, {raw_unique} unique, {raw_below_k} users in groups < k; region/band/gender "
        f"before k: {len(coarse_groups)} combinations, {coarse_below_k} users in groups < k; "
        f"published: {len(published)} combinations, smallest {published.min()}, "
        f"generalized {metrics['k_generalized_users']}, suppressed {metrics['k_suppressed_users']}, "
        f"moved into the suppressed group {metrics.get('k_filled_users')}"
    )

    # The raw data is very far from k-anonymous, and coarsening alone does not make it so:
    # the k step is what does the work.
    assert len(raw) == summary.users == 943
    assert raw_unique > 500 and raw_below_k > 900
    assert coarse_below_k > 100
    # Published: every user, every combination of the quasi-identifiers covers >= k of them.
    assert len(movielens_features) == movielens_features["user_key"].nunique() == 943
    assert published.min() >= k, published[published < k].to_dict()
    # The counts are recorded in the run and agree with the table.
    assert metrics["k"] == k
    assert metrics["k_generalized_users"] == generalized >= coarse_below_k
    assert 0 <= metrics["k_suppressed_users"] <= star
    assert metrics["users"] == 943


@pytest.mark.movielens
def test_linkage_on_quasi_identifiers_never_singles_out_fewer_than_k(movielens_run, movielens_features):
    """An attacker holding the landing profiles computes each person's region, age band
    and gender and joins them to the published features: whichever way the join treats a
    generalized ``*`` (as a value, or as "could be anything"), each person matches either
    nobody or at least k published users."""
    config, _, outcome = movielens_run
    k = config.privacy.k_anonymity
    attacker = attacker_view(landing_users(config.lakehouse), outcome.run_date, config)
    published = movielens_features

    # The attacker's view is right: each person's published row is their own values,
    # some of them generalized to "*" (the test checks this with the secret key).
    keys_of = [pseudonym(config.pseudonym_key, a) for a in attacker["account_id"]]
    own = published.set_index("user_key").loc[keys_of]
    for column in QUASI_IDENTIFIERS:
        mine, theirs = attacker[column].to_numpy(dtype=object), own[column].to_numpy(dtype=object)
        consistent = (theirs == SUPPRESSED) | (theirs == mine) | (pd.isna(theirs) & pd.isna(mine))
        assert consistent.all(), f"{column}: published value is neither the true one nor '*'"

    sizes = group_sizes(published)
    keys = attacker[QUASI_IDENTIFIERS].fillna("<null>")
    # Equality join: every key that matches, matches >= k users.
    exact = keys.apply(lambda r: int(sizes.get(tuple(r), 0)), axis=1)
    assert exact[exact > 0].min() >= k
    metrics = stage_metrics(outcome, "privacy")
    # those who kept their own values (moved into the suppressed group: still one of k)
    assert (exact > 0).sum() == 943 - metrics["k_generalized_users"] + metrics["k_filled_users"]
    # Wildcard join: a published "*" is compatible with anything.
    combos = sizes.reset_index(name="n")
    compatible = []
    for key in keys.itertuples(index=False):
        match = np.ones(len(combos), dtype=bool)
        for column, value in zip(QUASI_IDENTIFIERS, key):
            match &= (combos[column] == value).to_numpy() | (combos[column] == SUPPRESSED).to_numpy()
        compatible.append(int(combos.loc[match, "n"].sum()))
    print(f"linkage: exact join matches {int((exact > 0).sum())} people (smallest group "
          f"{int(exact[exact > 0].min())}); wildcard join: smallest candidate set {min(compatible)}")
    assert min(compatible) >= k


@pytest.mark.movielens
def test_default_shelves_list_only_titles_with_k_viewers_in_the_region(movielens_run, movielens_features):
    config, _, outcome = movielens_run
    k = config.privacy.k_anonymity
    run_date = outcome.run_date
    first = (run_date - timedelta(days=config.shelf.history_days - 1)).isoformat()
    events = table_frame(config, "silver/events")
    events = events[(events["run_date"] >= first) & (events["run_date"] <= run_date.isoformat())]
    regions = movielens_features[["user_key", "region"]]
    viewed = events[["user_key", "content_id"]].drop_duplicates().merge(regions, on="user_key", how="left")
    viewed["region"] = viewed["region"].fillna(SUPPRESSED)
    per_region = viewed.groupby(["region", "content_id"]).size()
    overall = viewed.groupby("content_id").size()

    shelves = table_frame(config, "gold/default_recommendations", run_date.isoformat())
    assert len(shelves) and shelves["region"].nunique() > 2
    viewers = [
        int(overall.get(row.content_id, 0)) if row.region == "ALL"
        else int(per_region.get((row.region, row.content_id), 0))
        for row in shelves.itertuples()
    ]
    print(f"default shelves: {shelves['region'].nunique()} regions, {len(shelves)} rows, "
          f"fewest viewers of a listed title in its region {min(viewers)}; "
          f"(region, title) pairs with 1..k-1 viewers left out: {int((per_region < k).sum())}")
    assert min(viewers) >= k
    assert (per_region < k).any()  # there were small groups to leave out


# --- 3. the suppressed group is as large as k -------------------------------------------------

def test_suppressed_users_are_hidden_among_k(spark, config_factory, tmp_path):
    """On a population of the generator where k-anonymity has to suppress users (400 users,
    seed 6: five users are unique even with every quasi-identifier generalized), the
    suppressed group still covers k users: whoever recomputes who was suppressed cannot
    narrow any of them down to fewer than k pseudonyms."""
    config = config_factory(tmp_path / "lake")
    k = config.privacy.k_anonymity
    profiles = spark.createDataFrame(build_users(SyntheticSpec(users=400, seed=6)).table.to_pandas(), USERS)
    features = build_user_features(profiles, config.pseudonym_key, date(2026, 11, 25), config).toPandas()
    sizes = group_sizes(features)
    suppressed, filled = int(features["suppressed"].sum()), int(features["k_filled"].sum())
    print(f"400 synthetic users, seed 6: {suppressed} suppressed, {filled} moved in to hide them, "
          f"smallest group {sizes.min()}")
    assert suppressed > 0
    assert sizes.min() >= k, sizes[sizes < k].to_dict()
    assert sizes[(SUPPRESSED,) * 3] == k == suppressed + filled
    assert len(features) == 400


def test_suppression_group_is_filled_from_the_largest_group(spark):
    rows = (
        [(f"a{i:02d}", "R1", "25-34", "F", True, False) for i in range(14)]
        + [(f"b{i:02d}", "R2", "35-44", "M", False, False) for i in range(10)]
        + [(f"s{i}", "*", "*", "*", True, True) for i in range(3)]
    )
    schema = ("user_key string, region string, age_band string, gender string, "
              "k_generalized boolean, suppressed boolean")
    out = with_k_sized_suppression_group(spark.createDataFrame(rows, schema), 5).toPandas()
    moved = sorted(out.loc[out["k_filled"], "user_key"])
    assert moved == ["a12", "a13"]  # two from the largest group, highest keys first
    assert group_sizes(out).to_dict() == {("R1", "25-34", "F"): 12, ("R2", "35-44", "M"): 10, ("*", "*", "*"): 5}
    # no group can spare enough: the largest moves whole; nothing to fill: nothing moves
    out = with_k_sized_suppression_group(spark.createDataFrame(rows, schema), 10).toPandas()
    assert group_sizes(out).to_dict() == {("*", "*", "*"): 17, ("R2", "35-44", "M"): 10}
    out = with_k_sized_suppression_group(spark.createDataFrame(rows[:24], schema), 5).toPandas()
    assert not out["k_filled"].any() and len(out) == 24


# --- 4. consent ---------------------------------------------------------------------------

def test_users_without_consent_are_kept_out_of_training_and_personal_shelves(synthetic_run):
    config, _, outcome = synthetic_run
    day = outcome.run_date.isoformat()
    users = landing_users(config.lakehouse)
    consent = users["consent_personalization"].fillna("").str.strip().str.lower() == "true"
    key = config.pseudonym_key
    refused = {pseudonym(key, a) for a in users.loc[~consent, "account_id"]}
    agreed = {pseudonym(key, a) for a in users.loc[consent, "account_id"]}

    features = table_frame(config, "silver/user_features", day).set_index("user_key")
    watched = set(table_frame(config, "silver/events")["user_key"])
    # They are known to the pipeline, with consent false, and they did watch things.
    assert len(refused) == stage_metrics(outcome, "privacy")["users_without_consent"] > 0
    assert refused <= set(features.index) and agreed <= set(features.index)
    assert not features.loc[sorted(refused), "consent_personalization"].any()
    assert features.loc[sorted(agreed), "consent_personalization"].all()
    assert len(refused & watched) > 10

    # Not in the training input, the candidates, the published shelves, or the model,
    # in any file of any version on disk.
    model_users = {v for p in Path(config.lakehouse, "models").rglob("user_index.parquet")
                   for v in pq.read_table(p).column("user_key").to_pylist()}
    used = {
        "silver/interactions": values_on_disk(config, "silver/interactions", "user_key"),
        "silver/candidates": values_on_disk(config, "silver/candidates", "user_key"),
        "gold/recommendations": values_on_disk(config, "gold/recommendations", "user_key"),
        "models/*/user_index": model_users,
    }
    for name, keys in used.items():
        assert keys & agreed, f"{name} holds no consenting user: the check would prove nothing"
        assert not keys & refused, f"{len(keys & refused)} users without consent in {name}"

    # They get the non-personalized shelf: their region's, or the overall one.
    shelves = table_frame(config, "gold/default_recommendations", day)
    shelf_regions = set(shelves["region"])
    assert (shelves["region"] == "ALL").sum() == config.shelf.default_shelf_size
    regions = features.loc[sorted(refused), "region"].fillna(SUPPRESSED)
    print(f"users without consent: {len(refused)}, {len(refused & watched)} with events; "
          f"default shelf of their own region for {int(regions.isin(shelf_regions).sum())}, "
          f"the overall one for the rest")


# --- 5. quarantine -------------------------------------------------------------------------

def expected_reasons(events: pd.DataFrame, catalog_ids: set[str], max_seconds: int) -> pd.Series:
    """Each landing event's reason code by the ingestion contract (first rule that
    applies), or None: the rules of issue 4 written again in pandas."""
    iso = events["started_at"].fillna("").str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
    started = pd.to_datetime(events["started_at"].where(iso), format="ISO8601", utc=True, errors="coerce")
    text = events["seconds_watched"].fillna("").str.strip()
    numeric = text.str.fullmatch(r"-?\d+")
    seconds = pd.to_numeric(text.where(numeric), errors="coerce")
    ordered = events.sort_values(list(landing_schema("viewing_events").names), na_position="first")
    copy = ordered.groupby("event_id", dropna=False).cumcount().reindex(events.index)
    rules = [
        ("missing_event_id", events["event_id"].isna()),
        ("missing_account_id", events["account_id"].isna()),
        ("bad_timestamp", started.isna()),
        ("outside_run_date", started.dt.strftime("%Y-%m-%d") != events["landing_date"]),
        ("bad_seconds", ~numeric),
        ("negative_seconds", seconds < 0),
        ("absurd_seconds", seconds > max_seconds),
        ("unknown_content", ~events["content_id"].isin(catalog_ids)),
        ("duplicate_event", copy > 0),
    ]
    reason = pd.Series([None] * len(events), index=events.index, dtype=object)
    for code, rule in reversed(rules):  # the first rule that applies wins
        reason[rule.fillna(False).to_numpy()] = code
    return reason


@pytest.fixture(scope="module")
def synthetic_checked(synthetic_run) -> pd.DataFrame:
    config, _, _ = synthetic_run
    events = landing_events(config.lakehouse)
    catalog = read_landing(Path(config.lakehouse) / "landing" / "catalog", "catalog")
    catalog_ids = set(catalog.column("content_id").to_pylist())
    return events.assign(reason=expected_reasons(events, catalog_ids, config.privacy.max_watch_seconds))


def test_each_malformed_kind_is_quarantined_with_its_reason(synthetic_run, synthetic_checked):
    config, summary, outcome = synthetic_run
    checked = synthetic_checked
    # The generator's defects, each under the reason code ingest must give it ...
    expected = Counter({REASON_OF_KIND[kind]: n for kind, n in summary.malformed_by_kind.items()})
    assert set(expected) == set(REASON_OF_KIND.values()) and min(expected.values()) > 0
    assert Counter(checked["reason"].dropna()) == expected
    # ... are the quarantined records, one for one, each with its reason and no identifier.
    key = config.pseudonym_key
    rejected = checked[checked["reason"].notna()]
    want = Counter(
        (None if pd.isna(a) else pseudonym(key, a), c, s, r, d)
        for a, c, s, r, d in rejected[["account_id", "content_id", "seconds_watched", "reason", "landing_date"]]
        .itertuples(index=False)
    )
    quarantine = table_frame(config, "quarantine/viewing_events")
    quarantine = quarantine[["user_key", "content_id", "seconds_watched", "reason", "run_date"]].astype(object)
    got = Counter(quarantine.where(quarantine.notna(), None).itertuples(index=False, name=None))
    assert got == want, f"missing {list((want - got).items())[:5]}, unexpected {list((got - want).items())[:5]}"
    assert stage_metrics(outcome, "ingest")["quarantined_by_reason"] == dict(expected)
    print(f"quarantined by reason: {dict(sorted(expected.items()))}")


def test_input_rows_equal_accepted_plus_quarantined_per_day(synthetic_run, synthetic_checked):
    config, summary, outcome = synthetic_run
    landing = synthetic_checked.groupby("landing_date").size()
    accepted = table_frame(config, "silver/events").groupby("run_date").size()
    quarantined = table_frame(config, "quarantine/viewing_events").groupby("run_date").size()
    assert list(landing.index) == summary.dates
    for day in summary.dates:
        assert landing[day] == accepted.get(day, 0) + quarantined.get(day, 0), day
        assert quarantined.get(day, 0) == synthetic_checked.query("landing_date == @day")["reason"].notna().sum()
    metrics = stage_metrics(outcome, "ingest")
    assert metrics["input_events"] == summary.events == int(landing.sum())
    assert metrics["accepted_events"] == int(accepted.sum())
    assert metrics["quarantined_events"] == int(quarantined.sum()) == summary.malformed_events
