"""The bookkeeping that keeps mistakes harmless, without Spark: the lakehouse's pseudonym
space, the run marker's heartbeat, and the re-pointing of every publication."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from jobs.core.errors import KeyMismatch
from jobs.lake import run_marker
from jobs.lake.pseudonym_space import RotationState, check_key, clear_rotation, read_space, write_rotation
from jobs.lake.runs import repoint_publications

OTHER_KEY = b"another-key-another-key-another-key-0123"


def test_the_first_run_records_the_space_and_another_key_is_refused(config):
    assert read_space(config.lakehouse) is None
    check_key(config)  # no claim: nothing recorded yet
    assert read_space(config.lakehouse) is None
    space = check_key(config, claim_by="run-1")
    assert read_space(config.lakehouse) == space and space.fingerprint == config.key_fingerprint
    assert OTHER_KEY not in json.dumps(space.__dict__).encode()  # a fingerprint, never the key
    with pytest.raises(KeyMismatch, match=f"not the key of the lakehouse.*{space.fingerprint}.*run-1.*rotate-key"):
        check_key(config.with_key(OTHER_KEY), claim_by="run-2")
    assert read_space(config.lakehouse) == space  # a refused run claims nothing


def test_an_unfinished_rotation_refuses_both_keys(config):
    check_key(config, claim_by="run-1")
    other = config.with_key(OTHER_KEY)
    write_rotation(config.lakehouse, RotationState(config.key_fingerprint, other.key_fingerprint, "rot-1", "now"))
    for key in (config, other):
        with pytest.raises(KeyMismatch, match="rotation .* is unfinished"):
            check_key(key)
    clear_rotation(config.lakehouse)
    check_key(config)


def test_a_marker_is_stale_only_after_its_heartbeat_stops(config):
    marker = run_marker.begin_or_resume(config, "run-1", "2026-11-25")
    now = datetime.fromisoformat(marker.heartbeat_at)
    assert not marker.is_stale(now + run_marker.STALE_AFTER - timedelta(seconds=1))
    assert marker.is_stale(now + run_marker.STALE_AFTER + timedelta(seconds=1))
    run_marker.beat(config, "run-1", "train")
    [again] = run_marker.read_markers(config)
    assert again.last_stage == "train" and again.heartbeat_at >= marker.heartbeat_at
    assert run_marker.begin_or_resume(config, "run-1", "2026-11-25").started_at == marker.started_at  # a retry resumes
    run_marker.remove_marker(config, "run-1")
    assert run_marker.read_markers(config) == []


def _runs_row(run_id: str, day: str, finished: str, published: dict | None, status: str = "succeeded") -> dict:
    return {"run_id": run_id, "run_date": day, "status": status, "kind": "run", "finished_at": finished,
            "published_json": None if published is None else json.dumps(published)}


def test_every_run_dates_publication_is_repointed_once(config):
    rows = [
        _runs_row("a", "2026-11-24", "2026-11-25T01:00", {"gold/recommendations": {"version": 1, "run_id": "a"}}),
        _runs_row("b", "2026-11-25", "2026-11-26T01:00", {"gold/recommendations": {"version": 3, "run_id": "b"},
                                                           "gold/audit": {"version": 2, "run_id": "b"}}),
        _runs_row("c", "2026-11-25", "2026-11-26T02:00", {"gold/recommendations": {"version": 4, "run_id": "c"}}),
        _runs_row("d", "2026-11-26", "2026-11-27T01:00", None, status="failed"),
    ]
    write_deltalake(f"{config.lakehouse}/gold/runs", pa.Table.from_pylist(rows))
    now = datetime.now(timezone.utc).isoformat()
    moved = repoint_publications(config.lakehouse, {"gold/recommendations": 9, "silver/user_features": 5},
                                 kind="erasure", run_id="erase-1", message="m", now=now)
    by_day = {r["run_date"]: r for r in moved}
    assert set(by_day) == {"2026-11-24", "2026-11-25"}  # a failed run published nothing
    latest = json.loads(by_day["2026-11-25"]["published_json"])
    assert latest["gold/recommendations"] == {"version": 9, "run_id": "c"}  # the date's live publication
    assert json.loads(by_day["2026-11-24"]["published_json"])["gold/recommendations"] == {"version": 9, "run_id": "a"}
    assert all(r["kind"] == "erasure" and r["finished_at"] == now for r in moved)
    assert repoint_publications(config.lakehouse, {"gold/audit": 2}, kind="erasure", run_id="e2", message="m",
                                now=now) == []  # nothing moved: nothing to re-point


def test_without_a_key_the_message_points_at_the_lakehouses_key(config, tmp_path):
    from jobs.core.config import ConfigError
    from jobs.lake.pseudonym_space import DEMO_KEY_FILE

    keyless = config.with_key(b"")
    check_key(config, claim_by="run-1")
    with pytest.raises(ConfigError, match=f"no pseudonymization key.*already has a key \\(fingerprint {config.key_fingerprint}\\)"):
        check_key(keyless)
    demo = tmp_path / "demo-lake"
    demo.mkdir()
    (demo / DEMO_KEY_FILE).write_text("k" * 64)
    with pytest.raises(ConfigError, match=f"made by `fairshelf demo`: its key is in {demo / DEMO_KEY_FILE}"):
        check_key(dataclasses.replace(keyless, lakehouse=str(demo)))
