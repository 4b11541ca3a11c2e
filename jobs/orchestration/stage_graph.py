"""The nightly run's stages and their order, without importing any of them.

The Airflow DAG reads this when its file is parsed, where importing Spark or the
stages would be too heavy; ``jobs.orchestration.pipeline`` maps each name to its entry point.
"""

# Stage -> the stages it needs first (the DAG's edges); listed in run order.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "erasure": (),  # first: requests are carried out before anything is read
    "ingest": ("erasure",),
    "privacy": ("erasure",),
    "features": ("ingest", "privacy"),
    "quality": ("features",),  # Great Expectations gates: nothing unchecked reaches the model
    "train": ("quality",),
    "rerank": ("train",),
    "audit": ("rerank",),  # the fairness gate: a blocking violation stops the run before publish
    "publish": ("audit",),
}
ORDER: tuple[str, ...] = tuple(UPSTREAM)
