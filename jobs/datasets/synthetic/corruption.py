"""The malformed viewing events injected on purpose: ``malformed_share`` of the events, in
the eight kinds of :data:`MALFORMED_KINDS` spread evenly, each row with exactly one defect;
duplicates are exact copies of a valid row of the same chunk (same ``event_id``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.datasets.synthetic.formatting import timestamp_strings
from jobs.datasets.synthetic.spec import SyntheticSpec

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

MAX_PLAUSIBLE_SECONDS = 6 * 3600

UNPARSEABLE_TIMESTAMPS = ("25/11/2026 20:15", "not-a-date", "2026-13-45T99:00:00Z", "yesterday evening", "1764101703x")
NON_NUMERIC_SECONDS = ("n/a", "12m30s", "abc", "1,234", "forty")


def corrupt(
    table: pa.Table,
    rng: np.random.Generator,
    kinds: np.ndarray,
    started: np.ndarray,
    duration: np.ndarray,
    items: int,
) -> pa.Table:
    """``table`` (valid events) with ``len(kinds)`` distinct rows given one defect each, of the
    kinds ``kinds`` (indices into MALFORMED_KINDS); ``started`` and ``duration`` are the
    rows' start (epoch seconds) and their title's duration, ``items`` the catalog size."""
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


def malformed_plan(spec: SyntheticSpec) -> list[list[tuple[int, np.ndarray]]]:
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
