"""The model store: ``models/<run id>/`` on disk.

A saved model is its arrays (``model.npz``), its index maps (``user_index.parquet``: row
i of the user arrays; ``item_index.parquet``: row j of the item arrays) and its card
(``model_card.json`` and ``.md``). The train stage saves, the publish stage loads, and an
erasure drops users' rows (``drop_users_from_model``). Nothing here knows the model
families (``jobs.recsys.models``).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.core.errors import ErasureError, StageError


class ModelStoreError(StageError):
    """A model directory is missing or inconsistent; the message says which and what to do."""


MODEL_FILE = "model.npz"
USERS_FILE = "user_index.parquet"
ITEMS_FILE = "item_index.parquet"
CARD_FILE = "model_card.json"
CARD_MARKDOWN_FILE = "model_card.md"


def save_model_files(directory: Path, arrays: Mapping[str, np.ndarray], user_keys: Sequence[str],
                     content_ids: Sequence[str]) -> None:
    """A model's arrays (npz) and its index maps (Parquet) in ``directory``: row i of the
    user arrays is ``user_keys[i]``, row j of the item arrays ``content_ids[j]``."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / MODEL_FILE, **arrays)
    pq.write_table(pa.table({"user_key": user_keys, "row": np.arange(len(user_keys))}), directory / USERS_FILE)
    pq.write_table(pa.table({"content_id": content_ids, "col": np.arange(len(content_ids))}), directory / ITEMS_FILE)


@dataclass(frozen=True)
class SavedModel:
    """What the train stage saved in a model directory (user factors not loaded)."""

    card: dict[str, Any]
    arrays: dict[str, np.ndarray]
    content_ids: np.ndarray  # row j of the item arrays is content_ids[j]

    @property
    def spec_parameters(self) -> dict[str, Any]:
        """The model's parameters as its card records them (``ModelSpec(**...)``)."""
        return self.card["model"]["spec"]


def load_saved_model(directory: Path) -> SavedModel:
    """The card, the item-side arrays and the item index of a saved model."""
    card_path = directory / CARD_FILE
    if not card_path.is_file():
        raise ModelStoreError(f"{card_path} does not exist: run the train stage of this run first")
    card = json.loads(card_path.read_text())
    with np.load(directory / MODEL_FILE) as saved:
        arrays = {name: saved[name] for name in saved.files if name != "user_factors"}
    ids = pq.read_table(directory / ITEMS_FILE).column("content_id").to_numpy(zero_copy_only=False)
    return SavedModel(card, arrays, ids.astype(str))


def model_dirs(models_root: str | Path) -> list[Path]:
    """Every ``<models_root>/<run id>/`` that holds a user index."""
    root = Path(models_root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / USERS_FILE).is_file())


def model_user_keys(directory: Path) -> set[str]:
    """The user keys a saved model holds (its user index)."""
    return set(pq.read_table(directory / USERS_FILE, columns=["user_key"]).column("user_key").to_pylist())


def drop_users_from_model(directory: Path, keys: Sequence[str]) -> list[str]:
    """Drop ``keys``' rows from a saved model's user factors (an EASE model has none: its
    user index is all it holds per user) and user index; returns the keys it held. Item
    arrays (factors, EASE weights) and the item index stay as they are.

    Each file is replaced atomically (temporary file, then rename), the factors first: a
    rerun after a crash between the two renames finds the factors already without the
    users' rows and only rewrites the index.
    """
    index = pq.read_table(directory / USERS_FILE)
    hit = pc.fill_null(pc.is_in(index.column("user_key"), value_set=pa.array(list(keys),
                                                                             pa.string())), False)
    if not pc.any(hit).as_py():
        return []
    kept = index.filter(pc.invert(hit)).sort_by("row")
    with np.load(directory / MODEL_FILE) as saved:
        arrays = {name: saved[name] for name in saved.files}
    factors = arrays.get("user_factors")  # an EASE model has none: only its index is per user
    if factors is not None and factors.shape[0] == index.num_rows:
        arrays["user_factors"] = factors[kept.column("row").to_numpy()]
        replace_file(directory / MODEL_FILE, lambda out: np.savez(out, **arrays))
    elif factors is not None and factors.shape[0] != kept.num_rows:
        raise ErasureError(
            f"{directory}: {factors.shape[0]} user factor rows for {index.num_rows} users in "
            f"{USERS_FILE}; the model is inconsistent: delete the directory or retrain")
    row_type = index.schema.field("row").type
    new_index = pa.table({"user_key": kept.column("user_key"),
                          "row": pa.array(np.arange(kept.num_rows), row_type)})
    replace_file(directory / USERS_FILE, lambda out: pq.write_table(new_index, out))
    card_path = directory / CARD_FILE
    if card_path.is_file():
        card = json.loads(card_path.read_text())
        card["erased_users"] = card.get("erased_users", 0) + index.num_rows - kept.num_rows
        text = json.dumps(card, indent=2, sort_keys=True).encode()
        replace_file(card_path, lambda out: out.write(text))
    return sorted(set(index.filter(hit).column("user_key").to_pylist()))


def replace_file(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through a temporary file in its directory, then rename it over."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
