"""The errors a user can meet: each message says what is wrong and how to fix it; the CLI
prints the message, not a traceback."""

from __future__ import annotations

import re
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


# Failures a user causes that surface as another library's exception (Spark's JVM, Arrow,
# the file system): a pattern of the exception's text, and what to say instead.
KNOWN_FAILURES = (
    (r"Permission denied|Read-only file system|AccessDeniedException|Operation not permitted",
     ("no permission to write (or read) the lakehouse: {detail}. Make it writable by this user, "
      "or set FAIRSHELF_LAKEHOUSE to one that is")),
    (r"[Mm]agic bytes not found|is not a Parquet file|Not a Parquet file",
     ("a file is not valid Parquet: {detail}. Replace it, or give it the extension of its "
      "real format (.jsonl, .csv)")),
    (r"No space left on device", "the disk is full: {detail}. Free some space and run again"),
)
_JAVA_ERROR = re.compile(r"^(?::\s*)?(?:Caused by: )?([\w.$]+(?:Exception|Error))(?::\s*(.*))?$")
_STACK_FRAME = re.compile(r"^\s*\d+: \S|^\s+at \S|^\s*\.\.\. \d+ more")


def without_stack(message: str, max_lines: int = 8) -> str:
    """A message without the stack frames a library appended to it (Rust's ``0: <unknown>``,
    Java's ``at org...``) and without blank lines, at most ``max_lines`` lines."""
    lines = [line.rstrip() for line in message.splitlines() if line.strip() and not _STACK_FRAME.match(line)]
    return "\n".join(lines[:max_lines] + (["…"] if len(lines) > max_lines else []))


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The line of an exception's text that says what happened: for a JVM error (whose text
    is the whole Java stack), its first ``SomeException: message`` line; else the first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    java = next((m for m in map(_JAVA_ERROR.match, lines) if m and m.group(2)), None)
    line = f"{java.group(1).rsplit('.', 1)[-1]}: {java.group(2)}" if java else (lines[0] if lines else "")
    line = line or type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def explain(exc: BaseException) -> str:
    """One line for an exception fairshelf did not raise itself: what a user can do about a
    known failure (``KNOWN_FAILURES``), else the exception's type and first line."""
    text, detail = str(exc), first_line(exc)
    for pattern, advice in KNOWN_FAILURES:
        if re.search(pattern, text):
            return advice.format(detail=detail)
    name = type(exc).__name__
    return detail if detail.startswith(name) else f"{name}: {detail}"
