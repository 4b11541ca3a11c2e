"""The run report's first screen (issue 18, item 6), on a recorded run: the gold/runs row of
a `fairshelf demo` run (tests/unit/data/recorded_demo_run.json) and audit rows made by the
audit's own functions. No Spark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.orchestration.report import render_report
from jobs.orchestration.report_overview import (
    audit_finding, changes, gate_findings, headline, previous_run, selection_rows,
)
from tests.unit.test_audit_report import audit_rows

RECORDED = json.loads((Path(__file__).parent / "data" / "recorded_demo_run.json").read_text())
WARNING = "representation: expect_column_values_to_be_between(share, min_value=0.005)"


def summaries_of(run: dict) -> list[dict]:
    """The stage summaries behind a gold/runs row (its metrics_json: stage -> metrics, seconds)."""
    stages = json.loads(run["metrics_json"])
    return [{"stage": name, "seconds": m.get("seconds"), "outputs": {},
             "metrics": {k: v for k, v in m.items() if k != "seconds"}} for name, m in stages.items()]


@pytest.fixture
def previous() -> dict:
    metrics = json.loads(RECORDED["metrics_json"])
    metrics["ingest"]["accepted_events"] = 40000
    metrics["train"]["model_version"] = "older-model"
    return {**RECORDED, "run_id": "earlier", "run_date": "2026-11-24", "finished_at": "2026-11-24T02:00:00+00:00",
            "metrics_json": json.dumps(metrics)}


def test_first_screen_comes_before_the_stage_tables(previous):
    html = render_report(RECORDED, summaries_of(RECORDED), [], audit_rows(), previous,
                         [("run log", "run.log"), ("model card", "../../models/r/model_card.md")])
    first_stage_table = html.index("<h2>Stages</h2>")
    screen = html[:first_stage_table]
    assert "<strong>Published</strong>" in screen
    assert "Checked: 44 quality and representation expectations (0 blocking failures, 1 warnings) and 17 fairness" in screen
    assert WARNING in screen  # the quality warning, with what was observed
    assert "fairness: ndcg@10_ratio_upper by gender on the re-ranked shelves is 0.324, below the minimum 0.6" in screen
    assert "<td>catalogue coverage (share of titles shown)</td><td>0.5</td><td>1</td>" in screen
    assert "<td>events accepted</td><td>40,000</td><td>41,580</td><td>+1,580 (+4.0%)</td>" in screen
    assert "<td>model version</td><td>older-model</td>" in screen
    assert '<a href="run.log">run log</a>' in screen and '<a href="../../models/r/model_card.md">' in screen


def test_failed_run_is_not_published_and_says_why():
    run = {**RECORDED, "status": "failed", "failed_stage": "quality",
           "message": "gate 'quality' failed: volume: 120 rows, below half the median 6000"}
    html = render_report(run, summaries_of(run)[:4], [])
    screen = html[:html.index("<h2>Stages</h2>")]
    assert "Not published" in screen and "the last published shelves stay live" in screen
    assert "blocking</strong>: stage quality failed: gate &#39;quality&#39; failed: volume: 120 rows" in screen
    assert "No earlier succeeded run to compare with." in screen


def test_model_selection_is_a_table_not_json():
    html = render_report(RECORDED, summaries_of(RECORDED), [])
    assert "<h4>Model selection</h4>" in html
    assert "<td>model_selection criterion</td><td>validation ndcg@10</td>" in html
    assert '"trials"' not in html and "{&#34;" not in html.split("<h4>Model selection</h4>")[1].split("</table>")[0]
    rows = selection_rows(json.loads(RECORDED["metrics_json"])["train"]["model_selection"])
    assert len(rows) == 8 and [r["trial"] for r in rows if r["chosen"]] == [4]
    assert rows[1]["parameters"] == "algorithm=ease, ease_regularization=300.0, weighting=none"
    assert rows[1]["validation nDCG@10"] == 0.261 and rows[1]["fit seconds"] == 0.03


def test_gate_findings_say_observed_values_and_severity():
    metrics = {s["stage"]: s["metrics"] for s in summaries_of(RECORDED)}
    found = gate_findings(RECORDED, metrics, audit_rows())
    assert any(line.startswith("quality: " + WARNING) for line in found["warnings"])
    # exposure Gini of the re-ranked shelves fails blocking; the unconstrained one only warns
    assert "fairness: exposure_gini on the re-ranked shelves is 0.333, above the maximum 0.1" in found["blocking"]
    assert "fairness: exposure_gini on the unconstrained top-k is 1, above the maximum 0.1" in found["warnings"]
    assert not any("long_tail_share on the re-ranked" in line for line in found["blocking"] + found["warnings"])


def test_headline_before_and_after():
    rows = {r["measure"]: (r["before"], r["after"]) for r in headline(audit_rows())}
    assert rows["nDCG@10 ratio of the worst user group to the best"] == (0.1, 0.1)
    assert rows["exposure Gini over titles (0 = even)"] == (1.0, pytest.approx(1 / 3))
    assert headline(None) == []


def test_changes_and_previous_run(previous):
    metrics = {s["stage"]: s["metrics"] for s in summaries_of(RECORDED)}
    rows = {r["what"]: r for r in changes(metrics, previous)}
    assert rows["events accepted"]["change"] == "+1,580 (+4.0%)"
    assert rows["model version"]["change"] == "changed" and rows["model parameters"]["change"] == "same"
    assert changes(metrics, None) == []
    failed = {**previous, "run_id": "failed-later", "status": "failed", "finished_at": "2026-11-24T03:00:00+00:00"}
    later = {**previous, "run_id": "later", "finished_at": "2999-01-01T00:00:00+00:00"}
    assert previous_run([RECORDED, previous, failed, later], RECORDED)["run_id"] == "earlier"
    assert previous_run([RECORDED], RECORDED) is None


def test_audit_finding_in_words():
    row = {"metric": "long_tail_share", "group_dimension": None, "shelves": "reranked", "value": 0.01, "threshold": 0.05}
    assert audit_finding(row) == "long_tail_share on the re-ranked shelves is 0.01, below the minimum 0.05"
