"""The one typed configuration object of fairshelf.

Loaded from a TOML file (the packaged ``defaults.toml`` unless ``FAIRSHELF_CONFIG``
or an explicit path names another) and overridden by environment variables.
This module is the only place in fairshelf that reads the environment.

Secrets (the pseudonymization key) come from the environment (or an Airflow
connection, handed in by the DAG) and are never read from a file in the repo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from jobs.core.version import code_version

MIN_KEY_BYTES = 32


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message says how to fix it."""


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[2]"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    # "delta-rs": Spark's Python Data Source API + deltalake (no JVM jars needed).
    # "delta-spark": format("delta"), for clusters that provide the Delta Lake jars.
    table_engine: str = "delta-rs"


@dataclass(frozen=True)
class PrivacySettings:
    k_anonymity: int = 10
    age_bands: tuple[int, ...] = (18, 25, 35, 45, 55, 65)
    postcode_region_chars: int = 1
    max_watch_seconds: int = 6 * 3600


@dataclass(frozen=True)
class ModelSettings:
    algorithm: str = "blend"  # als | bpr (implicit) | ease | blend (jobs.recsys.models)
    weighting: str = "none"  # none | bm25 | tfidf confidence weighting
    factors: int = 16
    regularization: float = 0.05
    alpha: float = 5.0
    iterations: int = 15
    learning_rate: float = 0.01  # bpr
    ease_regularization: float = 300.0  # ease, blend
    blend_weight: float = 0.3  # blend: the EASE share of the mixed z-scores
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    seed: int = 42
    candidates_per_user: int = 200
    recency_half_life_days: float = 30.0
    batch_users: int = 2048
    # Nightly hyperparameter selection (jobs.stages.train.select_hyperparameters): seconds of search
    # on a validation split of the run's own interactions; 0 = no search (the configured
    # model is still validated once, for the model card's metrics).
    selection_budget_seconds: float = 60.0
    validation_share: float = 0.25  # of each sampled user's titles held out for validation
    validation_users: int = 10_000  # at most this many users (seeded sample) get a holdout


@dataclass(frozen=True)
class ShelfSettings:
    size: int = 20
    default_shelf_size: int = 20
    history_days: int = 365


@dataclass(frozen=True)
class RerankSettings:
    """Diversity constraints of the re-ranker (jobs/recsys/diversity.py, jobs/stages/rerank.py)."""

    mmr_lambda: float = 1.0  # 1 = the model's order; lower trades score for genre dissimilarity
    longtail_weight: float = 0.0  # bonus for long-tail titles (1 - popularity percentile) in the MMR
    max_genre_share: float = 0.7  # a title counts for each of its genres; 1 = off
    min_underrepresented_share: float = 0.1  # of each shelf, when the candidates allow; 0 = off
    underrepresented: str = "derived"  # derived | configured
    underrepresented_provider_groups: tuple[str, ...] = ()  # configured (added to derived)
    underrepresented_languages: tuple[str, ...] = ()  # configured (added to derived)
    underexposure_ratio: float = 0.8  # derived: consumption share < ratio x catalog share
    minority_share: float = 0.15  # derived: or consumption share below this
    max_titles_per_provider: int = 8  # 0 = off
    calibration_max_kl: float = 2.0  # KL(history genre mix || shelf genre mix); 0 = off
    calibration_smoothing: float = 0.01  # Steck's alpha
    explore_slots: int = 4  # last positions of a shelf, for titles the user has not engaged with
    explore_spread: float = 0.2  # weight of a seeded per-(user, title) term spreading explore picks
    exposure_weight: float = 0.0  # bonus for titles few shelves of the run hold yet (freshness) in the MMR


