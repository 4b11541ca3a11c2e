"""Offline evaluation of the implicit-feedback model on MovieLens-100K, with model
selection on a validation split carved from the training part only.

``evaluate_movielens`` returns the shape of DESIGN.md (Interfaces, ``evaluate --json``):
``{"random": {"unconstrained": M, "reranked": M}, "temporal": {...}}``.

- Protocols (``jobs.evaluation.splits``): "random" is the per-user random 75/25 split with seed 42;
  "temporal" trains on the days before the day of the 80th percentile of rating
  timestamps and tests on that day and later, for users present on both sides (on
  MovieLens-100K only about a hundred users are: most rated everything in one sitting).
  Relevance is binary, every held-out rating; the model trains on completion = rating / 5.
- Lists: top-10 over the whole catalog (1,682 titles), without the user's training items.
- M: precision@10, recall@10, ndcg@10, map@10, coverage, novelty, intra_list_diversity,
  gini, avg_popularity (definitions in ``jobs.recsys.metrics``), plus ``users`` evaluated,
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
  by the pipeline's constrained re-ranker (``jobs.recsys.diversity.select_shelves`` with the
  ``[rerank]`` settings of the configuration: MMR, genre share, under-represented provider
  groups, titles per provider, calibration to the user's training history, explore slots),
  on the catalog exactly as ``jobs.datasets.movielens`` imports it (provider groups from release
  years, one provider, one language). Explore slots are scaled from the nightly shelf
  (``shelf.size``) to k: 4 of 20 become 2 of 10. Its M also holds ``flagged_share`` (shelves that
  could not meet some constraint from their candidates) and ``flagged_by_constraint``.

Reproduce: ``.venv/bin/python -m jobs.evaluation.evaluate ../shared/data/movielens-100k --table``.
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

from jobs.core.config import RerankSettings, ShelfSettings
from jobs.core.render import render_table
from jobs.datasets.movielens import MovieLensError, catalog_from_items, check_source, read_genres, read_items
from jobs.evaluation.splits import (
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
from jobs.recsys.diversity import (
    FLAGS,
    CatalogArrays,
    DiversityError,
    history_genre_mix,
    longtail_scores,
    select_shelves,
    underrepresented_groups,
)
from jobs.recsys.metrics import MetricsError, beyond_accuracy_metrics, ranking_metrics
from jobs.recsys.models import ModelError, ModelSpec, weight_confidence
from jobs.recsys.selection import SelectionError, _eval_users, fit, recommend_lists, search_space, select_model

RERANK_CANDIDATES = 100  # the nightly run gives 200 (model.candidates_per_user); 100 measured better here
DEFAULT_TIME_BUDGET_S = 120.0

# candidate_ids (users x N), candidate_scores (users x N), k -> item ids (users x k); an
# optional ``description`` attribute (a dict) is reported beside its metrics.
Reranker = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
# (training confidences users x items, the evaluated users' rows) -> the protocol's Reranker
RerankerFactory = Callable[[csr_matrix, np.ndarray], Reranker]


class EvaluationError(ValueError):
    """The evaluation cannot run as asked (bad k, budget or settings)."""


# Errors a user can meet running an evaluation: print the message, not a traceback.
EVALUATION_ERRORS = (EvaluationError, SelectionError, MovieLensError, SplitError, ModelError, MetricsError, DiversityError)


# --- fitting and lists ----------------------------------------------------------------


# --- model selection ------------------------------------------------------------------


# --- the constrained re-ranker on MovieLens -------------------------------------------------


@dataclass(frozen=True)
class MovieLensCatalog:
    """What the re-ranker knows of each MovieLens title, in ``MovieLensData`` item order."""

    genres: np.ndarray  # bool (items, genres)
    provider_group: np.ndarray  # str (items,)
    provider: np.ndarray  # str (items,)
    language: np.ndarray  # str (items,)


def load_movielens_catalog(path: str | Path) -> MovieLensCatalog:
    """The catalog as ``jobs.datasets.movielens`` imports it (provider group from the release year)."""
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
            "method": "constrained greedy MMR (jobs.recsys.diversity.select_shelves)",
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
    """A metric's text (None cells are "-", set by ``results_table``)."""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def results_table(result: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A Markdown table of both protocols, unconstrained and re-ranked, with the model
    (``jobs.core.render.render_table``)."""
    rows = []
    for protocol in ("random", "temporal"):
        for variant in ("unconstrained", "reranked"):
            metrics = result[protocol][variant]
            model = ", ".join(f"{key}={value}" for key, value in metrics["model"].items())
            rows.append({**metrics, "protocol": protocol, "lists": variant, "model": model})
    columns = ["protocol", "lists", "users", *TABLE_COLUMNS, "model"]
    return render_table(rows, columns, "markdown", cell=_cell, missing="-")


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.evaluation.evaluate PATH [--budget S] [--table]``: the JSON of
    ``evaluate_movielens`` on stdout (or, with ``--table``, its Markdown table)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluation.evaluate", description=main.__doc__)
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
