"""The reasoning-trace dataset: which rows get a trace, and the traces themselves.

As in the paper, every training row the System-1 model gets wrong gets a trace; a random share of
the other training rows is added so the LLM also reasons about easy cases; and a fixed random
subset of test rows gets reference traces, against which generated explanations are scored
(METEOR and the other text metrics). The reference subset depends only on the seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from thinkrec.cf.store import cf_dir, load_cf_model, load_embeddings
from thinkrec.cf.train import predict, rows_to_batch
from thinkrec.config import Config
from thinkrec.data.atomic import DataFileError
from thinkrec.data.prepared import PreparedData
from thinkrec.teacher.evidence import EvidenceBuilder
from thinkrec.teacher.grounded import Teacher

COLUMNS = ["user", "item", "timestamp", "label", "split", "purpose", "trace", "teacher", "evidence"]


def system1_train_scores(prepared: PreparedData, config: Config, name: str = "mf") -> np.ndarray:
    """Scores of the trained CF model ``name`` on the train split, in ``prepared.split("train")`` order."""
    model, _ = load_cf_model(cf_dir(config) / name, prepared, config)
    return predict(model, rows_to_batch(prepared, prepared.split("train")))


def select_rows(prepared: PreparedData, system1_scores_train: np.ndarray, random_share: float,
                reference_size: int, seed: int) -> pd.DataFrame:
    """System-1 errors, a random share of the other train rows, and the reference test rows, with ``purpose``."""
    if not 0.0 <= random_share <= 1.0:
        raise ValueError(f"random_share must lie in [0, 1], not {random_share}")
    if reference_size < 0:
        raise ValueError(f"reference_size must not be negative, not {reference_size}")
    train, test = prepared.split("train"), prepared.split("test")
    scores = np.asarray(system1_scores_train, dtype=float)
    if scores.shape != (len(train),):
        raise ValueError(f"expected {len(train)} train scores, got an array of shape {scores.shape}")
    wrong = (scores > 0.5).astype(int) != train["label"].to_numpy()
    others = np.flatnonzero(~wrong)
    extra = np.random.default_rng([seed, 0]).choice(others, int(round(random_share * len(others))), replace=False)
    reference = np.random.default_rng([seed, 1]).choice(len(test), min(reference_size, len(test)), replace=False)
    return pd.concat([train.iloc[np.flatnonzero(wrong)].assign(purpose="train_error"),
                      train.iloc[np.sort(extra)].assign(purpose="train_random"),
                      test.iloc[np.sort(reference)].assign(purpose="reference")], ignore_index=True)


def build_trace_dataset(prepared: PreparedData, config: Config, teacher: Teacher, system1_scores_train: np.ndarray,
                        random_share: float, reference_size: int, seed: int, item_embeddings: Any = None,
                        cf_name: str = "mf") -> pd.DataFrame:
    """One trace per selected row; evidence uses ``item_embeddings`` or else the CF model ``cf_name``'s."""
    rows = select_rows(prepared, system1_scores_train, random_share, reference_size, seed)
    if item_embeddings is None:
        item_embeddings = load_embeddings(config, cf_name)["item"]
    builder = EvidenceBuilder(prepared, item_embeddings)
    traces, evidence = [], []
    values = zip(rows["user"], rows["item"], rows["label"], rows["hist_items"], rows["hist_labels"])
    for user, item, label, hist_items, hist_labels in tqdm(values, total=len(rows), desc=f"traces ({teacher.name})"):
        found = builder.build(user, item, label, hist_items, hist_labels)
        traces.append(teacher.explain(found, found.label))
        evidence.append(json.dumps(found.to_dict()))
    return rows.assign(trace=traces, teacher=teacher.name, evidence=evidence)[COLUMNS]


def save_trace_dataset(frame: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[COLUMNS].to_parquet(path, index=False)


def load_trace_dataset(path: str | Path) -> pd.DataFrame:
    """Read a saved trace dataset; a missing, unreadable or incomplete file raises ``DataFileError``."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise DataFileError(f"{path}: cannot read the trace dataset ({err})") from err
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: the trace dataset lacks columns {missing}")
    return frame
