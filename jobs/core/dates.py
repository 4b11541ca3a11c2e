"""Dates and times: the UTC clock and the days of a window."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone


def days_up_to(run_date: date, days: int) -> list[str]:
    """The ISO dates of the ``days`` days ending on ``run_date``, oldest first."""
    return [(run_date - timedelta(days=n)).isoformat() for n in reversed(range(days))]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
