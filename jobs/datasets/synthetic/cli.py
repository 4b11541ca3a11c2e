"""Command line of the generator: ``python -m jobs.datasets.synthetic --lakehouse ./lakehouse
--days 3`` writes a landing zone and prints its summary as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from datetime import date

from jobs.datasets.synthetic.landing import generate_landing
from jobs.datasets.synthetic.spec import FILE_FORMATS, SyntheticSpec, SyntheticSpecError


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
