"""User profiles: demographics plus taste statistics computed on the train split only."""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_GENRE_RATINGS = 3  # ratings in a genre before it can count as liked or disliked
TOP_GENRES = 3
RATE_MIN_TRAIN = 5  # train ratings before a user's like-rate is shown and argued from


def build_profiles(users: pd.DataFrame, items: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """One row per user: features, train activity, like-rate, liked and disliked genres."""
    counts = np.bincount(train["user"], minlength=len(users))
    likes = np.bincount(train["user"], weights=train["label"], minlength=len(users))
    tiers = activity_tiers(counts)
    genre_lists = items["genres"].tolist()
    liked: list[list[str]] = [[] for _ in range(len(users))]
    disliked: list[list[str]] = [[] for _ in range(len(users))]
    for user, part in train.groupby("user"):
        liked[user], disliked[user] = genre_preferences(part, genre_lists)
    profiles = users.copy()
    profiles["n_train"] = counts
    profiles["like_rate"] = np.round(np.divide(likes, counts, out=np.zeros(len(users)), where=counts > 0), 4)
    profiles["activity"] = tiers
    profiles["liked_genres"] = liked
    profiles["disliked_genres"] = disliked
    return profiles


def activity_tiers(counts: np.ndarray) -> list[str]:
    """'light' / 'regular' / 'heavy' by tertiles of train interactions."""
    low, high = np.quantile(counts, [1 / 3, 2 / 3]) if len(counts) else (0, 0)
    return ["light" if c <= low else "heavy" if c > high else "regular" for c in counts]


def genre_preferences(part: pd.DataFrame, genre_lists: list[list[str]]) -> tuple[list[str], list[str]]:
    """Genres whose like-rate is clearly above / below the user's own like-rate."""
    if part.empty:
        return [], []
    base = part["label"].mean()
    seen: dict[str, list[int]] = {}
    for item, label in zip(part["item"], part["label"]):
        for genre in genre_lists[item]:
            seen.setdefault(genre, []).append(label)
    rates = {g: (np.mean(v), len(v)) for g, v in seen.items() if len(v) >= MIN_GENRE_RATINGS}
    above = sorted((g for g, (r, _) in rates.items() if r >= base + 0.1), key=lambda g: (-rates[g][0], -rates[g][1], g))
    below = sorted((g for g, (r, _) in rates.items() if r <= base - 0.1), key=lambda g: (rates[g][0], -rates[g][1], g))
    return above[:TOP_GENRES], below[:TOP_GENRES]
