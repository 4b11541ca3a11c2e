"""The one typed configuration object of fairshelf.

Loaded from a TOML file (the packaged ``defaults.toml`` unless ``FAIRSHELF_CONFIG``
or an explicit path names another) and overridden by environment variables.
This module is the only place in fairshelf that reads the environment.

Each section is a frozen pydantic dataclass (``jobs.core.typed_settings``): types, ranges
and choices are declared on the fields, rules between fields are validators, unknown keys
are refused, and any invalid value, whether loaded or built, is a ``ConfigError`` naming
the setting (``[model] factors``) and what it allows. The ``[model]`` section's
hyperparameters are ``jobs.core.model_spec.ModelSpec``'s fields, declared there once.

Secrets (the pseudonymization key) come from the environment (or an Airflow
connection, handed in by the DAG) and are never read from a file in the repo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tomllib
from dataclasses import field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from jobs.core.model_spec import ModelSpec, UnitInterval
from jobs.core.typed_settings import settings_dataclass
from jobs.core.version import code_version

MIN_KEY_BYTES = 32


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message says how to fix it."""


def _section(name: str):
    """A section of the configuration (``[name]`` in TOML): a ``ConfigError`` names its settings."""
    return settings_dataclass(ConfigError, "invalid configuration", name)


def _split_commas(value: Any) -> Any:
    """A list given as one comma-separated string (``"a, b"``) as its items."""
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


Names = Annotated[tuple[str, ...], BeforeValidator(_split_commas)]
OpenUnitInterval = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveShare = Annotated[float, Field(gt=0.0, le=1.0)]


@_section("spark")
class SparkSettings:
    master: str = "local[2]"
    driver_memory: str = "4g"
    shuffle_partitions: PositiveInt = 8
    # "delta-rs": Spark's Python Data Source API + deltalake (no JVM jars needed).
    # "delta-spark": format("delta"), for clusters that provide the Delta Lake jars.
    table_engine: Literal["delta-rs", "delta-spark"] = "delta-rs"


@_section("airflow")
class AirflowSettings:
    """How the DAG runs each stage (read when the DAG file is parsed; jobs/interfaces)."""

    # in-process: the task process runs the stage with its own SparkSession ([spark] master);
    # spark-submit: a SparkSubmitOperator submits it to the master of the Airflow connection below
    stage_runner: Literal["in-process", "spark-submit"] = "in-process"
    spark_conn_id: Annotated[str, Field(min_length=1)] = "spark_default"


@_section("privacy")
class PrivacySettings:
    k_anonymity: Annotated[int, Field(ge=2)] = 10
    age_bands: Annotated[tuple[int, ...], BeforeValidator(_split_commas)] = (18, 25, 35, 45, 55, 65)
    postcode_region_chars: NonNegativeInt = 1
    max_watch_seconds: PositiveInt = 6 * 3600

    @field_validator("age_bands")
    @classmethod
    def _increasing(cls, bands: tuple[int, ...]) -> tuple[int, ...]:
        if list(bands) != sorted(bands):
            raise ValueError(f"must be increasing, got {list(bands)}")
        return bands


@_section("model")
class ModelSettings(ModelSpec):
    """The ``[model]`` section: the model's hyperparameters (the fields and defaults of
    ``jobs.core.model_spec.ModelSpec``, first) and how the pipeline runs it (below)."""

    candidates_per_user: PositiveInt = 200
    recency_half_life_days: PositiveFloat = 30.0
    batch_users: PositiveInt = 2048
    # Nightly hyperparameter selection (jobs.recsys.training.select_hyperparameters): models
    # validated on a split of the run's own interactions, the configured one first, then the
    # search space in its fixed order. Budgeted by trials, not seconds, so a rerun chooses the
    # same model whatever the machine's load; 1 = no search (the configured model validated
    # once, for the model card's metrics).
    selection_trials: PositiveInt = 8
    validation_share: OpenUnitInterval = 0.25  # of each sampled user's titles held out for validation
    validation_users: PositiveInt = 10_000  # at most this many users (seeded sample) get a holdout

    @property
    def spec(self) -> ModelSpec:
        """The hyperparameters alone."""
        return ModelSpec.from_settings(self)


