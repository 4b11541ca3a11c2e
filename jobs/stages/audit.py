"""Audit stage: the fairness audit of a run's shelves, before publish (``gold/audit``).

Two kinds of shelves are audited side by side, so the trade-off between accuracy and
diversity is visible on every run: ``unconstrained`` (the model's top ``shelf.size``,
``jobs.stages.rerank.filter_top_k``) and ``reranked`` (``jobs.stages.rerank.rerank_candidates``, the
shelves that get published).

User side (does quality depend on who the user is?): the train stage's holdout
(``silver/holdout_candidates`` from a model that never saw ``silver/holdout``) is turned
into both kinds of shelves; each validation user's nDCG and recall of the first
``audit.k`` titles (10 by default, as the offline evaluation) and of the whole shelf
(``shelf.size``: the re-ranker mostly acts past the first positions, so the trade-off
shows there) (``jobs.recsys.metrics.ranking_metrics_per_user``) are disaggregated with
``fairlearn.metrics.MetricFrame`` by ``age_band``, ``gender`` and ``region``, separately.
Users whose value was suppressed for k-anonymity (null) form the group ``*``; it and groups
with fewer than ``audit.min_group_users`` users are reported but left out of the
between-group ``difference`` and ``ratio`` (largest minus smallest, smallest over largest).
Each ratio has an upper confidence bound (``<metric>_ratio_upper``, ``ratio_upper_bound``):
a group mean over a few dozen users is noisy, and the smallest of several noisy means over
the largest is biased low, so a point estimate alone would fail runs at random; with
many users per group the bound closes in on the ratio.

Item side (who gets exposure?): ``jobs.recsys.exposure``, on the run's shelves (``silver/shelves``)
and the top ``shelf.size`` of ``silver/candidates``.

Gates (``[audit]``): ``min_group_ndcg_ratio`` (every dimension; blocking on the upper
confidence bound at ``audit.ratio_confidence``, a point estimate below it alone is
recorded as missed but does not block), ``max_exposure_gini``,
``min_long_tail_share`` and ``max_ndcg_drop`` (re-ranked nDCG@k relative to unconstrained)
are checked on both kinds of shelves and recorded (threshold, passed); those named in
``audit.blocking`` block on the re-ranked shelves: the rows are written first, then
``GateFailed("fairness", ...)`` stops the run before publish, so the last published
shelves stay live.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy.sparse import csr_matrix

from jobs.core.config import AuditSettings, Config
from jobs.core.errors import GateFailed
from jobs.core.schemas import TABLES
from jobs.lake.model_store import CARD_FILE, CARD_MARKDOWN_FILE
from jobs.recsys.exposure import ITEM_DIMENSIONS, SHELF_KINDS, item_side_rows
from jobs.recsys.metrics import ranking_metrics_per_user
from jobs.recsys.model_card import fairness_audited, with_fairness_audit
from jobs.shared.shelves import filter_top_k, rerank_candidates
from jobs.shared.stage import StageResult, stage_main

USER_DIMENSIONS = ("age_band", "gender", "region")
SUPPRESSED_GROUP = "*"  # a quasi-identifier suppressed for k-anonymity (null in silver)


# --- user side ----------------------------------------------------------------------------


def per_user_quality(shelves: pd.DataFrame, holdout: pd.DataFrame, cutoffs: Sequence[int]) -> pd.DataFrame:
    """nDCG@k and recall@k, for each k of ``cutoffs``, of every holdout user: ``shelves``
    (user_key, rank, content_id) scored against ``holdout`` (user_key, content_id). A
    holdout user without a shelf scores 0. Columns: user_key, ``ndcg@k``, ``recall@k``..."""
    users = np.sort(holdout["user_key"].unique())
    columns = [f"{m}@{k}" for k in cutoffs for m in ("ndcg", "recall")]
    if len(users) == 0:
        return pd.DataFrame({c: [] for c in ["user_key", *columns]})
    titles = np.unique(np.concatenate([holdout["content_id"].to_numpy(), shelves["content_id"].to_numpy()]))
    user_row = pd.Series(np.arange(len(users)), index=users)
    title_col = pd.Series(np.arange(len(titles)), index=titles)
    relevant = csr_matrix(
        (np.ones(len(holdout)), (user_row[holdout["user_key"]].to_numpy(), title_col[holdout["content_id"]].to_numpy())),
        shape=(len(users), len(titles)),
    )
    relevant.data[:] = 1.0
    width = max(cutoffs)
    top = shelves[(shelves["rank"] <= width) & shelves["user_key"].isin(user_row.index)]
    recommended = np.full((len(users), width), -1, dtype=np.int64)
    recommended[user_row[top["user_key"]].to_numpy(), top["rank"].to_numpy() - 1] = title_col[top["content_id"]].to_numpy()
    out = pd.DataFrame({"user_key": users})
    for k in cutoffs:
        scores = ranking_metrics_per_user(recommended, relevant, k)  # every holdout user has a relevant title
        out[f"ndcg@{k}"], out[f"recall@{k}"] = scores[f"ndcg@{k}"], scores[f"recall@{k}"]
    return out


def group_labels(values: pd.Series) -> pd.Series:
    """Sensitive-feature labels: a suppressed (null) value becomes the group ``*``."""
    return values.astype(object).where(values.notna(), SUPPRESSED_GROUP).astype(str)


def _mean_of(y_true, y_pred, per_user) -> float:
    """A MetricFrame metric: the mean of a per-user value handed in as a sample param
    (y_true and y_pred are placeholders: the per-user metric is already computed)."""
    return float(np.mean(per_user))


def ratio_upper_bound(means: np.ndarray, standard_errors: np.ndarray, confidence: float) -> float:
    """Upper confidence bound at ``confidence`` of the true min(means) / max(means), at
    least the observed ratio: every group's mean lies within ``z`` standard errors of its
    estimate at once (normal approximation, fair from some 30 users a group;
    Bonferroni over the 2 x groups one-sided bounds), so the true ratio is at most the
    smallest upper end over the largest lower end. 1 where no lower end is above 0."""
    means, standard_errors = np.asarray(means, float), np.asarray(standard_errors, float)
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / (2 * len(means)))
    upper, lower = (means + z * standard_errors).min(), (means - z * standard_errors).max()
    return float(min(1.0, upper / lower)) if lower > 0 else 1.0


def group_quality(quality: pd.DataFrame, labels: pd.Series, metrics: list[str], min_users: int,
                  confidence: float = 0.95) -> dict[str, Any]:
    """Disaggregate per-user ``metrics`` (columns of ``quality``) by ``labels`` with
    fairlearn's MetricFrame: ``by_group`` (every group, its mean and ``users``) and, over
    the compared groups only (not ``*``, at least ``min_users`` users), ``difference``,
    ``ratio`` and ``ratio_upper`` (``ratio_upper_bound`` at ``confidence``) per metric
    (None with fewer than two compared groups) and ``compared``."""
    labels = pd.Series(labels.to_numpy(), name=labels.name or "group")
    dummy = np.zeros(len(quality))

    def frame(mask: np.ndarray) -> MetricFrame:
        return MetricFrame(
            metrics={m: _mean_of for m in metrics},
            y_true=dummy[mask],
            y_pred=dummy[mask],
            sensitive_features=labels[mask].reset_index(drop=True),
            sample_params={m: {"per_user": quality[m].to_numpy()[mask]} for m in metrics},
        )

    every = frame(np.ones(len(quality), dtype=bool))
    sizes = labels.value_counts()
    compared = sorted(g for g, n in sizes.items() if g != SUPPRESSED_GROUP and n >= min_users)
    out: dict[str, Any] = {
        "by_group": {g: {**{m: float(every.by_group.loc[g, m]) for m in metrics}, "users": int(sizes[g])}
                     for g in sorted(sizes.index)},
        "compared": compared,
        "difference": {m: None for m in metrics},
        "ratio": {m: None for m in metrics},
        "ratio_upper": {m: None for m in metrics},
    }
    if len(compared) >= 2:
        between = frame(labels.isin(compared).to_numpy())
        out["difference"] = {m: float(v) for m, v in between.difference(method="between_groups").items()}
        out["ratio"] = {m: float(v) for m, v in between.ratio(method="between_groups").items()}
        errors = quality[metrics].groupby(labels.to_numpy()).sem().loc[compared].fillna(0.0)
        means = between.by_group.loc[compared]
        out["ratio_upper"] = {m: ratio_upper_bound(means[m], errors[m], confidence) for m in metrics}
    return out


def user_side_rows(
    quality: dict[str, pd.DataFrame], users: pd.DataFrame, cutoffs: Sequence[int], min_users: int,
    confidence: float = 0.95,
) -> list[dict]:
    """The user-side audit rows: for each kind of shelf (``quality``: kind -> per-user
    quality), overall nDCG@k and recall@k for each k of ``cutoffs``, ``holdout_users``,
    and per dimension of ``USER_DIMENSIONS`` each group's means and ``users``, and the
    between-group ``<metric>_difference``, ``<metric>_ratio`` and ``<metric>_ratio_upper``
    (its upper confidence bound at ``confidence``) (group None) and
    ``groups_compared``; then ``ndcg@k_relative_drop`` of the re-ranked shelves."""
    metrics = [f"{m}@{k}" for k in cutoffs for m in ("ndcg", "recall")]
    rows: list[dict] = []

    def row(metric, value, dimension=None, group=None, shelves=None):
        rows.append({"side": "user", "metric": metric, "group_dimension": dimension, "group": group,
                     "shelves": shelves, "value": None if value is None else float(value)})

    for kind, per_user in quality.items():
        joined = per_user.merge(users, on="user_key", how="left")
        row("holdout_users", len(joined), shelves=kind)
        for m in metrics:
            row(m, joined[m].mean() if len(joined) else None, shelves=kind)
        for dimension in USER_DIMENSIONS:
            groups = group_quality(joined, group_labels(joined[dimension]).rename(dimension), metrics, min_users,
                                   confidence)
            for group, values in groups["by_group"].items():
                row("users", values["users"], dimension, group, kind)
                for m in metrics:
                    row(m, values[m], dimension, group, kind)
            for m in metrics:
                row(f"{m}_difference", groups["difference"][m], dimension, None, kind)
                row(f"{m}_ratio", groups["ratio"][m], dimension, None, kind)
                row(f"{m}_ratio_upper", groups["ratio_upper"][m], dimension, None, kind)
            row("groups_compared", len(groups["compared"]), dimension, None, kind)
    if set(SHELF_KINDS) <= set(quality):
        for k in cutoffs:
            before, after = (quality[kind][f"ndcg@{k}"].mean() for kind in SHELF_KINDS)
            row(f"ndcg@{k}_relative_drop", 1.0 - after / before if before > 0 else None, shelves="reranked")
    return rows


# --- thresholds -----------------------------------------------------------------------------


def threshold_of(row: dict, settings: AuditSettings) -> tuple[str, float, str, bool] | None:
    """(threshold name, value, "min"|"max", whether missing it can block) a row is held
    to, or None. The group ratio blocks on its upper confidence bound only: its point
    estimate is held to the same threshold as a warning."""
    metric = row["metric"]
    if row["side"] == "user" and metric == f"ndcg@{settings.k}_ratio":
        return "min_group_ndcg_ratio", settings.min_group_ndcg_ratio, "min", False
    if row["side"] == "user" and metric == f"ndcg@{settings.k}_ratio_upper":
        return "min_group_ndcg_ratio", settings.min_group_ndcg_ratio, "min", True
    if row["side"] == "user" and metric == f"ndcg@{settings.k}_relative_drop":
        return "max_ndcg_drop", settings.max_ndcg_drop, "max", True
    if row["side"] == "item" and row["group_dimension"] is None and metric == "exposure_gini":
        return "max_exposure_gini", settings.max_exposure_gini, "max", True
    if row["side"] == "item" and row["group_dimension"] is None and metric == "long_tail_share":
        return "min_long_tail_share", settings.min_long_tail_share, "min", True
    return None


def judge(rows: list[dict], settings: AuditSettings) -> tuple[list[dict], list[str]]:
    """Rows with ``threshold``, ``passed`` (None where there is no threshold or no value)
    and ``blocking`` (a threshold named in ``settings.blocking``, on the re-ranked
    shelves), and one line per failed blocking check."""
    judged, failures = [], []
    for row in rows:
        held = threshold_of(row, settings)
        threshold = passed = None
        blocking = False
        if held:
            name, threshold, kind, can_block = held
            value = row["value"]
            passed = None if value is None else bool(value >= threshold if kind == "min" else value <= threshold)
            blocking = can_block and name in settings.blocking and row["shelves"] == "reranked"
            if blocking and passed is False:
                where = f" by {row['group_dimension']}" if row["group_dimension"] else ""
                bound = (f" (its upper bound at {settings.ratio_confidence:.0%} confidence: the group gap is "
                         "not sampling noise)" if row["metric"].endswith("_ratio_upper") else "")
                failures.append(
                    f"{row['side']} side {row['metric']}{where} of the re-ranked shelves is {value:.4g}{bound}, "
                    f"audit.{name} allows {'at least' if kind == 'min' else 'at most'} {threshold:g}"
                )
        judged.append({**row, "threshold": threshold, "passed": passed, "blocking": blocking})
    return judged, failures


# --- the stage ------------------------------------------------------------------------------


def holdout_history(interactions: DataFrame, holdout: DataFrame) -> DataFrame:
    """The interactions the holdout model was fitted on: ``interactions`` without the
    held-out (user, title) pairs (the re-ranker's view of a holdout user's history)."""
    return interactions.join(holdout.select("user_key", "content_id"), ["user_key", "content_id"], "left_anti")


def _shelf_rows(shelves: DataFrame, k: int) -> pd.DataFrame:
    return shelves.where(F.col("rank") <= k).select("user_key", "rank", "content_id").toPandas()


def run(spark: SparkSession, config: Config, run_date: date, run_id: str) -> StageResult:
    """Audit the run's shelves (module doc) into gold/audit; fail before publish when a
    blocking threshold is missed."""
    day = [run_date.isoformat()]
    result = StageResult("audit", run_date, run_id, config)
    settings, size = config.audit, config.shelf.size
    content = result.read(spark, "silver/content", day)
    interactions = result.read(spark, "silver/interactions", day)
    users = result.read(spark, "silver/user_features", day)
    candidates = result.read(spark, "silver/candidates", day)
    shelves = result.read(spark, "silver/shelves", day)
    holdout_candidates = result.read(spark, "silver/holdout_candidates", day)
    holdout = result.read(spark, "silver/holdout", day)

    holdout_shelves = {
        "unconstrained": filter_top_k(holdout_candidates, size),
        "reranked": rerank_candidates(
            holdout_candidates, content, holdout_history(interactions, holdout), config.rerank, size
        ),
    }
    cutoffs = sorted({settings.k, size})
    holdout_pairs = holdout.select("user_key", "content_id").toPandas()
    quality = {kind: per_user_quality(_shelf_rows(s, size), holdout_pairs, cutoffs)
               for kind, s in holdout_shelves.items()}
    user_groups = users.select("user_key", *USER_DIMENSIONS).toPandas()
    rows = user_side_rows(quality, user_groups, cutoffs, settings.min_group_users, settings.ratio_confidence)

    profile = title_profile(
        content, interactions, {"unconstrained": filter_top_k(candidates, size), "reranked": shelves}
    ).toPandas()
    rows += item_side_rows(profile, SHELF_KINDS, settings.head_share)

    judged, failures = judge(rows, settings)
    stamped = [{**r, "run_id": run_id, "run_date": run_date.isoformat()} for r in judged]
    result.write(spark.createDataFrame(stamped, TABLES["gold/audit"]), "gold/audit")
    checked = [r for r in judged if r["passed"] is not None]
    result.metrics.update(
        audit_rows=len(judged),
        checks=len(checked),
        checks_failed=sum(1 for r in checked if not r["passed"]),
        blocking_failed=len(failures),
        holdout_users=int(len(quality["reranked"])),
        **{f"{kind}_ndcg@{k}": round(float(q[f"ndcg@{k}"].mean()), 4) if len(q) else None
           for kind, q in quality.items() for k in cutoffs},
    )
    directory = Path(config.model_dir(run_id))
    if (directory / CARD_FILE).is_file():  # the card of the run's model gets the verdict
        with_fairness_audit(directory / CARD_FILE, directory / CARD_MARKDOWN_FILE, fairness_audited(run_id, judged))
    if failures:
        raise GateFailed("fairness", failures)
    return result


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()


def title_profile(content: DataFrame, interactions: DataFrame, shelves: dict[str, DataFrame]) -> DataFrame:
    """One row per catalog title: its item dimensions, ``viewers`` (users who watched it)
    and ``slots_<kind>`` (its slots on the shelves of each kind in ``shelves``), zeros
    where it has none. Shelf titles missing from the catalog are dropped (the catalog is
    the audit's universe)."""
    profile = content.select("content_id", *ITEM_DIMENSIONS).dropDuplicates(["content_id"])
    viewers = interactions.groupBy("content_id").agg(F.countDistinct("user_key").alias("viewers"))
    profile = profile.join(viewers, "content_id", "left")
    for kind, shelf in shelves.items():
        slots = shelf.groupBy("content_id").agg(F.count(F.lit(1)).alias(f"slots_{kind}"))
        profile = profile.join(slots, "content_id", "left")
    counts = ["viewers", *(f"slots_{kind}" for kind in shelves)]
    return profile.fillna(0, subset=counts).select(
        "content_id", *ITEM_DIMENSIONS, *(F.col(c).cast("long").alias(c) for c in counts)
    )
