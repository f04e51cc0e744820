"""System-1's answers to a case: the item like-rate floor and every trained CF encoder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

from thinkrec import registry
from thinkrec.cf.fold_in import folded_logits
from thinkrec.cf.item_prior import item_prior_scores
from thinkrec.cf.models import CFModel, make_batch
from thinkrec.data.prepared import PreparedData
from thinkrec.guest import GuestUser
from thinkrec.serving.case import Case


def score_table(systems: list[str], p_like: list[float]) -> pd.DataFrame:
    """The scores table the demo shows: one row per system label, P(like) and the verdict."""
    return pd.DataFrame({"system": systems, "p_like": [round(p, 4) for p in p_like],
                         "verdict": ["Yes" if p > 0.5 else "No" for p in p_like]},
                        columns=["system", "p_like", "verdict"])


class System1:
    """The trained CF encoders (and the item prior) answering cases for data users and guests."""

    def __init__(self, prepared: PreparedData, models: dict[str, CFModel]):
        self.data = prepared
        self.models = models
        # the floor depends on the item alone: computed once (45 ms a call on the shared machine)
        self.item_prior = item_prior_scores(prepared, pd.DataFrame({"item": np.arange(prepared.n_items)}))

    @torch.no_grad()
    def scores(self, case: Case) -> pd.DataFrame:
        """P(like) of every System-1 model for the case, with verdicts."""
        scores = {"item_prior": float(self.item_prior[case.item])}
        for name, model in self.models.items():
            scores[name] = float(expit(self._logit(model, name, case)))
        return score_table([registry.label(n) for n in scores], list(scores.values()))

    def _logit(self, model: CFModel, name: str, case: Case) -> float:
        if isinstance(case.user, GuestUser):
            return float(folded_logits(model, case.user.folded[name], [case.item])[0])
        batch = make_batch([case.user], [case.item], case.hist_items[None], case.hist_labels[None], self.data.n_items)
        return float(model(batch)[0])
