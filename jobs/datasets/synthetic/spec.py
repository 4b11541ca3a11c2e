"""What a synthetic landing zone is made of (:class:`SyntheticSpec`, validated on
construction) and what a generation wrote (:class:`LandingSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

FILE_FORMATS = ("jsonl", "csv", "parquet")


class SyntheticSpecError(ValueError):
    """A synthetic data specification is invalid; the message names the field."""


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 2000
    items: int = 500
    events_per_day: int = 5000
    days: int = 3
    end_date: date = date(2026, 11, 25)  # last day generated; days run end_date-days+1 .. end_date
    seed: int = 42
    malformed_share: float = 0.01
    file_format: str = "jsonl"  # jsonl | csv | parquet
    chunk_rows: int = 200_000
    erasure_requests: int = 0  # > 0 writes landing/erasure_requests/ with that many requests
    rows_per_file: int = 1_000_000  # a day's events roll over to a new part file past this

    def __post_init__(self) -> None:
        for name in ("users", "items", "events_per_day", "days", "chunk_rows", "rows_per_file"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SyntheticSpecError(f"SyntheticSpec.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.end_date, date):
            raise SyntheticSpecError(f"SyntheticSpec.end_date must be a datetime.date, got {self.end_date!r}")
        if not 0.0 <= self.malformed_share < 0.5:
            raise SyntheticSpecError(
                f"SyntheticSpec.malformed_share must be in [0, 0.5), got {self.malformed_share!r}"
            )
        if self.file_format not in FILE_FORMATS:
            raise SyntheticSpecError(
                f"SyntheticSpec.file_format must be one of {', '.join(FILE_FORMATS)}, got {self.file_format!r}"
            )
        if not 0 <= self.erasure_requests <= self.users:
            raise SyntheticSpecError(
                f"SyntheticSpec.erasure_requests must be between 0 and users ({self.users}), "
                f"got {self.erasure_requests!r}"
            )

    @property
    def dates(self) -> list[str]:
        first = self.end_date - timedelta(days=self.days - 1)
        return [(first + timedelta(days=i)).isoformat() for i in range(self.days)]


@dataclass(frozen=True)
class LandingSummary:
    root: str  # the landing directory, <lakehouse>/landing
    dates: list[str]  # the day partitions written, ascending
    users: int
    items: int
    events: int  # rows written to viewing_events, malformed ones included
    malformed_events: int
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    file_format: str = "jsonl"
