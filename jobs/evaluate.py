"""Offline evaluation of the implicit-feedback model on MovieLens-100K, with model
selection on a validation split carved from the training part only.

``evaluate_movielens`` returns the shape of DESIGN.md (Interfaces, ``evaluate --json``):
``{"random": {"unconstrained": M, "reranked": M}, "temporal": {...}}``.

- Protocols (``jobs.splits``): "random" is the per-user random 75/25 split with seed 42;
  "temporal" trains on the days before the day of the 80th percentile of rating
  timestamps and tests on that day and later, for users present on both sides (on
  MovieLens-100K only about a hundred users are: most rated everything in one sitting).
  Relevance is binary, every held-out rating; the model trains on completion = rating / 5.
- Lists: top-10 over the whole catalog (1,682 titles), without the user's training items.
- M: precision@10, recall@10, ndcg@10, map@10, coverage, novelty, intra_list_diversity,
  gini, avg_popularity (definitions in ``jobs.metrics``), plus ``users`` evaluated,
  ``training_seconds`` (the final fit on the whole training part) and ``model`` (the
  chosen algorithm and parameters); the unconstrained M also holds ``split`` and
  ``model_selection`` (the search), the re-ranked M ``rerank`` (what re-ranked).
- Model selection: the training part is split again by the protocol's own rule (random
  per user with seed + 1, or temporal at the 80th percentile of the training days) into
  fit and validation parts. The candidates of ``search_space`` are fitted on the fit part
  and scored by validation nDCG@10, in order, until the time budget is spent; the best is
  refitted on the whole training part and evaluated once on the test part, which nothing
  looks at before.
- "reranked": the same model's top ``RERANK_CANDIDATES`` made into shelves of the same k
  by the pipeline's constrained re-ranker (``jobs.diversity.select_shelves`` with the
  ``[rerank]`` settings of the configuration: MMR, genre share, under-represented provider
  groups, titles per provider, calibration to the user's training history, explore slots),
  on the catalog exactly as ``jobs.movielens`` imports it (provider groups from release
  years, one provider, one language). Explore slots are scaled from the nightly shelf
  (``shelf.size``) to k: 4 of 20 become 2 of 10. Its M also holds ``flagged_share`` (shelves that
  could not meet some constraint from their candidates) and ``flagged_by_constraint``.

Reproduce: ``.venv/bin/python -m jobs.evaluate ../shared/data/movielens-100k --table``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from jobs.metrics import MetricsError, beyond_accuracy_metrics, ranking_metrics
from jobs.models import ModelError, ModelSpec, make_model, weight_confidence
from jobs.movielens import MovieLensError
from jobs.config import RerankSettings, ShelfSettings
from jobs.diversity import CatalogArrays, DiversityError, FLAGS, history_genre_mix, longtail_scores, select_shelves, underrepresented_groups
from jobs.movielens import catalog_from_items, check_source, read_genres, read_items
from jobs.splits import (
    TEMPORAL_QUANTILE,
    TEST_SHARE,
    MovieLensData,
    Split,
    SplitError,
    confidence_matrix,
    load_movielens,
    relevance_matrix,
    split_random_per_user,
    split_temporal,
)

RERANK_CANDIDATES = 100  # the nightly run gives 200 (model.candidates_per_user); 100 measured better here
DEFAULT_TIME_BUDGET_S = 120.0
BATCH_USERS = 1024
_FILTERED = -1e38  # implicit marks filtered items with score -FLT_MAX, not with id -1

# candidate_ids (users x N), candidate_scores (users x N), k -> item ids (users x k); an
# optional ``description`` attribute (a dict) is reported beside its metrics.
Reranker = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
# (training confidences users x items, the evaluated users' rows) -> the protocol's Reranker
RerankerFactory = Callable[[csr_matrix, np.ndarray], Reranker]


class EvaluationError(ValueError):
    """The evaluation cannot run as asked (bad k, budget or settings)."""


# Errors a user can meet running an evaluation: print the message, not a traceback.
EVALUATION_ERRORS = (EvaluationError, MovieLensError, SplitError, ModelError, MetricsError, DiversityError)


@dataclass(frozen=True)
class Trial:
    spec: ModelSpec
    metrics: dict[str, float]
    fit_seconds: float

    def record(self, k: int) -> dict[str, Any]:
        return {
            "model": self.spec.parameters(),
            f"validation_ndcg@{k}": round(self.metrics[f"ndcg@{k}"], 4),
            f"validation_precision@{k}": round(self.metrics[f"precision@{k}"], 4),
            "fit_seconds": round(self.fit_seconds, 2),
        }


# --- fitting and lists ----------------------------------------------------------------


def fit(spec: ModelSpec, weighted: csr_matrix):
    """Fit a model of ``spec`` on an already weighted matrix, BLAS held to one thread:
    ``implicit`` parallelizes over users itself (``jobs.models`` imports it at module level,
    so its BLAS is loaded before the limit is set), and on 2 shared cores a threaded BLAS
    made EASE's inversion slower and erratic (0.3 s to 7 s at 1,682 titles), not faster."""
    with threadpool_limits(limits=1, user_api="blas"):
        model = make_model(spec)
        model.fit(weighted, show_progress=False)
    return model


