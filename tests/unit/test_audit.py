"""The fairness audit's pure functions (jobs.stages.audit, jobs.recsys.exposure) on tiny hand-made
frames whose answers are worked out by hand in the comments."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from jobs.core.config import AuditSettings
from jobs.recsys.exposure import group_shares, head_titles, item_side_rows, long_tail_share, shelf_exposure_metrics
from jobs.stages.audit import (
    group_labels, group_quality, judge, per_user_quality, ratio_upper_bound, user_side_rows,
)


def shelf(rows):
    return pd.DataFrame(rows, columns=["user_key", "rank", "content_id"])


def pairs(rows):
    return pd.DataFrame(rows, columns=["user_key", "content_id"])


# --- user side ------------------------------------------------------------------------------


def test_per_user_quality_by_hand():
    shelves = shelf([("u1", 1, "a"), ("u1", 2, "b"), ("u2", 1, "c"), ("u2", 2, "a"), ("u2", 3, "d")])
    holdout = pairs([("u1", "a"), ("u2", "a"), ("u2", "x"), ("u3", "a")])
    quality = per_user_quality(shelves, holdout, cutoffs=[2, 3]).set_index("user_key")
    # u1: hit at rank 1 of 1 relevant -> nDCG 1, recall 1
    assert quality.loc["u1", "ndcg@2"] == pytest.approx(1.0)
    assert quality.loc["u1", "recall@2"] == pytest.approx(1.0)
    # u2: hit at rank 2 (d at rank 3 is past k); 2 relevant: DCG 1/log2(3), IDCG 1 + 1/log2(3)
    idcg = 1 + 1 / math.log2(3)
    assert quality.loc["u2", "ndcg@2"] == pytest.approx((1 / math.log2(3)) / idcg)
    assert quality.loc["u2", "recall@2"] == pytest.approx(0.5)
    # at 3, u2's d (not relevant) adds nothing: same DCG, same ideal (2 relevant)
    assert quality.loc["u2", "ndcg@3"] == pytest.approx(quality.loc["u2", "ndcg@2"])
    # u3 has a holdout but no shelf: scored 0, not dropped
    assert quality.loc["u3", "ndcg@2"] == 0.0
    assert len(quality) == 3


def test_group_labels_suppressed_values_form_the_star_group():
    labels = group_labels(pd.Series(["25-34", None, "35-44", np.nan]))
    assert labels.tolist() == ["25-34", "*", "35-44", "*"]


def test_group_with_zero_ndcg_gives_ratio_zero_and_full_difference():
    quality = pd.DataFrame({"ndcg@10": [1.0, 0.5, 0.0, 0.0], "recall@10": [1.0, 1.0, 0.0, 0.0]})
    labels = pd.Series(["F", "F", "M", "M"], name="gender")
    out = group_quality(quality, labels, ["ndcg@10", "recall@10"], min_users=2)
    assert out["by_group"]["F"] == {"ndcg@10": 0.75, "recall@10": 1.0, "users": 2}
    assert out["by_group"]["M"]["ndcg@10"] == 0.0
    assert out["ratio"]["ndcg@10"] == 0.0
    assert out["difference"]["ndcg@10"] == pytest.approx(0.75)
    assert out["compared"] == ["F", "M"]


def test_small_and_suppressed_groups_are_reported_but_not_compared():
    quality = pd.DataFrame({"ndcg@10": [0.4, 0.4, 0.2, 0.2, 0.0, 0.9]})
    labels = pd.Series(["a", "a", "b", "b", "*", "c"], name="region")
    out = group_quality(quality, labels, ["ndcg@10"], min_users=2)
    assert set(out["by_group"]) == {"a", "b", "c", "*"}
    assert out["by_group"]["c"]["users"] == 1
    assert out["compared"] == ["a", "b"]
    # only a (0.4) and b (0.2) compared: ratio 0.5, difference 0.2 (c's 0.9 and *'s 0 left out)
    assert out["ratio"]["ndcg@10"] == pytest.approx(0.5)
    assert out["difference"]["ndcg@10"] == pytest.approx(0.2)


def test_fewer_than_two_compared_groups_leave_ratio_undefined():
    quality = pd.DataFrame({"ndcg@10": [0.4, 0.4, 0.1]})
    out = group_quality(quality, pd.Series(["a", "a", "b"]), ["ndcg@10"], min_users=2)
    assert out["compared"] == ["a"] and out["ratio"]["ndcg@10"] is None


def test_user_side_rows_cover_every_dimension_group_and_kind():
    per_user = pd.DataFrame({"user_key": ["u1", "u2"], "ndcg@1": [1.0, 0.0], "recall@1": [1.0, 0.0]})
    users = pd.DataFrame({"user_key": ["u1", "u2"], "age_band": ["18-24", None], "gender": ["F", "M"],
                          "region": ["N", "S"]})
    worse = per_user.assign(**{"ndcg@1": [0.5, 0.0]})
    rows = user_side_rows({"unconstrained": per_user, "reranked": worse}, users, cutoffs=[1], min_users=1)
    keys = {(r["metric"], r["group_dimension"], r["group"], r["shelves"]) for r in rows}
    for kind in ("unconstrained", "reranked"):
        assert ("ndcg@1", None, None, kind) in keys
        assert ("ndcg@1", "age_band", "*", kind) in keys
        assert ("ndcg@1_ratio", "gender", None, kind) in keys
    drop = next(r for r in rows if r["metric"] == "ndcg@1_relative_drop")
    assert drop["value"] == pytest.approx(0.5)  # mean 0.5 -> 0.25


def test_ratio_upper_bound_by_hand_and_tightening_with_more_users():
    means = np.array([0.1, 0.2])  # point estimate 0.5
    z = 2.2414  # Φ⁻¹(1 - 0.05 / 4): four one-sided bounds at 95% together
    assert ratio_upper_bound(means, np.array([0.01, 0.02]), 0.95) == pytest.approx(
        (0.1 + z * 0.01) / (0.2 - z * 0.02), rel=1e-4)
    wide = ratio_upper_bound(means, np.array([0.02, 0.02]), 0.95)
    narrow = ratio_upper_bound(means, np.array([0.002, 0.002]), 0.95)  # 100x the users
    assert 0.5 < narrow < 0.55 < wide < 1.0
    assert ratio_upper_bound(means, np.zeros(2), 0.95) == pytest.approx(0.5)  # no noise: the ratio itself
    assert ratio_upper_bound(means, np.array([0.2, 0.2]), 0.95) == 1.0  # too noisy to tell
    assert ratio_upper_bound(np.zeros(2), np.zeros(2), 0.95) == 1.0  # nobody served: no gap shown


def per_user_ndcg(rng, users: int, scale: float = 1.0) -> np.ndarray:
    """Per-user nDCG as a sparse holdout gives it: most users 0, the rest spread over (0, 1]."""
    return np.where(rng.random(users) < 0.6, 0.0, rng.random(users)) * scale


def test_sampling_noise_alone_does_not_block_but_a_real_gap_does():
    """Four groups of 40 users from ONE distribution: the smallest mean over the largest is
    often below 0.6 by chance (the run failed at random on its point estimate), its upper
    confidence bound almost never is. A real gap (one group served at 40%) is blocked."""
    rng = np.random.default_rng(3)
    labels = pd.Series(np.repeat(["a", "b", "c", "d"], 40))
    point, upper = [], []
    for _ in range(100):
        out = group_quality(pd.DataFrame({"ndcg@10": per_user_ndcg(rng, 160)}), labels, ["ndcg@10"], 30)
        point.append(out["ratio"]["ndcg@10"])
        upper.append(out["ratio_upper"]["ndcg@10"])
    assert np.mean(np.array(point) < 0.6) > 0.15
    assert np.mean(np.array(upper) < 0.6) == 0.0
    gap = np.concatenate([per_user_ndcg(rng, 1000, scale) for scale in (1.0, 1.0, 0.4)])
    out = group_quality(pd.DataFrame({"ndcg@10": gap}), pd.Series(np.repeat(["a", "b", "c"], 1000)), ["ndcg@10"], 30)
    assert out["ratio"]["ndcg@10"] < out["ratio_upper"]["ndcg@10"] < 0.6


def test_the_ratio_gate_blocks_on_its_upper_bound_and_warns_on_its_point_estimate():
    def ratio_rows(point, upper):
        return [{"side": "user", "metric": metric, "group_dimension": "age_band", "group": None,
                 "shelves": "reranked", "value": value}
                for metric, value in (("ndcg@10_ratio", point), ("ndcg@10_ratio_upper", upper))]

    judged, failures = judge(ratio_rows(0.55, 0.8), AuditSettings())
    assert [(r["passed"], r["blocking"]) for r in judged] == [(False, False), (True, True)]
    assert failures == []
    judged, failures = judge(ratio_rows(0.3, 0.45), AuditSettings())
    assert [(r["passed"], r["blocking"]) for r in judged] == [(False, False), (False, True)]
    assert len(failures) == 1
    assert "ndcg@10_ratio_upper by age_band" in failures[0] and "0.45" in failures[0] and "95%" in failures[0]


# --- item side ------------------------------------------------------------------------------


def test_group_shares_count_titles_or_weight_and_name_missing_values():
    titles = pd.DataFrame({"provider_group": ["major", "major", "indie", None], "viewers": [6, 2, 2, 0]})
    assert group_shares(titles, "provider_group", None).to_dict() == {"indie": 0.25, "major": 0.5, "unknown": 0.25}
    assert group_shares(titles, "provider_group", "viewers").to_dict() == {"indie": 0.2, "major": 0.8, "unknown": 0.0}


def test_head_is_the_most_watched_titles_up_to_the_share():
    # 50 + 30 = 80 of 100 viewers: the first two titles make the 80% head, exactly
    assert head_titles(np.array([30, 5, 50, 15]), 0.8).tolist() == [True, False, True, False]
    # at 0.7 the second title crosses the share and still belongs to the head
    assert head_titles(np.array([30, 5, 50, 15]), 0.7).tolist() == [True, False, True, False]
    assert head_titles(np.array([30, 5, 50, 15]), 0.5).tolist() == [False, False, True, False]


def test_long_tail_share_and_exposure_metrics_by_hand():
    slots = np.array([2, 2, 2, 2])
    viewers = np.array([10, 1, 1, 0])
    head = head_titles(viewers, 0.8)  # title 0 alone has 10 / 12 > 80%
    assert long_tail_share(slots, head) == pytest.approx(0.75)
    metrics = shelf_exposure_metrics(slots, viewers, 0.8)
    assert metrics["exposure_gini"] == 0.0  # equal exposure
    assert metrics["coverage"] == 1.0
    assert metrics["avg_popularity"] == pytest.approx(3.0)  # (10 + 1 + 1 + 0) / 4
    one_title = shelf_exposure_metrics(np.array([5, 0, 0, 0]), viewers, 0.8)
    assert one_title["exposure_gini"] == pytest.approx(1.0)  # all exposure on one title
    assert one_title["coverage"] == 0.25 and one_title["long_tail_share"] == 0.0


def test_item_side_rows_compare_exposure_with_catalog_share():
    titles = pd.DataFrame({
        "content_id": ["a", "b", "c", "d"],
        "provider_group": ["major", "major", "major", "indie"],
        "primary_genre": ["Drama", "Drama", "Comedy", None],
        "original_language": ["en", "en", "en", "fr"],
        "viewers": [9, 5, 3, 1],
        "slots_unconstrained": [4, 4, 0, 0],
        "slots_reranked": [2, 2, 2, 2],
    })
    rows = item_side_rows(titles, ("unconstrained", "reranked"), head_share=0.8)
    value = {(r["metric"], r["group_dimension"], r["group"], r["shelves"]): r["value"] for r in rows}
    assert value[("catalog_share", "provider_group", "indie", None)] == 0.25
    assert value[("consumption_share", "provider_group", "indie", None)] == pytest.approx(1 / 18)
    assert value[("exposure_share", "provider_group", "indie", "unconstrained")] == 0.0
    assert value[("exposure_share", "provider_group", "indie", "reranked")] == 0.25
    assert value[("exposure_to_catalog", "provider_group", "indie", "reranked")] == pytest.approx(1.0)
    assert value[("exposure_share", "primary_genre", "unknown", "reranked")] == 0.25
    assert value[("coverage", None, None, "unconstrained")] == 0.5
    assert value[("exposure_gini", None, None, "reranked")] == 0.0


# --- thresholds -----------------------------------------------------------------------------


def test_judge_blocks_only_named_thresholds_on_reranked_shelves():
    settings = replace(AuditSettings(), max_exposure_gini=0.5, blocking=("max_exposure_gini",))
    rows = [
        {"side": "item", "metric": "exposure_gini", "group_dimension": None, "group": None,
         "shelves": kind, "value": 0.7}
        for kind in ("unconstrained", "reranked")
    ] + [{"side": "user", "metric": "ndcg@10_ratio", "group_dimension": "gender", "group": None,
          "shelves": "reranked", "value": 0.2}]
    judged, failures = judge(rows, settings)
    assert [r["passed"] for r in judged] == [False, False, False]
    assert [r["blocking"] for r in judged] == [False, True, False]  # ratio gate not blocking here
    assert len(failures) == 1 and "exposure_gini" in failures[0] and "0.5" in failures[0]


def test_judge_leaves_undefined_values_unjudged():
    rows = [{"side": "user", "metric": "ndcg@10_ratio", "group_dimension": "region", "group": None,
             "shelves": "reranked", "value": None}]
    judged, failures = judge(rows, AuditSettings())
    assert judged[0]["passed"] is None and judged[0]["threshold"] == AuditSettings().min_group_ndcg_ratio and failures == []


# --- configuration ---------------------------------------------------------------------------


def write_config(tmp_path, text: str):
    path = tmp_path / "fairshelf.toml"
    path.write_text(text)
    return path


def test_audit_section_is_read_from_the_config_file(tmp_path):
    from jobs.core.config import load_config

    path = write_config(tmp_path, '[audit]\nmin_group_users = 50\nblocking = ["max_exposure_gini"]\n')
    audit = load_config(path, environ={}).audit
    assert audit.min_group_users == 50 and audit.blocking == ("max_exposure_gini",)


@pytest.mark.parametrize(
    "setting, message",
    [
        ('blocking = ["max_gini"]', "unknown thresholds ['max_gini']"),
        ("k = 0", "[audit] k: should be greater than 0"),
        ("head_share = 1.0", "[audit] head_share: should be less than 1"),
        ("min_group_ndcg_ratio = 1.5", "min_group_ndcg_ratio"),
        ("min_users = 3", "[audit] min_users: unknown setting"),
    ],
)
def test_bad_audit_settings_are_refused(tmp_path, setting, message):
    from jobs.core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write_config(tmp_path, f"[audit]\n{setting}\n"), environ={})
