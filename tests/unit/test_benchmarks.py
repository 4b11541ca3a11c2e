"""The benchmark harness's shape (DESIGN.md, Interfaces: Benchmarks): its ratio functions,
run on tiny inputs, fill every key of the contract with a sane type, and the result
checker rejects a result that lacks one. Nothing here asserts a timing: speed and memory
are read from benchmarks/results/latest.json, produced by ``python -m benchmarks.run``."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from benchmarks import ratios, run, series
from benchmarks.series import measure_process_tree
from jobs.core.config import ModelSettings
from jobs.datasets.synthetic import SyntheticSpec, generate_landing
from jobs.recsys.training import InteractionMatrix

D = date(2026, 11, 25)
# The contract, spelled out here so that a renamed or dropped key fails this test.
CONTRACT_RATIOS = {"privacy_vs_copy", "implicit_vs_mllib_speedup", "rerank_vs_topk",
                   "publish_vs_parquet", "validation_share"}
CONTRACT_SERIES = {"events", "seconds", "peak_rss_mb"}


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _tiny_interactions() -> InteractionMatrix:
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 40, 400), rng.integers(0, 25, 400)
    return InteractionMatrix.from_arrow(pa.table({
        "user_key": [f"u{u:02d}" for u in users],
        "content_id": [f"c{i:02d}" for i in items],
        "confidence": rng.random(400) + 0.1,
    }))


@pytest.fixture(scope="module")
def tiny_result(spark, tmp_path_factory, config_factory):
    """Every ratio function once on tiny inputs, assembled as latest.json would be."""
    root = tmp_path_factory.mktemp("benchmark")
    config = config_factory(root / "lake")
    generate_landing(config.lakehouse, SyntheticSpec(users=60, items=30, events_per_day=150, days=2,
                                                     end_date=D, file_format="parquet"))
    settings = dataclasses.replace(ModelSettings(), factors=4, iterations=2)
    genres = ratios.item_genre_matrix(["Drama|Comedy", "Drama", None, "Horror"] * 10)
    events = spark.createDataFrame(
        [("u1", "c1", "2026-11-24"), ("u2", "c2", "2026-11-25"), (None, "c3", "2026-11-25")],
        "user_key string, content_id string, run_date string",
    )
    details = {
        "privacy_vs_copy": ratios.privacy_vs_copy(spark, config, D, root / "privacy", repeats=1, warmup=False),
        "implicit_vs_mllib_speedup": ratios.implicit_vs_mllib(spark, _tiny_interactions(), settings,
                                                              repeats=1, warmup=False),
        "rerank_vs_topk": ratios.rerank_vs_topk(np.random.default_rng(1).random((30, 40)), genres,
                                                repeats=1, warmup=False, candidates=12, k=5, batch_users=8),
        "publish_vs_parquet": ratios.publish_vs_parquet(events, root / "publish", D, repeats=1, warmup=False),
    }
    machine = run.machine_info()
    machine["load_average_end"] = machine["load_average_start"]
    series = [{"events": 2_000, "seconds": 12.5, "peak_rss_mb": 900.0, "stage_seconds": {"ingest": 3.0}}]
    result = run.assemble_result({k: p.as_dict() for k, p in details.items()}, series, machine)
    return json.loads(json.dumps(result))  # what latest.json holds


@pytest.mark.spark
def test_the_ratio_functions_fill_every_contract_key(tiny_result):
    assert {"ratios", "series", "machine"} <= set(tiny_result)
    assert set(tiny_result["ratios"]) == CONTRACT_RATIOS
    for key in CONTRACT_RATIOS - {"validation_share"}:
        assert _positive_number(tiny_result["ratios"][key]), key
        detail = tiny_result["ratio_details"][key]
        assert detail["ratio"] == tiny_result["ratios"][key]
        assert all(_positive_number(s) for s in detail["numerator_seconds"] + detail["denominator_seconds"])
    # the tiny series point has no quality stage: no invented number, and a note that says so
    assert tiny_result["ratios"]["validation_share"] is None
    assert any("no quality stage" in note for note in tiny_result["notes"])


def test_a_series_point_carries_the_median_stage_timings_so_the_share_counts_the_shelf_checks():
    """The review's finding: the rerank's validation_seconds lived only under runs[i], so the
    share of a recorded point left them out (0.195 reported, 0.33 measured)."""
    runs = [{"seconds": s, "stage_seconds": {"quality": q, "rerank": 70.0},
             "stage_metric_seconds": {"rerank": {"validation_seconds": v, "rerank_seconds": 1.0},
                                      "train": {"selection_seconds": 5.0}}}
            for s, q, v in ((500.0, 97.7, 68.1), (520.0, 99.0, 70.0), (480.0, 96.0, 60.0))]
    runs[2]["stage_metric_seconds"].pop("train")  # a timing one run lacks is left out
    point = {"events": 1_000_000, "seconds": 500.0, "stage_seconds": {"quality": 97.7, "rerank": 70.0},
             **series.point_stage_metrics(runs)}
    assert point["stage_metric_seconds"] == {"rerank": {"rerank_seconds": 1.0, "validation_seconds": 68.1}}
    share = run.validation_share(point)
    assert share["validation_seconds"] == round(97.7 + 68.1, 2) and share["ratio"] == round((97.7 + 68.1) / 500, 4)


def test_validation_share_is_the_quality_stage_and_the_shelf_checks_over_the_run():
    point = {"events": 1_000, "seconds": 200.0, "peak_rss_mb": 1.0,
             "stage_seconds": {"ingest": 60.0, "quality": 30.0, "rerank": 40.0},
             "stage_metric_seconds": {"rerank": {"validation_seconds": 10.0, "rerank_seconds": 20.0}}}
    share = run.validation_share(point)
    assert share["ratio"] == 0.2 and share["validation_seconds"] == 40.0
    assert run.validation_share({**point, "stage_seconds": {"ingest": 60.0}}) is None


@pytest.mark.spark
def test_the_ratio_inputs_are_the_ones_named(tiny_result):
    privacy = tiny_result["ratio_details"]["privacy_vs_copy"]
    assert privacy["events"] == privacy["copied_events"] == 300
    assert 0 < privacy["accepted_events"] < privacy["events"]  # the malformed ones are quarantined
    assert tiny_result["ratio_details"]["publish_vs_parquet"]["rows"] == 3
    assert tiny_result["ratio_details"]["rerank_vs_topk"]["users"] == 30


@pytest.mark.spark
def test_machine_names_the_software_measured(tiny_result):
    machine = tiny_result["machine"]
    assert machine["cores"] >= 1 and machine["memory_gb"] > 0
    for key in ("python", "java", "pyspark", "deltalake", "implicit", "date"):
        assert isinstance(machine[key], str) and machine[key], key
    assert len(machine["load_average_start"]) == 3


@pytest.mark.spark
@pytest.mark.parametrize("drop", ["ratios.publish_vs_parquet", "series.peak_rss_mb", "machine.java", "notes"])
def test_the_checker_rejects_a_result_missing_a_key(tiny_result, drop):
    broken = copy.deepcopy(tiny_result)
    section, key = (drop.split(".") + [None])[:2]
    if key is None:
        broken.pop(section)  # without the note, a null validation_share is unexplained
    elif section == "series":
        broken["series"][0].pop(key)
    else:
        broken[section].pop(key)
    with pytest.raises(run.BenchmarkResultError, match=(key or "validation_share")):
        run.check_result(broken)


def test_the_committed_results_fit_the_contract():
    result = json.loads(run.LATEST.read_text())
    run.check_result(result)
    assert set(result["ratios"]) == CONTRACT_RATIOS
    assert result["series"] and all(CONTRACT_SERIES <= set(point) for point in result["series"])
    events = [point["events"] for point in result["series"]]
    assert events == sorted(events) and len(set(events)) == len(events)


def test_process_tree_peak_counts_the_descendants_by_phase(tmp_path):
    # a child that names its phase, then starts a grandchild holding 64 MiB: the
    # grandchild's memory is in the peak, and in the phase's peak
    phase = tmp_path / "phase"
    hold = "b = b'x' * (64 << 20); import time; time.sleep(1.5)"
    child = (f"import pathlib, subprocess, sys; pathlib.Path({str(phase)!r}).write_text('hold'); "
             f"subprocess.run([sys.executable, '-c', {hold!r}])")
    peak = measure_process_tree([sys.executable, "-c", child], tmp_path / "log", timeout=60, phase_file=phase)
    assert peak.returncode == 0
    assert peak.peak_rss_by_kind_mb["python_workers"] >= 64
    assert peak.peak_rss_mb >= peak.peak_rss_by_kind_mb["driver"] + 64
    assert peak.peak_rss_by_phase_mb["hold"] >= 64
