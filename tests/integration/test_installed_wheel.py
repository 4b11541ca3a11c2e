"""fairshelf installed as a wheel, the way a deployment gets it, rather than run from the
checkout: every module imports, the package data (expectation suites, default config,
templates) travels inside the package, and the console script starts.

The wheel is built from a copy of the files the build reads (pyproject.toml, README.md,
jobs/), so the build leaves nothing in the checkout, and installed with ``--no-deps`` into a
temporary venv. The dependencies are not reinstalled: a ``.pth`` file, written after the
install, puts the running interpreter's site-packages on the venv's path. Python reads
``.pth`` files only in a site directory, not in a directory a ``.pth`` adds, so the
editable install's finder there is never loaded and ``jobs`` can only come from the wheel.
The probe runs from a temporary directory outside the repository.

The wheel is built offline (``--no-build-isolation --no-index``) with the running
environment's build backend when that backend satisfies ``[build-system] requires``;
otherwise pip builds it in an isolated environment, which fetches those requirements from
the package index (as ``pip install -e .`` in ``make setup`` does), and the test warns why.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import warnings
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "jobs"
# What the build reads: the project metadata, the readme it names, and the package.
BUILD_INPUTS = ("pyproject.toml", "README.md", "setup.cfg", "setup.py", "MANIFEST.in", "LICENSE")
TIMEOUT = 300  # seconds per subprocess; the whole module takes well under a minute

# Run by the venv's interpreter from a directory outside the repository; prints one JSON
# object of facts for the tests to check.
PROBE = r"""
import importlib, json, pkgutil, sys, traceback
from pathlib import Path

import jobs

failures = {}
modules = []
for info in pkgutil.walk_packages(jobs.__path__, "jobs.", onerror=lambda name: failures.setdefault(name, traceback.format_exc())):
    if info.name.rsplit(".", 1)[-1] == "__main__":  # running it is not importing it
        continue
    modules.append(info.name)
    try:
        importlib.import_module(info.name)
    except Exception:
        failures[info.name] = traceback.format_exc()

from jobs.core.config import load_config
from jobs.shared.expectation_suites import SUITES_DIR, load_suite

suites = {path.stem: len(load_suite(path.stem).expectations) for path in sorted(SUITES_DIR.glob("*.json"))}
config = load_config(environ={}, pseudonym_key=b"x" * 40)
root = Path(jobs.__file__).parent
data_files = sorted(
    path.relative_to(root).as_posix()
    for path in root.rglob("*")
    if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
)
print(json.dumps({
    "prefix": sys.prefix,
    "jobs_file": jobs.__file__,
    "modules": modules,
    "failures": failures,
    "suites_dir": str(SUITES_DIR),
    "suites": suites,
    "code_version": config.code_version,
    "data_files": data_files,
}))
"""


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def why_no_offline_build() -> str | None:
    """Why the running environment's build backend cannot build the wheel (None if it can):
    a ``[build-system] requires`` entry missing or of the wrong version, or a setuptools
    older than 70.1 (which needs the ``wheel`` package for bdist_wheel) without ``wheel``."""
    build_system = pyproject()["build-system"]
    for requirement in map(Requirement, build_system["requires"]):
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return f"{requirement.name} is not installed ({requirement} is required)"
        if not requirement.specifier.contains(installed, prereleases=True):
            return f"{requirement.name} {installed} is installed, {requirement} is required"
    if build_system["build-backend"].startswith("setuptools"):
        setuptools = metadata.version("setuptools")
        if Version(setuptools) < Version("70.1") and importlib.util.find_spec("wheel") is None:
            return f"setuptools {setuptools} builds wheels only with the `wheel` package, which is not installed"
    return None


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result


def outside_env(tmp: Path) -> dict[str, str]:
    """The environment for the venv's processes: nothing that puts the checkout or another
    environment on the path, no fairshelf settings, Airflow's home in ``tmp``."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("FAIRSHELF_")}
    return env | {"PYTHONNOUSERSITE": "1", "AIRFLOW_HOME": str(tmp / "airflow")}


