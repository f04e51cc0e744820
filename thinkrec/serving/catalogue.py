"""The prepared data as the demo browses it: ids, users and their profiles, items and title search."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from thinkrec.data.prepared import PreparedData
from thinkrec.data.profiles import genre_leaning

MAX_QUERY_CHARS = 200


class UnknownIdError(ValueError):
    """A user or item id that the dataset does not hold."""


@dataclass
class Profile:
    """What the profile card shows about one user."""

    user_id: str
    features: dict[str, str]
    n_train: int
    like_rate: float
    activity: str
    liked_genres: list[str]
    disliked_genres: list[str]
    history: pd.DataFrame  # title, year, liked, timestamp of train interactions, newest first
    genre_counts: pd.DataFrame = field(default_factory=pd.DataFrame)  # genre, liked, disliked, share, leaning


class Catalogue:
    """Read-only lookups over the prepared users, items and interactions."""

    def __init__(self, prepared: PreparedData):
        self.data = prepared
        self._user_index = {uid: i for i, uid in enumerate(prepared.users["user_id"])}
        self._item_index = {iid: i for i, iid in enumerate(prepared.items["item_id"])}

    def user_index(self, user_id: str) -> int:
        key = str(user_id).strip()
        if key not in self._user_index:
            raise UnknownIdError(f"unknown user id {key[:40]!r}: ids run from 1 to {self.data.n_users}")
        return self._user_index[key]

    def item_index(self, item_id: str) -> int:
        key = str(item_id).strip()
        if key not in self._item_index:
            raise UnknownIdError(f"unknown item id {key[:40]!r}: ids run from 1 to {self.data.n_items}")
        return self._item_index[key]

    def item_label(self, item: int) -> str:
        row = self.data.items.iloc[item]
        year = row["year"]
        return f"{row['title']} ({year})" if pd.notna(year) else row["title"]

    def users_table(self) -> pd.DataFrame:
        """One row per user for the picker: id, demographics, activity and train counts."""
        users = self.data.users
        columns = ["user_id", *[c for c in ("age", "gender", "occupation") if c in users], "activity", "n_train",
                   "like_rate"]
        return users[columns].copy()

    def profile(self, user_id: str) -> Profile:
        user = self.user_index(user_id)
        row = self.data.users.iloc[user]
        train = self.data.rows[(self.data.rows["user"] == user) & (self.data.rows["split"] == "train")]
        train = train.sort_values("timestamp", ascending=False)
        items = self.data.items.iloc[train["item"].to_numpy()]
        history = pd.DataFrame({"item_id": items["item_id"].to_numpy(), "title": items["title"].to_numpy(),
                                "year": items["year"].to_numpy(), "liked": train["label"].to_numpy().astype(bool)})
        features = {k: str(row[k]) for k in ("age", "gender", "occupation") if k in row.index}
        return Profile(user_id=str(row["user_id"]), features=features, n_train=int(row["n_train"]),
                       like_rate=float(row["like_rate"]), activity=str(row["activity"]),
                       liked_genres=list(row["liked_genres"]), disliked_genres=list(row["disliked_genres"]),
                       history=history, genre_counts=genre_counts(items["genres"], train["label"],
                                                                  float(train["label"].mean())))

    def test_items(self, user_id: str) -> pd.DataFrame:
        """The user's held-out test interactions with their true outcome, oldest first."""
        user = self.user_index(user_id)
        rows = self.data.rows
        test = rows[(rows["user"] == user) & (rows["split"] == "test")].sort_values("timestamp")
        return pd.DataFrame({"item_id": self.data.items["item_id"].to_numpy()[test["item"].to_numpy()],
                             "title": [self.item_label(i) for i in test["item"]],
                             "liked": test["label"].to_numpy().astype(bool)})

    def search_items(self, query: str, limit: int = 20) -> pd.DataFrame:
        """Catalogue items whose title contains every word of ``query`` (case-insensitive)."""
        words = re.findall(r"\w+", str(query)[:MAX_QUERY_CHARS].lower())
        titles = self.data.items["title"].str.lower()
        mask = np.ones(len(titles), dtype=bool)
        for word in words:
            mask &= titles.str.contains(word, regex=False).to_numpy()
        found = self.data.items[mask].head(limit)
        return pd.DataFrame({"item_id": found["item_id"], "title": [self.item_label(i) for i in found["item"]]})


def genre_counts(genres: pd.Series, labels: pd.Series, base_rate: float) -> pd.DataFrame:
    """Liked and disliked interactions per genre with the like share and the genre's leaning for a user
    whose like-rate is ``base_rate`` (the rule the profile's favoured and avoided genres follow), most
    liked first."""
    counts: dict[str, list[int]] = {}
    for item_genres, label in zip(genres, labels):
        for genre in item_genres:
            counts.setdefault(genre, [0, 0])[0 if label else 1] += 1
    frame = pd.DataFrame([(genre, liked, disliked) for genre, (liked, disliked) in counts.items()],
                         columns=["genre", "liked", "disliked"])
    frame["share"] = frame["liked"] / (frame["liked"] + frame["disliked"])
    frame["leaning"] = [genre_leaning(share, n, base_rate)
                        for share, n in zip(frame["share"], frame["liked"] + frame["disliked"])]
    return frame.sort_values(["liked", "genre"], ascending=[False, True]).reset_index(drop=True)
