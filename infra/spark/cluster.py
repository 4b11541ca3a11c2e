"""A Spark standalone cluster on this machine, started from the installed pyspark package.

    python infra/spark/cluster.py --workers 2 --cores 1 --memory 1g [--dir DIR] [--timeout 60]

starts a master and N workers (``SPARK_HOME`` = pyspark's folder; ``bin/spark-class
org.apache.spark.deploy.master.Master`` and ``...deploy.worker.Worker spark://HOST:PORT``)
on free local ports, each worker with its own cores, memory and work directory, waits
until every worker has registered (the master's ``/json/`` page lists it ALIVE), prints
the master URL (first line of stdout) and stays in the foreground: Ctrl-C or SIGTERM stops
everything it started, by PID (each daemon's process group: its executors and their
Python workers too). Logs: ``DIR/logs/<daemon>.log``; executors' logs under
``DIR/work-<n>/<app id>/<executor id>/``.

From Python (tests), the same as a context manager that stops everything on exit, also
after an exception::

    with standalone_cluster(root, workers=[WorkerSpec(1, "1g")] * 2) as cluster:
        cluster.master_url      # spark://127.0.0.1:PORT

The daemons get a clean environment (``PATH``, ``JAVA_HOME``, ``JAVA_TOOL_OPTIONS``, ...): no
``PYTHONPATH`` and no ``FAIRSHELF_*`` variable (the key) reaches the executors through it;
the driver must ship its code (``jobs.lake.spark``) as it would to remote machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# What the daemons keep of the caller's environment; their executors inherit it.
ENV_PASSED = ("PATH", "JAVA_HOME", "JAVA_TOOL_OPTIONS", "HOME", "LANG", "LC_ALL", "TMPDIR")


class ClusterError(RuntimeError):
    """The cluster could not start; the message says why and where the log is."""


@dataclass(frozen=True)
class WorkerSpec:
    cores: int = 1
    memory: str = "1g"


@dataclass
class Cluster:
    """A running cluster: its URLs, folders and the processes this module started."""

    host: str
    master_url: str
    web_ui_url: str
    root: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log(self, daemon: str) -> Path:
        return self.root / "logs" / f"{daemon}.log"

    @property
    def work_dirs(self) -> list[Path]:
        return sorted(self.root.glob("work-*"))


# --- pure parts: commands and the master's state ---------------------------------------------

def spark_home() -> Path:
    """The installed pyspark package's folder: it holds bin/spark-class and the jars."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def master_command(home: Path, host: str, port: int, web_ui_port: int) -> list[str]:
    return [str(home / "bin" / "spark-class"), MASTER_CLASS,
            "--host", host, "--port", str(port), "--webui-port", str(web_ui_port)]


def worker_command(home: Path, master_url: str, host: str, spec: WorkerSpec, port: int,
                   web_ui_port: int, work_dir: Path) -> list[str]:
    return [str(home / "bin" / "spark-class"), WORKER_CLASS, master_url,
            "--host", host, "--port", str(port), "--webui-port", str(web_ui_port),
            "--cores", str(spec.cores), "--memory", spec.memory, "--work-dir", str(work_dir)]


def alive_workers(state: dict) -> list[dict]:
    """The workers the master's ``/json/`` state lists as ALIVE."""
    return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]


def daemon_environment(environ: dict[str, str], home: Path, root: Path) -> dict[str, str]:
    """A clean environment for the daemons (and so the executors they start)."""
    env = {name: environ[name] for name in ENV_PASSED if name in environ}
    return {**env, "SPARK_HOME": str(home), "SPARK_LOG_DIR": str(root / "logs"),
            "SPARK_PID_DIR": str(root), "SPARK_CONF_DIR": str(root / "conf")}


# --- I/O at the edges --------------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def require_free(host: str, port: int, what: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ClusterError(f"{what} port {port} on {host} is busy ({exc.strerror}): choose "
                               "another, or leave it out to take a free one") from None


def require_java(environ: dict[str, str]) -> None:
    java_home = environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return
    if shutil.which("java", path=environ.get("PATH")) is None:
        raise ClusterError("no Java found: Spark needs Java 17 (set JAVA_HOME or put `java` on "
                           "PATH, e.g. `apt-get install openjdk-17-jre-headless`)")


def master_state(web_ui_url: str) -> dict:
    with urllib.request.urlopen(f"{web_ui_url}/json/", timeout=2) as response:
        return json.load(response)


