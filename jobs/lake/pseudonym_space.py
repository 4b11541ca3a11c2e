"""One pseudonym space per lakehouse.

Every user key in a lakehouse is HMAC-SHA256(key, account id) with ONE key. A run with
another key would give every viewer a second pseudonym, so history would no longer join,
and a viewer erased under the old key would come back under a new one (the erasure log
holds old pseudonyms). So the lakehouse records the fingerprint of its key at its first
run (``_fairshelf/pseudonym_space.json``, never the key) and every command that reads or
writes user keys checks the configured key against it first (``check_key``), before any
work, with a message that says how to proceed.

A lakehouse written before this record existed takes its space from ``gold/runs``: the
key fingerprint of its first nightly run (written to the record on the next run).
``fairshelf rotate-key`` (``jobs.orchestration.rotation``) is the one way to change it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

from jobs.core.config import Config, ConfigError
from jobs.core.dates import utc_now
from jobs.core.errors import KeyMismatch
from jobs.lake.delta import normalize_uri, read_arrow, table_exists

SPACE_FILE = "_fairshelf/pseudonym_space.json"
ROTATION_FILE = "_fairshelf/rotation.json"  # present while a key rotation is unfinished
DEMO_KEY_FILE = ".fairshelf_pseudonym_key"  # `fairshelf demo` keeps its own key here (0600)


@dataclass(frozen=True)
class PseudonymSpace:
    fingerprint: str  # Config.key_fingerprint of the lakehouse's key
    since: str  # when it was recorded (ISO time)
    recorded_by: str  # the run (or rotation) that recorded it


@dataclass
class RotationState:
    """An unfinished key rotation (``jobs.orchestration.rotation``): fingerprints, never a key."""

    from_fingerprint: str
    to_fingerprint: str
    run_id: str
    started_at: str
    tables_done: list[str] = field(default_factory=list)
    models_done: bool = False


def _file(lakehouse: str, name: str = SPACE_FILE) -> tuple[pafs.FileSystem, str]:
    fs, root = pafs.FileSystem.from_uri(normalize_uri(lakehouse))
    return fs, f"{root}/{name}"


def _read_json(lakehouse: str, name: str) -> dict | None:
    fs, path = _file(lakehouse, name)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as source:
        return json.loads(source.read())


def _write_json(lakehouse: str, name: str, data: dict) -> None:
    """Write through a temporary file, then move it over (readers never see half a file)."""
    fs, path = _file(lakehouse, name)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(temporary) as sink:
        sink.write(json.dumps(data, indent=2, sort_keys=True).encode())
    fs.move(temporary, path)


def read_rotation(lakehouse: str) -> RotationState | None:
    data = _read_json(lakehouse, ROTATION_FILE)
    return None if data is None else RotationState(**data)


def write_rotation(lakehouse: str, state: RotationState) -> None:
    _write_json(lakehouse, ROTATION_FILE, asdict(state))


def clear_rotation(lakehouse: str) -> None:
    fs, path = _file(lakehouse, ROTATION_FILE)
    fs.delete_file(path)


def read_space(lakehouse: str) -> PseudonymSpace | None:
    """The lakehouse's recorded space; for an older lakehouse without the record, the key
    of its first nightly run in gold/runs; None for a lakehouse no run has written."""
    data = _read_json(lakehouse, SPACE_FILE)
    return PseudonymSpace(**data) if data is not None else first_run_space(lakehouse)


def first_run_space(lakehouse: str) -> PseudonymSpace | None:
    uri = f"{normalize_uri(lakehouse)}/gold/runs"
    if not table_exists(uri):
        return None
    runs = read_arrow(uri).select(["run_id", "kind", "started_at", "key_fingerprint"]).to_pylist()
    nightly = [r for r in runs if r["key_fingerprint"] and r["kind"] in (None, "run")]
    if not nightly:
        return None
    first = min(nightly, key=lambda r: (r["started_at"] or "", r["run_id"]))
    return PseudonymSpace(first["key_fingerprint"], first["started_at"] or "", first["run_id"])


def write_space(lakehouse: str, space: PseudonymSpace) -> None:
    """Record ``space`` (replacing the record: only a first run and a rotation do this)."""
    _write_json(lakehouse, SPACE_FILE, asdict(space))


def demo_key_file(lakehouse: str) -> Path | None:
    """The key file `fairshelf demo` left in a local lakehouse, if there is one."""
    path = Path(normalize_uri(lakehouse)) / DEMO_KEY_FILE if "://" not in lakehouse else None
    return path if path is not None and path.is_file() else None


def with_demo_key(config: Config) -> tuple[Config, Path | None]:
    """``config`` with the key of its demo lakehouse when no key is configured, and the
    file it came from (None: the configured key, or no demo key, is used). A configured key
    always wins; outside a demo lakehouse a missing key stays ``check_key``'s error."""
    path = None if config.pseudonym_key else demo_key_file(config.lakehouse)
    if path is None:
        return config, None
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"the demo key file {path} is readable by others; run `chmod 600 {path}`")
    return config.with_key(path.read_bytes().strip()), path


