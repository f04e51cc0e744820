"""The System-1 sanity floor: each item's smoothed like-rate on train."""

from __future__ import annotations

import numpy as np
import pandas as pd

from thinkrec.data.prepared import PreparedData


def item_prior_scores(prepared: PreparedData, frame: pd.DataFrame, smoothing: float = 5.0) -> np.ndarray:
    """The sanity floor: each item's smoothed like-rate on train."""
    train = prepared.split("train")
    counts = np.bincount(train["item"], minlength=prepared.n_items)
    likes = np.bincount(train["item"], weights=train["label"], minlength=prepared.n_items)
    prior = (likes + smoothing * train["label"].mean()) / (counts + smoothing)
    return prior[frame["item"].to_numpy()]
