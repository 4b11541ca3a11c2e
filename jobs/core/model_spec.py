"""The hyperparameters of a recommendation model, declared once: ``ModelSpec``.

A spec names the algorithm, the confidence weighting of its input and every
hyperparameter, seeded. ``jobs.recsys.models`` builds a model of a spec (and re-exports
this type), the hyperparameter search (``jobs.recsys.selection.search_space``) tries many,
model cards record one, and the ``[model]`` section of the configuration
(``jobs.core.config.ModelSettings``) is a spec plus the settings of the pipeline around
the model. The defaults are the documented ones of ``defaults.toml``: EASE and ALS
blended, the model chosen on a validation split of MovieLens-100K.

An invalid spec is a ``ModelError`` naming the field and what it allows; inside the
configuration, a ``ConfigError`` naming ``[model] <field>``.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from jobs.core.typed_settings import settings_dataclass

# als, bpr: implicit's CPU models; ease: EASE (Steck 2019); blend: EASE and ALS mixed
Algorithm = Literal["als", "bpr", "ease", "blend"]
# confidence weighting of the user x item matrix (jobs.recsys.models.weight_confidence)
Weighting = Literal["none", "bm25", "tfidf"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
UnitInterval = Annotated[float, Field(ge=0.0, le=1.0)]


class ModelError(ValueError):
    """A model cannot be built or used as configured; the message says why."""


@settings_dataclass(ModelError, "invalid model specification")
class ModelSpec:
    """Everything that defines a model and its input weighting (module doc)."""

    algorithm: Algorithm = "blend"
    weighting: Weighting = "none"
    factors: PositiveInt = 16  # als, bpr, blend
    regularization: NonNegativeFloat = 0.05  # als, bpr, blend
    alpha: PositiveFloat = 5.0  # als, blend: confidence scale
    iterations: PositiveInt = 15  # als, bpr, blend
    learning_rate: PositiveFloat = 0.01  # bpr
    ease_regularization: PositiveFloat = 300.0  # ease, blend: EASE's lambda
    blend_weight: UnitInterval = 0.3  # blend: EASE's share of the mixed per-user z-scores
    bm25_k1: NonNegativeFloat = 100.0  # bm25 weighting
    bm25_b: UnitInterval = 0.8  # bm25 weighting
    seed: NonNegativeInt = 42

    @classmethod
    def from_settings(cls, settings: Any) -> ModelSpec:
        """The spec of ``settings``: a ``ModelSpec`` as it is, the spec part of the
        configuration's ``ModelSettings``, or any object with some of these fields (the
        missing ones keep their defaults)."""
        if type(settings) is ModelSpec:
            return settings
        names = [f.name for f in dataclasses.fields(ModelSpec)]
        return ModelSpec(**{name: getattr(settings, name) for name in names if hasattr(settings, name)})

    def parameters(self) -> dict[str, Any]:
        """The fields that matter for this algorithm (for search records and model cards)."""
        common: dict[str, Any] = {"algorithm": self.algorithm, "weighting": self.weighting}
        if self.weighting == "bm25":
            common.update(bm25_k1=self.bm25_k1, bm25_b=self.bm25_b)
        if self.algorithm in ("ease", "blend"):
            common["ease_regularization"] = self.ease_regularization
        if self.algorithm == "ease":
            return common
        if self.algorithm == "blend":
            common["blend_weight"] = self.blend_weight
        common.update(factors=self.factors, regularization=self.regularization, iterations=self.iterations)
        if self.algorithm == "bpr":
            return {**common, "learning_rate": self.learning_rate}
        return {**common, "alpha": self.alpha}
