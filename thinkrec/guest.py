"""Guest users: a visitor's own picks turned into a user the trained models can answer for.

A guest is a history (the rated movies, oldest first) plus the guest's place in every CF encoder's
space, found by fold-in (``thinkrec.cf.fold_in``) with all trained weights fixed. Wherever the
backend takes a user index it also takes a ``GuestUser``: the prompt writes the history and reads
the folded vector for the user soft token, the gate routes the folded vector, and the map places it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, zip_longest

import numpy as np

from thinkrec.cf.fold_in import FoldedUser, fold_in
from thinkrec.cf.models import CFModel
from thinkrec.config import GuestConfig
from thinkrec.data.split import PAD

GUEST = -1  # the user index that stands for "this row's guest" in soft tokens


class GuestError(ValueError):
    """A set of picks that cannot make a profile (too few, too many, or a movie both liked and disliked)."""


@dataclass(frozen=True, eq=False)
class GuestUser:
    """A visitor's rated movies (oldest first) and their place in each encoder's space."""

    items: np.ndarray  # (n,) item indexes
    labels: np.ndarray  # (n,) 1 liked, 0 disliked
    folded: dict[str, FoldedUser]  # encoder name -> vector and bias
    source: int | None = None  # the dataset user whose (edited) ratings these are; None for a visitor

    def history(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``length`` ratings, left-padded like a data row's history."""
        items = np.full(length, PAD)
        labels = np.full(length, PAD)
        tail = min(length, len(self.items))
        if tail:
            items[-tail:], labels[-tail:] = self.items[-tail:], self.labels[-tail:]
        return items, labels

    def rated(self, item: int) -> bool | None:
        """The guest's own verdict on ``item``, None if they did not rate it."""
        found = np.flatnonzero(self.items == item)
        return None if len(found) == 0 else bool(self.labels[found[-1]])


def make_guest(models: dict[str, CFModel], liked: list[int], disliked: list[int], history_len: int,
               settings: GuestConfig) -> GuestUser:
    """Check the picks, order them (liked and disliked alternate, each list in the order given: a
    visitor's picks carry no dates) and fold the guest into every encoder's space."""
    liked, disliked = list(dict.fromkeys(liked)), list(dict.fromkeys(disliked))
    both = set(liked) & set(disliked)
    if both:
        raise GuestError(f"{len(both)} movie(s) are marked both liked and disliked; keep each on one side")
    total = len(liked) + len(disliked)
    if total < settings.min_picks:
        raise GuestError(f"pick at least {settings.min_picks} movies (liked and disliked together); "
                         f"{total} picked so far")
    if total > settings.max_picks:
        raise GuestError(f"pick at most {settings.max_picks} movies; {total} picked")
    pairs = [p for p in chain.from_iterable(zip_longest([(i, 1) for i in liked], [(i, 0) for i in disliked]))
             if p is not None]
    items = np.array([i for i, _ in pairs], dtype=np.int64)
    labels = np.array([label for _, label in pairs], dtype=np.int64)
    return fold_guest(models, items, labels, history_len, settings.fold_in_l2)


def fold_guest(models: dict[str, CFModel], items: np.ndarray, labels: np.ndarray, history_len: int, l2: float,
               source: int | None = None) -> GuestUser:
    """Ratings (oldest first) folded into every encoder's space: the one fold-in every guest goes through."""
    folded = {name: fold_in(model, items, labels, history_len, l2) for name, model in models.items()}
    return GuestUser(np.asarray(items, dtype=np.int64), np.asarray(labels, dtype=np.int64), folded, source)
