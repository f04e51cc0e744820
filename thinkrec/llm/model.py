"""The LLM recommender: a causal LM reading CF soft tokens, scored by P(Yes) at the answer position.

``SoftTokenLM`` wraps the backbone (with or without LoRA), projector MLPs and the frozen CF tables.
User and item soft tokens carry one embedding each (CoLLM). The optional *match* token carries the
user-item pair: their element-wise product and the CF model's own logit, so the language model
reads the collaborative signal directly instead of having to multiply two projected vectors
inside attention. Batches are left-padded, with position ids counted from each row's first real
token, so a row scores the same alone and inside a padded batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import DynamicCache

from thinkrec.errors import CheckpointError
from thinkrec.llm.prompt import EncodedPrompt

KINDS = ("user", "item", "match")  # soft-token kinds, in the order of LMBatch.soft_kind codes


class Projector(nn.Module):
    """CoLLM's mapping of a CF embedding into the LLM's input space: d -> mult*d -> hidden."""

    def __init__(self, cf_dim: int, hidden: int, mult: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cf_dim, mult * cf_dim), nn.ReLU(), nn.Linear(mult * cf_dim, hidden))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.net(vectors)


@dataclass
class CFTables:
    """The frozen outputs of one System-1 encoder that soft tokens read: embeddings and score biases."""

    user: torch.Tensor  # (n_users, d)
    item: torch.Tensor  # (n_items, d)
    user_bias: torch.Tensor  # (n_users,)
    item_bias: torch.Tensor  # (n_items,)
    global_bias: torch.Tensor  # (1,)

    def __post_init__(self):
        self.user, self.item = self.user.float(), self.item.float()
        self.user_bias, self.item_bias = self.user_bias.float().reshape(-1), self.item_bias.float().reshape(-1)
        self.global_bias = self.global_bias.float().reshape(1)

    @property
    def dim(self) -> int:
        return self.user.shape[1]


@dataclass
class LMBatch:
    """Left-padded token ids with the soft-token slots and the answer position of each row."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T)
    soft_rows: torch.Tensor  # (S,) batch row of each soft token
    soft_cols: torch.Tensor  # (S,) sequence position of each soft token
    soft_kind: torch.Tensor  # (S,) index into KINDS
    soft_index: torch.Tensor  # (S,) user index (user token) or item index (item and match tokens)
    soft_user: torch.Tensor  # (S,) the row's user for match tokens, -1 otherwise
    answer_index: torch.Tensor  # (B,) position whose logits give the answer
    labels: torch.Tensor | None = None  # (B, T) LM targets, -100 where ignored
    guest_vectors: torch.Tensor | None = None  # (B, d) each row's guest user vector (zeros for other rows)
    guest_bias: torch.Tensor | None = None  # (B,) each row's guest user bias

    def to(self, device: torch.device | str) -> LMBatch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return LMBatch(**moved)


def collate(prompts: list[EncodedPrompt], pad_id: int, targets: list[list[int]] | None = None) -> LMBatch:
    """Left-pad prompts (plus optional answer/trace target tokens) into one batch."""
    targets = targets or [[] for _ in prompts]
    lengths = [len(p) + len(t) for p, t in zip(prompts, targets)]
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    labels = torch.full((len(prompts), width), -100, dtype=torch.long)
    soft_rows, soft_cols, soft_kind, soft_index, soft_user, answers = [], [], [], [], [], []
    for row, (prompt, target, length) in enumerate(zip(prompts, targets, lengths)):
        offset = width - length
        ids[row, offset:] = torch.tensor(prompt.input_ids + target, dtype=torch.long)
        mask[row, offset:] = 1
        if target:
            labels[row, offset + len(prompt):] = torch.tensor(target, dtype=torch.long)
        answers.append(offset + len(prompt) - 1)
        for position, token in zip(prompt.soft_positions, prompt.soft_tokens):
            soft_rows.append(row)
            soft_cols.append(offset + position)
            soft_kind.append(KINDS.index(token.kind))
            soft_index.append(token.index)
            soft_user.append(token.user)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return LMBatch(ids, mask, positions, as_long(soft_rows), as_long(soft_cols), as_long(soft_kind),
                   as_long(soft_index), as_long(soft_user), as_long(answers), labels if any(targets) else None,
                   *_guest_tables(prompts))


