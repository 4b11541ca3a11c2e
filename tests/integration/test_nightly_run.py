"""A whole nightly run on small synthetic data, through the same entry points the CLI uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.lake.reader import read_shelf
from jobs.orchestration.pipeline import RunFailed, run_pipeline
from jobs.orchestration.stage_graph import ORDER
from jobs.stages.publish import REASONS

pytestmark = [pytest.mark.spark, pytest.mark.integration]


def _gold(config, name):
    return DeltaTable(config.table("gold", name)).to_pyarrow_table().to_pylist()


@pytest.fixture(scope="module")
def nightly(synthetic_run):
    """(config, landing summary, outcome) of one successful run on synthetic data."""
    return synthetic_run


def test_run_publishes_shelves_for_consenting_users(nightly):
    config, summary, outcome = nightly
    assert outcome.succeeded
    recommendations = _gold(config, "recommendations")
    users = {r["user_key"] for r in recommendations}
    metrics = {s["stage"]: s["metrics"] for s in outcome.summaries}
    assert len(users) == metrics["train"]["trained_users"] > 0
    assert all(r["run_date"] == summary.dates[-1] and r["run_id"] == outcome.run_id for r in recommendations)
    per_user = {}
    for r in recommendations:
        per_user.setdefault(r["user_key"], []).append(r["rank"])
    assert all(sorted(ranks) == list(range(1, len(ranks) + 1)) for ranks in per_user.values())
    assert max(len(r) for r in per_user.values()) == config.shelf.size
    assert all(r["reason"] for r in recommendations)
    model_picks = [r for r in recommendations if r["reason"] != REASONS["new_diverse"]]
    explore = [r for r in recommendations if r["reason"] == REASONS["new_diverse"]]
    assert explore and len(explore) < len(recommendations) / 2
    assert sum(r["reason"].startswith("Because you watched") for r in model_picks) > 0.9 * len(model_picks)


def test_users_without_consent_get_no_personal_shelf(nightly, spark):
    config, _, _ = nightly
    features = DeltaTable(config.table("silver", "user_features")).to_pyarrow_table().to_pylist()
    refused = {r["user_key"] for r in features if not r["consent_personalization"]}
    assert refused, "the synthetic data must contain users without consent"
    published = {r["user_key"] for r in _gold(config, "recommendations")}
    trained = set(
        DeltaTable(config.table("silver", "interactions")).to_pyarrow_table().column("user_key").to_pylist()
    )
    assert not refused & published and not refused & trained
    defaults = _gold(config, "default_recommendations")
    assert {"ALL"} < {r["region"] for r in defaults}


def test_counts_add_up_and_run_is_recorded(nightly):
    config, summary, outcome = nightly
    ingest = next(s for s in outcome.summaries if s["stage"] == "ingest")["metrics"]
    # the first run catches up on every landing day of its history window
    landing_rows = sum(1 for f in Path(config.landing("viewing_events")).glob("date=*/*") for _ in f.open())
    assert ingest["ingested_dates"] == len(summary.dates)
    assert ingest["input_events"] == landing_rows == summary.events
    assert ingest["input_events"] == ingest["accepted_events"] + ingest["quarantined_events"]
    assert ingest["quarantined_events"] > 0
    [row] = [r for r in _gold(config, "runs") if r["run_id"] == outcome.run_id]
    assert row["status"] == "succeeded" and row["kind"] == "run"
    # the version the run recorded is the commit its publish stage made, by its commit metadata
    history = DeltaTable(config.table("gold", "recommendations")).history()
    [published] = [h["version"] for h in history if h.get("run_id") == outcome.run_id and h.get("stage") == "publish"]
    assert json.loads(row["versions_json"])["gold/recommendations"] == published
    print({s["stage"]: s["seconds"] for s in outcome.summaries})
    report = Path(outcome.report_path).read_text()
    assert outcome.run_id in report and "quarantined_events" in report


def test_every_stage_runs_after_the_stages_whose_tables_it_reads(nightly):
    """The stage graph that the runner and the DAG follow, against what the run really read
    and wrote (its lineage): a stage reading a table another stage wrote runs after it."""
    from jobs.orchestration.stage_graph import ORDER, UPSTREAM

    _, _, outcome = nightly
    ancestors: dict[str, set[str]] = {}
    for stage in ORDER:  # ORDER lists every stage after its upstream stages
        ancestors[stage] = set(UPSTREAM[stage]).union(*(ancestors[s] for s in UPSTREAM[stage]))
    writers = {table: s["stage"] for s in outcome.summaries for table in s["outputs"]}
    checked = 0
    for summary in outcome.summaries:
        for table in summary["inputs"]:
            writer = writers.get(table)
            if writer and writer != summary["stage"]:
                assert writer in ancestors[summary["stage"]], f"{summary['stage']} reads {table} of {writer}"
                checked += 1
    assert checked >= len(ORDER) - 2  # every stage but erasure reads what an earlier one wrote


def test_model_artifacts_are_saved(nightly):
    config, _, outcome = nightly
    model_dir = Path(config.model_dir(outcome.run_id))
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["run_date"] == outcome.run_date.isoformat() and card["users"] > 0
    assert (model_dir / "model.npz").is_file()
    # the configured model, validated on a split of this run's interactions (the search is
    # off in whole-run tests: tests/conftest.py), and the card's record of it
    train = next(s for s in outcome.summaries if s["stage"] == "train")["metrics"]
    selection = card["selection"]
    print("model selection:", {k: selection[k] for k in ("tried", "candidates", "seconds", "chosen")})
    assert selection["tried"] == len(selection["trials"]) == selection["trial_budget"] == 1
    assert "selection_trials 1" in selection["criterion"]
    assert selection["validation_split"]["fit_interactions"] + selection["validation_split"]["validation_interactions"] == card["interactions"]
    assert train["model"] == card["model"]["parameters"] == selection["chosen"]
    assert train["model_selection"]["trials"] == selection["trials"]
    assert train["validation_metrics"]["ndcg@10"] > 0
    assert train["model_version"] == card["model_version"] == f"{card['algorithm']}-{outcome.run_id}"
    # the audit stage wrote its verdict into the card: the checks of gold/audit, by the same run
    audit = [r for r in _gold(config, "audit") if r["run_id"] == outcome.run_id and r["passed"] is not None]
    assert card["fairness"]["status"].startswith("audited")
    assert len(card["fairness"]["checks"]) == len(audit) > 0
    assert sum(not c["passed"] for c in card["fairness"]["checks"]) == sum(not r["passed"] for r in audit)
    markdown = (model_dir / "model_card.md").read_text()
    assert card["model_version"] in markdown and card["fairness"]["status"] in markdown


def test_reasons_name_titles_the_user_watched(nightly):
    config, _, outcome = nightly
    titles = {r["content_id"]: r["title"] for r in DeltaTable(config.table("silver", "content")).to_pyarrow_table().to_pylist()}
    watched = {}
    for r in DeltaTable(config.table("silver", "interactions")).to_pyarrow_table().to_pylist():
        watched.setdefault(r["user_key"], set()).add(titles[r["content_id"]])
    recommendations = _gold(config, "recommendations")
    because = [r for r in recommendations if r["reason"].startswith("Because you watched ")]
    assert because and all(r["reason"].removeprefix("Because you watched ") in watched[r["user_key"]] for r in because)
    assert set(r["reason"] for r in recommendations) - {r["reason"] for r in because} <= {
        REASONS["history"],
        REASONS["new_diverse"],
    }


def test_users_without_consent_or_history_get_the_default_shelf(nightly):
    config, _, _ = nightly
    features = DeltaTable(config.table("silver", "user_features")).to_pyarrow_table().to_pylist()
    trained = set(DeltaTable(config.table("silver", "interactions")).to_pyarrow_table().column("user_key").to_pylist())
    refused = [r for r in features if not r["consent_personalization"]]
    cold = [r for r in features if r["consent_personalization"] and r["user_key"] not in trained]
    warm = [r for r in features if r["user_key"] in trained]
    assert refused and cold and warm, "the synthetic data must hold each kind of user"
    defaults = _gold(config, "default_recommendations")
    regions = {r["region"] for r in defaults}
    for user in refused + cold:
        shelf = read_shelf(config, user["user_key"], user["region"])
        region = "*" if user["region"] is None else user["region"]  # "*": region suppressed
        expected = region if region in regions else "ALL"
        assert shelf and {r["shelf"] for r in shelf} == {expected}
        assert [r["rank"] for r in shelf] == list(range(1, len(shelf) + 1))
        # "*" (region suppressed) names no region, so its label does not either
        reason = REASONS["popular_all"] if expected in ("ALL", "*") else REASONS["popular_region"]
        assert {r["reason"] for r in shelf} == {reason}
    # a region without a default shelf of its own falls back to ALL
    assert {r["shelf"] for r in read_shelf(config, "nobody", "no-such-region")} == {"ALL"}
    for user in warm[:20]:
        shelf = read_shelf(config, user["user_key"], user["region"])
        assert {r["shelf"] for r in shelf} == {"personal"} and len(shelf) == config.shelf.size


def test_missing_landing_partition_fails_with_the_path_and_keeps_shelves(copy_of_synthetic_run, spark):
    config, _, _ = copy_of_synthetic_run  # a private copy: the shared lakehouse keeps one run
    before = DeltaTable(config.table("gold", "recommendations")).version()
    with pytest.raises(RunFailed, match=r"viewing_events/date=2026-12-31"):
        run_pipeline(spark, config, date(2026, 12, 31))
    assert DeltaTable(config.table("gold", "recommendations")).version() == before
    statuses = [r["status"] for r in _gold(config, "runs")]
    assert statuses.count("failed") == 1


def test_cli_demo_runs_end_to_end(tmp_path):
    """`fairshelf demo` as a user runs it: its own key (0600), tables and report printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRSHELF_")}
    env["FAIRSHELF_LAKEHOUSE"] = str(tmp_path / "lake")
    # The configured model only (no search): the run takes seconds less.
    settings = tmp_path / "fairshelf.toml"
    settings.write_text("[model]\nselection_trials = 1\n")
    env["FAIRSHELF_CONFIG"] = str(settings)
    cmd = [
        sys.executable, "-m", "jobs.interfaces.cli", "demo", "--date", "2026-11-25",
        "--users", "300", "--items", "120", "--events-per-day", "1500", "--days", "2",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    key = tmp_path / "lake" / ".fairshelf_pseudonym_key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert "gold/recommendations" in done.stdout
    report_dir = tmp_path / "lake" / "reports" / "2026-11-25"
    assert f"run report:       {report_dir / 'index.html'}" in done.stdout
    # A terminal a person can read (issue 18, item 1): a line per stage, the summary, where
    # the report and the run log are; no third-party INFO, no Spark start-up chatter.
    printed = (done.stdout + done.stderr).splitlines()
    assert len(printed) <= 60, "\n".join(printed)
    for noise in ("INFO", "OpenLineageClient", "Skipping registering", "log4j", "NativeCodeLoader"):
        assert not [line for line in printed if noise in line], (noise, "\n".join(printed))
    for stage in ORDER:
        assert [line for line in printed if line.startswith(f"{stage} ")], (stage, "\n".join(printed))
    assert f"run log:          {report_dir / 'run.log'}" in done.stdout
    run_log = (report_dir / "run.log").read_text()
    assert "INFO openlineage" in run_log and "INFO jobs.recsys.training: fitted" in run_log, run_log[-2000:]
    # The demo's lakehouse just works (issue 18, item 3): a later command uses its key, and says so once.
    again = subprocess.run([sys.executable, "-m", "jobs.interfaces.cli", "run", "--date", "2026-11-25"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stderr.count(f"using the demo key at {key}, not for production") == 1, again.stderr
