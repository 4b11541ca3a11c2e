"""The Great Expectations wrapper: run the suites of ``jobs/shared/expectations/`` (GE 1.x
JSON, one per table or profile frame, loaded with GE's own ``ExpectationSuite``) on Spark
DataFrames through an ephemeral GE context; nothing here builds an expectation. Values
that change per run are suite parameters (``{"$PARAMETER": ...}``) supplied at validation.

Each expectation's severity is GE's own ``severity`` field: ``critical`` is blocking,
``warning`` is recorded only. A GE checkpoint reports failure without raising;
``raise_on_blocking`` turns blocking failures into ``GateFailed``. ``record_results``
writes every result row to a gold results table. The quality stage and the rerank stage
(its shelves) use it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from jobs.core.config import Config
from jobs.core.dates import utc_now
from jobs.core.errors import GateFailed, StageError
from jobs.core.schemas import QUALITY_RESULTS
from jobs.shared import quality_profiles as qp
from jobs.shared.offline_docs import make_offline
from jobs.shared.stage import StageResult

# Package data: the suites travel inside the installed package (the repo's top-level
# expectations/ is a link to this folder).
SUITES_DIR = Path(str(resources.files("jobs.shared").joinpath("expectations")))


SEVERITIES = {"critical": "blocking", "warning": "warning", "info": "warning"}


OBSERVATION = "observation"  # result rows that store a profile for later runs


class QualityError(StageError):
    """A suite cannot be loaded or run (not a failed expectation: see GateFailed)."""


@dataclass
class SuiteOutcome:
    """The result of one suite on one frame: rows for gold/quality_results, and one line
    per blocking failure and per warning."""

    suite: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    blocking_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.blocking_failures


def load_suite(name: str, suites_dir: Path = SUITES_DIR):
    """The suite ``expectations/<name>.json``, deserialized by Great Expectations."""
    from great_expectations.core import ExpectationSuite

    path = suites_dir / f"{name}.json"
    if not path.is_file():
        raise QualityError(f"no expectation suite {path}: add it (GE 1.x suite JSON) or fix the name")
    try:
        return ExpectationSuite(**json.loads(path.read_text()))
    except Exception as exc:  # GE raises several types for a malformed suite
        raise QualityError(f"expectation suite {path} is not a valid GE 1.x suite: {exc}") from exc


def describe_expectation(config: Any) -> str:
    """``type(column, other kwargs)`` with parameters resolved, for rows and messages."""
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k not in {"batch_id", "result_format"}}
    column = kwargs.pop("column", None) or kwargs.pop("column_list", None)
    if "column_A" in kwargs:
        column = f"{kwargs.pop('column_A')}, {kwargs.pop('column_B')}"
    kwargs.pop("condition_parser", None)
    parts = [str(column)] if column is not None else []
    parts += [f"{k}={json.dumps(v, default=str)}" for k, v in sorted(kwargs.items()) if v is not None]
    return f"{config.type}({', '.join(parts)})"


def observed_value(result: dict[str, Any]) -> Any:
    """What GE observed: an aggregate's value, or unexpected/checked counts."""
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_count" in result:
        return {"unexpected": result["unexpected_count"], "checked": result.get("element_count")}
    return None


def result_details(result: dict[str, Any], sensitive: bool) -> dict[str, Any] | None:
    """Which rows were at fault: for a profile frame the groups/columns (index columns), for
    a frame holding identifiers or user keys nothing but counts."""
    if not result:
        return None
    counts = {k: result[k] for k in ("unexpected_count", "missing_count", "element_count") if k in result}
    if sensitive:
        return counts or None
    at_fault = result.get("partial_unexpected_index_list") or result.get("partial_unexpected_list")
    return {**counts, "at_fault": at_fault} if at_fault else (counts or None)


class Validator:
    """An ephemeral Great Expectations context with a Spark data source and a pandas one,
    reused for every frame of a run; optionally keeps results for Data Docs under
    ``docs_dir``.

    Tables are validated as Spark DataFrames (GE bundles a suite's aggregates into few
    Spark jobs); profile frames, a few rows each, as pandas DataFrames (``small_frame``):
    on them each Spark job would cost far more than the check itself.
    """

    def __init__(self, docs_dir: str | None = None):
        import great_expectations as gx

        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        self.gx = gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        # No progress bars on the console (a nightly task's log is read by people).
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.sources = {
            "spark": self.context.data_sources.add_spark("fairshelf"),
            "pandas": self.context.data_sources.add_pandas("fairshelf-profiles"),
        }
        self.docs_dir = docs_dir
        self._names: dict[str, int] = {}
        if docs_dir:
            self.context.add_data_docs_site(
                site_name="fairshelf",
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )

    def validate(
        self, df: DataFrame | pd.DataFrame, suite_name: str, parameters: dict[str, Any], *, frame: str | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Run ``suite_name`` on ``df`` (Spark or pandas); returns GE's result and the
        suite's fairshelf meta."""
        suite = load_suite(suite_name)
        meta = dict(suite.meta.get("fairshelf", {}))
        suite = self.context.suites.add_or_update(suite)
        name = self._unique(frame or suite_name)
        asset = self.sources["pandas" if isinstance(df, pd.DataFrame) else "spark"].add_dataframe_asset(name)
        batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        definition = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
        )
        result = definition.run(
            batch_parameters={"dataframe": df},
            expectation_parameters=parameters,
            result_format=result_format(meta),
        )
        return result, meta

    def _unique(self, name: str) -> str:
        """GE names assets and validation definitions uniquely per context."""
        self._names[name] = self._names.get(name, 0) + 1
        return name if self._names[name] == 1 else f"{name}-{self._names[name]}"

    def build_docs(self) -> str | None:
        """Build the Data Docs site of the results kept so far, self-contained
        (``jobs.shared.offline_docs``: no CDN asset, readable offline); returns its index."""
        if not self.docs_dir:
            return None
        self.context.build_data_docs(site_names=["fairshelf"])
        make_offline(self.docs_dir)
        return str(Path(self.docs_dir) / "index.html")


