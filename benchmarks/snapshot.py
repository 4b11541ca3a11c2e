"""The code a benchmark measures: ``jobs/`` as committed at a git revision, so that the
numbers belong to a commit and edits in the working tree during a long run change
nothing. The harness itself (``benchmarks/*.py``) is copied from the working tree."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKING_TREE = "working-tree"


class SnapshotError(RuntimeError):
    """The revision to benchmark cannot be resolved or exported."""


def _git(*args: str) -> bytes:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, check=False)
    if done.returncode != 0:
        raise SnapshotError(f"git {' '.join(args)} failed: {done.stderr.decode().strip()}")
    return done.stdout


def resolve(rev: str) -> str:
    """The full commit id of ``rev``."""
    return _git("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()


MEASURED = ("jobs", "expectations")  # what a snapshot holds of a revision (if present there)


def snapshot_code(rev: str, work_dir: Path) -> tuple[Path, str]:
    """``<work_dir>/code/<commit>/`` holding ``jobs/`` and the Great Expectations suites
    (``expectations/``, which the quality stage reads beside the package) at ``rev``, and
    the working tree's ``benchmarks/*.py``; returns it and the commit id."""
    commit = resolve(rev)
    target = work_dir / "code" / commit[:12]
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    measured = [p for p in MEASURED if _git("ls-tree", "--name-only", commit, p).strip()]
    with tarfile.open(fileobj=io.BytesIO(_git("archive", "--format=tar", commit, *measured)), mode="r:") as tar:
        tar.extractall(target, filter="data")
    (target / "benchmarks").mkdir()
    for source in HERE.glob("*.py"):
        shutil.copy2(source, target / "benchmarks" / source.name)
    return target, commit


def working_tree_changes() -> list[str]:
    """Paths under ``jobs/`` and ``expectations/`` that differ from HEAD (modified or untracked)."""
    lines = _git("status", "--porcelain", "--", *MEASURED).decode().splitlines()
    return sorted(line[3:] for line in lines if line.strip())
