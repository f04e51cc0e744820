"""What if: a dataset user's ratings edited (films removed, or flipped between liked and disliked).

The edited user is a ``GuestUser`` whose ``source`` is the real user: its ratings are folded into every
encoder with the trained weights fixed (the guest path, ``thinkrec.guest.fold_guest``), so System-1,
the soft tokens, the gate and the map all take it where they take a guest, and the prompt keeps the
real user's demographics and shows the edited history.

An edit is measured against the same user refolded from their *unedited* ratings, not against their
trained vectors: fold-in lands close to, not on, the trained user, and comparing refold with refold
leaves the edit as the only difference. The ratings a case sees are the user's interactions before
the case (all of them for a movie that is not a held-out interaction), oldest first: the prompt's
history is their tail, exactly as in the data's own rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from thinkrec.cf.models import CFModel
from thinkrec.config import GuestConfig, WhatIfConfig
from thinkrec.data.prepared import PreparedData
from thinkrec.data.split import PAD
from thinkrec.guest import GuestUser, fold_guest
from thinkrec.serving.case import Case

BEFORE_MEMO_SIZE = 256  # unedited refolds kept, by (user, item)


class EditError(ValueError):
    """An edit that cannot make a profile: a film the user did not rate, too many films, nothing left."""


@dataclass(frozen=True, eq=False)
class WhatIf:
    """A case asked of the real user's refolded ratings (``before``) and of the edited ones (``after``)."""

    user: int
    item: int
    removed: tuple[int, ...]
    flipped: tuple[int, ...]
    before: Case
    after: Case

    @property
    def edited(self) -> bool:
        return bool(self.removed or self.flipped)


class Editor:
    """Edits dataset users' ratings and refolds them."""

    def __init__(self, prepared: PreparedData, models: dict[str, CFModel], guest: GuestConfig,
                 settings: WhatIfConfig):
        self.data = prepared
        self.models = models
        self.l2 = guest.fold_in_l2
        self.settings = settings
        self.history_len = prepared.summary["history_len"]
        rows = prepared.rows.sort_values(["user", "timestamp"], kind="stable")
        self._by_user = {int(user): (part["item"].to_numpy(), part["label"].to_numpy(), part["timestamp"].to_numpy())
                         for user, part in rows.groupby("user", sort=False)}
        held_out = rows[rows["split"] != "train"]
        self._held_out = dict(zip(zip(held_out["user"], held_out["item"]), held_out["timestamp"]))
        self._truth = dict(zip(zip(held_out["user"], held_out["item"]), held_out["label"].astype(bool)))
        self._before = lru_cache(maxsize=BEFORE_MEMO_SIZE)(self._refold_unedited)

    def ratings(self, user: int, item: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's ratings the case "will ``user`` like ``item``?" sees (items, labels), oldest first."""
        items, labels, times = self._by_user.get(user, (np.empty(0, np.int64),) * 3)
        if (user, item) in self._held_out:
            earlier = times < self._held_out[(user, item)]
            items, labels = items[earlier], labels[earlier]
        return items, labels

    def refold(self, user: int, items: np.ndarray, labels: np.ndarray) -> GuestUser:
        """``user`` with these ratings (oldest first), folded into every encoder."""
        if len(items) == 0:
            raise EditError("no ratings are left to fold in: keep at least one film")
        return fold_guest(self.models, items, labels, self.history_len, self.l2, source=user)

    def case(self, person: GuestUser, item: int, history: tuple[np.ndarray, np.ndarray] | None = None) -> Case:
        """The case for an edited user; ``history`` (items, labels) replaces the prompt's history when given."""
        hist_items, hist_labels = person.history(self.history_len) if history is None else padded(
            *history, self.history_len)
        return Case(person, item, hist_items, hist_labels, self._truth.get((person.source, item)))

    def _refold_unedited(self, user: int, item: int) -> Case:
        return self.case(self.refold(user, *self.ratings(user, item)), item)

    def edit(self, user: int, item: int, removed: list[int], flipped: list[int]) -> WhatIf:
        """The case before and after removing ``removed`` and flipping ``flipped`` among the user's ratings."""
        removed, flipped = list(dict.fromkeys(removed)), list(dict.fromkeys(flipped))
        items, labels = self.ratings(user, item)
        rated = set(items.tolist())
        named = len(removed) + len(flipped)
        if set(removed) & set(flipped):
            raise EditError("a film cannot be both removed and flipped; choose one for each")
        if named > self.settings.max_edits:
            raise EditError(f"an edit may change at most {self.settings.max_edits} films; {named} were named")
        if named > len(rated):
            raise EditError(f"the edit names {named} films but this user has only {len(rated)} rated before "
                            "this case")
        unknown = [i for i in removed + flipped if i not in rated]
        if unknown:
            titles = ", ".join(repr(self.data.items["title"].iloc[i][:40]) for i in unknown[:3])
            raise EditError(f"{len(unknown)} film(s) are not among this user's {len(rated)} ratings before this "
                            f"case: {titles}")
        keep = ~np.isin(items, removed)
        if not keep.any():
            raise EditError(f"removing all {len(rated)} of this user's ratings leaves nothing to fold in; "
                            "keep at least one")
        labels = np.where(np.isin(items, flipped), 1 - labels, labels)
        before = self._before(user, item)
        after = before if not named else self.case(self.refold(user, items[keep], labels[keep]), item)
        return WhatIf(user, item, tuple(removed), tuple(flipped), before, after)


def padded(items: np.ndarray, labels: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``length`` (item, label) pairs, left-padded like a data row's history."""
    out_items, out_labels = np.full(length, PAD), np.full(length, PAD)
    tail = min(length, len(items))
    if tail:
        out_items[-tail:], out_labels[-tail:] = np.asarray(items)[-tail:], np.asarray(labels)[-tail:]
    return out_items, out_labels


def change_table(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Two score tables (``system``, ``p_like``) side by side with the change and the verdicts."""
    table = pd.DataFrame({"system": before["system"], "before": before["p_like"].to_numpy(),
                          "after": after["p_like"].to_numpy()})
    table["change"] = (table["after"] - table["before"]).round(4)
    verdict = {True: "Yes", False: "No"}
    table["verdict"] = [verdict[b > 0.5] + ("" if (b > 0.5) == (a > 0.5) else f" → {verdict[a > 0.5]}")
                        for b, a in zip(table["before"], table["after"])]
    return table
