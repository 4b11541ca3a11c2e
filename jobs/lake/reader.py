"""Reading the published shelves, for downstream services: no Spark, only ``deltalake``.

    from jobs.lake import reader
    reader.shelf_for("/data/lakehouse", user_key)          # the user's shelf, latest run
    reader.recommendations("/data/lakehouse").to_pandas()  # every shelf, as pandas
    reader.latest_publication("/data/lakehouse")["run_date"]

How publication works. Delta has no multi-table transactions, so a run's tables are
written by its stages first, and the run becomes visible in ONE step: the append of its
row to ``gold/runs`` (status ``succeeded``), whose ``published_json`` records, for every
published table, the exact Delta version to read and the run whose rows to take:
``{"gold/recommendations": {"version": 12, "run_id": "...", "run_date": "..."}, ...}``.
Readers take the live publication and read each table AT its recorded version, so they
see the previous run or the new one, never a mix, never half; a run that fails anywhere
before that append leaves the previous publication live.

The live publication is the ``succeeded`` row of ``gold/runs`` with the latest
``run_date``, then the latest ``finished_at``: a rerun of the newest date replaces it, a
backfill of older dates does not (``publication_for(lakehouse, run_date)`` reads those).
Rows have a ``kind``:

- ``run``: a nightly run (``failed`` ones publish nothing);
- ``erasure``: an erasure re-pointed the live publication at the post-erasure versions of
  the tables it rewrote (it deletes the versions pinned before);
- ``rollback``: ``fairshelf rollback --table T --to-version V`` restored T's version V as
  a new version and re-pointed T there.

``latest_succeeded_run`` is the run whose shelves are live (the ``run_id`` a re-pointing
row still serves).

A user's shelf (``resolve_shelf``): the user's rows of ``gold/recommendations``, by rank
(only users with personalization consent and viewing history have one); otherwise the
default shelf of the user's region in ``gold/default_recommendations`` (the generalized
region of ``silver/user_features``; ``*`` where it was suppressed for k-anonymity);
otherwise region ``ALL``.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from jobs.lake.delta import TableError, normalize_uri, read_arrow, table_exists

ALL_REGIONS = "ALL"
UNKNOWN_REGION = "*"  # users whose region is null (suppressed for k-anonymity)


class NothingPublished(TableError):
    """No succeeded run is recorded in the lakehouse (or none for the date asked)."""


def _uri(lakehouse: str, table: str) -> str:
    return f"{normalize_uri(lakehouse)}/{table}"


def read_runs(lakehouse: str) -> pa.Table:
    uri = _uri(lakehouse, "gold/runs")
    if not table_exists(uri):
        raise NothingPublished(f"no gold/runs table under {lakehouse}: nothing published yet "
                               "(run `fairshelf run --date D` first)")
    return read_arrow(uri)


def choose_publication(runs: pa.Table, run_date: str | None = None) -> dict[str, Any] | None:
    """The live publication among ``gold/runs`` rows (module doc), or the latest one of
    ``run_date``; None when there is none."""
    done = runs.filter(pc.equal(runs.column("status"), "succeeded"))
    if run_date is not None:
        done = done.filter(pc.equal(done.column("run_date"), run_date))
    if done.num_rows == 0:
        return None
    order = [("run_date", "descending"), ("finished_at", "descending")]
    return done.sort_by(order).slice(0, 1).to_pylist()[0]


def latest_publication(lakehouse: str) -> dict[str, Any]:
    """The live publication: its gold/runs row, ``published`` (the parsed
    ``published_json``) added. Raises NothingPublished when no run succeeded yet."""
    return publication_for(lakehouse)


def publication_for(lakehouse: str, run_date: str | None = None) -> dict[str, Any]:
    """The live publication, or the latest publication of ``run_date`` (YYYY-MM-DD)."""
    row = choose_publication(read_runs(lakehouse), run_date)
    if row is None:
        what = f"for {run_date}" if run_date else "yet"
        raise NothingPublished(f"no succeeded run {what} in {lakehouse}/gold/runs")
    return {**row, "published": json.loads(row["published_json"] or "{}")}


def latest_succeeded_run(runs: pa.Table) -> str | None:
    """The run id whose shelves are live: the live publication's recommendations run."""
    row = choose_publication(runs)
    if row is None:
        return None
    published = json.loads(row["published_json"] or "{}")
    return published.get("gold/recommendations", {}).get("run_id", row["run_id"])


