"""The backend facade the demo talks to: load once, then answer questions about users and items.

Everything the UI shows comes through ``Explorer``: profiles, histories, candidate items, the
System-1 scores and the stored metrics. It never hands out torch modules, and its methods only
read shared state, so one instance serves concurrent visitors.

A question is a ``Case``: a user (a dataset user id, or a ``GuestUser`` built from a visitor's
picks) and a target item, with the history the answer sees. Scores and reasoning take a case.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

from thinkrec.cf.fold_in import folded_logits
from thinkrec.cf.models import CFModel, make_batch
from thinkrec.cf.store import cf_dir, load_cf_model
from thinkrec.cf.train import item_prior_scores
from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData, prepare_dataset
from thinkrec.data.split import PAD
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json
from thinkrec.fusion.clusters import Clustering, load_clustering
from thinkrec.fusion.user_map import JSON_FILE as MAP_FILE
from thinkrec.fusion.user_map import UserMap, load_user_map
from thinkrec.guest import GuestUser, make_guest
from thinkrec.llm.bank import LABELS as LLM_LABELS
from thinkrec.llm.bank import LLMBank, Variant, load_bank
from thinkrec.llm.generate import GenerationSettings, TextStream
from thinkrec.manifest import verify_manifest
from thinkrec.predictions import test_predictions
from thinkrec.text_metrics import grounding_of
from thinkrec.workbench import FOLDER as WORKBENCH_FOLDER
from thinkrec.workbench import SUMMARY as WORKBENCH_SUMMARY
from thinkrec.workbench import Workbench, fingerprint, load_workbench, workbench_for

log = logging.getLogger(__name__)
SYSTEM_LABELS = {"item_prior": "Item like-rate (floor)", "mf": "MF", "lightgcn": "LightGCN", "sasrec": "SASRec"}
MAX_QUERY_CHARS = 200
ABLATION_MEMO_SIZE = 4096


class UnknownIdError(ValueError):
    """A user or item id that the dataset does not hold."""


class Memo:
    """A bounded, thread-safe memo: the least recently stored entries go first."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            return self._entries.get(key)

    def put_all(self, entries: dict) -> None:
        with self._lock:
            self._entries.update(entries)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


@dataclass(frozen=True, eq=False)
class Case:
    """Will ``user`` (a dataset index or a guest) like ``item``? With the history the answer sees and,
    for a held-out interaction or a guest's own pick, the known outcome."""

    user: int | GuestUser
    item: int
    hist_items: np.ndarray
    hist_labels: np.ndarray
    truth: bool | None


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
    genre_counts: pd.DataFrame = field(default_factory=pd.DataFrame)  # genre, liked, disliked


