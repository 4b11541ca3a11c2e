"""Whole nightly runs on synthetic landing data of increasing size, each in its own
process, with the peak memory of its whole process tree.

A series point: the landing zone for ``events`` events is generated once (in this
process, not measured), then each repeat starts ``python -m benchmarks.run --worker
pipeline`` on a lakehouse holding only that landing zone. The worker builds the Spark
session and runs ``jobs.orchestration.pipeline.run_pipeline`` for the last landing day (a first run: it
ingests all days) and writes its timings as JSON. Meanwhile this process samples the RSS
of the worker and every descendant (the Spark JVM, Python workers) with psutil and keeps
the peak of their sum.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psutil

from benchmarks.ratios import fairshelf_vs_bare, validation_share

REPO = Path(__file__).resolve().parent.parent
RUN_DATE = date(2026, 11, 25)
DAYS = 7
SAMPLE_SECONDS = 0.1
PSS_EVERY = 10  # samples; PSS reads /proc/<pid>/smaps_rollup, too slow for every sample
MB = 1024 * 1024
# What a repeat removes from a series lakehouse, so that each run is a first run
# ("bare" is the bare pipeline's output, benchmarks.bare).
OUTPUT_DIRS = ("silver", "gold", "quarantine", "models", "reports", "bare")


def spec_for(events: int, seed: int = 42):
    """The synthetic landing zone of a series point: ``events`` events over a week, one
    user per 25 events (at least 1,000), one title per 400 events (500 to 3,000),
    Parquet files."""
    from jobs.datasets.synthetic import SyntheticSpec

    if events < DAYS:
        raise ValueError(f"a series point needs at least {DAYS} events, got {events}")
    return SyntheticSpec(
        users=max(1_000, events // 25),
        items=min(max(500, events // 400), 3_000),
        events_per_day=events // DAYS,
        days=DAYS,
        end_date=RUN_DATE,
        seed=seed,
        file_format="parquet",
    )


@dataclass
class ProcessTreePeak:
    """Wall time, exit code and the peak summed RSS of a process and its descendants."""

    process_seconds: float
    returncode: int
    peak_rss_mb: float
    # at the moment of the peak: RSS by kind of process (driver, jvm, python_workers, other)
    peak_rss_by_kind_mb: dict[str, float] = field(default_factory=dict)
    max_rss_by_kind_mb: dict[str, float] = field(default_factory=dict)  # each kind's own peak
    # PSS splits shared pages among the processes sharing them (no double counting of the
    # forked Python workers); sampled every PSS_EVERY samples, so it can miss short peaks.
    peak_pss_mb: float | None = None
    # the peak summed RSS while each phase ran, where the command names its phases
    peak_rss_by_phase_mb: dict[str, float] = field(default_factory=dict)
    max_processes: int = 0


def _kind(process: psutil.Process, root_pid: int) -> str:
    if process.pid == root_pid:
        return "driver"
    name = process.name().lower()
    if name.startswith("java"):
        return "jvm"
    if name.startswith("python"):
        return "python_workers"
    return "other"


def tree_processes(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def tree_rss(processes: list[psutil.Process], root_pid: int) -> dict[str, int]:
    """RSS in bytes of ``processes`` summed by kind. Pages shared by forked workers are
    counted in each process, as RSS does."""
    totals: dict[str, int] = {}
    for process in processes:
        try:
            kind = _kind(process, root_pid)
            totals[kind] = totals.get(kind, 0) + process.memory_info().rss
        except psutil.Error:  # exited between listing and reading
            continue
    return totals


def tree_pss(processes: list[psutil.Process]) -> int | None:
    """Summed PSS in bytes of ``processes``, or None where the platform has no PSS."""
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except AttributeError:
            return None
        except psutil.Error:
            continue
    return total


def _phase(phase_file: Path | None) -> str | None:
    if phase_file is None:
        return None
    try:
        return phase_file.read_text().strip() or None
    except OSError:  # not written yet
        return None


def measure_process_tree(
    command: list[str],
    log_path: Path,
    timeout: float,
    cwd: Path = REPO,
    interval: float = SAMPLE_SECONDS,
    phase_file: Path | None = None,
) -> ProcessTreePeak:
    """Run ``command`` (output to ``log_path``) and sample its process tree's RSS every
    ``interval`` seconds until it exits; kills the tree past ``timeout`` seconds. If the
    command writes the name of what it is doing to ``phase_file``, peaks are also kept
    per phase."""
    peak, peak_kinds, max_kinds, max_processes, peak_pss, samples = 0, {}, {}, 0, None, 0
    by_phase: dict[str, int] = {}
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(child.pid)
        try:
            while child.poll() is None:
                processes = tree_processes(root)
                kinds = tree_rss(processes, root.pid)
                total = sum(kinds.values())
                if samples % PSS_EVERY == 0:
                    pss = tree_pss(processes)
                    if pss is not None and (peak_pss is None or pss > peak_pss):
                        peak_pss = pss
                samples += 1
                if total > peak:
                    peak, peak_kinds = total, kinds
                phase = _phase(phase_file)
                if phase:
                    by_phase[phase] = max(by_phase.get(phase, 0), total)
                for kind, rss in kinds.items():
                    max_kinds[kind] = max(max_kinds.get(kind, 0), rss)
                max_processes = max(max_processes, len(processes))
                if time.perf_counter() - start > timeout:
                    _kill_tree(root)
                    child.wait()
                    raise TimeoutError(f"{command} ran longer than {timeout:.0f} s; its log: {log_path}")
                time.sleep(interval)
        finally:
            if child.poll() is None:
                _kill_tree(root)
                child.wait()
        seconds = time.perf_counter() - start
    return ProcessTreePeak(
        process_seconds=round(seconds, 2),
        returncode=child.returncode,
        peak_rss_mb=round(peak / MB, 1),
        peak_rss_by_kind_mb={k: round(v / MB, 1) for k, v in sorted(peak_kinds.items())},
        max_rss_by_kind_mb={k: round(v / MB, 1) for k, v in sorted(max_kinds.items())},
        peak_pss_mb=None if peak_pss is None else round(peak_pss / MB, 1),
        peak_rss_by_phase_mb={k: round(v / MB, 1) for k, v in by_phase.items()},
        max_processes=max_processes,
    )


def _kill_tree(root: psutil.Process) -> None:
    """Kill the worker this harness started and its descendants, by pid."""
    for process in reversed(tree_processes(root)):
        try:
            process.kill()
        except psutil.Error:
            pass


def clear_outputs(lakehouse: Path) -> None:
    """Everything a run wrote under ``lakehouse``; the landing zone stays."""
    for name in OUTPUT_DIRS:
        shutil.rmtree(lakehouse / name, ignore_errors=True)


def point_stage_metrics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``stage_metric_seconds`` of a series point: per stage and timing, the median over
    the point's runs (a timing that some run lacks is left out)."""
    stages = set.intersection(*(set(r.get("stage_metric_seconds", {})) for r in runs)) if runs else set()
    medians: dict[str, dict[str, float]] = {}
    for stage in sorted(stages):
        names = set.intersection(*(set(r["stage_metric_seconds"][stage]) for r in runs))
        medians[stage] = {n: round(statistics.median(r["stage_metric_seconds"][stage][n] for r in runs), 2)
                          for n in sorted(names)}
    return {"stage_metric_seconds": medians}


