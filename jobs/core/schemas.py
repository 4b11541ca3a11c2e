"""Table contracts: the landing inputs' explicit schemas and each silver/gold table's
allowed columns (the minimization allow-list).

A stage that writes a column not declared here fails (see ``jobs.lake.tables``).
"""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

# --- landing (raw, holds PII; never leaves landing/) ---------------------------------
# Read as strings where a bad value must be quarantined rather than nulled silently.

VIEWING_EVENTS = StructType(
    [
        StructField("event_id", StringType()),
        StructField("account_id", StringType()),
        StructField("content_id", StringType()),
        StructField("started_at", StringType()),  # ISO-8601, UTC ("2026-11-25T20:15:03Z")
        StructField("seconds_watched", StringType()),  # integer seconds
        StructField("device_id", StringType()),
        StructField("device_type", StringType()),  # tv | mobile | tablet | web
        StructField("ip_address", StringType()),
        StructField("country", StringType()),  # ISO 3166-1 alpha-2
    ]
)

USERS = StructType(
    [
        StructField("account_id", StringType()),
        StructField("email", StringType()),
        StructField("full_name", StringType()),
        StructField("birth_date", StringType()),  # YYYY-MM-DD
        StructField("postcode", StringType()),
        StructField("gender", StringType()),  # F | M | X | empty (not given)
        StructField("country", StringType()),
        StructField("signup_date", StringType()),  # YYYY-MM-DD
        StructField("consent_personalization", StringType()),  # true | false
        StructField("consent_analytics", StringType()),  # true | false
        StructField("occupation", StringType()),  # optional (MovieLens has it)
    ]
)

CATALOG = StructType(
    [
        StructField("content_id", StringType()),
        StructField("title", StringType()),
        StructField("genres", StringType()),  # pipe-separated: "Drama|Comedy"
        StructField("provider", StringType()),
        StructField("provider_group", StringType()),  # major_studio | independent | ...
        StructField("original_language", StringType()),  # ISO 639-1
        StructField("release_year", StringType()),
        StructField("duration_seconds", StringType()),
    ]
)

ERASURE_REQUESTS = StructType(
    [
        StructField("request_id", StringType()),
        StructField("account_id", StringType()),
        StructField("requested_at", StringType()),
    ]
)

LANDING = {
    "viewing_events": VIEWING_EVENTS,
    "users": USERS,
    "catalog": CATALOG,
    "erasure_requests": ERASURE_REQUESTS,
}

# --- silver and gold (pseudonymous) -------------------------------------------------
# user_key is HMAC-SHA256(key, account_id) in hex. Columns holding it are kept out of
# Delta file statistics, so no pseudonym survives in the transaction log.

USER_KEY_COLUMNS = ("user_key",)

SILVER_EVENTS = StructType(
    [
        StructField("user_key", StringType(), False),
        StructField("content_id", StringType(), False),
        StructField("event_date", StringType(), False),
        StructField("hour_bucket", StringType(), False),  # night | morning | afternoon | evening
        StructField("seconds_watched", LongType(), False),
        StructField("device_type", StringType()),
        StructField("country", StringType()),
        StructField("run_date", StringType(), False),
    ]
)

QUARANTINE_EVENTS = StructType(
    [
        StructField("user_key", StringType()),  # pseudonymized before quarantining
        StructField("content_id", StringType()),
        StructField("event_date", StringType()),
        StructField("seconds_watched", StringType()),
        StructField("reason", StringType(), False),
        StructField("run_date", StringType(), False),
    ]
)

USER_FEATURES = StructType(
    [
        StructField("user_key", StringType(), False),
        StructField("age_band", StringType()),
        StructField("region", StringType()),
        StructField("gender", StringType()),
        StructField("consent_personalization", BooleanType(), False),
        StructField("run_date", StringType(), False),
    ]
)

CONTENT = StructType(
    [
        StructField("content_id", StringType(), False),
        StructField("title", StringType()),
        StructField("genres", StringType()),
        StructField("primary_genre", StringType()),
        StructField("provider", StringType()),
        StructField("provider_group", StringType()),
        StructField("original_language", StringType()),
        StructField("release_year", IntegerType()),
        StructField("duration_seconds", LongType()),
        StructField("run_date", StringType(), False),
    ]
)

