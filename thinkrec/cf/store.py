"""Save and load the System-1 encoders (safetensors + JSON, never pickle).

Layout under ``<checkpoints>/cf/``::

    <name>/model.safetensors   weights
    <name>/embeddings.safetensors   "user" (n_users, d) and "item" (n_items, d) for later stages
    <name>/config.json         hyper-parameters, sizes, data fingerprint, metrics
    metrics.json               every encoder's valid / test AUC and UAUC, plus the item-prior floor
    predictions.parquet        valid and test scores of every encoder, one row per interaction
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from thinkrec.cf.item_prior import item_prior_scores
from thinkrec.cf.models import CFModel, make_batch
from thinkrec.cf.train import TrainedCF, build_model, predict, rows_to_batch, train_cf_model
from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json
from thinkrec.manifest import write_manifest
from thinkrec.metrics import auc_report

log = logging.getLogger(__name__)


def cf_dir(config: Config) -> Path:
    return config.paths.checkpoints / "cf"


def predictions_file(config: Config) -> Path:
    """Every System-1 system's valid and test scores, one row per interaction."""
    return cf_dir(config) / "predictions.parquet"


@torch.no_grad()
def user_table(model: CFModel, prepared: PreparedData) -> torch.Tensor:
    """One vector per user: the embedding (MF, LightGCN) or the encoding of the train history (SASRec)."""
    train = prepared.split("train").sort_values(["user", "timestamp"], kind="stable")
    length = prepared.summary["history_len"]
    hist_items = np.full((prepared.n_users, length), -1)
    hist_labels = np.full((prepared.n_users, length), -1)
    for user, part in train.groupby("user"):
        tail = part.tail(length)
        hist_items[user, length - len(tail):] = tail["item"].to_numpy()
        hist_labels[user, length - len(tail):] = tail["label"].to_numpy()
    users = np.arange(prepared.n_users)
    batch = make_batch(users, np.zeros_like(users), hist_items, hist_labels, prepared.n_items)
    model.eval()
    return model.user_vectors(batch).detach().clone()


def save_trained(trained: TrainedCF, prepared: PreparedData, folder: Path, config: Config) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").unlink(missing_ok=True)  # written last: marks the folder complete
    state = {k: v.contiguous() for k, v in trained.model.state_dict().items()}
    save_file(state, folder / "model.safetensors")
    with torch.no_grad():
        embeddings = {"user": user_table(trained.model, prepared), "item": trained.model.item_vectors().clone()}
    save_file({k: v.contiguous() for k, v in embeddings.items()}, folder / "embeddings.safetensors")
    meta = {"name": trained.name, "hparams": trained.hparams, "n_users": prepared.n_users,
            "n_items": prepared.n_items, "data_fingerprint": prepared.summary.get("fingerprint"),
            "cf_config": dataclasses.asdict(config.cf), "report": trained.report}
    (folder / "config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_cf_model(folder: Path, prepared: PreparedData, config: Config) -> tuple[CFModel, dict]:
    """Rebuild an encoder from its folder; errors name the file that is missing or wrong."""
    meta = read_json(folder / "config.json")
    if (meta.get("n_users"), meta.get("n_items")) != (prepared.n_users, prepared.n_items):
        raise CheckpointError(f"{folder / 'config.json'}: trained for {meta.get('n_users')} users and "
                              f"{meta.get('n_items')} items, the data has {prepared.n_users} and {prepared.n_items}")
    model = build_model(meta["name"], meta["hparams"], prepared, config.cf)
    try:
        state = load_file(folder / "model.safetensors")
    except FileNotFoundError as err:
        raise CheckpointError(f"{folder / 'model.safetensors'}: missing") from err
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{folder / 'model.safetensors'}: unreadable ({err})") from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{folder / 'model.safetensors'}: does not match the model ({err})") from err
    model.eval()
    return model, meta


def load_embeddings(config: Config, name: str) -> dict[str, torch.Tensor]:
    """The ``user`` and ``item`` embedding tables an encoder exported."""
    path = cf_dir(config) / name / "embeddings.safetensors"
    try:
        return load_file(path)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing; run `python -m thinkrec train-cf`") from err


def is_current(folder: Path, prepared: PreparedData, config: Config) -> bool:
    """True when the folder holds a finished model for this data and this CF configuration."""
    try:
        meta = read_json(folder / "config.json")
    except CheckpointError:
        return False
    return (meta.get("data_fingerprint") == prepared.summary.get("fingerprint")
            and meta.get("cf_config") == json.loads(json.dumps(dataclasses.asdict(config.cf)))
            and (folder / "model.safetensors").exists() and (folder / "embeddings.safetensors").exists())


def train_all_cf(prepared: PreparedData, config: Config, force: bool = False) -> dict:
    """Train (or reuse) every configured encoder; write metrics.json and predictions.parquet."""
    root = cf_dir(config)
    frames = {s: prepared.split(s) for s in ("valid", "test")}
    predictions = pd.concat([f[["user", "item", "label", "split"]] for f in frames.values()], ignore_index=True)
    predictions["item_prior"] = np.concatenate([item_prior_scores(prepared, f) for f in frames.values()])
    metrics = {"item_prior": {s: auc_report(f["user"], f["label"], item_prior_scores(prepared, f))
                              for s, f in frames.items()}}
    for name in config.cf.models:
        folder = root / name
        if force or not is_current(folder, prepared, config):
            trained = train_cf_model(name, prepared, config.cf)
            save_trained(trained, prepared, folder, config)
        else:
            log.info("%s: up to date in %s", name, folder)
        model, meta = load_cf_model(folder, prepared, config)
        predictions[name] = np.concatenate([predict(model, rows_to_batch(prepared, f)) for f in frames.values()])
        metrics[name] = {**meta["report"], "hparams": meta["hparams"]}
    predictions.to_parquet(predictions_file(config), index=False)
    (root / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    write_manifest(config.paths.checkpoints)
    return metrics

