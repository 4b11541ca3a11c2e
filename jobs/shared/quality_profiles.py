"""Small profile frames the quality gates validate instead of rescanning the data.

Checks that compare groups, runs or columns (group shares, KL divergence against the
previous run, the landing volume against the trailing median, identifier-like values in
string columns) are aggregated here in one Spark pass each into a frame of a few dozen
rows; the suites in ``expectations/`` then validate those rows (``jobs.stages.quality``).

Everything here is a pure function over DataFrames (or plain numbers): no reads, no writes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType
from pyspark.sql.window import Window, WindowSpec

# The groups whose presence is checked, by population: the content groups of the catalog
# and of the training interactions, and the user groups of the users being trained on.
CONTENT_DIMENSIONS = ("genre", "provider_group", "original_language")
USER_DIMENSIONS = ("age_band", "region", "gender")
POPULATIONS = ("catalog", "interactions", "training_users")
UNKNOWN_GROUP = "unknown"  # a null group value (gender not given, region suppressed ...)

PROFILE_KEYS = ("population", "dimension", "group")
SHARES = StructType(
    [
        StructField("population", StringType(), False),
        StructField("dimension", StringType(), False),
        StructField("group", StringType(), False),
        StructField("share", DoubleType(), False),
    ]
)
KL_SMOOTHING = 1e-6  # added to both shares so a vanished group gives a large, finite KL


def _group_value(column: Column) -> Column:
    return F.coalesce(F.nullif(F.trim(column.cast("string")), F.lit("")), F.lit(UNKNOWN_GROUP))


def _long_groups(df: DataFrame, population: str, dimensions: dict[str, Column]) -> DataFrame:
    """(population, dimension, group) per row of ``df`` and dimension: a stacked frame."""
    entries = F.array(
        *[F.struct(F.lit(name).alias("dimension"), groups.alias("groups")) for name, groups in dimensions.items()]
    )
    return (
        df.select(F.explode(entries).alias("_e"))
        .select(F.lit(population).alias("population"), "_e.dimension", F.explode("_e.groups").alias("group"))
    )


def _content_dimensions() -> dict[str, Column]:
    """Each content dimension as an array of groups (a title has several genres)."""
    genres = F.filter(F.split(F.coalesce(F.col("genres"), F.lit("")), r"\|"), lambda g: F.trim(g) != "")
    return {
        "genre": F.when(F.size(genres) > 0, genres).otherwise(F.array(F.lit(UNKNOWN_GROUP))),
        "provider_group": F.array(_group_value(F.col("provider_group"))),
        "original_language": F.array(_group_value(F.col("original_language"))),
    }


def group_shares(interactions: DataFrame, user_features: DataFrame, content: DataFrame) -> DataFrame:
    """The share of every group in each population, in one aggregation.

    - ``catalog``: content groups over the titles of ``content`` (a title counts once per
      genre it has, so genre shares are shares of genre assignments);
    - ``interactions``: content groups over the (user, title) rows of ``interactions``;
    - ``training_users``: age band, region and gender over the distinct users of
      ``interactions``. Null values (gender not given, suppressed region) form the group
      ``unknown``.

    Columns: population, dimension, group, group_count, share (within population and
    dimension, shares sum to 1).
    """
    titles = content.select("content_id", "genres", "provider_group", "original_language")
    catalog = _long_groups(titles, "catalog", _content_dimensions())
    watched = interactions.select("content_id").join(F.broadcast(titles), "content_id", "inner")
    watched_groups = _long_groups(watched, "interactions", _content_dimensions())
    users = (
        interactions.select("user_key").distinct()
        .join(user_features.select("user_key", *USER_DIMENSIONS), "user_key", "left")
    )
    user_groups = _long_groups(
        users, "training_users", {d: F.array(_group_value(F.col(d))) for d in USER_DIMENSIONS}
    )
    counts = catalog.unionByName(watched_groups).unionByName(user_groups).groupBy(*PROFILE_KEYS).count()
    total = F.sum("count").over(_per_dimension())
    return counts.select(
        *PROFILE_KEYS,
        F.col("count").alias("group_count"),
        (F.col("count") / total).alias("share"),
    )


def _per_dimension() -> WindowSpec:
    return Window.partitionBy("population", "dimension")


def with_previous_shares(shares: DataFrame, previous: DataFrame) -> DataFrame:
    """Join the previous run's shares (``previous``: population, dimension, group, share).

    A group present before and absent now gets share 0 (it vanished); a group new since
    then gets previous_share 0. ``share_ratio`` = share / previous_share where the group
    was present before, else null. Without history (``previous`` empty, or a dimension
    it lacks) previous_share and share_ratio are null.
    """
    before = previous.select(*PROFILE_KEYS, F.col("share").alias("previous_share"))
    known = before.select("population", "dimension").distinct().withColumn("_has_history", F.lit(True))
    joined = (
        shares.join(before, list(PROFILE_KEYS), "full_outer")
        .join(known, ["population", "dimension"], "left")
    )
    has_history = F.coalesce(F.col("_has_history"), F.lit(False))
    previous_share = F.when(has_history, F.coalesce(F.col("previous_share"), F.lit(0.0)))
    return joined.select(
        *PROFILE_KEYS,
        F.coalesce(F.col("group_count"), F.lit(0)).cast("long").alias("group_count"),
        F.coalesce(F.col("share"), F.lit(0.0)).alias("share"),
        previous_share.alias("previous_share"),
        F.when(previous_share > 0, F.coalesce(F.col("share"), F.lit(0.0)) / previous_share).alias("share_ratio"),
    )


def representation_drift(profile: DataFrame) -> DataFrame:
    """One row per (population, dimension): KL(current || previous) of the group shares,
    smoothed by ``KL_SMOOTHING``; null where there is no previous run to compare with.

    Columns: population, dimension, groups, kl_divergence.
    """
    p = F.col("share") + F.lit(KL_SMOOTHING)
    q = F.col("previous_share") + F.lit(KL_SMOOTHING)
    return profile.groupBy("population", "dimension").agg(
        F.count(F.lit(1)).alias("groups"),
        F.when(F.count("previous_share") > 0, F.sum(p * F.log(p / q))).alias("kl_divergence"),
    )


@dataclass(frozen=True)
class VolumeBand:
    """The landing volume of the run date against a baseline of earlier counts."""

    landing_rows: int
    baseline_size: int  # how many earlier counts the median is taken of
    trailing_median: float | None  # None: fewer earlier counts than required
    min_rows: float | None
    max_rows: float | None
    baseline: str = "previous runs"  # or "earlier landing days" (``volume_baseline``), or "none"


def volume_baseline(
    run_counts: Sequence[int], landing_counts: Sequence[int], min_history: int
) -> tuple[list[int], str]:
    """What the day's volume is compared with: the landing rows the previous successful
    runs observed, when there are at least ``min_history``; else, from the first night of
    a deployment on, the row counts of the earlier landing days, when there are at least
    ``min_history`` of those; else nothing (the check is then a warning)."""
    if len(run_counts) >= min_history:
        return list(run_counts), "previous runs"
    if len(landing_counts) >= min_history:
        return list(landing_counts), "earlier landing days"
    return list(run_counts), "none"


def volume_band(
    landing_rows: int, previous_counts: Sequence[int], min_history: int, low: float, high: float,
    baseline: str = "previous runs",
) -> VolumeBand:
    """Band = [low, high] x the median of ``previous_counts`` (newest last), or no band
    when fewer than ``min_history`` previous counts exist. Against earlier landing days
    only the low side holds: raw landing days are uneven (MovieLens days vary five-fold),
    and a half-empty day is what the check is for."""
    counts = list(previous_counts)
    if len(counts) < min_history or not counts:
        return VolumeBand(landing_rows, len(counts), None, None, None, "none")
    median = float(statistics.median(counts))
    high_rows = None if baseline == "earlier landing days" else high * median
    return VolumeBand(landing_rows, len(counts), median, low * median, high_rows, baseline)


VOLUME = StructType(
    [
        StructField("landing_rows", LongType(), False),
        StructField("baseline_size", LongType(), False),
        StructField("trailing_median", DoubleType()),
        StructField("baseline", StringType(), False),
    ]
)


def volume_row(band: VolumeBand) -> tuple:
    return (band.landing_rows, band.baseline_size, band.trailing_median, band.baseline)


def identifier_counts(
    df: DataFrame, frame: str, patterns: Sequence[str], exempt_columns: Sequence[str] = ()
) -> DataFrame:
    """How many values of each string column of ``df`` look like a direct identifier
    (match any of ``patterns``), in one aggregation over ``df``.

    Columns: frame, column, identifier_values, leaking_column (the column's name when it
    holds any, else null). Columns in ``exempt_columns`` are skipped (e.g. ``content_id``,
    whose MovieLens values have the same shape as its account ids). Only counts leave the
    frame, never the values.
    """
    columns = [
        f.name for f in df.schema.fields if isinstance(f.dataType, StringType) and f.name not in exempt_columns
    ]
    rows_schema = "frame string, column string, identifier_values long, leaking_column string"
    if not columns:
        return df.sparkSession.createDataFrame([], rows_schema)
    pattern = "|".join(f"(?:{p})" for p in patterns)
    counts = df.agg(
        *[F.sum(F.when(F.col(c).rlike(pattern), 1).otherwise(0)).alias(c) for c in columns]
    )
    stacked = counts.select(
        F.explode(
            F.array(*[F.struct(F.lit(c).alias("column"), F.coalesce(F.col(c), F.lit(0)).cast("long").alias("n")) for c in columns])
        ).alias("_c")
    )
    return stacked.select(
        F.lit(frame).alias("frame"),
        F.col("_c.column").alias("column"),
        F.col("_c.n").alias("identifier_values"),
        F.when(F.col("_c.n") > 0, F.col("_c.column")).alias("leaking_column"),
    )


def with_content_in_catalog(events: DataFrame, content: DataFrame) -> DataFrame:
    """Add ``content_in_catalog`` (bool): the event's title is in ``content`` (referential
    integrity, checked by the silver_events suite)."""
    known = content.select("content_id").distinct().withColumn("content_in_catalog", F.lit(True))
    return events.join(F.broadcast(known), "content_id", "left").withColumn(
        "content_in_catalog", F.coalesce(F.col("content_in_catalog"), F.lit(False))
    )
