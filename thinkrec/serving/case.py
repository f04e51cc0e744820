"""A question the demo asks the models: will this user (a dataset user or a guest) like this item?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thinkrec.data.prepared import PreparedData
from thinkrec.data.split import PAD
from thinkrec.guest import GuestUser


@dataclass(frozen=True, eq=False)
class Case:
    """Will ``user`` (a dataset index or a guest) like ``item``? With the history the answer sees and,
    for a held-out interaction or a guest's own pick, the known outcome."""

    user: int | GuestUser
    item: int
    hist_items: np.ndarray
    hist_labels: np.ndarray
    truth: bool | None = None


class CaseMaker:
    """Builds cases from the prepared interactions."""

    def __init__(self, prepared: PreparedData):
        self.data = prepared
        rows = prepared.rows
        self._row_of = {(u, i): n for n, (u, i, s) in enumerate(zip(rows["user"], rows["item"], rows["split"]))
                        if s != "train"}

    def case(self, user: int | GuestUser, item: int) -> Case:
        """The case with the history its answer sees.

        A held-out (valid/test) interaction uses its own row's history; any other item is scored as of
        now, after the user's latest interaction. A guest's history is their picks."""
        length = self.data.summary["history_len"]
        if isinstance(user, GuestUser):
            return Case(user, item, *user.history(length), user.rated(item))
        if (user, item) in self._row_of:
            row = self.data.rows.iloc[self._row_of[(user, item)]]
            return Case(user, item, np.asarray(row["hist_items"]), np.asarray(row["hist_labels"]), bool(row["label"]))
        rows = self.data.rows[self.data.rows["user"] == user].sort_values("timestamp").tail(length)
        items = np.full(length, PAD)
        labels = np.full(length, PAD)
        if len(rows):
            items[-len(rows):] = rows["item"].to_numpy()
            labels[-len(rows):] = rows["label"].to_numpy()
        return Case(user, item, items, labels, None)
