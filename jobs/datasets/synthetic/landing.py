"""The synthetic landing zone: catalog, users, viewing events by day partition and
(optionally) erasure requests, built, corrupted and written under ``<lakehouse>/landing``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np

from jobs.datasets.synthetic.builders import (
    build_catalog,
    build_erasure_requests,
    build_event_chunk,
    build_users,
    event_chunk_rng,
)
from jobs.datasets.synthetic.corruption import MALFORMED_KINDS, malformed_plan
from jobs.datasets.synthetic.spec import LandingSummary, SyntheticSpec
from jobs.datasets.synthetic.writers import (
    LandingFileWriter,
    landing_schema,
    remove_landing_files,
    replace_directory,
    write_landing_file,
)

ProgressCallback = Callable[[str, int, int], None]


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
    for day_index, (day, chunks) in enumerate(zip(spec.dates, malformed_plan(spec), strict=True)):
        day_dir = replace_directory(root / "viewing_events" / f"date={day}")
        writer: LandingFileWriter | None = None
        try:
            for chunk_index, (rows, kinds) in enumerate(chunks):
                if chunk_index % chunks_per_file == 0:
                    if writer is not None:
                        writer.close()
                    part = chunk_index // chunks_per_file
                    writer = LandingFileWriter(day_dir / f"part-{part:05d}.{ext}", events_schema, ext)
                rng = event_chunk_rng(spec, day_index, chunk_index)
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