def recommend_lists(
    model, weighted: csr_matrix, users: np.ndarray, n: int, batch_users: int = BATCH_USERS
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` unseen items of each user in ``users``: (ids, scores), (len(users), n),
    best first, ids -1 where fewer than ``n`` items are left."""
    n = min(n, weighted.shape[1])
    ids_out = np.full((len(users), n), -1, dtype=np.int64)
    scores_out = np.full((len(users), n), -np.inf, dtype=np.float64)
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(0, len(users), batch_users):
            batch = users[start : start + batch_users]
            ids, scores = model.recommend(batch, weighted[batch], N=n, filter_already_liked_items=True)
            ids, scores = np.asarray(ids), np.asarray(scores, dtype=np.float64)
            keep = (ids >= 0) & (scores > _FILTERED)
            ids_out[start : start + len(batch)] = np.where(keep, ids, -1)
            scores_out[start : start + len(batch)] = np.where(keep, scores, -np.inf)
    return ids_out, scores_out


def _eval_users(train: csr_matrix, test: csr_matrix) -> np.ndarray:
    return np.flatnonzero((np.diff(train.indptr) > 0) & (np.diff(test.indptr) > 0))


# --- model selection ------------------------------------------------------------------


def search_space(seed: int = 42) -> list[ModelSpec]:
    """The candidates of the hyperparameter search, in the order they are tried.

    Four families (EASE, ALS, EASE+ALS blend, BPR), ALS with raw, BM25- and TF-IDF-weighted
    confidence. They are interleaved, one point of each family in turn, so that a short
    budget still sees every family; within a family the points go from the likeliest to
    the least likely. (BM25 is not offered to EASE: it rescales each title's column, and
    EASE predicts in those units, so it ranks rare titles first.)"""
    ease = [
        ModelSpec(algorithm="ease", ease_regularization=lam, seed=seed) for lam in (300.0, 500.0, 150.0, 1000.0)
    ] + [ModelSpec(algorithm="ease", weighting="tfidf", ease_regularization=500.0, seed=seed)]
    als = [
        ModelSpec(algorithm="als", weighting=w, factors=f, regularization=r, alpha=a, iterations=15, seed=seed)
        for w, f, r, a in [
            ("none", 16, 0.05, 5.0),
            ("none", 32, 5.0, 5.0),
            ("none", 8, 0.05, 2.0),
            ("bm25", 32, 0.05, 5.0),
            ("none", 16, 1.0, 10.0),
            ("tfidf", 16, 0.05, 5.0),
            ("none", 64, 0.05, 2.0),
        ]
    ]
    blend = [
        ModelSpec(algorithm="blend", ease_regularization=300.0, factors=f, alpha=5.0, blend_weight=w, seed=seed)
        for f, w in [(16, 0.5), (16, 0.3), (32, 0.7)]
    ]
    bpr = [
        ModelSpec(algorithm="bpr", factors=f, learning_rate=lr, regularization=0.01, iterations=it, seed=seed)
        for f, lr, it in [(64, 0.05, 100), (32, 0.01, 200)]
    ]
    families = [ease, als, blend, bpr]
    ordered: list[ModelSpec] = []
    for i in range(max(len(f) for f in families)):
        ordered.extend(f[i] for f in families if i < len(f))
    return ordered


def validate(spec: ModelSpec, fit_part: csr_matrix, validation: csr_matrix, k: int) -> Trial:
    """Fit ``spec`` on ``fit_part`` and score its top-``k`` against ``validation``."""
    weighted = weight_confidence(fit_part, spec)
    start = time.perf_counter()
    model = fit(spec, weighted)
    seconds = time.perf_counter() - start
    users = _eval_users(fit_part, validation)
    ids, _ = recommend_lists(model, weighted, users, k)
    return Trial(spec, ranking_metrics(ids, validation[users], k), seconds)


def select_model(
    fit_part: csr_matrix,
    validation: csr_matrix,
    candidates: list[ModelSpec],
    *,
    k: int,
    time_budget_s: float,
    on_trial: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> tuple[ModelSpec, dict[str, Any]]:
    """The candidate with the best validation nDCG@k among those tried within the budget
    (the first candidate is always tried; a trial started in time finishes).

    ``on_trial(tried, candidates, trial record)`` is called after each trial (progress).
    The record's ``chosen_metrics`` are the chosen candidate's validation metrics."""
    if not candidates:
        raise EvaluationError("the search space is empty")
    start = time.perf_counter()
    trials: list[Trial] = []
    for spec in candidates:
        if trials and time.perf_counter() - start >= time_budget_s:
            break
        trials.append(validate(spec, fit_part, validation, k))
        if on_trial:
            on_trial(len(trials), len(candidates), trials[-1].record(k))
    best = max(trials, key=lambda t: (t.metrics[f"ndcg@{k}"], -trials.index(t)))
    record = {
        "criterion": f"validation ndcg@{k}",
        "time_budget_s": time_budget_s,
        "seconds": round(time.perf_counter() - start, 1),
        "tried": len(trials),
        "candidates": len(candidates),
        "chosen": best.spec.parameters(),
        "chosen_metrics": {name: round(float(value), 4) for name, value in best.metrics.items()},
        "trials": [t.record(k) for t in trials],
    }
    return best.spec, record


# --- the constrained re-ranker on MovieLens -------------------------------------------------


@dataclass(frozen=True)
class MovieLensCatalog:
    """What the re-ranker knows of each MovieLens title, in ``MovieLensData`` item order."""

    genres: np.ndarray  # bool (items, genres)
    provider_group: np.ndarray  # str (items,)
    provider: np.ndarray  # str (items,)
    language: np.ndarray  # str (items,)


def load_movielens_catalog(path: str | Path) -> MovieLensCatalog:
    """The catalog as ``jobs.movielens`` imports it (provider group from the release year)."""
    directory = check_source(path)
    genres = read_genres(directory)
    items = read_items(directory, genres).sort_values("item")
    catalog = catalog_from_items(items, genres)
    names = [g for g in genres if g != "unknown"]
    return MovieLensCatalog(
        genres=items[names].to_numpy().astype(bool),
        provider_group=catalog["provider_group"].to_numpy(dtype=str),
        provider=catalog["provider"].to_numpy(dtype=str),
        language=catalog["original_language"].to_numpy(dtype=str),
    )


def _group_counts(groups: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    names, inverse = np.unique(groups, return_inverse=True)
    return dict(zip(names.tolist(), np.bincount(inverse, weights=weights, minlength=len(names)).tolist()))


def catalog_arrays(catalog: MovieLensCatalog, train: csr_matrix, settings: RerankSettings) -> CatalogArrays:
    """``CatalogArrays`` of the catalog, popularity and under-representation taken from the
    training interactions (as the rerank stage takes them from silver/interactions)."""
    popularity = np.asarray((train > 0).sum(axis=0)).ravel().astype(np.float64)
    under = np.zeros(len(popularity), dtype=bool)
    for column, configured in (
        (catalog.provider_group, settings.underrepresented_provider_groups),
        (catalog.language, settings.underrepresented_languages),
    ):
        groups = set(configured)
        if settings.underrepresented == "derived":
            groups |= underrepresented_groups(
                _group_counts(column), _group_counts(column, popularity),
                settings.underexposure_ratio, settings.minority_share,
            )
        under |= np.isin(column, sorted(groups))
    _, provider = np.unique(catalog.provider, return_inverse=True)
    return CatalogArrays(
        genres=catalog.genres,
        provider=provider.astype(np.int64),
        underrepresented=under,
        longtail=longtail_scores(popularity),
    )


@dataclass
class ConstrainedReranker:
    """``select_shelves`` as a ``Reranker`` for the evaluated users of one protocol:
    their training rows are the history (calibration, explore)."""

    catalog: CatalogArrays
    history: csr_matrix  # training confidences of the evaluated users, in list order
    settings: RerankSettings
    users: np.ndarray | None = None  # the evaluated users' rows (seed their explore spread)
    shelf_size: int = ShelfSettings().size  # the nightly shelf the settings are made for
    flagged: dict[str, Any] | None = None

    def __call__(self, candidate_ids: np.ndarray, candidate_scores: np.ndarray | None, k: int) -> np.ndarray:
        history = self.history.tocoo()
        mix = history_genre_mix(history.row, history.col, history.data, history.shape[0], self.catalog.genre_share)
        valid = candidate_ids >= 0
        rows = np.repeat(np.arange(len(candidate_ids)), candidate_ids.shape[1]).reshape(candidate_ids.shape)
        engaged = np.zeros(candidate_ids.shape, dtype=bool)
        engaged[valid] = np.asarray(self.history[rows[valid], candidate_ids[valid]]).ravel() > 0
        scores = None if candidate_scores is None else np.where(valid, candidate_scores, 0.0)
        shelves = select_shelves(candidate_ids, scores, engaged, mix, self.catalog, self.settings_at(k), k, self.users)
        self.flagged = {
            "flagged_share": round(float(shelves.flags.any(axis=1).mean()), 4),
            "flagged_by_constraint": {f: round(float(shelves.flags[:, j].mean()), 4) for j, f in enumerate(FLAGS)},
        }
        return shelves.items

    def settings_at(self, k: int) -> RerankSettings:
        """The settings for lists of ``k``: explore slots scaled from the nightly shelf's
        length to ``k`` (a top-10 list gets half the slots of a 20-title shelf)."""
        slots = round(self.settings.explore_slots * k / self.shelf_size)
        return dataclasses.replace(self.settings, explore_slots=min(slots, k))

    @property
    def description(self) -> dict[str, Any]:
        return {
            "method": "constrained greedy MMR (jobs.diversity.select_shelves)",
            # as JSON has them (the settings' tuples become lists), so the result round-trips
            "settings": json.loads(json.dumps(dataclasses.asdict(self.settings))),
            "shelf_size": self.shelf_size,
            "underrepresented_titles": int(self.catalog.underrepresented.sum()),
        }


def constrained_reranker(
    catalog: MovieLensCatalog, settings: RerankSettings, shelf_size: int = ShelfSettings().size
) -> RerankerFactory:
    """The factory of ``ConstrainedReranker`` for each protocol's training part."""

    def make(train: csr_matrix, users: np.ndarray) -> ConstrainedReranker:
        return ConstrainedReranker(catalog_arrays(catalog, train, settings), train[users], settings, users, shelf_size)

    return make


# --- one protocol -----------------------------------------------------------------------


def list_metrics(
    ids: np.ndarray, relevant: csr_matrix, item_counts: np.ndarray, item_genres: np.ndarray, k: int
) -> dict[str, float]:
    """Ranking and beyond-accuracy metrics of top-``k`` lists, rounded for reporting."""
    metrics = {**ranking_metrics(ids, relevant, k), **beyond_accuracy_metrics(ids[:, :k], item_counts, item_genres)}
    return {name: round(value, 4) for name, value in metrics.items()}


def evaluate_protocol(
    data: MovieLensData,
    split: Split,
    validation_split: Split | None,
    *,
    k: int,
    settings: Any = None,
    time_budget_s: float,
    rerank: RerankerFactory,
    seed: int = 42,
) -> dict[str, dict[str, Any]]:
    """{"unconstrained": M, "reranked": M} of one protocol (module doc)."""
    shape = (data.n_users, data.n_items)
    if settings is not None:
        spec = ModelSpec.from_settings(settings)
        selection: dict[str, Any] = {"criterion": "given settings, no search", "chosen": spec.parameters()}
    else:
        if validation_split is None:
            raise EvaluationError("a validation split is needed to choose the model")
        spec, selection = select_model(
            confidence_matrix(validation_split.train, *shape),
            relevance_matrix(validation_split.test, *shape),
            search_space(seed),
            k=k,
            time_budget_s=time_budget_s,
        )
        selection["validation_split"] = validation_split.info

    train = confidence_matrix(split.train, *shape)
    test = relevance_matrix(split.test, *shape)
    weighted = weight_confidence(train, spec)
    start = time.perf_counter()
    model = fit(spec, weighted)
    training_seconds = time.perf_counter() - start
    users = _eval_users(train, test)
    start = time.perf_counter()
    ids, scores = recommend_lists(model, weighted, users, max(k, RERANK_CANDIDATES))
    recommend_seconds = time.perf_counter() - start
    reranker = rerank(train, users)
    start = time.perf_counter()
    reranked = reranker(ids, scores, k)
    rerank_seconds = time.perf_counter() - start

    item_counts = np.bincount(split.train["item"].to_numpy(), minlength=data.n_items)
    relevant = test[users]
    common = {
        "users": int(len(users)),
        "training_seconds": round(training_seconds, 2),
        "model": spec.parameters(),
    }
    split_info = {
        **split.info,
        "train_ratings": int(len(split.train)),
        "test_ratings": int(len(split.test)),
        "catalog_items": data.n_items,
    }
    unconstrained = {
        **list_metrics(ids[:, :k], relevant, item_counts, data.item_genres, k),
        **common,
        "recommend_seconds": round(recommend_seconds, 2),
        "split": split_info,
        "model_selection": selection,
    }
    described = getattr(reranker, "description", None) or {"method": getattr(reranker, "__name__", repr(reranker))}
    reranked_metrics = {
        **list_metrics(reranked, relevant, item_counts, data.item_genres, k),
        **common,
        **(getattr(reranker, "flagged", None) or {}),
        "rerank": {**described, "candidates": int(ids.shape[1]), "seconds": round(rerank_seconds, 2)},
    }
    return {"unconstrained": unconstrained, "reranked": reranked_metrics}


def evaluate_movielens(
    path: str | Path,
    *,
    seed: int = 42,
    k: int = 10,
    settings: Any = None,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    rerank: RerankerFactory | None = None,
    rerank_settings: RerankSettings | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Both protocols on MovieLens-100K at ``path``:
    ``{"random": {"unconstrained": M, "reranked": M}, "temporal": {...}}``.

    ``settings`` (a ``ModelSettings`` or ``ModelSpec``) skips the search and evaluates that
    model; otherwise each protocol chooses its model on its own validation split, spending
    about ``time_budget_s`` seconds on that search (each protocol; the trial running when
    the budget ends finishes). ``rerank`` replaces the constrained re-ranker (a factory:
    training matrix, evaluated users -> re-ranker); ``rerank_settings`` (default: the
    ``[rerank]`` defaults) configures it.
    """
    if k < 1:
        raise EvaluationError(f"k must be at least 1, got {k}")
    if time_budget_s <= 0:
        raise EvaluationError(f"the time budget must be positive, got {time_budget_s}")
    data = load_movielens(path)
    rerank = rerank or constrained_reranker(load_movielens_catalog(path), rerank_settings or RerankSettings())

    random_split = split_random_per_user(data.ratings, TEST_SHARE, seed)
    temporal_split = split_temporal(data.ratings, TEMPORAL_QUANTILE)
    validations = {
        "random": split_random_per_user(random_split.train, TEST_SHARE, seed + 1),
        "temporal": split_temporal(temporal_split.train, TEMPORAL_QUANTILE),
    }
    return {
        name: evaluate_protocol(
            data,
            split,
            validations[name],
            k=k,
            settings=settings,
            time_budget_s=time_budget_s,
            rerank=rerank,
            seed=seed,
        )
        for name, split in (("random", random_split), ("temporal", temporal_split))
    }


# --- reporting ---------------------------------------------------------------------------

TABLE_COLUMNS = (
    "precision@10",
    "recall@10",
    "ndcg@10",
    "map@10",
    "coverage",
    "novelty",
    "intra_list_diversity",
    "gini",
    "avg_popularity",
    "training_seconds",
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def results_table(result: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A Markdown table of both protocols, unconstrained and re-ranked, with the model."""
    header = ["protocol", "lists", "users", *TABLE_COLUMNS, "model"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for protocol in ("random", "temporal"):
        for variant in ("unconstrained", "reranked"):
            metrics = result[protocol][variant]
            model = ", ".join(f"{key}={value}" for key, value in metrics["model"].items())
            cells = [protocol, variant, _cell(metrics.get("users"))]
            cells += [_cell(metrics.get(column)) for column in TABLE_COLUMNS]
            lines.append("| " + " | ".join([*cells, model]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.evaluate PATH [--budget S] [--table]``: the JSON of
    ``evaluate_movielens`` on stdout (or, with ``--table``, its Markdown table)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=main.__doc__)
    parser.add_argument("movielens", help="folder holding MovieLens-100K (u.data, u.item, ...)")
    parser.add_argument("--budget", type=float, default=DEFAULT_TIME_BUDGET_S, help="search seconds per protocol")
    parser.add_argument("--table", action="store_true", help="print the Markdown table instead of JSON")
    args = parser.parse_args(argv)
    try:
        result = evaluate_movielens(args.movielens, time_budget_s=args.budget)
    except EVALUATION_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(results_table(result) if args.table else json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
