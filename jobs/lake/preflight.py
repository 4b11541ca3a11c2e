"""What a command checks before Spark starts, so that a mistake is reported in a second:
the lakehouse is there (or, for the commands that make one, can be made) and is writable,
the landing partition of each run date holds data, and Java is installed. (The
configuration and the pseudonymization key are checked by ``jobs.core.config`` and
``jobs.lake.pseudonym_space``.)

Each check raises fairshelf's own error naming the problem and the fix, and creates
nothing: a mistyped FAIRSHELF_LAKEHOUSE leaves no folder behind.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

from jobs.core.config import Config, ConfigError
from jobs.core.errors import StageError
from jobs.lake.landing import LANDING_FORMATS, events_path, has_landing_data, landing_event_dates

MAKE_ONE = "`fairshelf demo` or `fairshelf import-movielens PATH`"


def check_lakehouse(lakehouse: str, *, writes: bool = True, creates: bool = False) -> None:
    """ConfigError unless the lakehouse exists (is writable, for a command that ``writes``);
    a command that ``creates`` lakehouses needs only a writable folder above a missing one.
    Remote URIs (s3://, abfss://, ...) are left to the storage layer."""
    if "://" in lakehouse:
        return
    root = Path(lakehouse).absolute()
    if root.is_dir():
        if writes:
            _check_writable(root)
        return
    if root.exists():
        raise ConfigError(f"the lakehouse {root} is a file, not a folder: set FAIRSHELF_LAKEHOUSE "
                          "(or `lakehouse` in the configuration file) to a folder")
    if not creates:
        raise ConfigError(f"the lakehouse {root} does not exist: check FAIRSHELF_LAKEHOUSE (or `lakehouse` "
                          f"in the configuration file), or make one with {MAKE_ONE}")
    parent = next(p for p in root.parents if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create the lakehouse {root}: {parent} is not a writable folder; "
                          "set FAIRSHELF_LAKEHOUSE to a place where you can write")


def _check_writable(root: Path) -> None:
    """Write and remove a file: permission bits do not tell (root, read-only mounts, ACLs)."""
    try:
        with tempfile.TemporaryFile(dir=root, prefix=".fairshelf-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(f"the lakehouse {root} is not writable ({exc.strerror or exc}): make it writable "
                          "by this user, or set FAIRSHELF_LAKEHOUSE to one that is") from None


def check_landing(config: Config, run_dates: list[date]) -> None:
    """StageError unless the viewing-events partition of every date holds a data file."""
    missing = [day for day in run_dates if not has_landing_data(events_path(config, day.isoformat()))]
    if not missing:
        return
    landed = landing_event_dates(config)
    held = (f"landing holds {landed[0]} to {landed[-1]} ({len(landed)} day{'s' if len(landed) != 1 else ''})" if landed
            else f"landing holds no viewing events (make some with {MAKE_ONE})")
    days = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    raise StageError(
        f"no landing data for {days}: {events_path(config, missing[0].isoformat())} is missing or has no "
        f"{'/'.join(sorted(LANDING_FORMATS))} file; {held}. Land the day's viewing events, or run a date that has them")


def check_java(java: str | None) -> None:
    """ConfigError when Spark would find no Java (``jobs.core.config.java_executable``)."""
    if java is None:
        raise ConfigError("no Java found (neither $JAVA_HOME/bin/java nor `java` on PATH): Spark needs "
                          "Java 17; install it and put `java` on PATH, or set JAVA_HOME to its folder")