def build_wheel(source: Path, out: Path, env: dict[str, str]) -> Path:
    for name in BUILD_INPUTS:
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / PACKAGE, source / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check"]
    reason = why_no_offline_build()
    if reason is None:
        command += ["--no-build-isolation", "--no-index"]
    else:
        warnings.warn(
            f"the fairshelf wheel is built with build isolation, fetching [build-system] requires from the "
            f"package index, because the running environment cannot build it offline: {reason}",
            stacklevel=1,
        )
    run([*command, "--wheel-dir", str(out), str(source)], cwd=source, env=env)
    (wheel,) = out.glob("fairshelf-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel, install it into a fresh venv, run the probe there: the venv and the
    probe's facts."""
    tmp = tmp_path_factory.mktemp("installed-wheel")
    env = outside_env(tmp)
    source, wheels, venv, workdir = (tmp / name for name in ("source", "wheels", "venv", "work"))
    for folder in (source, wheels, workdir):
        folder.mkdir()
    wheel = build_wheel(source, wheels, os.environ | {"PIP_NO_INPUT": "1"})

    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=workdir, env=env)
    python = venv / "bin" / "python"
    # Installed before the .pth exists, so pip sees no other fairshelf (the checkout's
    # editable install) in the venv and cannot touch it.
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--quiet", "--disable-pip-version-check", str(wheel)],
        cwd=workdir, env=env,
    )  # fmt: skip
    venv_site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         cwd=workdir, env=env).stdout.strip())  # fmt: skip
    ours = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    (venv_site / "fairshelf-test-dependencies.pth").write_text("".join(f"{path}\n" for path in ours))

    probe = workdir / "probe.py"
    probe.write_text(PROBE)
    facts = json.loads(run([str(python), "-I", str(probe)], cwd=workdir, env=env).stdout.strip().splitlines()[-1])
    return {"venv": venv.resolve(), "workdir": workdir, "env": env, "source": source / PACKAGE, **facts}


def test_jobs_is_imported_from_the_wheel(installed):
    assert Path(installed["prefix"]).resolve() == installed["venv"]
    assert Path(installed["jobs_file"]).resolve().is_relative_to(installed["venv"]), installed["jobs_file"]


def test_every_module_of_the_package_imports(installed):
    source = installed["source"]
    in_source = {
        ".".join((PACKAGE, *path.relative_to(source).with_suffix("").parts)).removesuffix(".__init__")
        for path in source.rglob("*.py")
        if path.stem != "__main__"
    } - {PACKAGE}
    assert not installed["failures"], "\n".join(f"{name}:\n{tb}" for name, tb in installed["failures"].items())
    assert in_source - set(installed["modules"]) == set(), "modules of the checkout missing from the wheel"
    assert "jobs.datasets.synthetic.builders" in installed["modules"]


def test_package_data_is_installed(installed):
    source = installed["source"]
    in_source = sorted(
        path.relative_to(source).as_posix()
        for path in source.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    )
    assert installed["data_files"] == in_source


def test_every_expectation_suite_loads_from_the_package(installed):
    assert Path(installed["suites_dir"]).resolve().is_relative_to(installed["venv"])
    in_source = {path.stem for path in (installed["source"] / "shared" / "expectations").glob("*.json")}
    assert in_source, "the checkout has no expectation suites to compare with"
    assert set(installed["suites"]) == in_source
    assert all(count > 0 for count in installed["suites"].values()), installed["suites"]


def test_code_version_is_the_distribution_version(installed):
    assert installed["code_version"] == f"fairshelf-{pyproject()['project']['version']}"


def test_console_script_starts(installed):
    script = installed["venv"] / "bin" / "fairshelf"
    result = run([str(script), "--help"], cwd=installed["workdir"], env=installed["env"])
    assert "Usage" in result.stdout