def peaks_by_kind(runs: list[dict[str, Any]]) -> dict[str, float]:
    """``peak_rss_by_kind_mb`` of a series point: per kind of process (driver, jvm,
    python_workers, other), its own peak RSS, the max over the point's runs."""
    kinds = sorted({kind for r in runs for kind in r["max_rss_by_kind_mb"]})
    return {kind: max(r["max_rss_by_kind_mb"].get(kind, 0.0) for r in runs) for kind in kinds}


def bare_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``bare`` entry of a series point: median seconds (phases and Spark start-up
    too), max peak RSS, over the bare pipeline's runs."""
    phases = runs[0]["phase_seconds"].keys()
    return {
        "seconds": round(statistics.median(r["seconds"] for r in runs), 2),
        "spark_start_seconds": round(statistics.median(r["spark_start_seconds"] for r in runs), 2),
        "phase_seconds": {p: round(statistics.median(r["phase_seconds"][p] for r in runs), 2) for p in phases},
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_rss_by_kind_mb": peaks_by_kind(runs),
        **{k: runs[0][k] for k in ("users", "items", "interactions", "shelf_rows", "ease_regularization")},
        "runs": runs,
    }


def _measured_worker(kind: str, events: int, repeat: int, lakehouse: Path, work_dir: Path, timeout: float,
                     code_version: str) -> dict[str, Any]:
    """One run of ``python -m benchmarks.run --worker <kind>`` on ``lakehouse``, its process
    tree sampled: the worker's JSON, the tree's peaks and the load when it started."""
    name = f"series-{events}-{kind}{repeat}"
    out, log = work_dir / f"{name}.json", work_dir / f"{name}.log"
    out.unlink(missing_ok=True)
    phase_file(out).unlink(missing_ok=True)
    load = os.getloadavg()
    peak = measure_process_tree(
        [sys.executable, "-m", "benchmarks.run", "--worker", kind,
         "--lakehouse", str(lakehouse), "--out", str(out), "--code-version", code_version],
        log, timeout, phase_file=phase_file(out),
    )
    if peak.returncode != 0 or not out.is_file():
        raise RuntimeError(f"the {kind} run on {events:,} events failed (exit {peak.returncode}); see {log}")
    return {**json.loads(out.read_text()), **asdict(peak), "load_average": [round(x, 2) for x in load]}


