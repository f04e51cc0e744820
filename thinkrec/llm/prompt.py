"""The one prompt: rendered identically for every training stage, scoring, generation and the UI.

The user's last interactions (liked and disliked, with keywords) and the target item are written
in the backbone's chat template. Where a collaborative-filtering embedding belongs, the text holds
a marker; tokenisation turns each marker into one placeholder token whose input embedding the
model overwrites with the projected CF vector (CoLLM's soft tokens).

With ``llm.prompt_evidence`` the prompt also shows what the grounded teacher argues from, so a
trace states nothing the student cannot read: a profile line (favoured and avoided genres and the
like-rate, train-only; with the keywords), every genre of each history film, and which history
films CF finds close to the target (with the CF tokens). ``llm.prompt_evidence_lines`` adds, under
the target, every argument for either verdict (from the history, the profile and the target's audience),
one line each, worded as the teacher then states it; ``llm.prompt_evidence_sides`` heads the arguments for a
yes and those for a no apart. Off, the prompt is the published one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from thinkrec.cf.fold_in import FoldedUser
from thinkrec.cf.neighbours import close_items, comparable_history, unit_rows
from thinkrec.config import LLMConfig
from thinkrec.data.keywords import item_keywords
from thinkrec.data.prepared import PreparedData
from thinkrec.data.profiles import RATE_MIN_TRAIN, genre_preferences
from thinkrec.data.split import PAD
from thinkrec.guest import GUEST, GuestUser
from thinkrec.teacher.evidence import EvidenceBuilder, title_genres
from thinkrec.teacher.grounded import stated_sides

MARKER = "<|cf|>"  # stands for one soft token in the rendered text
SYSTEM = "You are a movie recommender. Answer Yes or No, then explain why."
QUESTION = "Will the user like the target? Answer Yes or No."
EVIDENCE_HEADER = "The arguments for and against the target:"
SIDE_HEADERS = ("For a yes:", "For a no:")  # with llm.prompt_evidence_sides, above each side's lines
CLOSE_MARK = ", close to the target"  # follows the verdict of a history film CF finds close to the target


@dataclass(frozen=True)
class SoftToken:
    """One CF slot in the prompt: ``kind`` "user" or "item" (``index`` its row), or "match"
    (``index`` the target item, ``user`` the user whose affinity to it the token carries). A user
    index of ``GUEST`` stands for the prompt's guest user."""

    kind: str
    index: int
    user: int = -1


@dataclass
class EncodedPrompt:
    """Token ids of a prompt, where its soft tokens sit, and the text a person can read."""

    input_ids: list[int]
    soft_positions: list[int]
    soft_tokens: list[SoftToken]
    text: str
    guest: FoldedUser | None = None  # the guest's vector and bias when the prompt is a guest's

    def __len__(self) -> int:
        return len(self.input_ids)


def shown_history(hist_items, hist_labels, history_len: int) -> list[tuple[int, int]]:
    """The (item, liked) pairs a prompt shows: the last ``history_len`` non-padding ones, oldest first."""
    history = [(int(item), int(label)) for item, label in zip(hist_items, hist_labels) if item != PAD]
    return history[-history_len:] if history_len else []


