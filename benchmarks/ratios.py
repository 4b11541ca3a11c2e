"""The cost ratios of DESIGN.md (Interfaces: Benchmarks), each two timed alternatives on
the same input.

- ``privacy_vs_copy``: ingest's validate + minimize + pseudonymize path over the landing
  events (the transforms of ``jobs.stages.ingest.run``: typed fields, contract rules, HMAC user
  keys, the reason counts, silver events and quarantine written) / a plain Spark copy of
  the same landing events to Parquet. Both write with ``df.write.parquet``, so the Delta
  writer's own cost stays out of it (that is ``publish_vs_parquet``).
- ``implicit_vs_mllib_speedup``: ``pyspark.ml.recommendation.ALS`` (implicitPrefs) fit /
  ``jobs.stages.train.fit_model`` with algorithm "als", same interactions, factors, iterations,
  regularization and alpha. Larger is better for ``implicit``.
- ``rerank_vs_topk``: ``jobs.recsys.diversity.select_shelves`` (the rerank stage's constrained
  selection, ``[rerank]`` settings) over the top-N candidates of every user / a plain top-k
  ``argsort`` of the same score matrix. The candidate extraction (and the history's genre
  mix) is shared (the pipeline's train stage already produces candidates) and recorded, not
  counted.
- ``publish_vs_parquet``: ``jobs.lake.tables.write_table`` / ``df.write.parquet`` of the same
  cached DataFrame, partitioned by ``run_date`` both ways, into an existing table.

Each function runs its pair interleaved (a, b, a, b, ...) after an optional untimed
warm-up of both, and returns a :class:`Pair`: the ratio of the medians
(``ratio_of_medians``) plus every time.

Two ratios are read off a recorded series point instead (pure functions of its dict):

- ``validation_share``: the quality stage + the rerank's re-check of the shelves / the
  nightly run;
- ``fairshelf_vs_bare``: the nightly run / the bare pipeline (``benchmarks/bare.py``) on the
  same landing zone, both without Spark start-up.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

RATIO_KEYS = (
    "fairshelf_vs_bare",
    "privacy_vs_copy",
    "implicit_vs_mllib_speedup",
    "rerank_vs_topk",
    "publish_vs_parquet",
    "validation_share",
)
RERANK_CANDIDATES = 100
RERANK_K = 10
SCORE_BATCH_USERS = 4096  # users per numpy batch in rerank_vs_topk (both sides)


@dataclass
class Pair:
    """Timings of a ratio: ``numerator`` seconds / ``denominator`` seconds (medians)."""

    numerator: str
    denominator: str
    numerator_seconds: list[float] = field(default_factory=list)
    denominator_seconds: list[float] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return ratio_of_medians(self.numerator_seconds, self.denominator_seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ratio": _significant(self.ratio),
            "numerator": self.numerator,
            "denominator": self.denominator,
            "numerator_seconds": [_significant(s) for s in self.numerator_seconds],
            "denominator_seconds": [_significant(s) for s in self.denominator_seconds],
            **self.detail,
        }


def ratio_of_medians(numerator_seconds: Sequence[float], denominator_seconds: Sequence[float]) -> float:
    """median(numerator) / median(denominator): the ratio of a timed pair (``Pair.ratio``,
    and the recorded ``ratio_details`` of latest.json)."""
    return statistics.median(numerator_seconds) / statistics.median(denominator_seconds)


def validation_share(point: dict[str, Any]) -> dict[str, Any] | None:
    """The share of a nightly run spent validating: the whole ``quality`` stage (its reads
    included) plus the re-rank stage's re-check of the shelves and their Great Expectations
    suite (``stage_metric_seconds.rerank.validation_seconds``), over the run's seconds; None
    when the run had no quality stage."""
    stages, timings = point.get("stage_seconds", {}), point.get("stage_metric_seconds", {})
    if "quality" not in stages:
        return None
    seconds = stages["quality"] + timings.get("rerank", {}).get("validation_seconds", 0.0)
    return {"ratio": round(seconds / point["seconds"], 4), "validation_seconds": round(seconds, 2),
            "numerator": "quality stage + rerank validation_seconds", "denominator": "the nightly run",
            "run_seconds": point["seconds"], "events": point["events"]}


def fairshelf_vs_bare(point: dict[str, Any]) -> dict[str, Any] | None:
    """fairshelf's nightly run seconds / the bare pipeline's seconds on the same landing zone
    (``point["bare"]``), both medians and both without Spark start-up (fairshelf: the wall
    time of ``run_pipeline``; bare: its four phases); None when the point has no bare run."""
    bare = point.get("bare")
    if not bare:
        return None
    return {"ratio": round(point["seconds"] / bare["seconds"], 4),
            "numerator": "fairshelf nightly run (run_pipeline, Spark start-up excluded)",
            "denominator": "bare pipeline (benchmarks/bare.py: read+aggregate+collect, fit, top-N, write; "
                           "Spark start-up excluded)",
            "fairshelf_seconds": point["seconds"], "bare_seconds": bare["seconds"],
            "ratio_with_spark_start": round((point["seconds"] + point["spark_start_seconds"])
                                      / (bare["seconds"] + bare["spark_start_seconds"]), 4),
            "events": point["events"]}


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _seconds(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def time_pair(
    pair: Pair, numerator: Callable[[], Any], denominator: Callable[[], Any], repeats: int, warmup: bool
) -> Pair:
    """Time both alternatives ``repeats`` times, interleaved, so that changes in the
    machine's load touch both sides alike."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if warmup:
        numerator()
        denominator()
    for _ in range(repeats):
        pair.numerator_seconds.append(_seconds(numerator))
        pair.denominator_seconds.append(_seconds(denominator))
    return pair


