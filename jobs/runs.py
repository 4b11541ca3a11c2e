"""Run identity: how a run id is made, and the run's bookkeeping row."""

from __future__ import annotations

import secrets
from datetime import date, datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id(run_date: date, prefix: str = "manual") -> str:
    """``manual__2026-11-25__20261126T010203Z__1a2b``: sortable, unique, names its date."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}__{run_date.isoformat()}__{stamp}__{secrets.token_hex(2)}"
