"""The configuration object: defaults, file, environment, validation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from importlib import resources

import pytest

from jobs.core.config import Config, ConfigError, ModelSettings, load_config
from jobs.core.model_spec import ModelSpec


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
        ("[privacy]\nk = 3\n", r"\[privacy\] k: unknown setting; known here: age_bands, k_anonymity"),
        ("[modle]\nfactors = 3\n", r"unknown configuration section\(s\) \['modle'\]"),
        ("[model]\nalgorithm = 'svd'\n", r"\[model\] algorithm: should be 'als', 'bpr', 'ease' or 'blend' \(got 'svd'\)"),
        ("[privacy]\nk_anonymity = 1\n", r"\[privacy\] k_anonymity: should be greater than or equal to 2"),
        ("[shelf]\nsize = 500\n", r"\[shelf\] size: must be at most \[model\] candidates_per_user \(200\)"),
        ("[model]\nselection_trials = 0\n", r"\[model\] selection_trials: should be greater than 0"),
        ("[model]\nselection_budget_seconds = 60\n", r"\[model\] selection_budget_seconds: replaced by selection_trials"),
        ("[model]\nvalidation_share = 1.0\n", r"\[model\] validation_share: should be less than 1"),
        ("[model]\nfactors = 'many'\n", r"\[model\] factors: should be a valid integer.*\(got 'many'\)"),
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


@pytest.mark.parametrize(
    "text, message",
    [
        # an unknown key in a section, and what the section holds
        ("[rerank]\nmmr_lamda = 0.5\n", r"\[rerank\] mmr_lamda: unknown setting; known here: .*mmr_lambda"),
        # a wrong type
        ("[quality]\ndata_docs = 'maybe'\n", r"\[quality\] data_docs: should be a valid boolean"),
        ("[privacy]\nage_bands = [18, 'old']\n", r"\[privacy\] age_bands\[1\]: should be a valid integer"),
        # an out-of-range value, and the range allowed
        ("[model]\nblend_weight = 1.5\n", r"\[model\] blend_weight: should be less than or equal to 1 \(got 1.5\)"),
        ("[rerank]\nmax_titles_per_provider = -1\n", r"\[rerank\] max_titles_per_provider: should be greater than"),
        # rules between fields of one section, and between sections
        ("[quality]\nvolume_history_runs = 2\n", r"\[quality\] volume_min_history: must be at most volume_history_runs \(2\)"),
        ("[rerank]\nunderrepresented = 'configured'\n", r"\[rerank\] underrepresented: 'configured' needs"),
        ("[lineage]\ntransport = 'http'\n", r"\[lineage\] url: transport 'http' needs"),
        ("[shelf]\nsize = 3\n", r"\[rerank\] explore_slots: must be at most \[shelf\] size \(3\), got 4"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_every_problem_is_named_on_its_own_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nfactors = 0\nweighting = 'log'\n[audit]\nk = 0\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    lines = str(raised.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["[model] weighting", "[model] factors", "[audit] k"]


def test_an_environment_value_is_checked_like_a_file_value():
    with pytest.raises(ConfigError, match=r"\[privacy\] k_anonymity: should be a valid integer.*\(got 'ten'\)"):
        load_config(environ={"FAIRSHELF_K_ANONYMITY": "ten"})
    with pytest.raises(ConfigError, match=r"\[spark\] table_engine: should be 'delta-rs' or 'delta-spark'"):
        load_config(environ={"FAIRSHELF_TABLE_ENGINE": "iceberg"})


def test_settings_built_in_code_are_checked_too():
    config = load_config(environ={})
    with pytest.raises(ConfigError, match=r"\[audit\] k: must be at most \[shelf\] size \(5\), got 10"):
        dataclasses.replace(config, shelf=dataclasses.replace(config.shelf, size=5, default_shelf_size=5),
                            rerank=dataclasses.replace(config.rerank, explore_slots=2))
    with pytest.raises(ConfigError, match=r"\[model\] iterations: should be greater than 0"):
        dataclasses.replace(config.model, iterations=0)


def test_a_list_may_be_given_as_one_comma_separated_string(tmp_path):
    path = tmp_path / "fairshelf.toml"
    path.write_text("[audit]\nblocking = 'max_exposure_gini, max_ndcg_drop'\n")
    assert load_config(path, environ={}).audit.blocking == ("max_exposure_gini", "max_ndcg_drop")


def test_the_model_section_is_the_model_spec_plus_pipeline_settings():
    config = load_config(environ={})
    assert config.model.spec == ModelSpec()  # the spec's defaults are the documented ones
    assert type(config.model.spec) is ModelSpec and isinstance(config.model, ModelSpec)
    spec_fields = [f.name for f in dataclasses.fields(ModelSpec)]
    assert [f.name for f in dataclasses.fields(ModelSettings)][: len(spec_fields)] == spec_fields
    assert {"candidates_per_user", "selection_trials"} <= set(config.as_dict()["model"]) - set(spec_fields)


def test_config_hash_is_the_hash_of_the_documented_settings():
    """The hash's input: every setting of defaults.toml but the paths, where lineage goes and
    how Airflow runs the stages."""
    documented = tomllib.loads(resources.files("jobs.core").joinpath("defaults.toml").read_text())
    for section, key in [(None, "lakehouse"), (None, "lineage"), (None, "airflow"), ("spark", "master"),
                         ("spark", "driver_memory")]:
        (documented[section] if section else documented).pop(key)
    blob = json.dumps(documented, sort_keys=True).encode()
    assert load_config(environ={}).config_hash == hashlib.sha256(blob).hexdigest()[:16]
