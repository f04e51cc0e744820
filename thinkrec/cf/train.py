"""Train the System-1 encoders with BCE, select on valid AUC over a small grid, test once."""

from __future__ import annotations

import copy
import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from thinkrec.cf.models import MF, CFModel, LightGCN, RowBatch, SASRec, make_batch, normalised_adjacency
from thinkrec.config import CFConfig
from thinkrec.data.prepared import PreparedData
from thinkrec.metrics import auc, auc_report

log = logging.getLogger(__name__)
MODEL_NAMES = ("mf", "lightgcn", "sasrec")


@dataclass
class TrainedCF:
    """A trained encoder with the hyper-parameters and figures that selected it."""

    name: str
    model: CFModel
    hparams: dict
    report: dict  # valid / test AUC and UAUC, epochs, seconds


def rows_to_batch(prepared: PreparedData, frame: pd.DataFrame) -> RowBatch:
    hist_items, hist_labels = prepared.history_arrays(frame)
    return make_batch(frame["user"].to_numpy(), frame["item"].to_numpy(), hist_items, hist_labels, prepared.n_items)


def build_model(name: str, hparams: dict, prepared: PreparedData, config: CFConfig) -> CFModel:
    """A fresh model of ``name``; LightGCN's graph is the train split's interactions."""
    if name == "mf":
        return MF(prepared.n_users, prepared.n_items, hparams["dim"])
    if name == "lightgcn":
        train = prepared.split("train")
        graph = normalised_adjacency(train["user"].to_numpy(), train["item"].to_numpy(), prepared.n_users,
                                     prepared.n_items)
        return LightGCN(prepared.n_users, prepared.n_items, hparams["dim"], config.lightgcn_layers, graph)
    if name == "sasrec":
        return SASRec(prepared.n_users, prepared.n_items, hparams["dim"], prepared.summary["history_len"],
                      config.sasrec_layers, config.sasrec_heads, config.sasrec_dropout)
    raise ValueError(f"unknown CF model {name!r}; choose from {', '.join(MODEL_NAMES)}")


@torch.no_grad()
def predict(model: CFModel, batch: RowBatch, chunk: int = 4096) -> np.ndarray:
    """Sigmoid scores for every row of ``batch``."""
    model.eval()
    parts = [torch.sigmoid(model(batch.subset(torch.arange(s, min(s + chunk, len(batch))))))
             for s in range(0, len(batch), chunk)]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def fit(model: CFModel, train: RowBatch, labels: torch.Tensor, valid: RowBatch, valid_labels: np.ndarray,
        lr: float, weight_decay: float, config: CFConfig, batch_size: int, max_epochs: int,
        desc: str) -> tuple[CFModel, float, int]:
    """Adam on BCE with early stopping on valid AUC; returns the best state, its AUC and epoch."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(config.seed)
    best_auc, best_epoch, best_state, stale = -1.0, 0, None, 0
    progress = tqdm(range(1, max_epochs + 1), desc=desc, leave=False)
    for epoch in progress:
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            index = order[start:start + batch_size]
            loss = loss_fn(model(train.subset(index)), labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        valid_auc = auc(valid_labels, predict(model, valid))
        progress.set_postfix(loss=f"{loss.item():.3f}", valid_auc=f"{valid_auc:.4f}")
        if valid_auc > best_auc:
            best_auc, best_epoch, best_state, stale = valid_auc, epoch, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, best_auc, best_epoch


def train_cf_model(name: str, prepared: PreparedData, config: CFConfig) -> TrainedCF:
    """Grid search on valid AUC, then one evaluation of the winner on valid and test."""
    grid = getattr(config, name)
    train_rows, valid_rows, test_rows = (prepared.split(s) for s in ("train", "valid", "test"))
    train, valid, test = (rows_to_batch(prepared, f) for f in (train_rows, valid_rows, test_rows))
    labels = torch.tensor(train_rows["label"].to_numpy(), dtype=torch.float32)
    started = time.perf_counter()
    best: tuple[float, CFModel, dict] | None = None
    for dim, lr, wd in itertools.product(grid.dims, grid.learning_rates, grid.weight_decays):
        torch.manual_seed(config.seed)
        hparams = {"dim": dim, "lr": lr, "weight_decay": wd}
        model = build_model(name, hparams, prepared, config)
        model, valid_auc, epoch = fit(model, train, labels, valid, valid_rows["label"].to_numpy(), lr, wd, config,
                                      grid.batch_size, grid.max_epochs, desc=f"{name} d={dim} lr={lr} wd={wd}")
        log.info("%s %s: valid AUC %.4f at epoch %d", name, hparams, valid_auc, epoch)
        if best is None or valid_auc > best[0]:
            best = (valid_auc, model, {**hparams, "epochs": epoch})
    _, model, hparams = best
    report = {
        "valid": auc_report(valid_rows["user"], valid_rows["label"], predict(model, valid)),
        "test": auc_report(test_rows["user"], test_rows["label"], predict(model, test)),
        "seconds": round(time.perf_counter() - started, 1),
        "grid_size": len(grid.dims) * len(grid.learning_rates) * len(grid.weight_decays),
    }
    log.info("%s selected %s: test AUC %.4f UAUC %.4f (%.0f s)", name, hparams, report["test"]["auc"],
             report["test"]["uauc"], report["seconds"])
    return TrainedCF(name=name, model=model, hparams=hparams, report=report)

