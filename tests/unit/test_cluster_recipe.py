"""infra/spark/cluster.py's commands and its errors (the cluster itself runs in
tests/integration/test_cluster.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from infra.spark.cluster import (
    ClusterError,
    WorkerSpec,
    alive_workers,
    daemon_environment,
    require_java,
    standalone_cluster,
    worker_command,
)


def test_each_worker_gets_its_own_cores_memory_and_folder():
    command = worker_command(Path("/spark"), "spark://h:7077", "h", WorkerSpec(3, "2g"), 1, 2, Path("/w/1"))
    assert command[:3] == ["/spark/bin/spark-class", "org.apache.spark.deploy.worker.Worker", "spark://h:7077"]
    assert command[command.index("--cores") + 1] == "3"
    assert command[command.index("--memory") + 1] == "2g"
    assert command[command.index("--work-dir") + 1] == "/w/1"


def test_only_alive_workers_count():
    state = {"workers": [{"id": "a", "state": "ALIVE"}, {"id": "b", "state": "DEAD"}]}
    assert [w["id"] for w in alive_workers(state)] == ["a"]


def test_the_daemons_get_no_python_path_and_no_fairshelf_setting():
    env = daemon_environment({"PATH": "/bin", "PYTHONPATH": "/repo", "FAIRSHELF_PSEUDONYM_KEY": "k"},
                             Path("/spark"), Path("/root"))
    assert env["PATH"] == "/bin" and env["SPARK_HOME"] == "/spark"
    assert not [name for name in env if name.startswith(("PYTHON", "FAIRSHELF_"))]


def test_no_java_is_a_clear_error():
    with pytest.raises(ClusterError, match="Java 17"):
        require_java({"PATH": "/nonexistent"})


def test_a_busy_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(ClusterError, match=f"port {port} .* is busy"):
            with standalone_cluster(tmp_path, port=port):
                pass
    assert not (tmp_path / "logs").exists()


def test_workers_that_do_not_register_in_time_stop_everything_and_name_the_logs(tmp_path):
    started = []
    with pytest.raises(ClusterError, match="registered .* within") as error:
        with standalone_cluster(tmp_path, [WorkerSpec(1, "512m")], timeout=0.1,
                                environ={**os.environ, "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1"}):
            started.append(True)
    assert not started
    assert str(tmp_path / "logs" / "worker-1.log") in str(error.value)
    # the daemons' command lines name the folder (their conf and work folders under it)
    assert not _processes_mentioning(str(tmp_path.resolve()))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return found