INTERACTIONS = StructType(
    [
        StructField("user_key", StringType(), False),
        StructField("content_id", StringType(), False),
        StructField("views", LongType(), False),
        StructField("completion", DoubleType(), False),
        StructField("last_seen", StringType(), False),
        StructField("confidence", DoubleType(), False),
        StructField("run_date", StringType(), False),
    ]
)

CANDIDATES = StructType(
    [
        StructField("user_key", StringType(), False),
        StructField("content_id", StringType(), False),
        StructField("score", DoubleType(), False),
        StructField("candidate_rank", IntegerType(), False),
        StructField("model_version", StringType(), False),
        StructField("run_date", StringType(), False),
    ]
)

# The validation users' candidates from the model fitted on the selection split's fit part,
# and the (user, title) pairs held out from it (jobs.stages.train): the fairness audit's holdout.
HOLDOUT_CANDIDATES = CANDIDATES

HOLDOUT = StructType(
    [
        StructField("user_key", StringType(), False),
        StructField("content_id", StringType(), False),
        StructField("run_date", StringType(), False),
    ]
)

# The re-ranked shelves (jobs.stages.rerank): constraint_flags names, comma-separated, the
# constraints the shelf could not satisfy from its candidates (null: all satisfied;
# codes in jobs.recsys.diversity.FLAGS); explore marks titles placed in an explore slot.
SHELVES = StructType(
    [
        StructField("user_key", StringType(), False),
        StructField("rank", IntegerType(), False),
        StructField("content_id", StringType(), False),
        StructField("score", DoubleType(), False),
        StructField("constraint_flags", StringType()),
        StructField("explore", BooleanType(), False),
        StructField("run_date", StringType(), False),
    ]
)

RECOMMENDATIONS = StructType(
    [
        StructField("user_key", StringType(), False),
        StructField("rank", IntegerType(), False),
        StructField("content_id", StringType(), False),
        StructField("score", DoubleType(), False),
        StructField("reason", StringType(), False),
        StructField("constraint_flags", StringType()),
        StructField("run_id", StringType(), False),
        StructField("model_version", StringType(), False),
        StructField("run_date", StringType(), False),
    ]
)

DEFAULT_RECOMMENDATIONS = StructType(
    [
        StructField("region", StringType(), False),
        StructField("rank", IntegerType(), False),
        StructField("content_id", StringType(), False),
        StructField("score", DoubleType(), False),
        StructField("reason", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("run_date", StringType(), False),
    ]
)

# gold/runs is also the publication pointer (jobs/lake/reader.py): a row with status
# "succeeded" makes the tables of ``published_json`` visible, each at its recorded Delta
# version, in the one commit that appends the row. ``kind`` says what wrote the row:
#   run      a nightly run (succeeded or failed; only succeeded ones publish);
#   erasure  an erasure re-pointing the live publication at the post-erasure versions
#            (erasure vacuums the versions it pinned);
#   rollback ``fairshelf rollback`` re-pointing one table at its restored version.
# The live publication is the succeeded row with the latest (run_date, finished_at).
RUNS = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("run_date", StringType(), False),
        StructField("status", StringType(), False),  # succeeded | failed
        StructField("kind", StringType(), False),  # run | erasure | rollback
        StructField("failed_stage", StringType()),
        StructField("message", StringType()),
        StructField("started_at", StringType(), False),
        StructField("finished_at", StringType(), False),
        StructField("code_version", StringType(), False),
        StructField("config_hash", StringType(), False),
        StructField("key_fingerprint", StringType()),
        StructField("model_version", StringType()),
        StructField("metrics_json", StringType()),
        StructField("versions_json", StringType()),  # {"layer/name": version written by the run}
        # {"layer/name": {"version": v, "run_id": r, "run_date": d}}: what readers read
        # (each table at v, only r's rows, or d's partition where it has no run_id); null
        # for a failed run
        StructField("published_json", StringType()),
    ]
)

