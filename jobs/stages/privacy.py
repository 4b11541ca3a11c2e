"""Privacy stage: pseudonymize, minimize and generalize user profiles into
``silver/user_features``, k-anonymous over its quasi-identifiers.

The transforms are in ``jobs.shared.privacy`` (the ingest and erasure stages use them too).
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import Config
from jobs.core.schemas import USERS, allowed_columns
from jobs.lake.landing import check_landing_contract, landing_frame
from jobs.shared.privacy import build_user_features, erased_user_keys
from jobs.shared.stage import StageResult, stage_main


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """landing/users -> silver/user_features (one snapshot per run date)."""
    key = config.require_pseudonym_key()
    check_landing_contract([config.landing("users")], "users")  # before anything is written
    profiles = landing_frame(spark, config, "users", USERS)
    features = build_user_features(
        profiles, key, run_date, config, erased_user_keys(spark, config)
    ).cache()
    counts = features.agg(
        F.count(F.lit(1)).alias("users"),
        F.sum(F.col("k_generalized").cast("int")).alias("generalized"),
        F.sum(F.col("suppressed").cast("int")).alias("suppressed"),
        F.sum(F.col("k_filled").cast("int")).alias("filled"),
        F.sum((~F.col("consent_personalization")).cast("int")).alias("without_consent"),
    ).first()
    result = StageResult("privacy", run_date, run_id, config)
    result.write(
        features.select(*allowed_columns("silver/user_features")), "silver/user_features"
    )
    features.unpersist()
    result.metrics.update(
        users=counts["users"],
        k=config.privacy.k_anonymity,
        k_generalized_users=counts["generalized"] or 0,
        k_suppressed_users=counts["suppressed"] or 0,
        k_filled_users=counts["filled"] or 0,
        users_without_consent=counts["without_consent"] or 0,
        key_fingerprint=config.key_fingerprint,
    )
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
