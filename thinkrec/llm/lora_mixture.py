"""Exact, request-safe mixing of LoRA adapters: per row, delta W = sum_e m_e * s_e * B_e A_e.

PEFT's weighted-adapter merge mixes the A and B matrices separately (cross terms B_i A_j appear)
and mutates one shared model. Here every targeted linear layer keeps the stacked A and B of all
adapters (index 0 the global adapter, 1..K the cluster experts) and adds
``sum_e m[row, e] * s_e * B_e A_e x`` to the frozen layer's output, with the mixture ``m`` given
per row. The mixture travels in a context variable set around each request: threads (and the
contexts copied into generation threads) never see each other's weights, and the model itself
is never modified after loading.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from thinkrec.errors import CheckpointError


@dataclass(frozen=True)
class _Plan:
    """One request's mixture, analysed once: decoding calls every adapted layer for every token."""

    weights: torch.Tensor  # (rows, adapters)
    active: tuple[int, ...]  # adapters some row uses
    unit: bool  # exactly one active adapter, at weight 1 for every row (one expert, or one system)


_MIXTURE: ContextVar[_Plan | None] = ContextVar("thinkrec_lora_mixture", default=None)


@contextmanager
def mixture(weights: torch.Tensor) -> Iterator[None]:
    """Run the enclosed forward passes with per-row adapter weights ``weights`` (rows x adapters)."""
    if weights.dim() != 2:
        raise ValueError(f"mixture weights must be (rows, adapters), got shape {tuple(weights.shape)}")
    weights = weights.float()
    active = tuple(int(e) for e in torch.nonzero(weights.abs().sum(0) > 0).flatten())
    unit = len(active) == 1 and bool((weights[:, active[0]] == 1).all())
    token = _MIXTURE.set(_Plan(weights, active, unit))
    try:
        yield
    finally:
        _MIXTURE.reset(token)


class MixtureLoRALinear(nn.Module):
    """A frozen linear layer plus E stacked LoRA adapters mixed per row."""

    def __init__(self, base: nn.Linear, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: torch.Tensor):
        super().__init__()
        self.base = base
        self.register_buffer("lora_a", lora_a)  # (E, r, in)
        self.register_buffer("lora_b", lora_b * scaling[:, None, None])  # (E, out, r), scale folded in

    @property
    def n_adapters(self) -> int:
        return self.lora_a.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # a compiled layer call (``mixture_as_input``): no context variable there
            return self.base(x) + _mixed_update(x, self.lora_a, self.lora_b, self.traced_weights)
        out = self.base(x)
        plan = _current_plan(x.shape[0], self.n_adapters)
        if not plan.active:
            return out
        if len(plan.active) == 1:  # the common case (one expert, or one system's adapter): two plain matmuls
            e = plan.active[0]
            update = nn.functional.linear(nn.functional.linear(x, self.lora_a[e]), self.lora_b[e])
            return out + (update if plan.unit else update * plan.weights[:, e, None, None].to(x.dtype))
        active = list(plan.active)
        return out + _mixed_update(x, self.lora_a[active], self.lora_b[active], plan.weights[:, active])


def _mixed_update(x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_e weights[row, e] * B_e A_e x for x (rows, positions, in), A (E, r, in), B (E, out, r), weights (rows, E):
    two plain matmuls over the adapters side by side, each row's weights spread over its adapters' r columns."""
    adapters, rank, _ = lora_a.shape
    down = nn.functional.linear(x, lora_a.reshape(adapters * rank, -1))
    down = down * weights.to(x.dtype).repeat_interleave(rank, dim=1)[:, None, :]
    return nn.functional.linear(down, lora_b.permute(1, 0, 2).reshape(lora_b.shape[1], adapters * rank))


def _current_plan(rows: int, adapters: int) -> _Plan:
    """The mixture set around the call, checked against a batch of ``rows`` rows and ``adapters`` adapters."""
    plan = _MIXTURE.get()
    if plan is None:
        raise RuntimeError("no adapter mixture set: wrap the call in `with mixture(weights):`")
    if plan.weights.shape != (rows, adapters):
        raise ValueError(f"mixture of shape {tuple(plan.weights.shape)} for a batch of {rows} rows and "
                         f"{adapters} adapters")
    return plan


@contextmanager
def mixture_as_input(module: nn.Module, rows: int) -> Iterator[None]:
    """Within the block, every ``MixtureLoRALinear`` in ``module`` also holds the mixture set around it (``mixture``,
    for a batch of ``rows`` rows) as the tensor ``traced_weights``, which a compiled call of ``module``
    (``score.compiled_layers``) reads as an input: it cannot read the context variable, and a graph over all
    adapters, unused ones at weight 0, keeps one shape whatever each batch mixes. Compiled calls are for batch
    scoring: the attribute is shared by every thread that calls ``module`` meanwhile."""
    mixing = [layer for layer in module.modules() if isinstance(layer, MixtureLoRALinear)]
    for layer in mixing:
        layer.traced_weights = _current_plan(rows, layer.n_adapters).weights
    try:
        yield
    finally:
        for layer in mixing:
            layer.__dict__.pop("traced_weights", None)


def read_adapter(folder: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """{module name: (A, B)} and the scaling alpha / r of one PEFT adapter folder."""
    config_path, weights_path = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    try:
        settings = json.loads(config_path.read_text(encoding="utf-8"))
        tensors = load_file(weights_path)
    except FileNotFoundError as err:
        raise CheckpointError(f"{err.filename}: missing from the adapter folder") from err
    except Exception as err:  # invalid JSON or a damaged safetensors file
        raise CheckpointError(f"{folder}: cannot read the adapter ({err})") from err
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module = key.split(marker)[0].removeprefix("base_model.model.")
                pairs.setdefault(module, {})[part] = value.float()
    incomplete = [m for m, p in pairs.items() if set(p) != {"lora_A", "lora_B"}]
    if not pairs or incomplete:
        raise CheckpointError(f"{weights_path}: no complete LoRA pairs (incomplete: {incomplete[:3]})")
    return {m: (p["lora_A"], p["lora_B"]) for m, p in pairs.items()}, settings["lora_alpha"] / settings["r"]


def install_mixture(backbone: nn.Module, adapter_folders: list[Path]) -> nn.Module:
    """Replace every adapted linear layer of ``backbone`` (in place) by a ``MixtureLoRALinear``."""
    adapters = [read_adapter(folder) for folder in adapter_folders]
    modules = set(adapters[0][0])
    for folder, (pairs, _) in zip(adapter_folders, adapters):
        if set(pairs) != modules:
            raise CheckpointError(f"{folder}: adapts other layers than {adapter_folders[0]}")
    scaling = torch.tensor([scale for _, scale in adapters])
    for name in sorted(modules):
        parent_name, _, child = name.rpartition(".")
        parent = backbone.get_submodule(parent_name)
        base = getattr(parent, child)
        if not isinstance(base, nn.Linear):
            raise CheckpointError(f"{adapter_folders[0]}: {name} is not a linear layer of this backbone")
        lora_a = torch.stack([pairs[name][0] for pairs, _ in adapters])
        lora_b = torch.stack([pairs[name][1] for pairs, _ in adapters])
        if lora_a.shape[-1] != base.in_features or lora_b.shape[1] != base.out_features:
            raise CheckpointError(f"{adapter_folders[0]}: {name} has shapes that do not fit this backbone")
        setattr(parent, child, MixtureLoRALinear(base, lora_a, lora_b, scaling))
    for param in backbone.parameters():
        param.requires_grad_(False)
    return backbone