class Explorer:
    """Read-only access to the prepared data and the trained System-1 encoders."""

    def __init__(self, config: Config, prepared: PreparedData, models: dict[str, CFModel], metrics: dict,
                 bank: LLMBank | None = None, clustering: Clustering | None = None, user_map: UserMap | None = None,
                 predictions: pd.DataFrame | None = None, cluster_encoder: str = ""):
        self.config = config
        self.data = prepared
        self.models = models
        self.metrics = metrics
        self.bank = bank
        self.clustering = clustering
        self.clusters = None if clustering is None else clustering.labels  # (n_users,) 0-based, with experts
        self.cluster_encoder = cluster_encoder  # whose user vectors were clustered
        self.user_map = user_map
        self.predictions = predictions if predictions is not None else pd.DataFrame()
        self._user_index = {uid: i for i, uid in enumerate(prepared.users["user_id"])}
        self._item_index = {iid: i for i, iid in enumerate(prepared.items["item_id"])}
        rows = prepared.rows
        self._ablation_memo = Memo(ABLATION_MEMO_SIZE)  # P(Yes) by (user, item, mixture): a new τ re-scores one row
        self._row_of = {(u, i): n for n, (u, i, s) in enumerate(zip(rows["user"], rows["item"], rows["split"]))
                        if s != "train"}

    @classmethod
    def load(cls, config: Config, with_llm: bool = True) -> Explorer:
        """Verify the checkpoints, prepare the data, load every System-1 encoder and (unless
        ``with_llm`` is False) every trained LLM system onto one shared backbone."""
        root = config.paths.checkpoints
        verify_manifest(root, required_prefixes=("cf/",))
        prepared = prepare_dataset(config)
        models = {}
        for name in config.cf.models:
            model, meta = load_cf_model(cf_dir(config) / name, prepared, config)
            if meta.get("data_fingerprint") != prepared.summary.get("fingerprint"):
                raise CheckpointError(f"{cf_dir(config) / name / 'config.json'}: trained on other data than "
                                      f"{config.data.dataset} as prepared now (fingerprints differ)")
            models[name] = model
        metrics = read_json(cf_dir(config) / "metrics.json")
        bank = load_bank(prepared, config) if with_llm else None
        experts = root / "llm" / "experts"
        clustering, encoder = None, ""
        if (experts / "selection.json").exists():
            clustering = load_clustering(experts / "clusters")
            encoder = read_json(experts / "selection.json")["encoder"]
        user_map = load_user_map(experts / "user_map") if (experts / "user_map" / MAP_FILE).exists() else None
        log.info("explorer ready: %d users, %d items, systems %s, %s", prepared.n_users, prepared.n_items,
                 list(models) + (bank.systems if bank else []), "with a user map" if user_map else "no user map")
        return cls(config, prepared, models, metrics, bank, clustering, user_map, test_predictions(prepared, config),
                   encoder)

    # ---- ids -------------------------------------------------------------------------------
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

    # ---- users -----------------------------------------------------------------------------
    def users_table(self) -> pd.DataFrame:
        """One row per user for the picker: id, demographics, activity and train counts."""
        users = self.data.users
        columns = ["user_id", *[c for c in ("age", "gender", "occupation") if c in users], "activity", "n_train",
                   "like_rate"]
        return users[columns].copy()

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
                       history=history, genre_counts=self._genre_counts(items["genres"], train["label"]))

    @staticmethod
    def _genre_counts(genres: pd.Series, labels: pd.Series) -> pd.DataFrame:
        counts: dict[str, list[int]] = {}
        for item_genres, label in zip(genres, labels):
            for genre in item_genres:
                counts.setdefault(genre, [0, 0])[0 if label else 1] += 1
        frame = pd.DataFrame([(genre, liked, disliked) for genre, (liked, disliked) in counts.items()],
                             columns=["genre", "liked", "disliked"])
        return frame.sort_values(["liked", "genre"], ascending=[False, True]).reset_index(drop=True)

    # ---- items -----------------------------------------------------------------------------
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

    # ---- cases and scores ----------------------------------------------------------------------
    def guest(self, liked_ids: list[str], disliked_ids: list[str]) -> GuestUser:
        """A visitor's profile from the movies they liked and disliked, folded into every encoder's space.
        Unknown ids raise ``UnknownIdError``; too few or contradictory picks raise ``GuestError``."""
        liked = [self.item_index(i) for i in liked_ids]
        disliked = [self.item_index(i) for i in disliked_ids]
        return make_guest(self.models, liked, disliked, self.data.summary["history_len"], self.config.guest)

    def place(self, guest: GuestUser) -> tuple[float, float] | None:
        """The guest's place on the user map; None without a map."""
        if self.user_map is None or self.clustering is None:
            return None
        vector = guest.folded[self.cluster_encoder].vector
        return self.user_map.place(self.clustering.standardiser.transform(vector))

    def _user(self, user: str | GuestUser) -> int | GuestUser:
        return user if isinstance(user, GuestUser) else self.user_index(user)

    def case(self, user: str | GuestUser, item_id: str) -> Case:
        """The question "will ``user`` (an id or a guest) like ``item_id``?" with the history its answer sees.

        A held-out (valid/test) interaction uses its own row's history; any other item is scored as of
        now, after the user's latest interaction. A guest's history is their picks."""
        who, item = self._user(user), self.item_index(item_id)
        length = self.data.summary["history_len"]
        if isinstance(who, GuestUser):
            return Case(who, item, *who.history(length), who.rated(item))
        if (who, item) in self._row_of:
            row = self.data.rows.iloc[self._row_of[(who, item)]]
            return Case(who, item, np.asarray(row["hist_items"]), np.asarray(row["hist_labels"]), bool(row["label"]))
        rows = self.data.rows[self.data.rows["user"] == who].sort_values("timestamp").tail(length)
        items = np.full(length, PAD)
        labels = np.full(length, PAD)
        if len(rows):
            items[-len(rows):] = rows["item"].to_numpy()
            labels[-len(rows):] = rows["label"].to_numpy()
        return Case(who, item, items, labels, None)

    @torch.no_grad()
    def system1_scores(self, case: Case) -> pd.DataFrame:
        """P(like) of every System-1 model for the case, with verdicts."""
        target = pd.DataFrame({"item": [case.item]})
        scores = {"item_prior": float(item_prior_scores(self.data, target)[0])}
        for name, model in self.models.items():
            scores[name] = float(expit(self._cf_logit(model, name, case)))
        return pd.DataFrame({"system": [SYSTEM_LABELS.get(n, n) for n in scores],
                             "p_like": [round(p, 4) for p in scores.values()],
                             "verdict": ["Yes" if p > 0.5 else "No" for p in scores.values()]})

    def _cf_logit(self, model: CFModel, name: str, case: Case) -> float:
        if isinstance(case.user, GuestUser):
            return float(folded_logits(model, case.user.folded[name], [case.item])[0])
        batch = make_batch([case.user], [case.item], case.hist_items[None], case.hist_labels[None], self.data.n_items)
        return float(model(batch)[0])

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

    # ---- LLM systems -------------------------------------------------------------------------
    def llm_systems(self) -> list[str]:
        return self.bank.systems if self.bank else []

    def gate(self, user: str | GuestUser, tau: float | None = None):
        """The gate's routing for the user (weights, decision and reason); None without experts."""
        who = self._user(user)
        return self.bank.routing(who, tau) if self.bank else None

    def llm_scores(self, case: Case, tau: float | None = None) -> pd.DataFrame:
        """P(Yes) of every LLM system for the case."""
        rows = []
        for name in self.llm_systems():
            p = self.bank.p_yes(name, case.user, case.item, case.hist_items, case.hist_labels, tau)
            rows.append({"system": LLM_LABELS[name], "p_like": round(p, 4), "verdict": "Yes" if p > 0.5 else "No"})
        return pd.DataFrame(rows, columns=["system", "p_like", "verdict"])

    def ablation(self, case: Case, tau: float | None = None) -> tuple[list[Variant], list[float]]:
        """ThinkRec's global adapter, each expert alone and the gate's mixture for the case, with each one's
        P(Yes), scored in one batch (every row its own mixture). Empty without experts."""
        variants = self.bank.ablation(case.user, tau) if self.bank else []
        if not variants:
            return [], []
        memo = isinstance(case.user, int)  # a dataset user's case always has the same prompt; a guest's may not
        keys = [(case.user, case.item, v.weights.tobytes()) for v in variants]
        known = {key: self._ablation_memo.get(key) for key in keys} if memo else {}
        missing = [(key, v.weights) for key, v in zip(keys, variants) if known.get(key) is None]
        if missing:
            scored = self.bank.p_yes_under("thinkrec", case.user, case.item, case.hist_items, case.hist_labels,
                                           [weights for _, weights in missing])
            fresh = {key: p for (key, _), p in zip(missing, scored)}
            known.update(fresh)
            if memo:
                self._ablation_memo.put_all(fresh)
        return variants, [known[key] for key in keys]

    def expert_scores(self, case: Case) -> pd.DataFrame:
        """P(Yes) of each cluster expert alone for the case (one batch), as rows beside the other systems'."""
        experts = self.bank.experts() if self.bank else []
        p_yes = self.bank.p_yes_under("thinkrec", case.user, case.item, case.hist_items, case.hist_labels,
                                      [v.weights for v in experts]) if experts else []
        return pd.DataFrame({"system": [f"ThinkRec {v.label.lower()} alone" for v in experts],
                             "p_like": [round(p, 4) for p in p_yes],
                             "verdict": ["Yes" if p > 0.5 else "No" for p in p_yes]})

    def explain(self, case: Case, system: str, settings: GenerationSettings, tau: float | None = None,
                variant: Variant | None = None) -> Explanation:
        """Start streaming a system's answer for the case (under an ablation ``variant``'s mixture, if
        given); the prompt comes with it, and P(Yes) once the first piece of text has arrived."""
        if system not in self.llm_systems():
            raise UnknownIdError(f"unknown LLM system {system[:40]!r}; available: {', '.join(self.llm_systems())}")
        prompt = self.bank.prompt(system, case.user, case.item, case.hist_items, case.hist_labels)
        titles = self.data.items["title"].tolist()
        allowed = {titles[i] for i in case.hist_items if i >= 0} | {titles[case.item]}
        stream = self.bank.stream(system, case.user, case.item, case.hist_items, case.hist_labels, settings, tau,
                                  None if variant is None else variant.weights)
        return Explanation(system=system, prompt=self.bank.served[system].builder.readable(prompt), truth=case.truth,
                           allowed=allowed, stream=stream)

    def grounding(self, text: str, allowed: set[str]) -> tuple[list[str], list[str]]:
        """Titles the text cites that are (and are not) in the user's history or the target."""
        return grounding_of(text, allowed, self.data.items["title"].tolist())


@dataclass
class Explanation:
    """A streamed answer in progress with what the UI shows beside it."""

    system: str
    prompt: str  # the exact prompt, soft tokens named
    truth: bool | None
    allowed: set[str]  # titles it may cite: the history shown in the prompt and the target
    stream: TextStream

    @property
    def p_yes(self) -> float | None:
        """P(Yes) at the answer position; None until generation has taken its first step."""
        return self.stream.p_yes