@_section("shelf")
class ShelfSettings:
    size: PositiveInt = 20
    default_shelf_size: PositiveInt = 20
    history_days: PositiveInt = 365


@_section("rerank")
class RerankSettings:
    """Diversity constraints of the re-ranker (jobs/recsys/diversity.py, jobs/stages/rerank.py)."""

    mmr_lambda: UnitInterval = 1.0  # 1 = the model's order; lower trades score for genre dissimilarity
    longtail_weight: NonNegativeFloat = 0.0  # bonus for long-tail titles (1 - popularity percentile) in the MMR
    max_genre_share: PositiveShare = 0.7  # a title counts for each of its genres; 1 = off
    min_underrepresented_share: UnitInterval = 0.1  # of each shelf, when the candidates allow; 0 = off
    underrepresented: Literal["derived", "configured"] = "derived"
    underrepresented_provider_groups: Names = ()  # configured (added to derived)
    underrepresented_languages: Names = ()  # configured (added to derived)
    underexposure_ratio: PositiveFloat = 0.8  # derived: consumption share < ratio x catalog share
    minority_share: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.15  # derived: or consumption share below this
    max_titles_per_provider: NonNegativeInt = 8  # 0 = off
    calibration_max_kl: NonNegativeFloat = 2.0  # KL(history genre mix || shelf genre mix); 0 = off
    calibration_smoothing: OpenUnitInterval = 0.01  # Steck's alpha
    explore_slots: NonNegativeInt = 4  # last positions of a shelf, for titles the user has not engaged with
    explore_spread: NonNegativeFloat = 0.2  # weight of a seeded per-(user, title) term spreading explore picks
    exposure_weight: NonNegativeFloat = 0.0  # bonus for titles few shelves of the run hold yet (freshness) in the MMR

    @model_validator(mode="after")
    def _configured_groups_are_named(self) -> RerankSettings:
        if (self.underrepresented == "configured" and self.min_underrepresented_share > 0
                and not (self.underrepresented_provider_groups or self.underrepresented_languages)):
            raise ValueError("underrepresented: 'configured' needs underrepresented_provider_groups or "
                             "underrepresented_languages (or min_underrepresented_share = 0)")
        return self


@_section("lineage")
class LineageSettings:
    """Where OpenLineage events go (jobs/orchestration/lineage.py); gold/lineage is always written."""

    transport: Literal["file", "http", "none"] = "file"
    # file: one JSON file per event in this folder ("" = <lakehouse>/lineage/openlineage)
    directory: str = ""
    url: str = ""  # http: the backend's base URL (e.g. Marquez, http://localhost:5000)
    endpoint: str = "api/v1/lineage"
    timeout_seconds: PositiveFloat = 5.0
    namespace: Annotated[str, Field(min_length=1)] = "fairshelf"  # the jobs' namespace
    # http: a bearer API key, from FAIRSHELF_OPENLINEAGE_API_KEY only (never a file)
    api_key: str = field(default="", repr=False, compare=False)

    @model_validator(mode="after")
    def _http_needs_a_url(self) -> LineageSettings:
        if self.transport == "http" and "://" not in self.url:
            raise ValueError(f"url: transport 'http' needs the backend's URL, e.g. 'http://localhost:5000' "
                             f"(or FAIRSHELF_OPENLINEAGE_URL), got {self.url!r}")
        return self


# Thresholds of the fairness audit (jobs.stages.audit) a run can be held to.
AUDIT_THRESHOLDS = ("min_group_ndcg_ratio", "max_exposure_gini", "min_long_tail_share", "max_ndcg_drop")