class PromptBuilder:
    """Renders and tokenises prompts for (user, target item, history) triples.

    ``item_embeddings`` (the CF encoder's item table) is needed only to mark the history films
    close to the target, i.e. with ``config.prompt_evidence`` and CF tokens."""

    def __init__(self, prepared: PreparedData, tokenizer, config: LLMConfig, use_cf_tokens: bool = True,
                 use_keywords: bool = True, use_match: bool = False, item_embeddings=None):
        self.data = prepared
        self.tokenizer = tokenizer
        self.config = config
        self.use_cf_tokens = use_cf_tokens
        self.use_match = use_cf_tokens and use_match
        self.use_keywords = use_keywords
        self.show_profile = config.prompt_evidence and use_keywords
        self.mark_close = config.prompt_evidence and use_cf_tokens
        if self.mark_close and item_embeddings is None:
            raise ValueError("llm.prompt_evidence marks the history films close to the target: "
                             "the prompt needs the CF encoder's item embeddings")
        self._vectors = unit_rows(item_embeddings) if self.mark_close else None
        self.evidence_lines = self.mark_close and config.prompt_evidence_lines
        self._evidence = (EvidenceBuilder(prepared, item_embeddings, None, config.era_rule)
                          if self.evidence_lines else None)
        self.placeholder_id = tokenizer.convert_tokens_to_ids(tokenizer.pad_token or tokenizer.eos_token)
        self._titles = prepared.items["title"].tolist()
        self._years = prepared.items["year"].tolist()
        self._genres = prepared.items["genres"].tolist()
        self._keywords = item_keywords(prepared.items, config.era_rule)

    def _movie(self, item: int, keywords: int | None) -> str:
        year = self._years[item]
        text = f'"{self._titles[item]}"' + (f" ({year})" if pd.notna(year) else "")
        if self.use_cf_tokens:
            text += f" {MARKER}"
        words = self._keywords[item] if self.use_keywords else []
        if keywords is not None:  # a history film: its genres in full when the prompt shows the evidence
            words = words[:max(keywords, len(self._genres[item]))] if self.config.prompt_evidence else words[:keywords]
        return text + (f" [{', '.join(words)}]" if words else "")

    def _profile(self, user: int | GuestUser) -> tuple[list[str], list[str], int, float]:
        """Favoured and avoided genres, films rated and the like-rate, from train ratings (a guest's: their picks)."""
        if isinstance(user, GuestUser):
            picks = pd.DataFrame({"item": user.items, "label": user.labels})
            (liked, disliked) = genre_preferences(picks, self._genres)
            return list(liked), list(disliked), len(picks), float(picks["label"].mean())
        row = self.data.users.iloc[user]
        return list(row["liked_genres"]), list(row["disliked_genres"]), int(row["n_train"]), float(row["like_rate"])

    @staticmethod
    def _profile_line(profile: tuple[list[str], list[str], int, float]) -> str | None:
        liked, disliked, rated, rate = profile
        parts = [f"{verb} {', '.join(g.lower() for g in genres)}"
                 for verb, genres in (("favours", liked), ("avoids", disliked)) if len(genres)]
        if rated >= RATE_MIN_TRAIN:
            parts.append(f"likes {round(100 * rate)} % of the films they rate")
        return f"Profile: {'; '.join(parts)}." if parts else None

    def _user_line(self, user: int | GuestUser) -> str:
        parts = []
        person = user.source if isinstance(user, GuestUser) else user  # a visitor has no demographics
        if person is not None:
            row = self.data.users.iloc[person]
            parts = [f"{row[k]}" for k in ("age", "gender", "occupation") if k in row.index and str(row[k])]
        described = f"User ({', '.join(parts)})" if parts else "User"
        return described + (f" {MARKER}" if self.use_cf_tokens else "")

    def render(self, user: int | GuestUser, item: int, hist_items, hist_labels) -> tuple[str, list[SoftToken]]:
        """The chat-formatted prompt text (ending where the answer begins) and its soft tokens."""
        index = GUEST if isinstance(user, GuestUser) else user
        soft = [SoftToken("user", index)] if self.use_cf_tokens else []
        lines = [self._user_line(user)]
        facts = self._profile(user) if self.show_profile or self.evidence_lines else None
        profile = self._profile_line(facts) if self.show_profile else None
        if profile:
            lines.append(profile)
        history = shown_history(hist_items, hist_labels, self.config.history_len)
        close = self.close_to_target(item, history) if self.mark_close else set()
        if history:
            lines.append("Rated, oldest first:")
            for number, (hist_item, liked) in enumerate(history, start=1):
                verdict = ("liked" if liked else "disliked") + (CLOSE_MARK if hist_item in close else "")
                lines.append(f"{number}. {self._movie(hist_item, self.config.history_keywords)}: {verdict}")
                if self.use_cf_tokens:
                    soft.append(SoftToken("item", hist_item))
        else:
            lines.append("No ratings yet: judge from the profile and the movie alone.")
        lines.append(f"Target: {self._movie(item, None)}")
        if self.evidence_lines:
            lines += self._evidence_lines(facts, item, history)
        if self.use_cf_tokens:
            soft.append(SoftToken("item", item))
        if self.use_match:
            lines.append(f"Collaborative-filtering match: {MARKER}")
            soft.append(SoftToken("match", item, index))
        lines.append(QUESTION)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text, soft

    def _evidence_lines(self, profile: tuple[list[str], list[str], int, float], item: int,
                        history: list[tuple[int, int]]) -> list[str]:
        """The arguments the teacher may state, one line each as it words them (``stated_sides``); with
        ``llm.prompt_evidence_sides`` under a header that names the verdict each side argues for."""
        shown = self._evidence.history(item, [i for i, _ in history], [label for _, label in history])
        sides = stated_sides(self._evidence.signals(item, shown, *profile), title_genres(shown))
        lines = []
        for header, side in zip(SIDE_HEADERS, sides):
            if side:
                lines += [header, *side] if self.config.prompt_evidence_sides else side
        return [EVIDENCE_HEADER, *lines] if lines else []

    def close_to_target(self, item: int, history: list[tuple[int, int]]) -> set[int]:
        """The shown history films CF finds close to the target (``cf.neighbours``, as the teacher argues)."""
        candidates = comparable_history(self._titles, item, [i for i, _ in history], [label for _, label in history])
        return set(close_items(self._vectors, item, list(candidates)))

    def encode(self, user: int | GuestUser, item: int, hist_items, hist_labels) -> EncodedPrompt:
        """Tokenise piece by piece so that every marker becomes exactly one placeholder token."""
        text, soft = self.render(user, item, hist_items, hist_labels)
        pieces = text.split(MARKER)
        if len(pieces) != len(soft) + 1:
            raise ValueError(f"prompt holds {len(pieces) - 1} markers for {len(soft)} soft tokens "
                             "(a title or keyword contains the marker text?)")
        ids: list[int] = []
        positions: list[int] = []
        for number, piece in enumerate(pieces):
            ids.extend(self.tokenizer.encode(piece, add_special_tokens=False))
            if number < len(soft):
                positions.append(len(ids))
                ids.append(self.placeholder_id)
        guest = user.folded[self.config.cf_encoder] if isinstance(user, GuestUser) and self.use_cf_tokens else None
        return EncodedPrompt(input_ids=ids, soft_positions=positions, soft_tokens=soft, text=text, guest=guest)

    def encode_row(self, row) -> EncodedPrompt:
        """Encode one row of ``PreparedData.rows``."""
        return self.encode(int(row["user"]), int(row["item"]), np.asarray(row["hist_items"]),
                           np.asarray(row["hist_labels"]))

    def readable(self, prompt: EncodedPrompt) -> str:
        """The prompt as the UI shows it: markers named after the embedding they stand for."""
        text = prompt.text
        for token in prompt.soft_tokens:
            if token.kind == "user":
                name = "guest user" if token.index == GUEST else "user"
            else:
                name = f"{'item:' if token.kind == 'item' else 'match user×'}{self._titles[token.index]}"
            text = text.replace(MARKER, f"⟨CF {name}⟩", 1)
        return text