def run_series_point(
    events: int, work_dir: Path, repeats: int, timeout: float, code_version: str
) -> dict[str, Any]:
    """Generate the landing zone for ``events`` and time ``repeats`` first runs on it."""
    from jobs.datasets.synthetic import generate_landing

    spec = spec_for(events)
    lakehouse = work_dir / f"series-{events}"
    shutil.rmtree(lakehouse, ignore_errors=True)
    lakehouse.mkdir(parents=True)
    started = time.perf_counter()
    landing = generate_landing(lakehouse, spec)
    generate_seconds = time.perf_counter() - started

    runs, bare_runs = [], []
    for repeat in range(repeats):  # fairshelf, bare, fairshelf, bare: load changes touch both
        clear_outputs(lakehouse)
        runs.append(_measured_worker("pipeline", events, repeat, lakehouse, work_dir, timeout, code_version))
        # the bare pipeline reads only landing/; fairshelf's last run stays for the ratios
        bare_runs.append(_measured_worker("bare", events, repeat, lakehouse, work_dir, timeout, code_version))

    stages = runs[0]["stage_seconds"].keys()
    point = {
        **point_stage_metrics(runs),
        "events": landing.events,
        "seconds": round(statistics.median(r["seconds"] for r in runs), 2),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_rss_by_kind_mb": peaks_by_kind(runs),
        "peak_pss_mb": max((r["peak_pss_mb"] for r in runs if r["peak_pss_mb"] is not None), default=None),
        "stage_seconds": {s: round(statistics.median(r["stage_seconds"][s] for r in runs), 2) for s in stages},
        # null: the stage was too short for any sample to fall in it
        "stage_peak_rss_mb": {
            phase: max((r["peak_rss_by_phase_mb"][phase] for r in runs if phase in r["peak_rss_by_phase_mb"]),
                       default=None)
            for phase in ("spark_start", *stages)
        },
        "record_run_seconds": round(statistics.median(r["record_run_seconds"] for r in runs), 2),
        "spark_start_seconds": round(statistics.median(r["spark_start_seconds"] for r in runs), 2),
        "users": spec.users,
        "items": spec.items,
        "days": spec.days,
        "malformed_events": landing.malformed_events,
        "generate_seconds": round(generate_seconds, 2),
        "lakehouse": lakehouse.name,  # under the work directory (benchmarks/work/)
        "runs": runs,
        "bare": bare_summary(bare_runs),
    }
    point["seconds_per_event"] = float(f"{point['seconds'] / point['events']:.4g}")
    point["validation_share"] = validation_share(point)
    point["fairshelf_vs_bare"] = fairshelf_vs_bare(point)
    return point