def _guest_tables(prompts: list[EncodedPrompt]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Each row's guest vector and bias (zeros for rows without a guest); None when no row has one."""
    guests = [p.guest for p in prompts]
    present = [g for g in guests if g is not None]
    if not present:
        return None, None
    vectors = torch.zeros(len(prompts), len(present[0].vector))
    bias = torch.zeros(len(prompts))
    for row, guest in enumerate(guests):
        if guest is not None:
            vectors[row] = torch.as_tensor(guest.vector, dtype=torch.float32)
            bias[row] = guest.bias
    return vectors, bias


class SoftTokenLM(nn.Module):
    """Backbone + projectors + frozen CF tables; scores P(Yes) and computes the training losses."""

    def __init__(self, backbone: nn.Module, tables: CFTables | None, yes_id: int, no_id: int,
                 projector_mult: int = 10, match: bool = False):
        super().__init__()
        self.backbone = backbone
        self.yes_id, self.no_id = yes_id, no_id
        hidden = backbone.get_input_embeddings().embedding_dim
        self.projector = self.match_projector = None
        if tables is not None:
            for name in ("user", "item", "user_bias", "item_bias", "global_bias"):
                self.register_buffer(f"{name}_table", getattr(tables, name), persistent=False)
            self.projector = Projector(tables.dim, hidden, projector_mult)
            if match:
                self.match_projector = Projector(tables.dim + 1, hidden, projector_mult)

    def user_features(self, batch: LMBatch, rows: torch.Tensor, users: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors and biases of ``users`` (index ``GUEST``: the guest of batch row ``rows``)."""
        vectors, bias = self.user_table[users.clamp(min=0)], self.user_bias_table[users.clamp(min=0)]
        guest = users < 0
        if guest.any():
            if batch.guest_vectors is None:
                raise ValueError("a soft token stands for a guest user, but the batch carries no guest vector")
            vectors = torch.where(guest[:, None], batch.guest_vectors[rows], vectors)
            bias = torch.where(guest, batch.guest_bias[rows], bias)
        return vectors, bias

    def match_features(self, users: torch.Tensor, user_bias: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(u * i, CF logit) for each user vector and item: what the match token projects."""
        i = self.item_table[items]
        logit = (users * i).sum(-1) + user_bias + self.item_bias_table[items] + self.global_bias_table
        return torch.cat([users * i, logit[:, None]], dim=1)

    def input_embeddings(self, batch: LMBatch) -> torch.Tensor:
        """Word embeddings with every soft-token slot overwritten by its projected CF features."""
        embeds = self.backbone.get_input_embeddings()(batch.input_ids)
        if len(batch.soft_rows) == 0:
            return embeds
        if self.projector is None:
            raise ValueError("the prompt holds CF soft tokens but this model has no projector")
        kind, index = batch.soft_kind, batch.soft_index
        embeds = embeds.clone()
        for code, name in enumerate(KINDS):
            chosen = kind == code
            if not chosen.any():
                continue
            if name == "match":
                if self.match_projector is None:
                    raise ValueError("the prompt holds a CF match token but this model has no match projector")
                users, bias = self.user_features(batch, batch.soft_rows[chosen], batch.soft_user[chosen])
                projected = self.match_projector(self.match_features(users, bias, index[chosen]))
            elif name == "user":
                projected = self.projector(self.user_features(batch, batch.soft_rows[chosen], index[chosen])[0])
            else:
                projected = self.projector(self.item_table[index[chosen]])
            embeds[batch.soft_rows[chosen], batch.soft_cols[chosen]] = projected.to(embeds.dtype)
        return embeds

    def projector_state(self) -> dict[str, torch.Tensor]:
        """Every projector weight, match projector keys prefixed ``match.``, for one safetensors file."""
        state = {k: v.contiguous() for k, v in self.projector.state_dict().items()}
        if self.match_projector is not None:
            state.update({f"match.{k}": v.contiguous() for k, v in self.match_projector.state_dict().items()})
        return state

    def load_projectors(self, path: Path) -> None:
        """Load ``projector_state`` back; a missing, damaged or mismatched file raises CheckpointError."""
        try:
            state = load_file(path)
            self.projector.load_state_dict({k: v for k, v in state.items() if not k.startswith("match.")})
            match = {k[len("match."):]: v for k, v in state.items() if k.startswith("match.")}
            if match and self.match_projector is None:
                raise ValueError("the file holds a match projector the configuration does not use")
            if self.match_projector is not None:
                self.match_projector.load_state_dict(match)
        except Exception as err:  # safetensors and torch raise several error types here
            raise CheckpointError(f"{path}: cannot load the projector ({err})") from err

    def logits(self, batch: LMBatch, keep_last: int = 0) -> torch.Tensor:
        """Next-token logits of every position, or of the last ``keep_last`` positions only (the LM head
        over a 49k vocabulary is a fifth of the forward pass; answers and targets sit at the end)."""
        output = self.backbone(inputs_embeds=self.input_embeddings(batch), attention_mask=batch.attention_mask,
                               position_ids=batch.position_ids, use_cache=False, logits_to_keep=keep_last)
        return output.logits

    def yes_no_logit(self, logits: torch.Tensor, batch: LMBatch) -> torch.Tensor:
        """logit(Yes) - logit(No) at each row's answer position (``logits`` may hold only the last
        positions): P(Yes) = sigmoid of it."""
        rows = torch.arange(len(batch.answer_index))
        start = batch.input_ids.shape[1] - logits.shape[1]
        answer = logits[rows, batch.answer_index - start]
        return answer[:, self.yes_id] - answer[:, self.no_id]

    @torch.no_grad()
    def p_yes(self, batch: LMBatch, prompt_context: Callable[[], AbstractContextManager] | None = None
              ) -> torch.Tensor:
        """P(Yes) = softmax over the Yes and No logits at the answer position. They come from the Yes and No rows
        of the LM head alone, in fp32 also under bfloat16 autocast (whose rounded logits would blur the small
        difference between two large numbers that P(Yes) reads).

        ``prompt_context`` (a context factory, e.g. bfloat16 layers) splits the pass: every position before the
        answer runs under it and leaves its keys and values in a cache, and the answer position, the last of
        every left-padded row, then runs alone in fp32 on that cache. A cheaper context then only rounds what
        the answer reads through attention, not the answer's own hidden state, for the cost of one token."""
        decoder = self.backbone.get_decoder()
        embeds = self.input_embeddings(batch)
        if prompt_context is None:
            hidden = decoder(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                             position_ids=batch.position_ids, use_cache=False).last_hidden_state
            return self._p_yes_of(hidden[torch.arange(len(batch.answer_index)), batch.answer_index])
        if not bool((batch.answer_index == embeds.shape[1] - 1).all()):
            raise ValueError("a split P(Yes) pass needs each row's answer at the last position (a prompt batch)")
        cache = DynamicCache(config=self.backbone.config)
        with prompt_context():
            decoder(inputs_embeds=embeds[:, :-1], attention_mask=batch.attention_mask[:, :-1],
                    position_ids=batch.position_ids[:, :-1], cache=cache, use_cache=True)
        for layer in cache.layers:  # the answer reads the prompt's keys and values in fp32, whatever wrote them
            layer.keys, layer.values = layer.keys.float(), layer.values.float()
        with torch.autocast(device_type=embeds.device.type, enabled=False):
            hidden = decoder(inputs_embeds=embeds[:, -1:].float(), attention_mask=batch.attention_mask,
                             position_ids=batch.position_ids[:, -1:], cache=cache, use_cache=True).last_hidden_state
        return self._p_yes_of(hidden[:, -1])

    def _p_yes_of(self, answer: torch.Tensor) -> torch.Tensor:
        """P(Yes) from the final hidden states at the answer positions, through the head's Yes and No rows in fp32."""
        head = self.backbone.get_output_embeddings()
        pair = [self.yes_id, self.no_id]
        with torch.autocast(device_type=answer.device.type, enabled=False):
            logits = answer.float() @ head.weight[pair].float().T
            if getattr(head, "bias", None) is not None:
                logits = logits + head.bias[pair].float()
        return torch.sigmoid(logits[:, 0] - logits[:, 1])

    def forward(self, batch: LMBatch, labels: torch.Tensor, full_head: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training losses: called through the module so a data-parallel wrapper syncs gradients."""
        return self.losses(batch, labels, full_head)

    def losses(self, batch: LMBatch, labels: torch.Tensor, full_head: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row BCE on P(Yes) and per-row mean LM loss over the target tokens. The LM head runs from
        the earliest answer position on, which is everything a loss reads (``full_head``: over every
        position, the slower reference that tests and ``benchmarks/train_speed.py`` compare with)."""
        keep = batch.input_ids.shape[1] - (0 if full_head else int(batch.answer_index.min()))
        logits = self.logits(batch, keep).float()
        bce = nn.functional.binary_cross_entropy_with_logits(self.yes_no_logit(logits, batch), labels.float(),
                                                             reduction="none")
        shifted_logits = logits[:, :-1]
        shifted_labels = batch.labels[:, -keep:][:, 1:]
        token_loss = nn.functional.cross_entropy(shifted_logits.reshape(-1, shifted_logits.shape[-1]),
                                                 shifted_labels.reshape(-1), ignore_index=-100, reduction="none")
        token_loss = token_loss.view(shifted_labels.shape)
        counted = (shifted_labels != -100).float()
        lm = (token_loss * counted).sum(1) / counted.sum(1).clamp(min=1)
        return bce, lm


def weighted_loss(bce: torch.Tensor, lm: torch.Tensor, is_reasoning: torch.Tensor,
                  weights: tuple[float, float, float, float]) -> torch.Tensor:
    """ThinkRec's mix: reasoning rows w_r_bce*BCE + w_r_lm*LM, Yes/No rows w_bce*BCE + w_lm*LM.

    ``weights`` = (bce_reasoning, lm_reasoning, bce_rec, lm_rec); the paper's default is (0.1, 0.9, 0.9, 0.1).
    """
    bce_r, lm_r, bce_y, lm_y = weights
    reasoning = is_reasoning.float()
    per_row = reasoning * (bce_r * bce + lm_r * lm) + (1 - reasoning) * (bce_y * bce + lm_y * lm)
    return per_row.mean()