def key_hint(lakehouse: str) -> str:
    """What to add to a "no key" message for this lakehouse: its demo key file, or that it
    already has a key (a newly generated one would be refused)."""
    demo = demo_key_file(lakehouse)
    if demo is not None:
        return f". This lakehouse was made by `fairshelf demo`: its key is in {demo} (export FAIRSHELF_PSEUDONYM_KEY_FILE={demo})"
    space = read_space(lakehouse)
    if space is not None:
        return (f". This lakehouse already has a key (fingerprint {space.fingerprint}): set that key; a newly "
                "generated one would be refused (see `fairshelf rotate-key` to change keys)")
    return ""


def check_key(config: Config, *, claim_by: str | None = None) -> PseudonymSpace:
    """The lakehouse's space, after checking that the configured key is its key.

    ``claim_by`` (a run id): a lakehouse without a space gets the configured key's, and a
    lakehouse whose space came from gold/runs gets the record written. Raises KeyMismatch
    when the key differs, before anything is read or written with it."""
    try:
        fingerprint = config.key_fingerprint  # a missing or short key is a ConfigError
    except ConfigError as exc:
        raise ConfigError(f"{exc}{key_hint(config.lakehouse)}") from None
    rotation = read_rotation(config.lakehouse)
    if rotation is not None:
        raise KeyMismatch(
            f"a rotation of the pseudonymization key of {config.lakehouse} from {rotation.from_fingerprint} "
            f"to {rotation.to_fingerprint} (started {rotation.started_at}) is unfinished, so its user keys "
            "are in two spaces: finish it by running `fairshelf rotate-key` again with the same keys")
    fs, path = _file(config.lakehouse)
    space = read_space(config.lakehouse)
    if space is None:
        space = PseudonymSpace(fingerprint, utc_now().isoformat(), claim_by or "")
        if claim_by:
            write_space(config.lakehouse, space)
        return space
    if space.fingerprint != fingerprint:
        raise KeyMismatch(
            f"the pseudonymization key (fingerprint {fingerprint}) is not the key of the lakehouse "
            f"{config.lakehouse} (fingerprint {space.fingerprint}, recorded by {space.recorded_by or 'its first run'} "
            f"at {space.since}). With another key every viewer would get a second pseudonym and "
            "viewers erased under the lakehouse's key could come back under a new one, so nothing "
            "was read or written. Set FAIRSHELF_PSEUDONYM_KEY (or FAIRSHELF_PSEUDONYM_KEY_FILE) to "
            "the lakehouse's key; to change the key of the lakehouse, run `fairshelf rotate-key`"
        )
    if claim_by and fs.get_file_info(path).type != pafs.FileType.File:
        write_space(config.lakehouse, space)
    return space
