"""jobs.stages.quality without Spark: the suites load with Great Expectations, every suite
parameter is supplied, severities map, sensitive frames never keep values, and the
[quality] settings are validated."""

from __future__ import annotations

import json
from datetime import date

import pytest

from jobs.core.config import ConfigError, load_config
from jobs.shared import expectation_suites
from jobs.shared import quality_profiles as qp
from jobs.stages import quality

SUITES = sorted(p.stem for p in expectation_suites.SUITES_DIR.glob("*.json"))


def _parameters_used(node):
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            yield node["$PARAMETER"]
        for value in node.values():
            yield from _parameters_used(value)
    elif isinstance(node, list):
        for value in node:
            yield from _parameters_used(value)


def test_every_table_of_the_issue_has_a_suite():
    assert {"landing_events", "silver_events", "user_features", "content", "interactions", "recommendations"} <= set(SUITES)


@pytest.mark.parametrize("name", SUITES)
def test_suite_loads_with_great_expectations_and_has_a_known_severity(name):
    suite = expectation_suites.load_suite(name)
    assert suite.name == name and suite.expectations
    for expectation in suite.expectations:
        assert expectation.severity.value in expectation_suites.SEVERITIES, (name, expectation.type)
    assert "sensitive" in suite.meta["fairshelf"], "say whether the frame holds identifiers or user keys"


def test_every_suite_parameter_is_supplied_by_the_stage():
    config = load_config(environ={})
    supplied = set(quality.suite_parameters(config, date(2026, 11, 25), qp.volume_band(1, [], 3, 0.5, 2.0)))
    for name in SUITES:
        used = set(_parameters_used(json.loads((expectation_suites.SUITES_DIR / f"{name}.json").read_text())))
        missing = used - supplied - ({"shelf_size"} if name == "recommendations" else set())
        assert not missing, f"{name} uses parameters the quality stage does not supply: {missing}"


def test_frames_with_user_keys_keep_counts_only():
    for name in ("landing_events", "silver_events", "user_features", "interactions", "recommendations"):
        meta = expectation_suites.load_suite(name).meta["fairshelf"]
        assert meta["sensitive"] is True, name
        assert expectation_suites.result_format(meta)["partial_unexpected_count"] == 0
    result = {"unexpected_count": 2, "element_count": 9, "partial_unexpected_list": ["a@b.org"]}
    assert expectation_suites.result_details(result, sensitive=True) == {"unexpected_count": 2, "element_count": 9}
    assert "a@b.org" in json.dumps(expectation_suites.result_details(result, sensitive=False))


def test_a_missing_suite_is_named():
    with pytest.raises(expectation_suites.QualityError, match="no expectation suite .*nonexistent.json"):
        expectation_suites.load_suite("nonexistent")


@pytest.mark.parametrize(
    "section, problem",
    [
        ("volume_band_low = 1.5", "volume_band_low"),
        ("collapse_fraction = 2.0", "collapse_fraction"),
        ("volume_min_history = 9", "volume_min_history"),
        ("identifier_patterns = ['(unclosed']", "not a regular expression"),
        ("no_such_setting = 1", "unknown setting"),
    ],
)
def test_bad_quality_settings_are_refused(tmp_path, section, problem):
    path = tmp_path / "fairshelf.toml"
    path.write_text(f"[quality]\n{section}\n")
    with pytest.raises(ConfigError, match=problem):
        load_config(path, environ={})