def small_frame(df: DataFrame) -> pd.DataFrame:
    """A profile frame (a few rows per group, column or day) as pandas, for ``Validator``."""
    return df.toPandas()


def result_format(meta: dict[str, Any]) -> dict[str, Any]:
    """No unexpected values of sensitive frames anywhere (results, Data Docs); for profile
    frames, the index columns that name the groups or columns at fault."""
    if meta.get("sensitive", True):
        return {"result_format": "BASIC", "partial_unexpected_count": 0}
    found = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
    if meta.get("index_columns"):
        found["unexpected_index_column_names"] = list(meta["index_columns"])
    return found


def outcome_rows(
    suite_name: str, ge_result: Any, meta: dict[str, Any], stage: str, run_id: str, run_date: date
) -> SuiteOutcome:
    """Turn GE's validation result into gold/quality_results rows and failure lines."""
    outcome = SuiteOutcome(suite_name)
    checked_at = utc_now().isoformat()
    sensitive = meta.get("sensitive", True)
    for item in ge_result.results:
        config = item.expectation_config
        severity = SEVERITIES.get(str(getattr(config.severity, "value", config.severity)), "blocking")
        described = describe_expectation(config)
        observed = observed_value(item.result or {})
        if item.exception_info and item.exception_info.get("raised_exception"):
            observed = {"error": str(item.exception_info.get("exception_message"))[:300]}
        details = result_details(item.result or {}, sensitive)
        outcome.rows.append(
            {
                "run_id": run_id,
                "run_date": run_date.isoformat(),
                "stage": stage,
                "suite": suite_name,
                "expectation": described,
                "severity": severity,
                "success": bool(item.success),
                "observed_value": json.dumps(observed, default=str),
                "details": json.dumps(details, default=str) if details else None,
                "checked_at": checked_at,
            }
        )
        if not item.success:
            fault = f" at {json.dumps(details['at_fault'], default=str)}" if details and details.get("at_fault") else ""
            line = f"{suite_name}: {described} observed {json.dumps(observed, default=str)}{fault}"
            (outcome.blocking_failures if severity == "blocking" else outcome.warnings).append(line)
    return outcome


def validate_frame(
    df: DataFrame,
    suite_name: str,
    parameters: dict[str, Any],
    config: Config,
    run_id: str,
    run_date: date,
    *,
    stage: str = "quality",
    validator: Validator | None = None,
    scan_identifiers: bool = True,
) -> list[SuiteOutcome]:
    """Validate ``df`` with ``expectations/<suite_name>.json`` and, unless
    ``scan_identifiers`` is false, its string columns for identifier-like values (the
    ``identifiers`` suite). Returns the outcomes (record them with ``record_results``,
    then gate with ``raise_on_blocking``). The frame is cached for the validation."""
    validator = validator or Validator()
    df = df.cache()
    try:
        ge_result, meta = validator.validate(df, suite_name, parameters, frame=suite_name)
        outcomes = [outcome_rows(suite_name, ge_result, meta, stage, run_id, run_date)]
        if scan_identifiers:
            outcomes.append(
                validate_identifiers({suite_name: df}, config, run_id, run_date, stage=stage, validator=validator)
            )
    finally:
        df.unpersist()
    return outcomes


def validate_identifiers(
    frames: dict[str, DataFrame],
    config: Config,
    run_id: str,
    run_date: date,
    *,
    stage: str = "quality",
    validator: Validator | None = None,
) -> SuiteOutcome:
    """The ``identifiers`` suite on the identifier counts of every string column of ``frames``."""
    validator = validator or Validator()
    q = config.quality
    counts = None
    for name, df in frames.items():
        one = qp.identifier_counts(df, name, q.identifier_patterns, q.identifier_exempt_columns)
        counts = one if counts is None else counts.unionByName(one)
    ge_result, meta = validator.validate(small_frame(counts), "identifiers", {}, frame=f"identifiers:{','.join(frames)}")
    return outcome_rows("identifiers", ge_result, meta, stage, run_id, run_date)


def record_results(
    spark: SparkSession, result: StageResult, outcomes: Iterable[SuiteOutcome],
    extra_rows: Sequence[dict[str, Any]] = (), table: str = "gold/quality_results",
) -> int:
    """Write every outcome's rows (and ``extra_rows``) as the run date's partition of
    ``table``: one commit; a rerun of the date replaces it. Stages other than quality use
    ``gold/output_quality_results``."""
    rows = [row for outcome in outcomes for row in outcome.rows] + list(extra_rows)
    return result.write(spark.createDataFrame(rows, QUALITY_RESULTS), table)


def raise_on_blocking(gate: str, outcomes: Iterable[SuiteOutcome]) -> None:
    """``GateFailed`` naming every failed blocking expectation and its observed value."""
    failures = [line for outcome in outcomes for line in outcome.blocking_failures]
    if failures:
        raise GateFailed(gate, failures)
