"""The backend facade the demo talks to: load once, then answer questions about users and items.

Everything the UI shows comes through ``Explorer``: profiles, histories, candidate items, the
System-1 and LLM scores, streamed reasoning, the user map and the stored metrics. It never hands
out torch modules, and its methods only read shared state, so one instance serves concurrent
visitors. The work is done in ``thinkrec.serving`` (catalogue, cases, System-1, the LLM bank) and
``thinkrec.fusion.experts``; this class turns ids into indices and results into tables.

A question is a ``Case``: a user (a dataset user id, or a ``GuestUser`` built from a visitor's
picks) and a target item, with the history the answer sees. Scores and reasoning take a case.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from thinkrec import registry
from thinkrec.cf.models import CFModel
from thinkrec.cf.store import cf_dir, load_cf_model
from thinkrec.claims import Claim, ClaimChecker
from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData, prepare_dataset
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json
from thinkrec.fusion.experts import Experts, has_experts, load_experts, load_shipped_user_map
from thinkrec.fusion.gate import Routing
from thinkrec.fusion.user_map import UserMap
from thinkrec.guest import GuestUser, make_guest
from thinkrec.llm.generate import GenerationSettings
from thinkrec.llm.prompt import shown_history
from thinkrec.manifest import verify_manifest
from thinkrec.predictions import test_predictions
from thinkrec.reasoning_scores import decodes_with_rules
from thinkrec.serving.bank import Explanation, LLMBank, Variant, load_bank
from thinkrec.serving.case import Case, CaseMaker
from thinkrec.serving.catalogue import Catalogue, Profile, UnknownIdError
from thinkrec.serving.system1 import System1, score_table
from thinkrec.serving.whatif import EditError, Editor, WhatIf, change_table
from thinkrec.text_metrics import title_key, title_mentions, unknown_titles
from thinkrec.workbench import FOLDER as WORKBENCH_FOLDER
from thinkrec.workbench import SUMMARY as WORKBENCH_SUMMARY
from thinkrec.workbench import Workbench, fingerprint, load_workbench, workbench_for

log = logging.getLogger(__name__)
__all__ = ["Case", "Citations", "Claim", "EditError", "Explanation", "Explorer", "Profile", "UnknownIdError", "WhatIf"]


TARGET, FOUND, MISSING = "target", "found", "missing"  # what a cited title is to the case
UNKNOWN = "unknown"  # a quoted name that is no catalogue film


@dataclass(frozen=True)
class Citations:
    """The catalogue titles an answer names: the target itself, titles from the history its prompt showed
    (found), titles that are neither (not found) and quoted names that are no film at all (unknown);
    ``spans`` places every one in the text as (start, end, TARGET | FOUND | MISSING | UNKNOWN)."""

    target: list[str]
    found: list[str]
    missing: list[str]
    spans: tuple[tuple[int, int, str], ...] = ()
    unknown: list[str] = ()  # quoted names that are no catalogue film (``text_metrics.unknown_titles``)


class Explorer:
    """Read-only access to the prepared data, the System-1 encoders, the experts and the LLM bank."""

    def __init__(self, config: Config, prepared: PreparedData, models: dict[str, CFModel], metrics: dict,
                 bank: LLMBank | None = None, experts: Experts | None = None, user_map: UserMap | None = None,
                 predictions: pd.DataFrame | None = None):
        self.config = config
        self.data = prepared
        self.models = models
        self.metrics = metrics
        self.bank = bank
        self.experts = experts
        self.clusters = None if experts is None else experts.clustering.labels  # (n_users,) 0-based
        self.user_map = user_map
        self.predictions = predictions if predictions is not None else pd.DataFrame()
        self.catalogue = Catalogue(prepared)
        self.cases = CaseMaker(prepared)
        self.system1 = System1(prepared, models)
        self.editor = Editor(prepared, models, config.guest, config.whatif)
        self.claim_checker = ClaimChecker(prepared, config)
        self._rules: dict[str, bool] = {}  # system -> whether it decodes with the rules (``decoding``)

    @classmethod
    def load(cls, config: Config, with_llm: bool = True) -> Explorer:
        """Verify the checkpoints, prepare the data, load every System-1 encoder and (unless
        ``with_llm`` is False) every trained LLM system onto one shared backbone."""
        verify_manifest(config.paths.checkpoints, required_prefixes=("cf/",))
        prepared = prepare_dataset(config)
        models = {}
        for name in config.cf.models:
            model, meta = load_cf_model(cf_dir(config) / name, prepared, config)
            if meta.get("data_fingerprint") != prepared.summary.get("fingerprint"):
                raise CheckpointError(f"{cf_dir(config) / name / 'config.json'}: trained on other data than "
                                      f"{config.data.dataset} as prepared now (fingerprints differ)")
            models[name] = model
        metrics = read_json(cf_dir(config) / "metrics.json")
        experts = load_experts(config) if has_experts(config) else None
        bank = load_bank(prepared, config, experts=experts) if with_llm else None
        user_map = load_shipped_user_map(config)
        log.info("explorer ready: %d users, %d items, systems %s, %s", prepared.n_users, prepared.n_items,
                 list(models) + (bank.systems if bank else []), "with a user map" if user_map else "no user map")
        return cls(config, prepared, models, metrics, bank, experts, user_map, test_predictions(prepared, config))

    # ---- ids, users and items (the catalogue) ----------------------------------------------------
    def user_index(self, user_id: str) -> int:
        return self.catalogue.user_index(user_id)

    def item_index(self, item_id: str) -> int:
        return self.catalogue.item_index(item_id)

    def item_label(self, item: int) -> str:
        return self.catalogue.item_label(item)

    def users_table(self) -> pd.DataFrame:
        return self.catalogue.users_table()

    def profile(self, user_id: str) -> Profile:
        return self.catalogue.profile(user_id)

    def test_items(self, user_id: str) -> pd.DataFrame:
        return self.catalogue.test_items(user_id)

    def search_items(self, query: str, limit: int = 20) -> pd.DataFrame:
        return self.catalogue.search_items(query, limit)

    # ---- clusters and the map --------------------------------------------------------------------
    def cluster_of(self, user_id: str) -> int | None:
        """The user's cluster, numbered from 1 as the UI shows it; None without experts."""
        user = self.user_index(user_id)
        return None if self.clusters is None else int(self.clusters[user]) + 1

    def map_table(self) -> pd.DataFrame | None:
        """Every user's place on the UMAP map with what a hover shows; None without a map."""
        if self.user_map is None:
            return None
        table = self.users_table()
        return table.assign(x=self.user_map.coords[:, 0], y=self.user_map.coords[:, 1],
                            cluster=self.user_map.labels + 1)

    def centroid_coords(self) -> np.ndarray | None:
        return None if self.user_map is None else self.user_map.centroid_coords

    def place(self, guest: GuestUser) -> tuple[float, float] | None:
        """The guest's place on the user map; None without a map."""
        if self.user_map is None or self.experts is None:
            return None
        vector = guest.folded[self.experts.encoder].vector
        return self.user_map.place(self.experts.clustering.standardiser.transform(vector))

    # ---- cases and scores ------------------------------------------------------------------------
    def guest(self, liked_ids: list[str], disliked_ids: list[str]) -> GuestUser:
        """A visitor's profile from the movies they liked and disliked, folded into every encoder's space.
        Unknown ids raise ``UnknownIdError``; too few or contradictory picks raise ``GuestError``."""
        liked = [self.item_index(i) for i in liked_ids]
        disliked = [self.item_index(i) for i in disliked_ids]
        return make_guest(self.models, liked, disliked, self.data.summary["history_len"], self.config.guest)

    def _user(self, user: str | GuestUser) -> int | GuestUser:
        return user if isinstance(user, GuestUser) else self.user_index(user)

    def case(self, user: str | GuestUser, item_id: str) -> Case:
        """The question "will ``user`` (an id or a guest) like ``item_id``?" with the history its answer sees."""
        return self.cases.case(self._user(user), self.item_index(item_id))

    def system1_scores(self, case: Case) -> pd.DataFrame:
        """P(like) of every System-1 model for the case, with verdicts."""
        return self.system1.scores(case)

    @cached_property
    def _cases(self) -> pd.DataFrame:
        table = self.predictions
        if table.empty:
            return table
        users, items = table["user"].to_numpy(), table["item"].to_numpy()
        cases = pd.DataFrame({"user_id": self.data.users["user_id"].to_numpy()[users],
                              "item_id": self.data.items["item_id"].to_numpy()[items],
                              "title": [self.item_label(i) for i in items], "liked": table["label"].astype(bool),
                              "cluster": (self.clusters[users] + 1) if self.clusters is not None else 0})
        return pd.concat([cases, table.drop(columns=["user", "item", "label"])], axis=1)

    def case_table(self) -> pd.DataFrame:
        """The stored test-subset predictions for analysts: ids, title, truth, cluster, each system's P(like)."""
        return self._cases.copy()

    @cached_property
    def workbench(self) -> Workbench | None:
        """The analysts' workbench over the stored predictions: the one the report stage stored when it
        matches them, else built now (slower); None without predictions."""
        if self.predictions.empty:
            return None
        folder = self.config.paths.checkpoints / WORKBENCH_FOLDER
        if (folder / WORKBENCH_SUMMARY).exists():
            stored = load_workbench(folder)
            if stored.summary["fingerprint"] == fingerprint(self.predictions):
                return stored
            log.warning("%s: built from other predictions than the stored ones; rebuilding it in memory "
                        "(run `python -m thinkrec report` to store it)", folder)
        return workbench_for(self.predictions, self.data, self.config)

    # ---- what if: the user's ratings edited ---------------------------------------------------------
    def rated_films(self, user_id: str, item_id: str) -> pd.DataFrame:
        """The ratings the case sees, newest first: item id, title, liked, and whether the prompt shows it."""
        items, labels = self.editor.ratings(self.user_index(user_id), self.item_index(item_id))
        shown = np.arange(len(items)) >= len(items) - self.config.llm.history_len
        table = pd.DataFrame({"item_id": self.data.items["item_id"].to_numpy()[items],
                              "title": [self.item_label(i) for i in items], "liked": labels.astype(bool),
                              "in_prompt": shown})
        return table.iloc[::-1].drop_duplicates("item_id").reset_index(drop=True)

    def what_if(self, user_id: str, item_id: str, removed_ids: list[str], flipped_ids: list[str]) -> WhatIf:
        """The case for the user refolded as rated (before) and with ``removed_ids`` removed and
        ``flipped_ids`` flipped (after). Unknown ids raise ``UnknownIdError``, impossible edits ``EditError``."""
        removed = [self.item_index(i) for i in removed_ids]
        flipped = [self.item_index(i) for i in flipped_ids]
        return self.editor.edit(self.user_index(user_id), self.item_index(item_id), removed, flipped)

    def what_if_scores(self, change: WhatIf, with_llm: bool = False) -> pd.DataFrame:
        """Every System-1 model's (and, with ``with_llm``, every LLM system's) P(like) before and after the edit."""
        before, after = [self.system1_scores(change.before)], [self.system1_scores(change.after)]
        if with_llm:
            systems = self.llm_systems()
            pairs = [self.bank.p_yes_cases(name, [change.before, change.after]) for name in systems]
            labels = [registry.label(name) for name in systems]
            before.append(score_table(labels, [p for p, _ in pairs]))
            after.append(score_table(labels, [p for _, p in pairs]))
        return change_table(pd.concat(before, ignore_index=True), pd.concat(after, ignore_index=True))

    # ---- LLM systems -----------------------------------------------------------------------------
    def llm_systems(self) -> list[str]:
        return self.bank.systems if self.bank else []

    def gate(self, user: str | GuestUser, tau: float | None = None) -> Routing | None:
        """The gate's routing for the user (weights, decision and reason); None without experts."""
        return self.bank.routing(self._user(user), tau) if self.bank else None

    def llm_scores(self, case: Case, tau: float | None = None) -> pd.DataFrame:
        """P(Yes) of every LLM system for the case."""
        systems = self.llm_systems()
        return score_table([registry.label(name) for name in systems],
                           [self.bank.p_yes(name, case, tau) for name in systems])

    def ablation(self, case: Case, tau: float | None = None) -> tuple[list[Variant], list[float]]:
        """ThinkRec's global adapter, each expert alone and the gate's mixture for the case, with each one's
        P(Yes), scored in one batch (every row its own mixture). Empty without experts."""
        return self.bank.ablation_scores(case, tau) if self.bank else ([], [])

    def expert_scores(self, case: Case) -> pd.DataFrame:
        """P(Yes) of each cluster expert alone for the case (one batch), as rows beside the other systems'."""
        experts = self.bank.expert_variants() if self.bank else []
        p_yes = self.bank.p_yes_under("thinkrec", case, [v.weights for v in experts]) if experts else []
        return score_table([f"ThinkRec {v.label.lower()} alone" for v in experts], p_yes)

    def decoding(self, system: str, max_new_tokens: int | None = None) -> GenerationSettings:
        """The decoding ``system`` streams with: the configured one, its minimum-length and no-repeat rules
        kept only where the system's stored answers say it needs them (``reasoning_scores.decodes_with_rules``;
        the ablation's experts decide as the fused model)."""
        if system not in self._rules:
            self.check_llm_system(system)
            self._rules[system] = decodes_with_rules(self.config, system)
        return GenerationSettings.from_config(self.config.llm, max_new_tokens, rules=self._rules[system])

    def check_llm_system(self, system: str) -> None:
        """Raise ``UnknownIdError`` unless ``system`` is one of the LLM systems loaded."""
        if system not in self.llm_systems():
            raise UnknownIdError(f"unknown LLM system {system[:40]!r}; available: {', '.join(self.llm_systems())}")

    def explain(self, case: Case, system: str, settings: GenerationSettings, tau: float | None = None,
                variant: Variant | None = None) -> Explanation:
        """Start streaming a system's answer for the case (under an ablation ``variant``'s mixture, if
        given); the prompt comes with it, and P(Yes) once the first piece of text has arrived."""
        self.check_llm_system(system)
        return self.bank.explain(system, case, settings, tau, None if variant is None else variant.weights)

    def citations(self, text: str, run: Explanation) -> Citations:
        """The titles an answer cites, where it cites them, the target counted apart from the history it was
        shown, and the quoted names that are no film (the rules are the grounding measure's,
        ``text_metrics.title_mentions`` and ``unknown_titles``)."""
        target = title_key(run.target)
        history = {title_key(title) for title in run.allowed} - {target}
        mentions = title_mentions(text, self.data.items["title"].tolist())
        kinds = [TARGET if title_key(title) == target else FOUND if title_key(title) in history else MISSING
                 for _, _, title in mentions]
        titles = {kind: list(dict.fromkeys(title for (_, _, title), k in zip(mentions, kinds) if k == kind))
                  for kind in (TARGET, FOUND, MISSING)}
        unknown = unknown_titles(text, self.data.items["title"].tolist())
        spans = tuple(sorted([(start, end, kind) for (start, end, _), kind in zip(mentions, kinds)]
                             + [(start, end, UNKNOWN) for start, end, _ in unknown]))
        return Citations(titles[TARGET], titles[FOUND], titles[MISSING], spans,
                         list(dict.fromkeys(name for _, _, name in unknown)))

    def claims(self, text: str, run: Explanation) -> list[Claim]:
        """Every checkable claim of an answer to ``run``'s case, judged true, false or unchecked against the
        data its prompt showed (``thinkrec.claims``), in order."""
        case = run.case
        if case is None:
            raise ValueError("this answer carries no case to check its claims against")
        guest = isinstance(case.user, GuestUser)
        profile = self.claim_checker.picks_profile(case.user.items, case.user.labels) if guest else None
        return self.claim_checker.check(text, None if guest else case.user, case.item, case.hist_items,
                                        case.hist_labels, profile)

    def settled(self, text: str) -> int:
        """How much of an answer still streaming has final claims and citations (``ClaimChecker.settled``)."""
        return self.claim_checker.settled(text)

    def prompt_text(self, case: Case, system: str) -> str:
        """The exact prompt ``system`` reads for the case ("" without LLM systems)."""
        return self.bank.readable_prompt(system, case) if self.bank and system in self.llm_systems() else ""

    def prompt_history(self, case: Case) -> pd.DataFrame:
        """The earlier ratings the case's prompt shows (title, liked), oldest first, as the LLM systems see them."""
        shown = shown_history(case.hist_items, case.hist_labels, self.config.llm.history_len)
        return pd.DataFrame({"title": [self.item_label(item) for item, _ in shown],
                             "liked": [bool(liked) for _, liked in shown]})
