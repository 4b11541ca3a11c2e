"""The audit section of the run report, rendered from real audit rows."""

from __future__ import annotations

import pandas as pd

from jobs.core.config import AuditSettings
from jobs.orchestration.report import audit_section, render_report
from jobs.recsys.exposure import item_side_rows
from jobs.stages.audit import judge, user_side_rows


def audit_rows() -> pd.DataFrame:
    per_user = pd.DataFrame({"user_key": ["u1", "u2", "u3"], "ndcg@10": [1.0, 0.2, 0.0],
                             "recall@10": [1.0, 0.5, 0.0], "ndcg@20": [1.0, 0.3, 0.1],
                             "recall@20": [1.0, 1.0, 0.5]})
    users = pd.DataFrame({"user_key": ["u1", "u2", "u3"], "age_band": ["18-24", "18-24", None],
                          "gender": ["F", "M", "M"], "region": ["N", "S", "S"]})
    titles = pd.DataFrame({"content_id": ["a", "b"], "provider_group": ["major", "indie"],
                           "primary_genre": ["Drama", "Comedy"], "original_language": ["en", "fr"],
                           "viewers": [5, 1], "slots_unconstrained": [3, 0], "slots_reranked": [2, 1]})
    rows = user_side_rows({"unconstrained": per_user, "reranked": per_user}, users, [10, 20], 1)
    rows += item_side_rows(titles, ("unconstrained", "reranked"), 0.8)
    judged, _ = judge(rows, AuditSettings(max_exposure_gini=0.1))
    return pd.DataFrame(judged).assign(run_id="r1", run_date="2026-11-25")


def test_audit_section_has_checks_groups_and_two_embedded_plots():
    html = audit_section(audit_rows())
    assert html.count("<img alt='plot' src='data:image/png;base64,") == 2
    assert "Fairness audit" in html and "exposure_gini" in html
    assert "<td>indie</td>" in html and "<td>*</td>" in html  # item group and suppressed user group
    assert "<td>no</td>" in html  # the Gini check failed against 0.1


def test_report_without_audit_has_no_audit_section():
    run = {"run_id": "r1", "run_date": "2026-11-25", "status": "succeeded", "failed_stage": None,
           "message": None, "started_at": "s", "finished_at": "f", "code_version": "c",
           "config_hash": "h", "key_fingerprint": "k", "model_version": "m"}
    assert "Fairness audit" not in render_report(run, [], [])
    assert "Fairness audit" in render_report(run, [], [], audit_rows())


def test_plots_keep_legends_beside_the_bars_and_labels_slanted():
    import matplotlib.pyplot as plt

    from jobs.orchestration.report import audit_figures

    figures = audit_figures(audit_rows())
    assert len(figures) == 2
    for fig in figures:
        fig.canvas.draw()
        for ax in fig.axes:
            legend = ax.get_legend().get_window_extent()
            assert legend.x0 >= ax.get_window_extent().x1  # right of the plot, on no bar
            assert {label.get_rotation() for label in ax.get_xticklabels()} == {35.0}
        plt.close(fig)
