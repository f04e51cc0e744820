"""Load a RecBole dataset folder into typed tables with contiguous integer ids.

Users and items keep their raw token ids (``user_id``/``item_id`` strings) for display and URLs;
models use the contiguous ``user``/``item`` indices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from thinkrec.config import DataConfig, FieldNames
from thinkrec.data.atomic import DataFileError, read_atomic

log = logging.getLogger(__name__)


@dataclass
class RawDataset:
    """Interactions, items, users and optional knowledge-graph triples of one dataset."""

    interactions: pd.DataFrame  # user, item, rating, timestamp, label
    items: pd.DataFrame  # item, item_id, title, year, genres (list), indexed 0..n_items-1
    users: pd.DataFrame  # user, user_id, one column per user feature, indexed 0..n_users-1
    kg: pd.DataFrame | None  # item, relation, tail (tail: another item index or an entity id)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)


def readable_title(raw: str) -> str:
    """'Usual Suspects, The' -> 'The Usual Suspects' (MovieLens stores articles at the end)."""
    for article in ("The", "A", "An", "Il", "La", "Le", "Les", "L'", "El", "Das", "Der", "Die"):
        suffix = f", {article}"
        if raw.endswith(suffix):
            joiner = "" if article.endswith("'") else " "
            return f"{article}{joiner}{raw[: -len(suffix)]}"
    return raw


def load_raw_dataset(folder: Path, config: DataConfig) -> RawDataset:
    """Read ``<folder>/<dataset>.{inter,item,user,kg,link}``; .item/.user/.kg/.link are optional."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileError(f"{folder}: dataset folder not found")
    stem = folder / config.dataset
    names = config.fields
    inter = read_atomic(stem.with_suffix(".inter"), required=(names.user, names.item, names.rating, names.time))
    for column in (names.rating, names.time):
        if inter[column].isna().any():
            raise DataFileError(f"{stem}.inter: field {column} is empty on some rows")

    item_path, user_path = stem.with_suffix(".item"), stem.with_suffix(".user")
    item_meta = read_atomic(item_path, required=(names.item,)) if item_path.exists() else None
    user_meta = read_atomic(user_path, required=(names.user,)) if user_path.exists() else None

    user_ids = sorted(set(inter[names.user]), key=_natural_key)
    item_ids = sorted(set(inter[names.item]), key=_natural_key)
    user_index = {raw: i for i, raw in enumerate(user_ids)}
    item_index = {raw: i for i, raw in enumerate(item_ids)}

    interactions = pd.DataFrame(
        {
            "user": inter[names.user].map(user_index).astype(np.int64),
            "item": inter[names.item].map(item_index).astype(np.int64),
            "rating": inter[names.rating].astype(float),
            "timestamp": inter[names.time].astype(float),
        }
    )
    interactions["label"] = (interactions["rating"] >= config.like_threshold).astype(np.int64)
    items = _item_table(item_ids, item_meta, names)
    users = _user_table(user_ids, user_meta, names)
    kg = _kg_table(stem, item_index)
    log.info("loaded %s: %d interactions, %d users, %d items", folder / config.dataset,
             len(interactions), len(users), len(items))
    return RawDataset(interactions=interactions, items=items, users=users, kg=kg)


def _natural_key(token: str) -> tuple[int, int | str]:
    return (0, int(token)) if token.isdigit() else (1, token)


def _item_table(item_ids: list[str], meta: pd.DataFrame | None, names: FieldNames) -> pd.DataFrame:
    table = pd.DataFrame({"item": np.arange(len(item_ids)), "item_id": item_ids})
    if meta is None:
        meta = pd.DataFrame({names.item: item_ids})
    meta = meta.drop_duplicates(subset=names.item).set_index(names.item)

    def column(name: str, default):
        if name in meta.columns:
            return [meta[name].get(raw, default) if raw in meta.index else default for raw in item_ids]
        return [default] * len(item_ids)

    titles = column(names.title, None)
    table["title"] = [
        readable_title(" ".join(t) if isinstance(t, list) else str(t)) if t else f"Item {raw}"
        for t, raw in zip(titles, item_ids)
    ]
    table["year"] = pd.array([_year(value) for value in column(names.year, None)], dtype="Int64")
    table["genres"] = [list(g) if isinstance(g, list) else ([] if g is None else str(g).split())
                       for g in column(names.genres, [])]
    return table


def _year(value) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text[:4]) if text[:4].isdigit() else None


def _user_table(user_ids: list[str], meta: pd.DataFrame | None, names: FieldNames) -> pd.DataFrame:
    table = pd.DataFrame({"user": np.arange(len(user_ids)), "user_id": user_ids})
    if meta is None:
        return table
    meta = meta.drop_duplicates(subset=names.user).set_index(names.user)
    for feature in names.user_features:
        if feature in meta.columns:
            table[feature] = [str(meta[feature].get(raw, "")) if raw in meta.index else "" for raw in user_ids]
    return table


def _kg_table(stem: Path, item_index: dict[str, int]) -> pd.DataFrame | None:
    """Knowledge-graph triples keyed by item index; the tail is mapped to an item where it is one."""
    kg_path, link_path = stem.with_suffix(".kg"), stem.with_suffix(".link")
    if not (kg_path.exists() and link_path.exists()):
        return None
    link = read_atomic(link_path)
    kg = read_atomic(kg_path)
    if len(link.columns) < 2 or len(kg.columns) < 3:
        raise DataFileError(f"{stem}.kg/.link: expected 3 and 2 fields (head relation tail / item entity)")
    link = link.iloc[:, :2]
    link.columns = ["item_id", "entity"]
    entity_to_item = {e: item_index[i] for i, e in zip(link["item_id"], link["entity"]) if i in item_index}
    kg = kg.iloc[:, :3]
    kg.columns = ["head", "relation", "tail"]
    kg = kg[kg["head"].isin(entity_to_item)]
    return pd.DataFrame(
        {
            "item": kg["head"].map(entity_to_item).astype(np.int64).to_numpy(),
            "relation": kg["relation"].to_numpy(),
            "tail": kg["tail"].to_numpy(),
            "tail_item": kg["tail"].map(entity_to_item).fillna(-1).astype(np.int64).to_numpy(),
        }
    )