def published_table(lakehouse: str, publication: dict[str, Any], table: str, filters=None) -> pa.Table:
    """``table`` as the publication pins it: at its version, only its run's rows (or its
    date's partition where the table has no run id)."""
    pinned = publication["published"].get(table)
    if pinned is None:
        raise NothingPublished(f"publication {publication['run_id']} does not publish {table}")
    data = read_arrow(_uri(lakehouse, table), version=pinned["version"],
                      filters=[("run_date", "=", pinned["run_date"]), *(filters or [])])
    if "run_id" in data.column_names:
        data = data.filter(pc.equal(data.column("run_id"), pinned["run_id"]))
    return data


def recommendations(lakehouse: str, run_date: str | None = None) -> pa.Table:
    """Every personal shelf of the live publication (or of ``run_date``'s), as a pyarrow
    Table (``.to_pandas()`` for pandas): user_key, rank, content_id, score, reason, ..."""
    return published_table(lakehouse, publication_for(lakehouse, run_date), "gold/recommendations")


def region_of(lakehouse: str, publication: dict[str, Any], user_key: str) -> str:
    """The shelf region of a user in the published user features: their generalized region,
    ``UNKNOWN_REGION`` where it was suppressed, ``ALL_REGIONS`` for a user the publication
    does not know (new since the run, or erased)."""
    if "silver/user_features" not in publication["published"]:
        return ALL_REGIONS
    found = published_table(lakehouse, publication, "silver/user_features", [("user_key", "=", user_key)])
    if not found.num_rows:
        return ALL_REGIONS
    return found.column("region")[0].as_py() or UNKNOWN_REGION


def resolve_shelf(personal: pa.Table, defaults: pa.Table, user_key: str,
                  region: str | None) -> list[dict[str, Any]]:
    """A user's shelf from one publication's tables (module doc): rows by rank with
    ``rank``, ``content_id``, ``reason`` and ``shelf`` ("personal", the region, "ALL")."""

    def rows(table: pa.Table, column: str, value: str, shelf: str) -> list[dict[str, Any]]:
        found = table.filter(pc.equal(table.column(column), value)).sort_by("rank")
        return [{**row, "shelf": shelf} for row in found.select(["rank", "content_id", "reason"]).to_pylist()]

    region = UNKNOWN_REGION if region is None else region
    return (
        rows(personal, "user_key", user_key, "personal")
        or rows(defaults, "region", region, region)
        or rows(defaults, "region", ALL_REGIONS, ALL_REGIONS)
    )


def shelf_for(lakehouse: str, user_key: str, region: str | None = None,
              run_date: str | None = None) -> list[dict[str, Any]]:
    """The shelf of the pseudonymous ``user_key`` in the live publication (or ``run_date``'s).

    ``region`` defaults to the user's region in the published user features
    (``region_of``: a user the run did not know gets region ``ALL``'s shelf). Empty when
    nothing is published.
    """
    try:
        publication = publication_for(lakehouse, run_date)
    except NothingPublished:
        return []
    personal = published_table(lakehouse, publication, "gold/recommendations", [("user_key", "=", user_key)])
    defaults = published_table(lakehouse, publication, "gold/default_recommendations")
    if region is None:
        region = region_of(lakehouse, publication, user_key)
    return resolve_shelf(personal, defaults, user_key, region)


def read_shelf(config, user_key: str, region: str | None) -> list[dict[str, Any]]:
    """``shelf_for`` with a fairshelf Config (the lakehouse it names)."""
    return shelf_for(config.lakehouse, user_key, region)