# Lineage of every stage of every run (jobs/orchestration/lineage.py), written by record_run in one
# commit before the run's gold/runs row: what it read (tables at a version, landing
# folders), what it wrote (version, rows in that commit), with which code and config.
LINEAGE = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("stage", StringType(), False),
        StructField("status", StringType(), False),  # succeeded | failed
        StructField("inputs_json", StringType(), False),  # {"layer/name": version read}
        StructField("landing_json", StringType()),  # {"folder": {"files": n, "bytes": n}}
        StructField("outputs_json", StringType(), False),  # {"layer/name": {"version", "rows"}}
        StructField("code_version", StringType(), False),
        StructField("config_hash", StringType(), False),
        StructField("expectations_json", StringType()),  # the stage's GE summary, if any
        StructField("started_at", StringType()),
        StructField("finished_at", StringType()),
        StructField("seconds", DoubleType()),
        StructField("run_date", StringType(), False),
    ]
)

# The record that users were erased (jobs.stages.erasure). It is the one table allowed to keep an
# erased user's pseudonym, with the time and row counts only (DESIGN.md, Privacy rules).
ERASURE_LOG = StructType(
    [
        StructField("user_key", StringType(), False),
        StructField("requested_at", StringType(), False),
        StructField("erased_at", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("rows_by_table_json", StringType(), False),  # {"layer/name": rows removed}
        StructField("model_files_rewritten", LongType(), False),
        StructField("run_date", StringType(), False),
    ]
)

# The fairness audit of a run (jobs.stages.audit): one row per metric, group and shelf kind.
AUDIT = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("side", StringType(), False),  # user | item
        StructField("metric", StringType(), False),
        StructField("group_dimension", StringType()),  # age_band, provider_group, ...; null overall
        StructField("group", StringType()),  # null: overall, or a between-group aggregate
        StructField("shelves", StringType()),  # unconstrained | reranked; null: a reference share
        StructField("value", DoubleType()),
        StructField("threshold", DoubleType()),
        StructField("passed", BooleanType()),
        StructField("blocking", BooleanType(), False),
        StructField("run_date", StringType(), False),
    ]
)

# Every Great Expectations result of a run (jobs.stages.quality), one row per expectation, plus
# the observed profiles (suite "volume"/"representation", severity "observation") that
# later runs compare with. Never an identifier: unexpected values of sensitive frames
# are kept as counts only.
QUALITY_RESULTS = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("run_date", StringType(), False),
        StructField("stage", StringType(), False),  # the stage that ran the suite
        StructField("suite", StringType(), False),
        StructField("expectation", StringType(), False),  # type(column, kwargs), readable
        StructField("severity", StringType(), False),  # blocking | warning | observation
        StructField("success", BooleanType(), False),
        StructField("observed_value", StringType()),  # JSON
        StructField("details", StringType()),  # JSON: counts, or groups/columns at fault
        StructField("checked_at", StringType(), False),
    ]
)

# Every table fairshelf writes, by "layer/name": its schema is its allow-list.
TABLES: dict[str, StructType] = {
    "silver/events": SILVER_EVENTS,
    "silver/user_features": USER_FEATURES,
    "silver/content": CONTENT,
    "silver/interactions": INTERACTIONS,
    "silver/candidates": CANDIDATES,
    "silver/shelves": SHELVES,
    "silver/holdout_candidates": HOLDOUT_CANDIDATES,
    "silver/holdout": HOLDOUT,
    "quarantine/viewing_events": QUARANTINE_EVENTS,
    "gold/recommendations": RECOMMENDATIONS,
    "gold/default_recommendations": DEFAULT_RECOMMENDATIONS,
    "gold/runs": RUNS,
    "gold/lineage": LINEAGE,
    "gold/erasure_log": ERASURE_LOG,
    "gold/audit": AUDIT,
    "gold/quality_results": QUALITY_RESULTS,  # the quality stage's suites
    "gold/output_quality_results": QUALITY_RESULTS,  # suites run by later stages (recommendations)
}


def allowed_columns(table: str) -> list[str]:
    """The allow-list of ``layer/name`` (raises KeyError for an undeclared table)."""
    return TABLES[table].fieldNames()
