"""The MovieLens-100K importer: checked against the raw files, read here independently."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from jobs.core.schemas import LANDING
from jobs.datasets.movielens import MovieLensError, import_movielens, provider_group_for


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def raw_lines(path: Path) -> list[list[str]]:
    return [line.split("|") for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def imported(movielens_dir, tmp_path_factory):
    lakehouse = tmp_path_factory.mktemp("movielens")
    calls = []
    summary = import_movielens(movielens_dir, lakehouse, progress=lambda *call: calls.append(call))
    return summary, Path(summary.root), calls


@pytest.fixture(scope="module")
def catalog(imported) -> dict[str, dict]:
    _, root, _ = imported
    return {row["content_id"]: row for row in read_jsonl(root / "catalog" / "catalog.jsonl")}


@pytest.fixture(scope="module")
def users(imported) -> dict[str, dict]:
    _, root, _ = imported
    return {row["account_id"]: row for row in read_jsonl(root / "users" / "users.jsonl")}


pytestmark = pytest.mark.movielens


def test_every_rating_lands_in_the_partition_of_its_utc_day(imported, movielens_dir):
    summary, root, calls = imported
    ratings = [line.split("\t") for line in (movielens_dir / "u.data").read_text().splitlines()]
    days = {datetime.fromtimestamp(int(r[3]), timezone.utc).date().isoformat() for r in ratings}

    assert (summary.events, summary.users, summary.items, summary.malformed_events) == (100_000, 943, 1682, 0)
    assert summary.dates == sorted(days)
    partitions = sorted((root / "viewing_events").iterdir())
    assert [p.name for p in partitions] == [f"date={d}" for d in sorted(days)]

    total, event_ids = 0, set()
    for partition in partitions:
        assert [f.name for f in partition.iterdir()] == ["part-00000.jsonl"]
        rows = read_jsonl(partition / "part-00000.jsonl")
        assert all(list(row) == LANDING["viewing_events"].fieldNames() for row in rows)
        assert {row["started_at"][:10] for row in rows} == {partition.name.removeprefix("date=")}
        total += len(rows)
        event_ids.update(row["event_id"] for row in rows)
    assert total == len(event_ids) == len(ratings) == 100_000
    assert calls[-1] == ("viewing_events", 100_000, 100_000)


def test_a_rating_becomes_a_view_whose_length_follows_the_rating(imported, movielens_dir):
    _, root, _ = imported
    user, item, rating, ts = (movielens_dir / "u.data").read_text().splitlines()[0].split("\t")
    started = datetime.fromtimestamp(int(ts), timezone.utc)
    rows = read_jsonl(root / "viewing_events" / f"date={started.date()}" / "part-00000.jsonl")
    (event,) = [r for r in rows if r["account_id"] == f"ml-{user}" and r["content_id"] == f"ml-{item}"]
    assert event["started_at"] == started.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert event["seconds_watched"] == str(round(int(rating) / 5 * 6000))
    device_and_place = (event["device_id"], event["device_type"], event["ip_address"], event["country"])
    assert device_and_place == (None, None, None, "US")
    assert rows == sorted(rows, key=lambda r: r["started_at"])


@pytest.mark.parametrize("item_id", ["1", "2", "267", "1682"])
def test_catalog_rows_match_the_raw_item_rows(catalog, movielens_dir, item_id):
    genre_names = [name for name, _ in sorted(raw_lines(movielens_dir / "u.genre"), key=lambda g: int(g[1]))]
    raw = next(row for row in raw_lines(movielens_dir / "u.item") if row[0] == item_id)
    flags = raw[5:]
    assert len(flags) == len(genre_names) == 19
    expected_genres = [
        genre for genre, flag in zip(genre_names, flags, strict=True) if flag == "1" and genre != "unknown"
    ]

    row = catalog[f"ml-{item_id}"]
    assert list(row) == LANDING["catalog"].fieldNames()
    assert row["title"] == raw[1]
    assert row["genres"] == ("|".join(expected_genres) or None)
    assert row["release_year"] == (raw[2][-4:] or None)
    assert (row["provider"], row["original_language"], row["duration_seconds"]) == ("MovieLens", "en", "6000")


def test_toy_story_is_an_animated_childrens_comedy(catalog):
    assert catalog["ml-1"]["genres"] == "Animation|Children's|Comedy"  # the well-known labels
    assert catalog["ml-1"]["title"] == "Toy Story (1995)"


def test_provider_groups_follow_the_release_year(catalog):
    years = (1926, 1969, 1970, 1989, 1990, 1994, 1995, 1998, None)
    assert [provider_group_for(y) for y in years] == [
        "classic", "classic", "catalog", "catalog", "recent", "recent", "new_release", "new_release", "catalog"
    ]  # fmt: skip
    groups = {}
    for row in catalog.values():
        groups[row["provider_group"]] = groups.get(row["provider_group"], 0) + 1
        if row["release_year"] is not None:
            assert row["provider_group"] == provider_group_for(int(row["release_year"]))
    assert set(groups) == {"classic", "catalog", "recent", "new_release"}
    assert max(groups.values()) > 3 * min(groups.values())  # uneven, as a fairness audit needs


def test_profiles_keep_the_quasi_identifiers_and_hold_no_direct_ones(users, movielens_dir):
    raw_users = raw_lines(movielens_dir / "u.user")
    assert len(users) == len(raw_users) == 943
    for user_id, age, gender, occupation, zip_code in raw_users[:50] + raw_users[-50:]:
        row = users[f"ml-{user_id}"]
        assert list(row) == LANDING["users"].fieldNames()
        assert row["birth_date"] == f"{1998 - int(age)}-01-01"
        quasi_identifiers = (row["gender"], row["occupation"], row["postcode"], row["country"])
        assert quasi_identifiers == (gender, occupation, zip_code, "US")
        assert (row["email"], row["full_name"]) == (None, None)
        assert (row["consent_personalization"], row["consent_analytics"]) == ("true", "true")
        assert "1997-09-19" < row["signup_date"] < "1998-04-23"


# --- the source is checked ----------------------------------------------------------------


def write_mini_movielens(directory: Path, data: str = "1\t10\t4\t881279999\n2\t10\t1\t881280000\n") -> Path:
    """A three-file MovieLens-shaped source, small enough to reason about."""
    directory.mkdir(parents=True, exist_ok=True)
    genres = ["unknown", "Action", "Comedy"]
    (directory / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(genres)) + "\n")
    (directory / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    (directory / "u.item").write_bytes("10|Amélie (2001)|01-Jan-2001||http://x|0|0|1\n".encode("latin-1"))
    (directory / "u.data").write_text(data)
    return directory


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_a_small_source_is_mapped_deterministically(tmp_path):
    source = write_mini_movielens(tmp_path / "ml")
    first = import_movielens(source, tmp_path / "a")
    second = import_movielens(source, tmp_path / "b")
    assert tree_digest(Path(first.root)) == tree_digest(Path(second.root))
    # 881279999 is the last second of 1997-12-04 (UTC), 881280000 the first of 1997-12-05.
    assert first.dates == ["1997-12-04", "1997-12-05"]
    (item,) = read_jsonl(Path(first.root) / "catalog" / "catalog.jsonl")
    assert (item["title"], item["genres"], item["provider_group"]) == ("Amélie (2001)", "Comedy", "new_release")
    (late,) = read_jsonl(Path(first.root) / "viewing_events" / "date=1997-12-05" / "part-00000.jsonl")
    assert (late["account_id"], late["started_at"], late["seconds_watched"]) == (
        "ml-2", "1997-12-05T00:00:00Z", "1200"
    )  # fmt: skip


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(MovieLensError, match="directory not found: .*nowhere"):
        import_movielens(tmp_path / "nowhere", tmp_path / "lakehouse")


@pytest.mark.parametrize("missing", ["u.data", "u.user", "u.item", "u.genre"])
def test_a_missing_file_is_named_and_nothing_is_written(tmp_path, missing):
    source = write_mini_movielens(tmp_path / "ml")
    (source / missing).unlink()
    with pytest.raises(MovieLensError, match=rf"missing in .*: {missing}$"):
        import_movielens(source, tmp_path / "lakehouse")
    assert not (tmp_path / "lakehouse").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("1\t10\tfour\t881250949\n", "u.data is not a MovieLens-100K file"),
        ("1\t10\t4\n", "u.data has 3 columns, expected 4"),
        ("3\t10\t4\t881250949\n", "1 user.* missing from u.user"),
        ("1\t99\t4\t881250949\n", "1 item.* missing from u.item"),
    ],
)
def test_a_malformed_source_is_rejected_before_anything_is_written(tmp_path, data, message):
    source = write_mini_movielens(tmp_path / "ml", data=data)
    with pytest.raises(MovieLensError, match=message):
        import_movielens(source, tmp_path / "lakehouse")
    assert not (tmp_path / "lakehouse").exists()
