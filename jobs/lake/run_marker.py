"""A run in progress, on disk: ``_fairshelf/runs_in_progress/<run id>.json``.

A failed or killed run must change neither silver nor gold. Each stage writes its tables
as it goes (a later stage reads them), so the run keeps a marker: the version of every
table once the run's erasure stage is done (``versions_before``; erasures are durable on
purpose), the last stage started and a heartbeat. When the run fails, every table whose
version moved is restored to that version in a new commit (history kept), tables the run
created are removed, and its model folder goes (``undo_run``); the records of runs and
their gate evidence (``KEPT_TABLES``) stay, so the report can say why the run failed. A run that was killed
leaves its marker; the next run finds it without a heartbeat for ``STALE_AFTER``, records
it as failed ("interrupted") and undoes it the same way, before doing anything else. A
marker with a fresh heartbeat means another run is writing: the new run refuses to start.

The marker holds run ids, stage names and table versions: nothing about a user.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator

import pyarrow.fs as pafs

from jobs.core.config import Config
from jobs.core.dates import utc_now
from jobs.lake.delta import CommitInfo, TableError, list_tables, normalize_uri, restore_table, table_version

MARKER_DIR = "_fairshelf/runs_in_progress"
STALE_AFTER = timedelta(minutes=10)  # no heartbeat for this long: the run is dead
HEARTBEAT_SECONDS = 30.0
# Records of what a run did and checked, kept for a failed run too (by run id): the runs,
# the lineage, and the gate evidence that says why it failed. No later night takes them as
# input (the quality stage reads only observations that passed).
KEPT_TABLES = ("gold/runs", "gold/lineage", "gold/quality_results", "gold/output_quality_results", "gold/audit")


@dataclass
class RunMarker:
    run_id: str
    run_date: str
    started_at: str
    heartbeat_at: str
    last_stage: str | None = None
    versions_before: dict[str, int] | None = None  # None until the erasure stage is done

    def is_stale(self, now: datetime) -> bool:
        return now - datetime.fromisoformat(self.heartbeat_at) > STALE_AFTER


def _root(config: Config) -> tuple[pafs.FileSystem, str]:
    fs, root = pafs.FileSystem.from_uri(normalize_uri(config.lakehouse))
    return fs, f"{root}/{MARKER_DIR}"


def write_marker(config: Config, marker: RunMarker) -> None:
    fs, folder = _root(config)
    fs.create_dir(folder, recursive=True)
    path, temporary = f"{folder}/{marker.run_id}.json", f"{folder}/.{marker.run_id}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(temporary) as sink:
        sink.write(json.dumps(asdict(marker), indent=2, sort_keys=True).encode())
    fs.move(temporary, path)


def read_markers(config: Config) -> list[RunMarker]:
    fs, folder = _root(config)
    found = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    markers = []
    for info in found:
        if info.type == pafs.FileType.File and info.base_name.endswith(".json") and not info.base_name.startswith("."):
            with fs.open_input_stream(info.path) as source:
                markers.append(RunMarker(**json.loads(source.read())))
    return sorted(markers, key=lambda m: m.started_at)


def read_marker(config: Config, run_id: str) -> RunMarker | None:
    return next((m for m in read_markers(config) if m.run_id == run_id), None)


def remove_marker(config: Config, run_id: str) -> None:
    fs, folder = _root(config)
    path = f"{folder}/{run_id}.json"
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def table_versions(config: Config) -> dict[str, int]:
    """The current version of every table of the lakehouse."""
    return {info.name: info.version for info in list_tables(config.lakehouse)}


def begin_or_resume(config: Config, run_id: str, run_date: str) -> RunMarker:
    """The run's marker (created if new; a retried task resumes it)."""
    marker = read_marker(config, run_id)
    if marker is None:
        now = utc_now().isoformat()
        marker = RunMarker(run_id, run_date, now, now)
        write_marker(config, marker)
    return marker


def beat(config: Config, run_id: str, stage: str | None = None) -> None:
    """Refresh the run's heartbeat (and its last stage)."""
    marker = read_marker(config, run_id)
    if marker is not None:
        marker.heartbeat_at = utc_now().isoformat()
        marker.last_stage = stage or marker.last_stage
        write_marker(config, marker)


def snapshot(config: Config, run_id: str) -> None:
    """Record every table's version now: what a failure of the run restores."""
    marker = read_marker(config, run_id)
    if marker is not None and marker.versions_before is None:
        marker.versions_before = table_versions(config)
        write_marker(config, marker)


class heartbeat:  # noqa: N801 (a context manager used like a function)
    """``with heartbeat(config, run_id, stage):`` refreshes the marker every
    ``HEARTBEAT_SECONDS`` while the stage runs, so a long stage never looks dead."""

    def __init__(self, config: Config, run_id: str, stage: str):
        self.config, self.run_id, self.stage = config, run_id, stage
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"fairshelf-heartbeat-{run_id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                beat(self.config, self.run_id)
            except OSError:  # a storage hiccup: the next beat retries
                pass

    def __enter__(self) -> "heartbeat":
        beat(self.config, self.run_id, self.stage)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def undo_run(config: Config, marker: RunMarker, commit: CommitInfo) -> dict[str, Any]:
    """Put every table back as it was before the run's stages wrote (see the module doc)
    and remove the run's model folder. Returns what was done (table -> version restored,
    tables removed, model folder removed)."""
    undone: dict[str, Any] = {"restored": {}, "removed_tables": [], "model_dir_removed": False}
    fs, root = pafs.FileSystem.from_uri(normalize_uri(config.lakehouse))
    if marker.versions_before is not None:
        for info in list_tables(config.lakehouse):
            if info.name in KEPT_TABLES:
                continue
            before = marker.versions_before.get(info.name)
            if before is None:  # the run created it
                fs.delete_dir(f"{root}/{info.name}")
                undone["removed_tables"].append(info.name)
            elif before is not None and table_version(info.uri) != before:
                try:
                    undone["restored"][info.name] = restore_table(info.uri, before, commit=commit)
                except TableError as exc:
                    raise TableError(f"cannot undo run {marker.run_id} in {info.name}: {exc}") from exc
    model_dir = f"{root}/models/{marker.run_id}"
    if fs.get_file_info(model_dir).type == pafs.FileType.Directory:
        fs.delete_dir(model_dir)
        undone["model_dir_removed"] = True
    return undone


def other_runs(config: Config, run_id: str) -> Iterator[RunMarker]:
    return (m for m in read_markers(config) if m.run_id != run_id)