# --- privacy path vs plain copy --------------------------------------------------------------

def privacy_vs_copy(spark, config, run_date: date, out_dir: Path, repeats: int = 3, warmup: bool = True) -> Pair:
    """Ingest's privacy path vs a Parquet copy, over every landing day a first run of
    ``run_date`` ingests, from ``config``'s landing zone."""
    from jobs.core.schemas import CATALOG, VIEWING_EVENTS
    from jobs.lake.landing import landing_frame, read_landing
    from jobs.stages import ingest

    key = config.require_pseudonym_key()
    days = ingest.dates_to_ingest(ingest.landing_event_dates(config), set(), run_date, config.shelf.history_days)
    paths = [ingest.events_path(config, d) for d in days]

    def privacy_path() -> None:
        raw = read_landing(spark, paths, VIEWING_EVENTS)
        content = ingest.build_content(landing_frame(spark, config, "catalog", CATALOG), run_date).cache()
        checked = ingest.with_rejection_reason(
            ingest.with_typed_event_fields(ingest.with_landing_date(raw)),
            content.select("content_id"),
            config.privacy.max_watch_seconds,
        ).cache()
        checked.groupBy("reason").count().collect()
        silver = ingest.build_silver_events(checked, key)
        silver.write.mode("overwrite").partitionBy("run_date").parquet(str(out_dir / "privacy_events"))
        quarantine = ingest.build_quarantine(checked, key)
        quarantine.write.mode("overwrite").partitionBy("run_date").parquet(str(out_dir / "privacy_quarantine"))
        checked.unpersist()
        content.unpersist()

    def plain_copy() -> None:
        read_landing(spark, paths, VIEWING_EVENTS).write.mode("overwrite").parquet(str(out_dir / "copy"))

    events = read_landing(spark, paths, VIEWING_EVENTS).count()
    pair = Pair("ingest validate+minimize+pseudonymize -> parquet", "landing -> parquet copy",
                detail={"events": events, "days": len(days)})
    result = time_pair(pair, privacy_path, plain_copy, repeats, warmup)
    result.detail["accepted_events"] = spark.read.parquet(str(out_dir / "privacy_events")).count()
    result.detail["copied_events"] = spark.read.parquet(str(out_dir / "copy")).count()
    return result


# --- implicit ALS vs Spark MLlib ALS -----------------------------------------------------------