@dataclass(frozen=True)
class LineageSettings:
    """Where OpenLineage events go (jobs/orchestration/lineage.py); gold/lineage is always written."""

    transport: str = "file"  # file | http | none
    # file: one JSON file per event in this folder ("" = <lakehouse>/lineage/openlineage)
    directory: str = ""
    url: str = ""  # http: the backend's base URL (e.g. Marquez, http://localhost:5000)
    endpoint: str = "api/v1/lineage"
    timeout_seconds: float = 5.0
    namespace: str = "fairshelf"  # the jobs' namespace
    # http: a bearer API key, from FAIRSHELF_OPENLINEAGE_API_KEY only (never a file)
    api_key: str = field(default="", repr=False, compare=False)


# Thresholds of the fairness audit (jobs.stages.audit) a run can be held to.
AUDIT_THRESHOLDS = ("min_group_ndcg_ratio", "max_exposure_gini", "min_long_tail_share", "max_ndcg_drop")


@dataclass(frozen=True)
class AuditSettings:
    """The fairness audit (jobs/stages/audit.py): what it measures and the thresholds it gates on."""

    k: int = 10  # user side: nDCG@k and recall@k of the first k titles of each shelf
    min_group_users: int = 30  # groups with fewer holdout users are reported, not compared
    head_share: float = 0.8  # the head: most-watched titles making up this share of consumption
    min_group_ndcg_ratio: float = 0.6  # lowest / highest group nDCG@k, per dimension
    max_exposure_gini: float = 0.9  # Gini of title exposure over the catalog
    min_long_tail_share: float = 0.05  # share of shelf slots given to titles outside the head
    max_ndcg_drop: float = 0.10  # relative nDCG@k drop, re-ranked vs unconstrained
    # thresholds that fail the run (on the re-ranked shelves); the others are reported only
    blocking: tuple[str, ...] = ("min_group_ndcg_ratio", "max_exposure_gini", "min_long_tail_share")


@dataclass(frozen=True)
class QualitySettings:
    # Landing events of the run date: share of records that must carry each key
    # (event, account, content id) and a parseable timestamp / seconds value.
    landing_key_mostly: float = 0.95
    landing_value_mostly: float = 0.95
    # Volume: the run date's landing rows within [low, high] x the median of the previous
    # `volume_history_runs` successful runs; no check (a warning) with fewer than
    # `volume_min_history` of them.
    volume_band_low: float = 0.5
    volume_band_high: float = 2.0
    volume_history_runs: int = 7
    volume_min_history: int = 3
    # Representation (group shares in the catalog, the interactions and the training users).
    min_group_share: float = 0.005  # below: flagged (warning)
    max_group_share: float = 1.0  # above: blocking (1.0 = never; a one-language catalog is fine)
    collapse_fraction: float = 0.5  # a user group below this x its previous share: blocking
    max_kl_divergence: float = 0.1  # KL(current || previous) per population and dimension
    # Direct identifiers that must not appear in any string column outside landing/.
    identifier_patterns: tuple[str, ...] = (
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",  # email
        r"\b(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}\b",  # IPv4
        r"\b(?:[0-9a-fA-F]{1,4}:){4,7}[0-9a-fA-F]{1,4}\b|\b[0-9a-fA-F]{1,4}::(?:[0-9a-fA-F]{1,4}:?)*",  # IPv6
        r"^(?:acc|ml)-[0-9]+$",  # raw account ids (synthetic, MovieLens)
    )
    identifier_exempt_columns: tuple[str, ...] = ("content_id",)
    data_docs: bool = True  # Great Expectations Data Docs under reports/<D>/quality/