def benchmark_config(lakehouse: Path | str, code_version: str | None = None):
    """The packaged defaults, rooted at ``lakehouse``, with a fresh random key: the
    caller's environment does not change what is measured, and no key is stored."""
    from jobs.core.config import load_config

    overrides = {"code_version": code_version} if code_version else {}
    return load_config(environ={}, lakehouse=str(lakehouse),
                       pseudonym_key=secrets.token_urlsafe(48).encode(), **overrides)


def phase_file(out: Path) -> Path:
    """Where the worker writing ``out`` names its current phase (Spark start, a stage)."""
    return out.with_suffix(".phase")


def pipeline_worker(lakehouse: Path, out: Path, code_version: str | None) -> None:
    """In the measured process: one nightly run for ``RUN_DATE``; timings to ``out``."""
    from jobs.lake.spark import build_spark
    from jobs.orchestration.pipeline import run_pipeline

    phase = phase_file(out)
    config = benchmark_config(lakehouse, code_version)
    phase.write_text("spark_start")
    started = time.perf_counter()
    spark = build_spark(config, app_name="fairshelf-benchmark")
    spark_start = time.perf_counter() - started
    try:
        started = time.perf_counter()
        outcome = run_pipeline(spark, config, RUN_DATE, on_stage=phase.write_text)  # the last includes record_run
        seconds = time.perf_counter() - started
    finally:
        phase.write_text("spark_stop")
        spark.stop()
    stage_seconds = {s["stage"]: s["seconds"] for s in outcome.summaries}
    metrics = {s["stage"]: s["metrics"] for s in outcome.summaries}
    out.write_text(json.dumps({
        "seconds": round(seconds, 2),
        "spark_start_seconds": round(spark_start, 2),
        "stage_seconds": stage_seconds,
        # timings a stage reports itself (e.g. train's model selection and fit)
        "stage_metric_seconds": {stage: {k: v for k, v in m.items() if k.endswith("_seconds")}
                                 for stage, m in metrics.items() if any(k.endswith("_seconds") for k in m)},
        "record_run_seconds": round(seconds - sum(stage_seconds.values()), 2),
        "status": outcome.status,
        "input_events": metrics["ingest"]["input_events"],
        "accepted_events": metrics["ingest"]["accepted_events"],
        "trained_users": metrics["train"]["trained_users"],
        "trained_items": metrics["train"]["trained_items"],
        "candidates": metrics["train"]["candidates"],
        "model": metrics["train"].get("model"),
        "shelf_rows": metrics["publish"]["shelf_rows"],
    }, indent=2))


def bare_worker(lakehouse: Path, out: Path) -> None:
    """In the measured process: the bare pipeline (``benchmarks.bare``) on ``lakehouse``'s
    landing zone, with the Spark settings, shelf size and history window of fairshelf's
    runs; shelves to ``<lakehouse>/bare/``, timings to ``out``."""
    from benchmarks import bare

    config = benchmark_config(lakehouse)
    phase = phase_file(out)
    phase.write_text("spark_start")
    started = time.perf_counter()
    spark = bare.build_session(config.spark.master, config.spark.driver_memory, config.spark.shuffle_partitions)
    spark_start = time.perf_counter() - started
    shutil.rmtree(lakehouse / "bare", ignore_errors=True)
    try:
        phase.write_text("bare")
        summary = bare.run_bare(spark, lakehouse, RUN_DATE, lakehouse / "bare", salt=secrets.token_hex(16),
                                shelf_size=config.shelf.size, history_days=config.shelf.history_days)
    finally:
        phase.write_text("spark_stop")
        spark.stop()
    out.write_text(json.dumps({**summary, "spark_start_seconds": round(spark_start, 2)}, indent=2))