def implicit_vs_mllib(spark, data, settings, repeats: int = 3, warmup: bool = True) -> Pair:
    """Spark MLlib ALS (implicitPrefs) vs ``implicit`` ALS on ``data`` (an
    ``InteractionMatrix``), both with ``settings``' factors, iterations, regularization,
    alpha and seed. Only the fit is timed; MLlib's input is cached before."""
    import pyarrow as pa
    from pyspark.ml.recommendation import ALS

    from jobs.recsys.training import fit_model, weighted_interactions

    settings = dataclasses.replace(settings, algorithm="als")
    weighted = weighted_interactions(data, settings)
    coo = weighted.matrix.tocoo()
    ratings = spark.createDataFrame(
        pa.table({"user": coo.row.astype(np.int32), "item": coo.col.astype(np.int32),
                  "rating": coo.data.astype(np.float32)})
    ).cache()
    rows = ratings.count()

    def mllib(iterations: int) -> Callable[[], None]:
        def fit() -> None:
            als = ALS(rank=settings.factors, maxIter=iterations, regParam=settings.regularization,
                      alpha=settings.alpha, implicitPrefs=True, seed=settings.seed,
                      userCol="user", itemCol="item", ratingCol="rating")
            model = als.fit(ratings)
            model.userFactors.count()  # the factors are materialized by fit; make sure
            model.itemFactors.count()
        return fit

    def implicit(iterations: int) -> Callable[[], None]:
        return lambda: fit_model(weighted, dataclasses.replace(settings, iterations=iterations))

    if warmup:  # one iteration each: JVM classes and BLAS loaded, not counted
        mllib(1)()
        implicit(1)()
    pair = Pair("spark mllib ALS fit", "implicit ALS fit (jobs.stages.train.fit_model)",
                detail={"interactions": rows, "users": int(weighted.matrix.shape[0]),
                        "items": int(weighted.matrix.shape[1]), "factors": settings.factors,
                        "iterations": settings.iterations, "regularization": settings.regularization,
                        "alpha": settings.alpha})
    result = time_pair(pair, mllib(settings.iterations), implicit(settings.iterations), repeats, False)
    ratings.unpersist()
    return result


# --- constrained re-rank vs plain top-k ---------------------------------------------------------

def rerank_vs_topk(
    scores: np.ndarray,
    item_genres: np.ndarray,
    repeats: int = 3,
    warmup: bool = True,
    lambda_: float | None = None,
    candidates: int = RERANK_CANDIDATES,
    k: int = RERANK_K,
    batch_users: int = SCORE_BATCH_USERS,
    settings=None,
    catalog=None,
    history=None,
) -> Pair:
    """``jobs.recsys.diversity.select_shelves`` (the rerank stage's selection, every constraint of
    ``settings``, default the ``[rerank]`` defaults; ``lambda_`` overrides its MMR lambda)
    of every user's top-``candidates`` down to ``k`` vs the top-``k`` of a plain argsort
    over the (users x items) ``scores``, in batches of ``batch_users``.

    ``catalog`` (``CatalogArrays``; default: ``item_genres`` only, no providers, nothing
    under-represented) and ``history`` (users x items confidences, for calibration and
    explore; default none) are what the stage would know."""
    from scipy.sparse import csr_matrix

    from jobs.core.config import RerankSettings
    from jobs.recsys.diversity import CatalogArrays, history_genre_mix, select_shelves
    from jobs.recsys.models import top_n

    settings = settings or RerankSettings()
    if lambda_ is not None:
        settings = dataclasses.replace(settings, mmr_lambda=lambda_)
    n_items = scores.shape[1]
    if catalog is None:
        catalog = CatalogArrays(genres=np.asarray(item_genres, dtype=bool), provider=np.full(n_items, -1),
                                underrepresented=np.zeros(n_items, dtype=bool), longtail=np.ones(n_items))
    history = csr_matrix(history if history is not None else (scores.shape[0], n_items))
    batches = [slice(s, min(s + batch_users, scores.shape[0])) for s in range(0, scores.shape[0], batch_users)]
    started = time.perf_counter()
    extracted = []
    for b in batches:
        ids, values = top_n(scores[b], candidates)
        part = history[b].tocoo()
        mix = history_genre_mix(part.row, part.col, part.data, ids.shape[0], catalog.genre_share)
        rows = np.arange(ids.shape[0])[:, None]
        engaged = np.asarray(history[b][np.broadcast_to(rows, ids.shape).ravel(), ids.ravel()]).reshape(ids.shape) > 0
        extracted.append((ids, values, engaged, mix))
    extract_seconds = time.perf_counter() - started

    def rerank() -> None:
        for ids, values, engaged, mix in extracted:
            select_shelves(ids, values, engaged, mix, catalog, settings, k)

    def topk() -> None:
        for b in batches:
            np.argsort(-scores[b], axis=1)[:, :k]

    pair = Pair(f"select_shelves top-{candidates} -> {k}", f"argsort top-{k} of the score matrix",
                detail={"users": int(scores.shape[0]), "items": int(n_items),
                        "genres": int(catalog.genres.shape[1]), "settings": dataclasses.asdict(settings),
                        "candidate_extraction_seconds": round(extract_seconds, 3)})
    return time_pair(pair, rerank, topk, repeats, warmup)


