"""Shared fixtures: one SparkSession for the whole test session, a temporary lakehouse,
a test configuration with a pseudonymization key, and the MovieLens-100K location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobs.config import load_config

MOVIELENS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens-100k"
TEST_KEY = b"fairshelf-test-key-0123456789abcdef-not-a-secret"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from jobs.spark import build_spark

    config = make_config(tmp_path_factory.mktemp("spark-lakehouse"))
    session = build_spark(config, app_name="fairshelf-tests")
    yield session
    session.stop()


def make_config(lakehouse, **overrides):
    """A configuration rooted at ``lakehouse`` with the test key, independent of the
    caller's environment."""
    return load_config(environ={}, lakehouse=str(lakehouse), pseudonym_key=TEST_KEY, **overrides)


@pytest.fixture
def config(tmp_path):
    """A configuration rooted in a fresh temporary lakehouse."""
    return make_config(tmp_path / "lakehouse")


@pytest.fixture(scope="session")
def config_factory():
    return make_config


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """MovieLens-100K from ../shared/data. In CI its absence is a failure, not a skip."""
    if not (MOVIELENS / "u.data").is_file():
        message = f"MovieLens-100K not found at {MOVIELENS}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must have ../shared/data beside the checkout)")
        pytest.skip(message)
    return MOVIELENS
