"""System-1 collaborative-filtering encoders: MF, LightGCN and SASRec.

All three share one row-wise interface, so training, evaluation and the LLM's soft tokens treat
them alike: ``user_vectors`` gives a user representation per row, ``item_vectors`` the item table,
and a row's logit is their dot product plus biases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class RowBatch:
    """Model inputs of a batch of rows; history padding uses index ``n_items`` and label 2."""

    users: torch.Tensor  # (B,)
    items: torch.Tensor  # (B,)
    hist_items: torch.Tensor  # (B, H)
    hist_labels: torch.Tensor  # (B, H)

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, index: torch.Tensor) -> RowBatch:
        return RowBatch(self.users[index], self.items[index], self.hist_items[index], self.hist_labels[index])


def make_batch(users, items, hist_items: np.ndarray, hist_labels: np.ndarray, n_items: int) -> RowBatch:
    """Tensors from numpy arrays; -1 history slots become the padding item / label."""
    hist_items = np.where(hist_items < 0, n_items, hist_items)
    hist_labels = np.where(hist_labels < 0, 2, hist_labels)
    return RowBatch(torch.as_tensor(np.array(users), dtype=torch.long),
                    torch.as_tensor(np.array(items), dtype=torch.long),
                    torch.as_tensor(hist_items, dtype=torch.long),
                    torch.as_tensor(hist_labels, dtype=torch.long))


class CFModel(nn.Module):
    """Common scoring: logit = <user vector, item vector> + user bias + item bias + global bias."""

    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.global_bias = nn.Parameter(torch.zeros(1))
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def user_vectors(self, batch: RowBatch) -> torch.Tensor:
        raise NotImplementedError

    def item_vectors(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: RowBatch) -> torch.Tensor:
        users = self.user_vectors(batch)
        items = self.item_vectors()[batch.items]
        bias = self.user_bias(batch.users).squeeze(-1) + self.item_bias(batch.items).squeeze(-1)
        return (users * items).sum(-1) + bias + self.global_bias


class MF(CFModel):
    """Biased matrix factorisation."""

    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__(n_users, n_items, dim)
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_embedding.weight, std=0.05)
        nn.init.normal_(self.item_embedding.weight, std=0.05)

    def user_vectors(self, batch: RowBatch) -> torch.Tensor:
        return self.user_embedding(batch.users)

    def item_vectors(self) -> torch.Tensor:
        return self.item_embedding.weight


def normalised_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the user-item bipartite graph, as a sparse (U+I, U+I) tensor."""
    edges = np.unique(np.stack([users, items], axis=1), axis=0) if len(users) else np.zeros((0, 2), dtype=np.int64)
    rows = np.concatenate([edges[:, 0], edges[:, 1] + n_users])
    cols = np.concatenate([edges[:, 1] + n_users, edges[:, 0]])
    degree = np.bincount(rows, minlength=n_users + n_items).astype(np.float32)
    scale = np.zeros_like(degree)
    np.power(degree, -0.5, out=scale, where=degree > 0)
    values = scale[rows] * scale[cols]
    index = torch.as_tensor(np.stack([rows, cols]), dtype=torch.long)
    size = (n_users + n_items, n_users + n_items)
    values = torch.as_tensor(values, dtype=torch.float32)
    return torch.sparse_coo_tensor(index, values, size, check_invariants=True).coalesce()


class LightGCN(CFModel):
    """LightGCN: embeddings averaged over ``layers`` rounds of neighbourhood propagation (with biases)."""

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int, adjacency: torch.Tensor):
        super().__init__(n_users, n_items, dim)
        self.layers = layers
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=0.05)
        self.register_buffer("adjacency", adjacency, persistent=False)  # rebuilt from the train graph
        self._cache: torch.Tensor | None = None
        self._item_layers: list[np.ndarray] | None = None

    def propagate(self) -> torch.Tensor:
        if not self.training and self._cache is not None:
            return self._cache
        layer = self.embedding.weight
        total = layer
        for _ in range(self.layers):
            layer = torch.sparse.mm(self.adjacency, layer)
            total = total + layer
        result = total / (self.layers + 1)
        self._cache = None if self.training else result.detach()
        return result

    def train(self, mode: bool = True) -> LightGCN:
        self._cache = self._item_layers = None
        return super().train(mode)

    def user_vectors(self, batch: RowBatch) -> torch.Tensor:
        return self.propagate()[batch.users]

    def item_vectors(self) -> torch.Tensor:
        return self.propagate()[self.n_users:]

    @torch.no_grad()
    def item_layers(self) -> list[np.ndarray]:
        """The items' embeddings after 0, 1, ..., ``layers - 1`` propagation rounds (float64): what a
        user's propagated layers 1..``layers`` are sums of. Kept while the model is in eval mode."""
        if self._item_layers is not None and not self.training:
            return self._item_layers
        layer, layers = self.embedding.weight, []
        for _ in range(self.layers):
            layers.append(layer[self.n_users:].double().numpy())
            layer = torch.sparse.mm(self.adjacency, layer)
        self._item_layers = None if self.training else layers
        return layers

    def item_degrees(self) -> np.ndarray:
        """How many training users each item is linked to in the graph."""
        rows = self.adjacency.indices()[0].numpy()
        return np.bincount(rows, minlength=self.n_users + self.n_items)[self.n_users:].astype(np.float64)


class SASRec(CFModel):
    """Self-attentive sequence encoder: the user is read from a query token appended to the
    history (items with their like/dislike labels), so an empty history still has a vector."""

    def __init__(self, n_users: int, n_items: int, dim: int, history_len: int, layers: int, heads: int,
                 dropout: float):
        super().__init__(n_users, n_items, dim)
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.label_embedding = nn.Embedding(3, dim)  # dislike, like, padding
        self.position_embedding = nn.Embedding(history_len + 1, dim)
        self.query = nn.Parameter(torch.zeros(dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.item_embedding.weight, std=0.05)
        nn.init.normal_(self.query, std=0.05)

    def user_vectors(self, batch: RowBatch) -> torch.Tensor:
        tokens = self.item_embedding(batch.hist_items) + self.label_embedding(batch.hist_labels)
        query = self.query.expand(len(batch), 1, -1)
        sequence = torch.cat([tokens, query], dim=1)
        positions = torch.arange(sequence.shape[1], device=sequence.device)
        sequence = sequence + self.position_embedding(positions)
        padding = torch.cat([batch.hist_items == self.n_items,
                             torch.zeros(len(batch), 1, dtype=torch.bool, device=sequence.device)], dim=1)
        encoded = self.encoder(sequence, src_key_padding_mask=padding)
        return self.norm(encoded[:, -1])

    def item_vectors(self) -> torch.Tensor:
        return self.item_embedding.weight[: self.n_items]
