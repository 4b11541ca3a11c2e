"""Shared fixtures: one SparkSession for the whole test session, a temporary lakehouse,
a test configuration with a pseudonymization key, and the MovieLens-100K location."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from jobs.core.config import load_config

# py4j logs its connection shutdown from finalizers at interpreter exit, after pytest has
# closed the captured streams ("--- Logging error ---"); its INFO lines are noise anyway.
logging.getLogger("py4j").setLevel(logging.WARNING)

MOVIELENS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens-100k"
TEST_KEY = b"fairshelf-test-key-0123456789abcdef-not-a-secret"


# `make test` runs two pytest-xdist workers (-n 2). One takes the real Airflow scheduler's
# nights (some 30 task processes, each with its own JVM) and the night on a Spark standalone
# cluster (which builds its own local reference run there); the other takes everything
# else, so the session's Spark and whole runs are built once.
# (A scheduler of our own: xdist 3.8's --dist loadgroup does not group under pytest 9,
# whose node ids it can no longer rewrite.)
BESIDE_THE_SCHEDULER = ("tests/dags/test_airflow_scheduler.py::", "tests/integration/test_cluster.py::")


@pytest.hookimpl(optionalhook=True)  # `-p no:xdist` runs the tests in one process
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class TwoGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "airflow-scheduler" if nodeid.startswith(BESIDE_THE_SCHEDULER) else "session-runs"

    return TwoGroups(config, log)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from jobs.lake.spark import build_spark

    config = make_config(tmp_path_factory.mktemp("spark-lakehouse"))
    session = build_spark(config, app_name="fairshelf-tests")
    yield session
    session.stop()


def make_config(lakehouse, **overrides):
    """A configuration rooted at ``lakehouse`` with the test key, independent of the
    caller's environment. Model selection is off (the configured model is trained and
    validated once, ``selection_trials`` 1): a whole run takes seconds instead of a minute.
    The search itself is tested in tests/unit/test_train_selection.py."""
    config = load_config(environ={}, lakehouse=str(lakehouse), pseudonym_key=TEST_KEY, **overrides)
    if "model" in overrides:
        return config
    return dataclasses.replace(config, model=dataclasses.replace(config.model, selection_trials=1))


@pytest.fixture
def config(tmp_path):
    """A configuration rooted in a fresh temporary lakehouse."""
    return make_config(tmp_path / "lakehouse")


@pytest.fixture(scope="session")
def config_factory():
    return make_config


@pytest.fixture(scope="session")
def synthetic_run(spark, tmp_path_factory):
    """One synthetic landing zone (3 days) and one successful nightly run for its last
    day, shared by the tests that only read what it wrote: (config, summary, outcome)."""
    from jobs.datasets.synthetic import SyntheticSpec, generate_landing
    from jobs.orchestration.pipeline import run_pipeline

    config = make_config(tmp_path_factory.mktemp("synthetic") / "lake")
    spec = SyntheticSpec(users=400, items=150, events_per_day=2500, days=3, end_date=date(2026, 11, 25), seed=7)
    summary = generate_landing(config.lakehouse, spec)
    outcome = run_pipeline(spark, config, spec.end_date)
    return config, summary, outcome


@pytest.fixture
def copy_of_synthetic_run(synthetic_run, tmp_path):
    """A private copy of the session's finished synthetic lakehouse (landing, tables,
    models, reports): a test that writes, fails or erases works on it and leaves the shared
    one as it was. (config, summary, outcome) as ``synthetic_run``, config at the copy."""
    config, summary, outcome = synthetic_run
    target = tmp_path / "lake"
    shutil.copytree(config.lakehouse, target, symlinks=True)
    return dataclasses.replace(config, lakehouse=str(target)), summary, outcome


@pytest.fixture(scope="session")
def movielens_run(spark, tmp_path_factory, movielens_dir):
    """MovieLens-100K imported and run for its last day, 1998-04-22 (whole history):
    (config, summary, outcome)."""
    from jobs.datasets.movielens import import_movielens
    from jobs.orchestration.pipeline import run_pipeline

    config = make_config(tmp_path_factory.mktemp("movielens") / "lake")
    summary = import_movielens(movielens_dir, config.lakehouse)
    outcome = run_pipeline(spark, config, date(1998, 4, 22))
    return config, summary, outcome


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """MovieLens-100K from ../shared/data. In CI its absence is a failure, not a skip."""
    if not (MOVIELENS / "u.data").is_file():
        message = f"MovieLens-100K not found at {MOVIELENS}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must have ../shared/data beside the checkout)")
        pytest.skip(message)
    return MOVIELENS