def catalog_arrays_for(data, content, settings):
    """``CatalogArrays`` of ``data``'s titles (an ``InteractionMatrix``) from ``content``
    (silver/content as Arrow), as the rerank stage builds them: providers, titles of
    under-represented provider groups or languages (derived from ``data``'s consumption),
    long-tail scores from viewers per title."""
    from jobs.recsys.diversity import CatalogArrays, longtail_scores, underrepresented_groups

    by_id = {row["content_id"]: row for row in content.select(
        ["content_id", "genres", "provider", "provider_group", "original_language"]).to_pylist()}
    rows = [by_id.get(c, {}) for c in data.content_ids]
    viewers = np.asarray((data.matrix > 0).sum(axis=0)).ravel().astype(np.float64)
    under = np.zeros(len(rows), dtype=bool)
    for column, configured in (("provider_group", settings.underrepresented_provider_groups),
                               ("original_language", settings.underrepresented_languages)):
        values = np.array([r.get(column) or "" for r in rows])
        groups = set(configured)
        if settings.underrepresented == "derived":
            names, inverse = np.unique(values, return_inverse=True)
            titles = dict(zip(names.tolist(), np.bincount(inverse).tolist()))
            consumed = dict(zip(names.tolist(), np.bincount(inverse, weights=viewers).tolist()))
            groups |= underrepresented_groups(titles, consumed, settings.underexposure_ratio, settings.minority_share)
        under |= np.isin(values, sorted(groups - {""}))
    providers = [r.get("provider") for r in rows]
    code = {p: j for j, p in enumerate(sorted({p for p in providers if p}))}
    return CatalogArrays(
        genres=item_genre_matrix([r.get("genres") for r in rows]),
        provider=np.array([code.get(p, -1) for p in providers], dtype=np.int64),
        underrepresented=under,
        longtail=longtail_scores(viewers),
    )


def item_genre_matrix(genres: Sequence[str | None]) -> np.ndarray:
    """Boolean (items x genres) matrix from "A|B" genre strings, genres sorted by name."""
    sets = [set(filter(None, (g or "").split("|"))) for g in genres]
    names = sorted(set().union(*sets)) if sets else []
    column = {name: j for j, name in enumerate(names)}
    matrix = np.zeros((len(sets), max(len(names), 1)), dtype=bool)
    for i, item in enumerate(sets):
        matrix[i, [column[g] for g in item]] = True
    return matrix


# --- Delta write vs plain Parquet --------------------------------------------------------------

def publish_vs_parquet(
    df, out_dir: Path, run_date: date, repeats: int = 3, warmup: bool = True, code_version: str = "benchmark"
) -> Pair:
    """``write_table`` vs ``df.write.parquet`` of ``df`` (which has ``run_date``), cached
    first. Each Delta write replaces the partitions it holds in one table, as a nightly
    rerun does; the first write (the warm-up, or the first timed one) creates it."""
    from jobs.core.schemas import USER_KEY_COLUMNS
    from jobs.lake import tables

    df = df.cache()
    rows = df.count()
    partitions = sorted(r[0] for r in df.select("run_date").distinct().collect())
    delta_uri = out_dir / "delta"
    parquet_dir = out_dir / "parquet"
    for path in (delta_uri, parquet_dir):
        shutil.rmtree(path, ignore_errors=True)

    def publish() -> None:
        commit = tables.CommitInfo(run_id=f"benchmark-{uuid.uuid4().hex[:12]}", run_date=run_date.isoformat(),
                                   stage="benchmark", code_version=code_version, config_hash="benchmark")
        tables.write_table(df, str(delta_uri), commit=commit, partitions=partitions,
                           allowed_columns=df.columns, stats_exclude=USER_KEY_COLUMNS)

    def parquet() -> None:
        df.write.mode("overwrite").partitionBy("run_date").parquet(str(parquet_dir))

    pair = Pair("jobs.lake.tables.write_table (delta-rs)", "df.write.parquet",
                detail={"rows": rows, "partitions": len(partitions), "columns": len(df.columns)})
    result = time_pair(pair, publish, parquet, repeats, warmup)
    df.unpersist()
    return result