@_section("audit")
class AuditSettings:
    """The fairness audit (jobs/stages/audit.py): what it measures and the thresholds it gates on."""

    k: PositiveInt = 10  # user side: nDCG@k and recall@k of the first k titles of each shelf
    min_group_users: PositiveInt = 30  # groups with fewer holdout users are reported, not compared
    head_share: OpenUnitInterval = 0.8  # the head: most-watched titles making up this share of consumption
    min_group_ndcg_ratio: UnitInterval = 0.6  # lowest / highest group nDCG@k, per dimension
    # the ratio gate blocks when even the ratio's upper confidence bound at this level is
    # below min_group_ndcg_ratio; a point estimate below it alone is a warning
    ratio_confidence: Annotated[float, Field(ge=0.5, lt=1.0)] = 0.95
    max_exposure_gini: UnitInterval = 0.9  # Gini of title exposure over the catalog
    min_long_tail_share: UnitInterval = 0.05  # share of shelf slots given to titles outside the head
    max_ndcg_drop: UnitInterval = 0.10  # relative nDCG@k drop, re-ranked vs unconstrained
    # thresholds that fail the run (on the re-ranked shelves); the others are reported only
    blocking: Names = ("min_group_ndcg_ratio", "max_exposure_gini", "min_long_tail_share")

    @field_validator("blocking")
    @classmethod
    def _known_thresholds(cls, blocking: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(blocking) - set(AUDIT_THRESHOLDS))
        if unknown:
            raise ValueError(f"unknown thresholds {unknown}; known: {', '.join(AUDIT_THRESHOLDS)}")
        return blocking


