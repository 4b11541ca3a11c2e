"""One writing command at a time on a lakehouse: ``_fairshelf/lock.json``.

The CLI's commands that write (``run``, ``backfill``, ``demo``, ``erase``, ``rollback``,
``rotate-key``) take the lock before Spark starts and give it back when they end, however
they end. The file is created exclusively (O_EXCL) and names its holder: the command, its
process id, host and start time. A second writing command is refused with a message
naming the holder, instead of racing it (an erasure vacuums with zero retention, a run
restores tables it changed when it fails).

A run under Airflow does not take the lock (its stages run as separate tasks); it keeps a
run marker with a heartbeat (``jobs.lake.run_marker``), and a marker with a fresh
heartbeat refuses the lock too.

Stale locks: a lock whose process is gone on this host (killed, the machine rebooted
into the same name) is taken over, and the command says so. A lock held from another
host cannot be checked from here: the message says to make sure that command has ended,
then remove the file. Local and shared-file-system lakehouses only; on object stores
(s3://, abfss://) only the run marker protects a run.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from jobs.core.config import Config
from jobs.core.dates import utc_now
from jobs.core.errors import StageError
from jobs.lake import run_marker

LOCK_FILE = "_fairshelf/lock.json"


class LakehouseLocked(StageError):
    """Another command writes the lakehouse; the message names it and what to do."""


@dataclass(frozen=True)
class Holder:
    command: str  # e.g. "run --date 2026-11-25"
    pid: int
    host: str
    started_at: str

    def describe(self) -> str:
        return f"`fairshelf {self.command}` (pid {self.pid} on {self.host}, since {self.started_at})"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def is_stale(holder: Holder, host: str, alive: Callable[[int], bool] = process_alive) -> bool:
    """Whether ``holder`` is known to be gone: only a process of this host can be checked."""
    return holder.host == host and not alive(holder.pid)


def read_holder(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def acquire(path: Path, me: Holder) -> Holder | None:
    """Create the lock for ``me``; returns the stale holder it replaced (or None). Raises
    LakehouseLocked naming a live holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replaced = None
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(path)
            if holder is None:
                raise LakehouseLocked(f"the lakehouse lock {path} cannot be read: if no fairshelf command is "
                                      "writing this lakehouse, remove the file and run again") from None
            if not is_stale(holder, me.host):
                raise LakehouseLocked(
                    f"the lakehouse is in use by {holder.describe()}: wait for it to finish and run again. If "
                    f"that process is gone (another host cannot be checked from here), remove {path}") from None
            path.unlink(missing_ok=True)
            replaced = holder
            continue
        with os.fdopen(descriptor, "w") as sink:
            json.dump(asdict(me), sink)
        return replaced
    raise LakehouseLocked(f"another command took the lakehouse lock {path} at the same time; run again")


def release(path: Path, me: Holder) -> None:
    """Remove the lock if it is still ``me``'s."""
    if read_holder(path) == me:
        path.unlink(missing_ok=True)


def check_no_live_run(config: Config) -> None:
    """LakehouseLocked when a run (under Airflow, say) has a marker with a fresh heartbeat."""
    now = utc_now()
    live = [m for m in run_marker.read_markers(config) if not m.is_stale(now)]
    if live:
        marker = live[0]
        raise LakehouseLocked(
            f"run {marker.run_id} (date {marker.run_date}, stage {marker.last_stage}) is writing "
            f"{config.lakehouse}: its last heartbeat was at {marker.heartbeat_at}. Wait for it to finish; if its "
            f"process is gone, the lakehouse is free once {run_marker.STALE_AFTER} have passed without a heartbeat")


@contextmanager
def lakehouse_lock(config: Config, command: str,
                   on_takeover: Callable[[Holder], None] | None = None) -> Iterator[Holder | None]:
    """Hold the lakehouse's lock while the block runs (module doc); None on object stores."""
    if "://" in config.lakehouse:
        check_no_live_run(config)
        yield None
        return
    path = Path(config.lakehouse) / LOCK_FILE
    me = Holder(command, os.getpid(), socket.gethostname(), utc_now().isoformat())
    replaced = acquire(path, me)
    try:
        if replaced is not None and on_takeover is not None:
            on_takeover(replaced)
        check_no_live_run(config)
        yield me
    finally:
        release(path, me)