@dataclass(frozen=True)
class Config:
    lakehouse: str = "./lakehouse"
    spark: SparkSettings = field(default_factory=SparkSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    shelf: ShelfSettings = field(default_factory=ShelfSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    lineage: LineageSettings = field(default_factory=LineageSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    # Never printed, never hashed into the config hash, never written anywhere.
    pseudonym_key: bytes | None = field(default=None, repr=False, compare=False)
    code_version: str = "unknown"

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
}

_SECTIONS = {
    "spark": SparkSettings,
    "privacy": PrivacySettings,
    "model": ModelSettings,
    "shelf": ShelfSettings,
    "rerank": RerankSettings,
    "audit": AuditSettings,
    "lineage": LineageSettings,
    "quality": QualitySettings,
}


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Convert a TOML or environment value to the declared type of a field."""
    default = next(f for f in dataclasses.fields(cls) if f.name == name)
    current = getattr(cls(), name) if default.default is dataclasses.MISSING else default.default
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, tuple):
            items = value.split(",") if isinstance(value, str) else value
            return tuple(type(current[0])(v) for v in items) if current else tuple(items)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {cls.__name__}.{name}: cannot use {value!r} ({exc})") from exc


def _build_section(cls: type, values: Mapping[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    return cls(**{k: _coerce(cls, k, v) for k, v in values.items()})


def _validate(config: Config) -> Config:
    problems = []
    if config.privacy.k_anonymity < 2:
        problems.append("privacy.k_anonymity must be at least 2")
    if config.model.algorithm not in {"als", "bpr", "ease", "blend"}:
        problems.append(f"model.algorithm must be 'als', 'bpr', 'ease' or 'blend', not {config.model.algorithm!r}")
    if config.model.weighting not in {"none", "bm25", "tfidf"}:
        problems.append(f"model.weighting must be 'none', 'bm25' or 'tfidf', not {config.model.weighting!r}")
    if config.model.ease_regularization <= 0 or not 0 <= config.model.blend_weight <= 1:
        problems.append("model.ease_regularization must be positive and model.blend_weight within [0, 1]")
    if config.model.factors < 1 or config.model.iterations < 1:
        problems.append("model.factors and model.iterations must be positive")
    if config.model.selection_budget_seconds < 0:
        problems.append("model.selection_budget_seconds must be >= 0 (0 turns the search off)")
    if not 0 < config.model.validation_share < 1 or config.model.validation_users < 1:
        problems.append("model.validation_share must be within (0, 1) and model.validation_users >= 1")
    if config.shelf.size < 1 or config.model.candidates_per_user < config.shelf.size:
        problems.append("shelf.size must be >= 1 and <= model.candidates_per_user")
    if config.spark.table_engine not in {"delta-rs", "delta-spark"}:
        problems.append("spark.table_engine must be 'delta-rs' or 'delta-spark'")
    if config.lineage.transport not in {"file", "http", "none"}:
        problems.append(f"lineage.transport must be 'file', 'http' or 'none', not {config.lineage.transport!r}")
    if config.lineage.transport == "http" and "://" not in config.lineage.url:
        problems.append("lineage.transport = 'http' needs lineage.url (e.g. 'http://localhost:5000')")
    if config.lineage.timeout_seconds <= 0 or not config.lineage.namespace:
        problems.append("lineage.timeout_seconds must be positive and lineage.namespace not empty")
    if list(config.privacy.age_bands) != sorted(config.privacy.age_bands):
        problems.append("privacy.age_bands must be increasing")
    problems.extend(_rerank_problems(config.rerank, config.shelf.size))
    audit = config.audit
    if not 1 <= audit.k <= config.shelf.size or audit.min_group_users < 1:
        problems.append("audit.k must be within 1..shelf.size and audit.min_group_users >= 1")
    if not 0 < audit.head_share < 1:
        problems.append("audit.head_share must be within (0, 1)")
    bounded = ("min_group_ndcg_ratio", "max_exposure_gini", "min_long_tail_share", "max_ndcg_drop")
    if any(not 0 <= getattr(audit, name) <= 1 for name in bounded):
        problems.append(f"audit.{', audit.'.join(bounded)} must be within [0, 1]")
    if set(audit.blocking) - set(AUDIT_THRESHOLDS):
        problems.append(f"audit.blocking names unknown thresholds {sorted(set(audit.blocking) - set(AUDIT_THRESHOLDS))}; "
                        f"known: {list(AUDIT_THRESHOLDS)}")
    problems.extend(_quality_problems(config.quality))
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    return config


def _rerank_problems(rerank: RerankSettings, shelf_size: int) -> list[str]:
    problems = []
    if not 0 <= rerank.mmr_lambda <= 1 or rerank.longtail_weight < 0 or rerank.exposure_weight < 0:
        problems.append(
            "rerank.mmr_lambda must be within [0, 1], rerank.longtail_weight and rerank.exposure_weight >= 0"
        )
    if not 0 < rerank.max_genre_share <= 1 or not 0 <= rerank.min_underrepresented_share <= 1:
        problems.append("rerank.max_genre_share must be within (0, 1] and rerank.min_underrepresented_share within [0, 1]")
    if rerank.underrepresented not in {"derived", "configured"}:
        problems.append(f"rerank.underrepresented must be 'derived' or 'configured', not {rerank.underrepresented!r}")
    if rerank.underrepresented == "configured" and rerank.min_underrepresented_share > 0 and not (
        rerank.underrepresented_provider_groups or rerank.underrepresented_languages
    ):
        problems.append("rerank.underrepresented = 'configured' needs rerank.underrepresented_provider_groups "
                        "or rerank.underrepresented_languages")
    if rerank.underexposure_ratio <= 0 or not 0 <= rerank.minority_share < 1:
        problems.append("rerank.underexposure_ratio must be positive and rerank.minority_share within [0, 1)")
    if rerank.max_titles_per_provider < 0 or rerank.calibration_max_kl < 0:
        problems.append("rerank.max_titles_per_provider and rerank.calibration_max_kl must be >= 0 (0 = off)")
    if not 0 < rerank.calibration_smoothing < 1:
        problems.append("rerank.calibration_smoothing must be within (0, 1)")
    if not 0 <= rerank.explore_slots <= shelf_size or rerank.explore_spread < 0:
        problems.append("rerank.explore_slots must be within 0..shelf.size and rerank.explore_spread >= 0")
    return problems


def _quality_problems(q: QualitySettings) -> list[str]:
    import re

    problems = []
    for name in ("landing_key_mostly", "landing_value_mostly", "min_group_share", "max_group_share", "collapse_fraction"):
        if not 0 <= getattr(q, name) <= 1:
            problems.append(f"quality.{name} must be within [0, 1]")
    if not 0 < q.volume_band_low <= 1 <= q.volume_band_high:
        problems.append("quality.volume_band_low must be within (0, 1] and quality.volume_band_high >= 1")
    if q.volume_history_runs < 1 or not 1 <= q.volume_min_history <= q.volume_history_runs:
        problems.append("quality.volume_min_history must be within [1, quality.volume_history_runs]")
    if q.max_kl_divergence < 0:
        problems.append("quality.max_kl_divergence must be >= 0")
    if q.min_group_share > q.max_group_share:
        problems.append("quality.min_group_share must be <= quality.max_group_share")
    for pattern in q.identifier_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"quality.identifier_patterns: {pattern!r} is not a regular expression ({exc})")
    return problems


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
            if isinstance(value, dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value

    if "api_key" in data.get("lineage", {}):
        raise ConfigError("lineage.api_key is a secret: set FAIRSHELF_OPENLINEAGE_API_KEY "
                          "instead of writing it in a configuration file")
    if environ.get("FAIRSHELF_OPENLINEAGE_API_KEY"):
        data.setdefault("lineage", {})["api_key"] = environ["FAIRSHELF_OPENLINEAGE_API_KEY"]
    for var, target in ENV_OVERRIDES.items():
        if environ.get(var):
            section = data
            for part in target[:-1]:
                section = section.setdefault(part, {})
            section[target[-1]] = environ[var]

    top_known = {f.name for f in dataclasses.fields(Config)} - {"pseudonym_key", "code_version"}
    unknown = set(data) - top_known
    if unknown:
        raise ConfigError(f"unknown configuration section(s) {sorted(unknown)}")

    kwargs: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        kwargs[name] = _build_section(cls, data.get(name, {}), f"[{name}]")
    kwargs["lakehouse"] = str(data.get("lakehouse", "./lakehouse"))
    kwargs["pseudonym_key"] = _read_key(environ)
    kwargs["code_version"] = code_version(environ)
    kwargs.update(overrides)
    return _validate(Config(**kwargs))
