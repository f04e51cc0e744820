"""The LLM recommender: a causal LM reading CF soft tokens, scored by P(Yes) at the answer position.

``SoftTokenLM`` wraps the backbone (with or without LoRA), a projector MLP and the frozen CF user
and item tables. Batches are left-padded, with position ids counted from each row's first real
token, so a row scores the same alone and inside a padded batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from thinkrec.llm.prompt import EncodedPrompt


class Projector(nn.Module):
    """CoLLM's mapping of a CF embedding into the LLM's input space: d -> mult*d -> hidden."""

    def __init__(self, cf_dim: int, hidden: int, mult: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cf_dim, mult * cf_dim), nn.ReLU(), nn.Linear(mult * cf_dim, hidden))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.net(vectors)


@dataclass
class LMBatch:
    """Left-padded token ids with the soft-token slots and the answer position of each row."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T)
    soft_rows: torch.Tensor  # (S,) batch row of each soft token
    soft_cols: torch.Tensor  # (S,) sequence position of each soft token
    soft_is_user: torch.Tensor  # (S,) bool
    soft_index: torch.Tensor  # (S,) user or item index
    answer_index: torch.Tensor  # (B,) position whose logits give the answer
    labels: torch.Tensor | None = None  # (B, T) LM targets, -100 where ignored

    def to(self, device: torch.device | str) -> "LMBatch":
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
    soft_rows, soft_cols, soft_is_user, soft_index, answers = [], [], [], [], []
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
            soft_is_user.append(token.kind == "user")
            soft_index.append(token.index)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return LMBatch(ids, mask, positions, as_long(soft_rows), as_long(soft_cols),
                   torch.tensor(soft_is_user, dtype=torch.bool), as_long(soft_index), as_long(answers),
                   labels if any(targets) else None)


class SoftTokenLM(nn.Module):
    """Backbone + projector + frozen CF tables; scores P(Yes) and computes the training losses."""

    def __init__(self, backbone: nn.Module, user_table: torch.Tensor | None, item_table: torch.Tensor | None,
                 yes_id: int, no_id: int, projector_mult: int = 10):
        super().__init__()
        self.backbone = backbone
        self.yes_id, self.no_id = yes_id, no_id
        hidden = backbone.get_input_embeddings().embedding_dim
        if user_table is not None and item_table is not None:
            self.register_buffer("user_table", user_table.float(), persistent=False)
            self.register_buffer("item_table", item_table.float(), persistent=False)
            self.projector = Projector(user_table.shape[1], hidden, projector_mult)
        else:
            self.user_table = self.item_table = None
            self.projector = None

    def input_embeddings(self, batch: LMBatch) -> torch.Tensor:
        """Word embeddings with every soft-token slot overwritten by its projected CF vector."""
        embeds = self.backbone.get_input_embeddings()(batch.input_ids)
        if len(batch.soft_rows) == 0:
            return embeds
        if self.projector is None:
            raise ValueError("the prompt holds CF soft tokens but this model has no projector")
        is_user = batch.soft_is_user
        vectors = torch.empty(len(is_user), self.user_table.shape[1], device=embeds.device)
        vectors[is_user] = self.user_table[batch.soft_index[is_user]]
        vectors[~is_user] = self.item_table[batch.soft_index[~is_user]]
        projected = self.projector(vectors).to(embeds.dtype)
        embeds = embeds.clone()
        embeds[batch.soft_rows, batch.soft_cols] = projected
        return embeds

    def logits(self, batch: LMBatch) -> torch.Tensor:
        output = self.backbone(inputs_embeds=self.input_embeddings(batch), attention_mask=batch.attention_mask,
                               position_ids=batch.position_ids, use_cache=False)
        return output.logits

    def yes_no_logit(self, logits: torch.Tensor, batch: LMBatch) -> torch.Tensor:
        """logit(Yes) - logit(No) at each row's answer position: P(Yes) = sigmoid of it."""
        rows = torch.arange(len(batch.answer_index))
        answer = logits[rows, batch.answer_index]
        return answer[:, self.yes_id] - answer[:, self.no_id]

    @torch.no_grad()
    def p_yes(self, batch: LMBatch) -> torch.Tensor:
        """P(Yes) = softmax over the Yes and No logits at the answer position."""
        return torch.sigmoid(self.yes_no_logit(self.logits(batch), batch))

    def losses(self, batch: LMBatch, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row BCE on P(Yes) and per-row mean LM loss over the target tokens."""
        logits = self.logits(batch)
        bce = nn.functional.binary_cross_entropy_with_logits(self.yes_no_logit(logits, batch), labels.float(),
                                                             reduction="none")
        shifted_logits = logits[:, :-1]
        shifted_labels = batch.labels[:, 1:]
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
