"""Privacy transforms, shared by the stages that touch user data (DESIGN.md, "Privacy
rules"): pseudonymization (``pseudonymize_accounts``: HMAC-SHA256 composed from Spark's
``sha2``, so no Python UDF runs on the hot path; ``pseudonym`` is the same in Python),
generalization of quasi-identifiers (age band, region, hour bucket, gender),
k-anonymity (``enforce_k_anonymity``), and dropping erased users
(``erased_user_keys`` + ``filter_erased_users``).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs.core.config import Config
from jobs.lake import tables
from jobs.shared.stage import read_silver

# In the order they are generalized when a group is too small: most specific first.
QUASI_IDENTIFIERS = ("region", "age_band", "gender")


_BLOCK = 64  # SHA-256 block size in bytes


SUPPRESSED = "*"


def key_pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer pads of ``key`` (RFC 2104): K' xor ipad, K' xor opad, K' the
    key padded to the block size (hashed first when longer than a block). Each is as secret
    as the key (xor gives the key back)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_sha256_hex(message: Column, inner_pad: Column, outer_pad: Column) -> Column:
    """HMAC-SHA256 of ``message`` as lowercase hex, from Spark built-ins only:
    H(outer_pad || H(inner_pad || m)), the pads (``key_pads``) given as binary columns."""
    inner = F.unhex(F.sha2(F.concat(inner_pad, message.cast("binary")), 256))
    return F.sha2(F.concat(outer_pad, inner), 256)


def with_pseudonym(df: DataFrame, key: bytes, column: str, out: str) -> DataFrame:
    """``df`` with ``out`` = HMAC-SHA256(key, ``column``) (null stays null).

    The key's pads reach the executors as the one row of a broadcast DataFrame, never as
    literals: a literal is printed in every query plan (``explain``, the Spark UI, the
    event log), and the pads give the key back. The rows of a DataFrame made from local
    data are not printed (``Scan ExistingRDD``).
    """
    pads = df.sparkSession.createDataFrame([key_pads(key)], "_inner_pad binary, _outer_pad binary")
    keyed = df.crossJoin(F.broadcast(pads))
    value = hmac_sha256_hex(F.col(column), F.col("_inner_pad"), F.col("_outer_pad"))
    return keyed.withColumn(out, F.when(F.col(column).isNotNull(), value)).drop("_inner_pad", "_outer_pad")


def pseudonymize_accounts(df: DataFrame, key: bytes, column: str = "account_id") -> DataFrame:
    """Replace ``column`` by ``user_key`` = HMAC-SHA256(key, account id); null stays null."""
    return with_pseudonym(df, key, column, "user_key").drop(column)


def with_age_band(df: DataFrame, run_date: date, bands: tuple[int, ...]) -> DataFrame:
    """Replace ``birth_date`` by an age band ("25-34", "65+", "<18") at ``run_date``."""
    birth = F.to_date("birth_date", "yyyy-MM-dd")
    age = F.floor(F.months_between(F.lit(run_date), birth) / 12)
    band = F.when(age.isNull() | (age < 0) | (age > 120), F.lit(None))
    band = band.when(age < bands[0], F.lit(f"<{bands[0]}"))
    for low, high in zip(bands, bands[1:]):
        band = band.when(age < high, F.lit(f"{low}-{high - 1}"))
    band = band.otherwise(F.lit(f"{bands[-1]}+"))
    return df.withColumn("age_band", band).drop("birth_date")


def with_region(df: DataFrame, chars: int) -> DataFrame:
    """Replace ``postcode`` by a coarse region: its first ``chars`` characters."""
    postcode = F.upper(F.trim(F.col("postcode")))
    region = F.when(
        postcode.rlike("^[0-9A-Z]"), F.concat(F.lit("R"), F.substring(postcode, 1, chars))
    )
    return df.withColumn("region", region).drop("postcode")


def with_hour_bucket(df: DataFrame, timestamp: str = "started_at") -> DataFrame:
    """Replace an event timestamp by its date and a coarse time-of-day bucket."""
    hour = F.hour(timestamp)
    bucket = (
        F.when(hour < 6, "night")
        .when(hour < 12, "morning")
        .when(hour < 18, "afternoon")
        .otherwise("evening")
    )
    return (
        df.withColumn("event_date", F.date_format(timestamp, "yyyy-MM-dd"))
        .withColumn("hour_bucket", bucket)
        .drop(timestamp)
    )


def with_normalized_gender(df: DataFrame) -> DataFrame:
    """Gender as F, M or X; anything else (not given) is null."""
    gender = F.upper(F.trim(F.col("gender")))
    return df.withColumn("gender", F.when(gender.isin("F", "M", "X"), gender))


def _group_size(columns: tuple[str, ...]) -> Column:
    window = Window.partitionBy(*[F.coalesce(F.col(c), F.lit("\0null")) for c in columns])
    return F.count(F.lit(1)).over(window)


def enforce_k_anonymity(
    df: DataFrame, k: int, quasi_identifiers: tuple[str, ...] = QUASI_IDENTIFIERS
) -> DataFrame:
    """Generalize, then suppress, until every quasi-identifier combination covers >= k rows.

    One row per user. Rows in groups smaller than k have their quasi-identifiers
    generalized to ``*`` one at a time, from the first one named (the most specific)
    to the last; rows whose fully generalized group is still smaller than k keep all
    quasi-identifiers as ``*`` and are marked ``suppressed``. Adds a boolean
    ``k_generalized`` column (this row lost detail) and ``suppressed``.
    """
    out = df.withColumn("k_generalized", F.lit(False))
    for i, column in enumerate(quasi_identifiers):
        small = _group_size(quasi_identifiers) < k
        out = out.withColumn("_small", small)
        out = out.withColumn(column, F.when(F.col("_small"), F.lit(SUPPRESSED)).otherwise(F.col(column)))
        out = out.withColumn("k_generalized", F.col("k_generalized") | F.col("_small"))
        out = out.drop("_small")
    # After the last step every small row is in the all-"*" group; if that group is
    # still smaller than k its members are suppressed (identical and uninformative).
    suppressed = F.col("k_generalized") & (_group_size(quasi_identifiers) < k)
    return out.withColumn("suppressed", suppressed)


def with_k_sized_suppression_group(
    df: DataFrame, k: int, quasi_identifiers: tuple[str, ...] = QUASI_IDENTIFIERS
) -> DataFrame:
    """Fill the all-``*`` group up to k rows when it holds between 1 and k - 1.

    Suppressed users keep their pseudonym (their consent and events still count), and the
    generalization is deterministic: anyone holding the landing profiles can recompute who
    was suppressed, so an all-``*`` group of fewer than k rows would narrow each of them
    down to fewer than k pseudonyms. Rows move into it from the largest other group: those
    with the highest ``user_key`` (an HMAC, which such an attacker cannot compute), as many
    as that group can spare while keeping k; a group that cannot spare enough moves whole.
    Input: the output of :func:`enforce_k_anonymity`. Moved rows are ``k_generalized``
    and ``k_filled``; ``suppressed`` still marks the users whose own group was too small.
    """
    all_star = F.lit(True)
    for c in quasi_identifiers:
        all_star = all_star & F.coalesce(F.col(c) == F.lit(SUPPRESSED), F.lit(False))
    star_rows = df.where(all_star).agg(F.count(F.lit(1)).alias("_star_rows"))
    largest = (
        df.where(~all_star)
        .groupBy(*quasi_identifiers)
        .agg(F.count(F.lit(1)).alias("_donor_rows"))
        .orderBy(F.desc("_donor_rows"), *[F.asc_nulls_first(c) for c in quasi_identifiers])
        .limit(1)
    )
    need = F.lit(k) - F.col("_star_rows")
    take = F.when(
        (F.col("_star_rows") > 0) & (need > 0),
        F.when(F.col("_donor_rows") - F.lit(k) >= need, need).otherwise(F.col("_donor_rows")),
    ).otherwise(F.lit(0))
    plan = star_rows.crossJoin(largest).select(
        F.lit(1).alias("_plan"),
        take.alias("_take"),
        *[F.col(c).alias(f"_donor_{c}") for c in quasi_identifiers],
    )
    in_donor = F.lit(True)
    for c in quasi_identifiers:
        in_donor = in_donor & F.col(c).eqNullSafe(F.col(f"_donor_{c}"))
    rank = F.row_number().over(Window.partitionBy(*quasi_identifiers).orderBy(F.desc("user_key")))
    out = (
        df.withColumn("_plan", F.lit(1))
        .join(F.broadcast(plan), "_plan", "left")
        .withColumn("k_filled", F.coalesce(in_donor & (rank <= F.col("_take")), F.lit(False)))
    )
    for c in quasi_identifiers:
        out = out.withColumn(c, F.when(F.col("k_filled"), F.lit(SUPPRESSED)).otherwise(F.col(c)))
    out = out.withColumn("k_generalized", F.col("k_generalized") | F.col("k_filled"))
    return out.select(*df.columns, "k_filled")


def build_user_features(
    profiles: DataFrame,
    key: bytes,
    run_date: date,
    config: Config,
    erased_keys: DataFrame | None = None,
) -> DataFrame:
    """Landing profiles -> pseudonymous, generalized, k-anonymous user features.

    Users in ``erased_keys`` (a ``user_key`` column) are dropped before k-anonymity, so
    the groups published are counted without them.
    """
    privacy = config.privacy
    consent = F.lower(F.trim(F.col("consent_personalization"))) == "true"
    df = (
        profiles.where(F.col("account_id").isNotNull())
        .select("account_id", "birth_date", "postcode", "gender", "consent_personalization")
        .withColumn("consent_personalization", F.coalesce(consent, F.lit(False)))
    )
    df = pseudonymize_accounts(df, key)
    if erased_keys is not None:
        df = filter_erased_users(df, erased_keys)
    df = with_age_band(df, run_date, privacy.age_bands)
    df = with_region(df, privacy.postcode_region_chars)
    df = with_normalized_gender(df)
    df = enforce_k_anonymity(df, privacy.k_anonymity)
    df = with_k_sized_suppression_group(df, privacy.k_anonymity)
    return df.withColumn("run_date", F.lit(run_date.isoformat()))


ERASURE_LOG_TABLE = "gold/erasure_log"


def pseudonym(key: bytes, account_id: str) -> str:
    """HMAC-SHA256(key, account id) as lowercase hex: the ``user_key`` that
    ``jobs.shared.privacy.pseudonymize_accounts`` computes in Spark."""
    return hmac.new(key, account_id.encode("utf-8"), hashlib.sha256).hexdigest()


def filter_erased_users(df: DataFrame, erased_keys: DataFrame) -> DataFrame:
    """Rows of ``df`` whose ``user_key`` is not one of ``erased_keys``' (rows without a key
    are kept). ``erased_keys`` has a ``user_key`` column, e.g. ``erased_user_keys()``."""
    erased = erased_keys.select("user_key").distinct()
    return df.join(F.broadcast(erased), "user_key", "left_anti").select(*df.columns)


def erased_user_keys(spark: SparkSession, config: Config) -> DataFrame:
    """The ``user_key`` of every erased user (for ``filter_erased_users``)."""
    if not tables.table_exists(config.table("gold", "erasure_log")):
        return spark.createDataFrame([], "user_key string")
    return read_silver(spark, config, ERASURE_LOG_TABLE).select("user_key").distinct()
