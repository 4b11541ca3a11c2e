"""The errors a user can meet: each message says what is wrong and how to fix it; the CLI
prints the message, not a traceback."""

from __future__ import annotations

from typing import Sequence


class StageError(RuntimeError):
    """A stage cannot do its work; the message says what is wrong and how to fix it."""


class GateFailed(StageError):
    """A blocking gate (quality, representation, k-anonymity, fairness, diversity) failed:
    the run stops before publish and the last published shelves stay live.

    ``failures`` are one line each: what was checked, what was observed, what was allowed.
    """

    def __init__(self, gate: str, failures: Sequence[str]):
        self.gate = gate
        self.failures = list(failures)
        shown = "; ".join(self.failures[:10])
        more = f" (and {len(self.failures) - 10} more)" if len(self.failures) > 10 else ""
        super().__init__(f"gate {gate!r} failed: {shown}{more}")


class ErasureError(StageError):
    """An erasure cannot be done or did not complete; the message says what to do."""


class KeyMismatch(StageError):
    """The configured pseudonymization key is not the one of the lakehouse's pseudonym
    space: used, it would give known users new keys (and erased users a way back)."""