@_section("quality")
class QualitySettings:
    # Landing events of the run date: share of records that must carry each key
    # (event, account, content id) and a parseable timestamp / seconds value.
    landing_key_mostly: UnitInterval = 0.95
    landing_value_mostly: UnitInterval = 0.95
    # Volume: the run date's landing rows within [low, high] x the median of the previous
    # `volume_history_runs` successful runs; with fewer than `volume_min_history` of them
    # (a new deployment), of the earlier landing days' row counts instead; no check (a
    # warning) with fewer than `volume_min_history` of those either.
    volume_band_low: PositiveShare = 0.5
    volume_band_high: Annotated[float, Field(ge=1.0)] = 2.0
    volume_history_runs: PositiveInt = 7
    volume_min_history: PositiveInt = 3
    # Representation (group shares in the catalog, the interactions and the training users).
    min_group_share: UnitInterval = 0.005  # below: flagged (warning)
    max_group_share: UnitInterval = 1.0  # above: blocking (1.0 = never; a one-language catalog is fine)
    collapse_fraction: UnitInterval = 0.5  # a user group below this x its previous share: blocking
    max_kl_divergence: NonNegativeFloat = 0.1  # KL(current || previous) per population and dimension
    # Direct identifiers that must not appear in any string column outside landing/.
    identifier_patterns: tuple[str, ...] = (
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",  # email
        r"\b(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}\b",  # IPv4
        r"\b(?:[0-9a-fA-F]{1,4}:){4,7}[0-9a-fA-F]{1,4}\b|\b[0-9a-fA-F]{1,4}::(?:[0-9a-fA-F]{1,4}:?)*",  # IPv6
        r"^(?:acc|ml)-[0-9]+$",  # raw account ids (synthetic, MovieLens)
    )
    identifier_exempt_columns: Names = ("content_id",)
    data_docs: bool = True  # Great Expectations Data Docs under reports/<D>/quality/

    @field_validator("identifier_patterns")
    @classmethod
    def _regular_expressions(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression ({exc})") from None
        return patterns

    @model_validator(mode="after")
    def _bounds_in_order(self) -> QualitySettings:
        problems = []
        if self.volume_min_history > self.volume_history_runs:
            problems.append(f"volume_min_history: must be at most volume_history_runs ({self.volume_history_runs}), "
                            f"got {self.volume_min_history}")
        if self.min_group_share > self.max_group_share:
            problems.append(f"min_group_share: must be at most max_group_share ({self.max_group_share}), "
                            f"got {self.min_group_share}")
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _path_text(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


@settings_dataclass(ConfigError, "invalid configuration")
class Config:
    lakehouse: Annotated[str, BeforeValidator(_path_text)] = "./lakehouse"
    spark: SparkSettings = field(default_factory=SparkSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    shelf: ShelfSettings = field(default_factory=ShelfSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    lineage: LineageSettings = field(default_factory=LineageSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    airflow: AirflowSettings = field(default_factory=AirflowSettings)
    # Never printed, never hashed into the config hash, never written anywhere.
    pseudonym_key: bytes | None = field(default=None, repr=False, compare=False)
    code_version: str = "unknown"

    @model_validator(mode="after")
    def _fits_the_shelf(self) -> Config:
        size, problems = self.shelf.size, []
        if self.model.candidates_per_user < size:
            problems.append(f"[shelf] size: must be at most [model] candidates_per_user "
                            f"({self.model.candidates_per_user}), got {size}")
        if self.rerank.explore_slots > size:
            problems.append(f"[rerank] explore_slots: must be at most [shelf] size ({size}), "
                            f"got {self.rerank.explore_slots}")
        if self.audit.k > size:
            problems.append(f"[audit] k: must be at most [shelf] size ({size}), got {self.audit.k}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- paths of the lakehouse contract (DESIGN.md, Interfaces) -----------------
    def path(self, *parts: str) -> str:
        root = self.lakehouse.rstrip("/")
        return "/".join([root, *parts])

    def landing(self, name: str) -> str:
        return self.path("landing", name)

    def table(self, layer: str, name: str) -> str:
        if layer not in {"silver", "gold", "quarantine"}:
            raise ConfigError(f"unknown layer {layer!r}: use silver, gold or quarantine")
        return self.path(layer, name)

    def model_dir(self, run_id: str) -> str:
        return self.path("models", run_id)

    def report_dir(self, run_date: str) -> str:
        return self.path("reports", run_date)

    # -- secrets -------------------------------------------------------------------
    def require_pseudonym_key(self) -> bytes:
        """The HMAC key, or a ConfigError that says how to provide one."""
        key = self.pseudonym_key
        if not key:
            raise ConfigError(
                "no pseudonymization key: set FAIRSHELF_PSEUDONYM_KEY to a secret of at "
                f"least {MIN_KEY_BYTES} bytes (for example `export FAIRSHELF_PSEUDONYM_KEY="
                "$(python -c 'import secrets; print(secrets.token_urlsafe(48))')`), point "
                "FAIRSHELF_PSEUDONYM_KEY_FILE at a 0600 file holding one, or create the "
                "Airflow connection `fairshelf_pseudonym_key` with the key as its password"
            )
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"the pseudonymization key is {len(key)} bytes; at least {MIN_KEY_BYTES} "
                "are required. Generate a longer one (see README, 'Pseudonymization key')"
            )
        return key

    @property
    def key_fingerprint(self) -> str:
        """A short, non-reversible identifier of the key (recorded per run, never the key)."""
        key = self.require_pseudonym_key()
        return hashlib.sha256(b"fairshelf-key-fingerprint:" + key).hexdigest()[:16]

    # -- identity of a configuration -----------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("pseudonym_key")
        data["lineage"].pop("api_key")
        return data

    @property
    def config_hash(self) -> str:
        """Hash of every setting that shapes the output (excludes the key and paths)."""
        data = self.as_dict()
        data.pop("lakehouse")
        data.pop("code_version")
        data.pop("lineage")  # where lineage events go does not shape the output
        data.pop("airflow")  # nor how the DAG runs the stages
        data["spark"].pop("master")
        data["spark"].pop("driver_memory")
        blob = json.dumps(data, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_key(self, key: bytes | str) -> "Config":
        if isinstance(key, str):
            key = key.encode()
        return dataclasses.replace(self, pseudonym_key=key)


# Environment variables honoured, and the setting each one overrides.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "FAIRSHELF_LAKEHOUSE": ("lakehouse",),
    "FAIRSHELF_SPARK_MASTER": ("spark", "master"),
    "FAIRSHELF_SPARK_DRIVER_MEMORY": ("spark", "driver_memory"),
    "FAIRSHELF_TABLE_ENGINE": ("spark", "table_engine"),
    "FAIRSHELF_K_ANONYMITY": ("privacy", "k_anonymity"),
    "FAIRSHELF_OPENLINEAGE_URL": ("lineage", "url"),
    "FAIRSHELF_OPENLINEAGE_TRANSPORT": ("lineage", "transport"),
    "FAIRSHELF_STAGE_RUNNER": ("airflow", "stage_runner"),
    "FAIRSHELF_SPARK_CONN_ID": ("airflow", "spark_conn_id"),
}

# The sections of a configuration file; besides them, only ``lakehouse`` is a top-level key.
SECTIONS = tuple(f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory))


def _read_key(environ: Mapping[str, str]) -> bytes | None:
    if environ.get("FAIRSHELF_PSEUDONYM_KEY"):
        return environ["FAIRSHELF_PSEUDONYM_KEY"].encode()
    key_file = environ.get("FAIRSHELF_PSEUDONYM_KEY_FILE")
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise ConfigError(f"FAIRSHELF_PSEUDONYM_KEY_FILE points at {path}, which does not exist")
        if path.stat().st_mode & 0o077:
            raise ConfigError(
                f"the key file {path} is readable by group or others; run `chmod 600 {path}`"
            )
        return path.read_bytes().strip()
    return None


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Read defaults, then the TOML file, then the environment, then ``overrides``.

    ``overrides`` are top-level fields (``lakehouse=...``, ``pseudonym_key=...``).
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = tomllib.loads(
        resources.files("jobs.core").joinpath("defaults.toml").read_text()
    )
    path = path or environ.get("FAIRSHELF_CONFIG")
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        try:
            user = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc
        for key, value in user.items():
            if isinstance(value, dict) and isinstance(data.get(key, {}), dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value

    if "selection_budget_seconds" in data.get("model", {}):
        raise ConfigError("[model] selection_budget_seconds: replaced by selection_trials, a number of "
                          "models to validate (1 = the configured model only): a search budgeted in "
                          "seconds chose another model on a busier machine")
    if "api_key" in data.get("lineage", {}):
        raise ConfigError("[lineage] api_key: a secret; set FAIRSHELF_OPENLINEAGE_API_KEY "
                          "instead of writing it in a configuration file")
    if environ.get("FAIRSHELF_OPENLINEAGE_API_KEY"):
        data.setdefault("lineage", {})["api_key"] = environ["FAIRSHELF_OPENLINEAGE_API_KEY"]
    for var, target in ENV_OVERRIDES.items():
        if environ.get(var):
            section = data
            for part in target[:-1]:
                section = section.setdefault(part, {})
            section[target[-1]] = environ[var]

    unknown = sorted(set(data) - {"lakehouse", *SECTIONS})
    if unknown:
        raise ConfigError(f"unknown configuration section(s) {unknown}; the sections are "
                          f"{', '.join(f'[{name}]' for name in SECTIONS)}, and lakehouse the one top-level setting")

    return Config(**{
        **data,
        "pseudonym_key": _read_key(environ),
        "code_version": code_version(environ),
        **overrides,
    })


def java_executable(environ: Mapping[str, str] | None = None) -> str | None:
    """The ``java`` Spark would start: ``$JAVA_HOME/bin/java`` when JAVA_HOME is set (PySpark
    uses it then, even if it is wrong), else the first on PATH; None when there is none."""
    environ = os.environ if environ is None else environ
    if environ.get("JAVA_HOME"):
        java = Path(environ["JAVA_HOME"]) / "bin" / "java"
        return str(java) if os.access(java, os.X_OK) else None
    return shutil.which("java", path=environ.get("PATH", ""))
