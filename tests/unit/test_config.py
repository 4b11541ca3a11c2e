"""The configuration object: defaults, file, environment, validation."""

from __future__ import annotations

import dataclasses

import pytest

from jobs.core.config import Config, ConfigError, load_config


def test_packaged_defaults_match_the_typed_defaults():
    loaded = load_config(environ={})
    assert dataclasses.replace(loaded, code_version="x") == Config(code_version="x")


def test_file_then_environment_override_the_defaults(tmp_path):
    path = tmp_path / "fairshelf.toml"
    path.write_text('lakehouse = "/data/lake"\n[privacy]\nk_anonymity = 25\n[shelf]\nsize = 10\n')
    config = load_config(path, environ={"FAIRSHELF_K_ANONYMITY": "50", "FAIRSHELF_SPARK_MASTER": "yarn"})
    assert (config.lakehouse, config.privacy.k_anonymity, config.shelf.size) == ("/data/lake", 50, 10)
    assert config.spark.master == "yarn"
    assert config.path("gold", "runs") == "/data/lake/gold/runs"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[privacy]\nk = 3\n", r"unknown setting\(s\) \['k'\]"),
        ("[modle]\nfactors = 3\n", r"unknown configuration section\(s\) \['modle'\]"),
        ("[model]\nalgorithm = 'svd'\n", "model.algorithm must be"),
        ("[privacy]\nk_anonymity = 1\n", "k_anonymity must be at least 2"),
        ("[shelf]\nsize = 500\n", "shelf.size must be"),
        ("[model]\nselection_budget_seconds = -1\n", "selection_budget_seconds must be >= 0"),
        ("[model]\nvalidation_share = 1.0\n", "validation_share must be within"),
        ("[model]\nfactors = 'many'\n", "ModelSettings.factors: cannot use 'many'"),
        ("not toml at all = = =", "not valid TOML"),
    ],
)
def test_bad_settings_are_rejected_before_any_work(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.toml does not exist"):
        load_config(tmp_path / "nowhere.toml", environ={})


def test_config_hash_follows_settings_not_paths_or_keys():
    base = load_config(environ={})
    assert base.config_hash == load_config(environ={"FAIRSHELF_LAKEHOUSE": "/elsewhere"}).config_hash
    assert base.config_hash == base.with_key(b"k" * 40).config_hash
    assert base.config_hash != load_config(environ={"FAIRSHELF_K_ANONYMITY": "20"}).config_hash