def _start(cluster: Cluster, name: str, command: list[str], env: dict[str, str]) -> None:
    log = cluster.log(name).open("ab")
    with log:
        cluster.processes[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)  # its own process group: its executors stop with it


def _check_running(cluster: Cluster) -> None:
    for name, process in cluster.processes.items():
        if process.poll() is not None:
            raise ClusterError(f"the Spark {name} exited with code {process.returncode} while "
                               f"starting; see {cluster.log(name)}")


def _wait_for_workers(cluster: Cluster, expected: int, timeout: float) -> None:
    deadline, found = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        _check_running(cluster)
        with suppress(OSError, ValueError):
            found = len(alive_workers(master_state(cluster.web_ui_url)))
            if found >= expected:
                return
        time.sleep(0.5)
    waiting = [name for name in cluster.processes if name.startswith("worker")]
    raise ClusterError(
        f"only {found} of {expected} worker(s) registered with {cluster.master_url} within "
        f"{timeout:.0f} s; see " + ", ".join(str(cluster.log(n)) for n in ["master", *waiting]))


def stop(cluster: Cluster, grace: float = 15.0) -> None:
    """Stop every process this module started (workers first), by PID: SIGTERM to its
    process group, then SIGKILL to what is left after ``grace`` seconds."""
    ordered = sorted(cluster.processes.items(), key=lambda item: item[0] == "master")
    for _, process in ordered:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for _, process in ordered:
        with suppress(subprocess.TimeoutExpired):
            process.wait(max(0.1, deadline - time.monotonic()))
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group's leftovers (executors)
        process.wait()
    # Killed members linger a moment until they are reaped (by init, for orphans).
    while time.monotonic() < deadline + 5 and any(group_alive(p.pid) for _, p in ordered):
        time.sleep(0.1)


def group_alive(pid: int) -> bool:
    """True while a process of the process group ``pid`` exists."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def standalone_cluster(root: str | Path, workers: Sequence[WorkerSpec] = (WorkerSpec(),) * 2,
                       host: str = "127.0.0.1", port: int | None = None,
                       web_ui_port: int | None = None, timeout: float = 60.0,
                       environ: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A master and ``len(workers)`` workers under ``root``; stopped on exit, whatever happens."""
    environ = dict(os.environ if environ is None else environ)
    require_java(environ)
    for wanted, what in ((port, "master"), (web_ui_port, "master web UI")):
        if wanted is not None:
            require_free(host, wanted, what)
    root, home = Path(root).resolve(), spark_home()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "conf").mkdir(exist_ok=True)  # empty: the daemons take Spark's defaults
    port, web_ui_port = port or free_port(host), web_ui_port or free_port(host)
    cluster = Cluster(host, f"spark://{host}:{port}", f"http://{host}:{web_ui_port}", root)
    env = daemon_environment(environ, home, root)
    try:
        _start(cluster, "master", master_command(home, host, port, web_ui_port), env)
        for n, spec in enumerate(workers, start=1):
            work_dir = root / f"work-{n}"
            work_dir.mkdir(exist_ok=True)
            _start(cluster, f"worker-{n}", worker_command(
                home, cluster.master_url, host, spec, free_port(host), free_port(host), work_dir), env)
        _wait_for_workers(cluster, len(workers), timeout)
        yield cluster
    finally:
        stop(cluster)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores of each worker")
    parser.add_argument("--memory", default="1g", help="memory of each worker (e.g. 1g, 1536m)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="master port (default: a free one)")
    parser.add_argument("--webui-port", type=int, default=None, help="master web UI port")
    parser.add_argument("--dir", default="spark-cluster", help="logs and work folders")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the workers to register")
    args = parser.parse_args(argv)
    # SIGTERM ends the wait below like Ctrl-C, so the context manager stops the cluster.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with standalone_cluster(args.dir, [WorkerSpec(args.cores, args.memory)] * args.workers,
                                args.host, args.port, args.webui_port, args.timeout) as cluster:
            print(cluster.master_url, flush=True)
            print(f"web UI {cluster.web_ui_url}; logs in {cluster.root / 'logs'}; "
                  "Ctrl-C or SIGTERM stops the cluster", file=sys.stderr, flush=True)
            while all(p.poll() is None for p in cluster.processes.values()):
                time.sleep(1)
            print("a Spark daemon exited; stopping the others", file=sys.stderr)
            return 1
    except ClusterError as exc:
        print(f"cluster.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
