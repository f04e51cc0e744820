"""The prepared dataset: split rows with histories, item texts and user profiles.

``prepare_dataset`` builds it from the raw atomic files and stores it as parquet + JSON under
``<work_dir>/data/<dataset>/``; a second call reuses it while the source files and the data
configuration are unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from thinkrec.assets import resolve_asset
from thinkrec.config import Config
from thinkrec.data.atomic import DataFileError
from thinkrec.data.keywords import audit_kg, build_keywords
from thinkrec.data.profiles import build_profiles
from thinkrec.data.raw import load_raw_dataset
from thinkrec.data.split import build_rows, describe_split, split_global, split_per_user

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
FILES = ("rows.parquet", "items.parquet", "users.parquet", "summary.json")


@dataclass
class PreparedData:
    """Everything later stages read about the data."""

    rows: pd.DataFrame  # user, item, label, rating, timestamp, split, hist_items, hist_labels
    items: pd.DataFrame  # item, item_id, title, year, genres, keywords
    users: pd.DataFrame  # user, user_id, features, n_train, like_rate, activity, liked/disliked genres
    summary: dict

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def split(self, name: str) -> pd.DataFrame:
        return self.rows[self.rows["split"] == name].reset_index(drop=True)

    def history_arrays(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The rows' histories as (n, history_len) int arrays, -1 where empty."""
        return np.stack(frame["hist_items"].to_numpy()), np.stack(frame["hist_labels"].to_numpy())


def source_folder(config: Config) -> Path:
    """The RecBole folder named in the configuration, or the packaged MovieLens-100K asset."""
    folder = config.data.folder(config.paths)
    return folder if folder is not None else resolve_asset("movielens-100k", config.paths.cache)


def data_dir(config: Config) -> Path:
    return config.paths.work / "data" / config.data.dataset


def fingerprint(config: Config, folder: Path) -> str:
    """Hash of the data configuration and the source files' contents."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(config.data), sort_keys=True).encode())
    digest.update(str(FORMAT_VERSION).encode())
    for path in sorted(folder.glob(f"{config.data.dataset}.*")):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def prepare_dataset(config: Config, force: bool = False) -> PreparedData:
    """Build (or reuse) the prepared dataset for ``config``."""
    folder = source_folder(config)
    out = data_dir(config)
    key = fingerprint(config, folder)
    if not force and (out / "summary.json").exists():
        try:
            prepared = load_prepared(out)
            if prepared.summary.get("fingerprint") == key:
                log.info("prepared data in %s is up to date", out)
                return prepared
        except DataFileError as err:
            log.warning("rebuilding prepared data: %s", err)
    started = time.perf_counter()
    prepared = build_prepared(config, folder)
    prepared.summary["fingerprint"] = key
    prepared.summary["seconds"] = round(time.perf_counter() - started, 2)
    save_prepared(prepared, out)
    log.info("prepared %s in %.1f s: %s", config.data.dataset, prepared.summary["seconds"], prepared.summary["splits"])
    return prepared


def build_prepared(config: Config, folder: Path) -> PreparedData:
    """Load the raw files, split, build rows, keywords and profiles."""
    settings = config.data
    raw = load_raw_dataset(folder, settings)
    splitter = {"per_user": split_per_user, "global": split_global}.get(settings.split)
    if splitter is None:
        raise DataFileError(f"data.split must be 'per_user' or 'global', not {settings.split!r}")
    split = splitter(raw.interactions, settings.valid_share, settings.test_share)
    rows = build_rows(raw.interactions, split, settings.history_len)
    train = rows[rows["split"] == "train"]
    items = raw.items.copy()
    kg_report = audit_kg(raw.kg, items["title"].tolist())
    use_kg = settings.kg_keywords == "always" or (settings.kg_keywords == "audit" and kg_report["trusted"])
    if kg_report["present"] and not use_kg:
        log.warning("knowledge graph not used for keywords (data.kg_keywords=%s): %s", settings.kg_keywords, kg_report)
    kg_report["used"] = use_kg
    items["keywords"] = build_keywords(items, train, raw.kg if use_kg else None, settings.max_keywords,
                                       settings.min_item_support)
    users = build_profiles(raw.users, items, train)
    summary = {"dataset": settings.dataset, "split_protocol": settings.split, "splits": describe_split(rows),
               "n_users": len(users), "n_items": len(items), "history_len": settings.history_len,
               "knowledge_graph": kg_report}
    return PreparedData(rows=rows, items=items, users=users, summary=summary)


def save_prepared(prepared: PreparedData, out: Path) -> None:
    """Write the tables; summary.json goes last so a half-written folder is never trusted."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)
    prepared.rows.to_parquet(out / "rows.parquet", index=False)
    prepared.items.to_parquet(out / "items.parquet", index=False)
    prepared.users.to_parquet(out / "users.parquet", index=False)
    (out / "summary.json").write_text(json.dumps(prepared.summary, indent=2), encoding="utf-8")


def load_prepared(folder: Path) -> PreparedData:
    """Read a prepared dataset; a missing or unreadable file raises ``DataFileError`` naming it."""
    tables = {}
    for name in FILES[:3]:
        path = folder / name
        try:
            tables[name] = pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise DataFileError(f"{path}: cannot read prepared data ({err})") from err
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataFileError(f"{folder / 'summary.json'}: cannot read ({err})") from err
    items = tables["items.parquet"]
    items["genres"] = items["genres"].map(list)
    items["keywords"] = items["keywords"].map(list)
    users = tables["users.parquet"]
    for column in ("liked_genres", "disliked_genres"):
        users[column] = users[column].map(list)
    return PreparedData(rows=tables["rows.parquet"], items=items, users=users, summary=summary)
