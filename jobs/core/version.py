"""The code version stamped on every commit, run and model card.

In order: ``FAIRSHELF_CODE_VERSION`` (a deployment sets it, e.g. to the image tag); the
git commit when the package runs from a checkout (the repository or an editable install,
where the package version does not change with every commit); the version of the
installed ``fairshelf`` distribution (a wheel in site-packages); otherwise ``unknown``.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Mapping

DISTRIBUTION = "fairshelf"


def code_version(environ: Mapping[str, str]) -> str:
    if environ.get("FAIRSHELF_CODE_VERSION"):
        return environ["FAIRSHELF_CODE_VERSION"]
    return git_commit(Path(__file__).resolve().parents[2]) or installed_version() or "unknown"


def installed_version() -> str | None:
    """``fairshelf-<version>`` of the installed distribution, or None."""
    try:
        return f"{DISTRIBUTION}-{metadata.version(DISTRIBUTION)}"
    except metadata.PackageNotFoundError:
        return None


def git_commit(checkout: Path) -> str | None:
    """The first 12 hex digits of HEAD's commit in ``checkout``, or None."""
    git = checkout / ".git"
    try:
        ref = (git / "HEAD").read_text().strip()
        if not ref.startswith("ref: "):
            return ref[:12]
        name = ref[5:]
        if (git / name).exists():
            return (git / name).read_text().strip()[:12]
        packed = git / "packed-refs"
        for line in packed.read_text().splitlines() if packed.exists() else []:
            if line.endswith(" " + name):
                return line.split()[0][:12]
    except OSError:
        return None
    return None
