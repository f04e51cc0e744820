"""Batched P(Yes) scoring of prepared rows by an LLM system: length-sorted batches, resumable, with progress.

Rows are sorted by prompt length and cut into batches of neighbours, so a batch pads to almost
nothing; a model whose LoRA layers mix adapters (expert fusion) scores a batch whose rows carry
different mixtures in one pass. A long run saves its scores chunk by chunk (``thinkrec.chunks``):
killed, or stopped at the end of its time box, the same call continues after the last saved chunk with the
same batches, so it gives the same scores.

A cheaper setting may replace fp32 only where it meets the bar that ``PrecisionCheck`` applies: every
P(Yes) within ``GAP_BAR`` of fp32's and the verdict (P(Yes) >= 0.5) unchanged on at least ``VERDICT_BAR`` of
the rows. The cheaper setting is bfloat16 autocast over the first ``bf16_layers`` decoder layers, the later
ones (where rounding moves P(Yes) most) and the Yes/No head in fp32; or, with ``fp32_answer``, those layers
over every position but the answer, which then runs alone in fp32 on their keys and values (the rounding
that moves P(Yes) most is in the answer's own hidden state, so every layer can then run in bfloat16). It
applies only on a CPU that multiplies bfloat16 natively (emulated bfloat16 is several times slower than
fp32), so a job's settings, and the digest its saved chunks are kept under, are this machine's.
``compiled`` also runs those bfloat16 layers through ``torch.compile`` (inductor fuses their norms,
rotations, activations and casts: the element-wise work that eager mode spends a third of the time on); it
needs a C++ compiler, and compiles once per process.
"""

from __future__ import annotations

import logging
import shutil
import weakref
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from functools import cache, partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thinkrec.chunks import Chunks, run_chunks
from thinkrec.llm.cpu import native_bf16
from thinkrec.llm.fingerprint import job_digest
from thinkrec.llm.lora_mixture import mixture, mixture_as_input
from thinkrec.llm.model import SoftTokenLM, collate
from thinkrec.llm.prompt import EncodedPrompt, PromptBuilder
from thinkrec.timebox import TimeBox

log = logging.getLogger(__name__)
GAP_BAR = 0.01  # largest |P(Yes) - fp32's P(Yes)| a cheaper setting may show on any row
VERDICT_BAR = 0.995  # smallest share of rows whose verdict must stay as fp32's
PROBE_ROWS = 64  # rows an evaluation scores both ways before it trusts a cheaper setting (``bar_checked``)


@dataclass(frozen=True)
class ScoreSettings:
    """How rows are scored: at most ``batch_size`` rows per batch, rows per saved chunk, how many leading decoder
    layers run under bfloat16 autocast (0: all in fp32; at least the backbone's layer count: all of them), and at
    most ``batch_tokens`` token slots per batch (rows x its longest prompt; 0: no cap). A batch of long prompts
    whose activations outgrow the caches scores slower per row than a smaller one (``benchmarks/score_speed.py``).
    ``compiled``: the bfloat16 layers run compiled (``compiled_layers``). ``fp32_margin``: a row whose P(Yes)
    lands within it of 0.5 under bfloat16 is scored again in fp32, so rounding smaller than the margin never
    flips a verdict (``GAP_BAR`` bounds the rounding; 2 % of CoLLM-style's test rows lie that close).
    ``fp32_answer``: the bfloat16 layers (and the fp32 ones after them) run over every position but the answer,
    which then runs alone in fp32 on their keys and values (``SoftTokenLM.p_yes``'s split pass): the rounding
    then reaches P(Yes) only through attention, so every layer can run in bfloat16 within the bar."""

    batch_size: int = 16
    chunk_rows: int = 128
    bf16_layers: int = 0
    batch_tokens: int = 0
    compiled: bool = False
    fp32_margin: float = 0.0
    fp32_answer: bool = False

    @classmethod
    def from_config(cls, llm) -> ScoreSettings:
        """The configured scoring (``config.llm``) on this machine: bfloat16 layers only where native, compiled
        only where a C++ compiler is found."""
        bf16_layers = llm.score_bf16_layers if native_bf16() else 0
        compiled = llm.score_compiled and bf16_layers > 0 and can_compile()
        if llm.score_compiled and bf16_layers and not compiled:
            log.warning("llm.score_compiled: no C++ compiler (g++ or c++) found; scoring runs eagerly")
        return cls(llm.score_batch_size, llm.score_chunk_rows, bf16_layers, llm.score_batch_tokens, compiled,
                   llm.score_fp32_margin if bf16_layers else 0.0, llm.score_fp32_answer and bf16_layers > 0)

    def in_fp32(self) -> ScoreSettings:
        """The same batches and chunks with every layer in fp32: nothing compiled, guarded or split."""
        return replace(self, bf16_layers=0, compiled=False, fp32_margin=0.0, fp32_answer=False)

    def __post_init__(self) -> None:
        if (self.batch_size < 1 or self.chunk_rows < 1 or self.bf16_layers < 0 or self.batch_tokens < 0
                or not 0 <= self.fp32_margin < 0.5):
            raise ValueError(f"score batch size and chunk rows must be at least 1, bfloat16 layers and batch tokens "
                             f"at least 0 and the fp32 margin in [0, 0.5), got {self.batch_size}, {self.chunk_rows}, "
                             f"{self.bf16_layers}, {self.batch_tokens} and {self.fp32_margin}")


@dataclass(frozen=True)
class PrecisionCheck:
    """How far a cheaper setting's P(Yes) lies from fp32's on the same rows."""

    rows: int
    max_gap: float  # largest |P(Yes) - fp32's|
    within_gap: float  # share of rows within GAP_BAR
    same_verdict: float  # share of rows whose verdict (P(Yes) >= 0.5) is fp32's

    @property
    def passes(self) -> bool:
        return self.max_gap <= GAP_BAR and self.same_verdict >= VERDICT_BAR


def compare_precision(reference: np.ndarray, candidate: np.ndarray) -> PrecisionCheck:
    """``candidate``'s P(Yes) against the fp32 ``reference`` on the same rows."""
    reference, candidate = np.asarray(reference, dtype=float), np.asarray(candidate, dtype=float)
    if reference.shape != candidate.shape or reference.ndim != 1 or len(reference) == 0:
        raise ValueError(f"compare P(Yes) of the same rows: got shapes {reference.shape} and {candidate.shape}")
    gap = np.abs(candidate - reference)
    return PrecisionCheck(len(gap), float(gap.max()), float(np.mean(gap <= GAP_BAR)),
                          float(np.mean((candidate >= 0.5) == (reference >= 0.5))))


def bar_checked(score: Callable[[ScoreSettings], np.ndarray], settings: ScoreSettings, fallback_layers: int = 0
                ) -> tuple[ScoreSettings, list[tuple[ScoreSettings, PrecisionCheck]]]:
    """The first of ``settings`` and, where they miss the bar, the same with ``fallback_layers`` bfloat16 layers
    (fewer layers round less; 0 or not fewer: none) that meets the bar against fp32 on the rows ``score`` scores (a
    probe of the system about to be evaluated, since the bar holds for one model, not for all), else fp32; and
    each setting tried with its check (none when ``settings`` are fp32 already)."""
    if settings.bf16_layers == 0:
        return settings, []
    fp32 = score(settings.in_fp32())
    ladder = [settings] + ([replace(settings, bf16_layers=fallback_layers)]
                           if 0 < fallback_layers < settings.bf16_layers else [])
    tried = []
    for candidate in ladder:
        tried.append((candidate, compare_precision(fp32, score(candidate))))
        if tried[-1][1].passes:
            return candidate, tried
    return settings.in_fp32(), tried


def length_order(prompts: list[EncodedPrompt]) -> np.ndarray:
    """Row positions sorted by prompt length (stable): neighbours pad to almost the same width."""
    return np.argsort([len(p) for p in prompts], kind="stable")


def job_batches(prompts: list[EncodedPrompt], settings: ScoreSettings) -> list[list[np.ndarray]]:
    """The batches ``score_job`` scores, by saved chunk: ``length_order`` cut every ``settings.chunk_rows``
    rows, each chunk cut into consecutive batches (``batches_of``; row positions). Under bfloat16 a row's P(Yes)
    moves with the rows it shares a batch with (rounding), so a stored score reproduces to the last digits only
    when its whole batch is scored again (``score_chunk`` of that batch)."""
    order = length_order(prompts)
    return [batches_of(prompts, order[s:s + settings.chunk_rows], settings)
            for s in range(0, len(order), settings.chunk_rows)]


def batches_of(prompts: list[EncodedPrompt], rows: np.ndarray, settings: ScoreSettings) -> list[np.ndarray]:
    """``rows`` (positions in ``prompts``) cut into consecutive batches of at most ``settings.batch_size`` rows
    and ``settings.batch_tokens`` token slots (rows x the batch's longest prompt), one row at least: the same
    cut whether ``rows`` is a chunk or one of its batches."""
    batches, start, widest = [], 0, 0
    for end, row in enumerate(rows):
        widest = max(widest, len(prompts[row]))
        full = end - start == settings.batch_size
        too_wide = settings.batch_tokens and (end - start + 1) * widest > settings.batch_tokens
        if end > start and (full or too_wide):
            batches.append(rows[start:end])
            start, widest = end, len(prompts[row])
    return batches + [rows[start:]] if len(rows) else batches


def padding_share(prompts: list[EncodedPrompt], settings: ScoreSettings) -> float:
    """Share of the token slots that are padding in the batches ``score_job`` forms (``job_batches``)."""
    lengths = np.array([len(p) for p in prompts])
    batches = [lengths[batch] for chunk in job_batches(prompts, settings) for batch in chunk]
    slots = sum(len(b) * b.max() for b in batches)
    return float(1 - lengths.sum() / slots) if slots else 0.0


@dataclass
class Scored:
    """P(Yes) of every row of a scoring job and the seconds spent scoring it, over every run that saved a chunk."""

    p_yes: np.ndarray
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return len(self.p_yes) / self.seconds if self.seconds > 0 else float("nan")


def score_rows(model: SoftTokenLM, builder: PromptBuilder, frame: pd.DataFrame, settings: ScoreSettings | None = None,
               desc: str = "scoring", mixtures: np.ndarray | None = None) -> np.ndarray:
    """P(Yes) for every row of ``frame`` (``score_job`` without saving chunks); ``settings`` default to fp32
    in batches of 16."""
    return score_job(model, builder, frame, settings, desc, mixtures).p_yes


@torch.no_grad()
def score_job(model: SoftTokenLM, builder: PromptBuilder, frame: pd.DataFrame, settings: ScoreSettings | None = None,
              desc: str = "scoring", mixtures: np.ndarray | None = None, resume: Path | None = None,
              timebox: TimeBox | None = None) -> Scored:
    """P(Yes) for every row of ``frame``, in ``length_order`` batches, with a progress bar.

    ``mixtures`` (rows x adapters) gives each row its own adapter weights for a model whose LoRA layers mix
    adapters. ``resume`` names a work folder: the scores are saved under it chunk by chunk, and the same call
    continues after the last saved chunk. ``timebox`` stops scoring before a chunk it does not let start,
    raising ``thinkrec.chunks.Unfinished``."""
    settings = settings or ScoreSettings()
    model.eval()
    prompts = [builder.encode_row(row) for _, row in frame.iterrows()]
    if mixtures is not None and len(mixtures) != len(prompts):
        raise ValueError(f"{len(mixtures)} adapter mixtures for {len(prompts)} rows")
    batches = job_batches(prompts, settings)
    chunks = [np.concatenate(chunk) for chunk in batches]
    store = None if resume is None else \
        Chunks(Path(resume) / job_digest(model, prompts, mixtures, asdict(settings))[:16])
    pad_id = builder.tokenizer.pad_token_id
    done = run_chunks(chunks, lambda rows: pd.DataFrame(
        {"p_yes": score_chunk(model, prompts, rows, mixtures, settings, pad_id)}), store, timebox, desc)
    return Scored(done["p_yes"].to_numpy(), float(done["seconds"].sum()))


def score_chunk(model: SoftTokenLM, prompts: list[EncodedPrompt], rows: np.ndarray, mixtures: np.ndarray | None,
                settings: ScoreSettings, pad_id: int) -> np.ndarray:
    """P(Yes) of ``prompts[rows]``, in the batches ``batches_of`` cuts from them; the rows that land within
    ``settings.fp32_margin`` of 0.5 are then scored again in fp32, together."""
    device = next(model.parameters()).device
    scores = []
    for index in batches_of(prompts, rows, settings):
        batch = collate([prompts[i] for i in index], pad_id).to(device)
        routing = mixture(torch.as_tensor(mixtures[index])) if mixtures is not None else nullcontext()
        cheaper = partial(cheaper_layers, model, settings)
        with routing:
            if settings.fp32_answer:
                p_yes = model.p_yes(batch, prompt_context=cheaper)
            else:
                with cheaper():
                    p_yes = model.p_yes(batch)
        scores.append(p_yes.float().cpu().numpy())
    scores = np.concatenate(scores) if scores else np.zeros(0)
    near = np.flatnonzero(np.abs(scores - 0.5) < settings.fp32_margin)
    if len(near):
        scores[near] = score_chunk(model, prompts, np.asarray(rows)[near], mixtures, settings.in_fp32(), pad_id)
    return scores


@contextmanager
def cheaper_layers(model: SoftTokenLM, settings: ScoreSettings):
    """Within the block, ``model``'s decoder layers run as ``settings`` say: the first ``bf16_layers`` under
    bfloat16 autocast (compiled where ``settings.compiled``), the others in fp32."""
    compiled = compiled_layers(model, settings.bf16_layers) if settings.compiled else nullcontext()
    with compiled, bf16_leading_layers(model, settings.bf16_layers):
        yield


@contextmanager
def bf16_leading_layers(model: SoftTokenLM, layers: int):
    """Within the block, ``model`` runs its first ``layers`` decoder layers under bfloat16 autocast and the
    later ones in fp32 (their ``forward`` wrapped for the block, then restored); 0 changes nothing."""
    if layers <= 0:
        yield
        return
    device_type = next(model.parameters()).device.type
    later = model.backbone.get_decoder().layers[layers:]
    own = [layer.__dict__.get("forward") for layer in later]  # an instance forward (a hook's) is kept
    for layer in later:
        layer.forward = _in_fp32(layer.forward, device_type)
    try:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            yield
    finally:
        for layer, forward in zip(later, own):
            if forward is None:
                del layer.forward  # the class's forward again
            else:
                layer.forward = forward


def can_compile() -> bool:
    """Whether ``torch.compile``'s inductor can build CPU kernels here: it needs a C++ compiler."""
    return any(shutil.which(name) for name in ("g++", "c++"))


@contextmanager
def compiled_layers(model: SoftTokenLM, layers: int):
    """Within the block, the first ``layers`` decoder layers of ``model`` run compiled (``torch.compile`` with
    dynamic shapes, as ``nn.Module.compile`` does, but only here: generation and training stay eager). The
    layers share one compiled call, compiled on its first batch, once per backbone (``_compile_for``); a batch
    with padding and one without (no attention mask) are the two graphs it keeps.
    A key/value cache is filled outside the compiled call (``_call_compiled``)."""
    _compile_for(model)
    chosen = model.backbone.get_decoder().layers[:layers]
    for layer in chosen:
        layer._compiled_call_impl = partial(_call_compiled, layer)
    try:
        yield
    finally:
        for layer in chosen:
            layer._compiled_call_impl = None


_compiled_backbone: weakref.ref | None = None  # the backbone whose layers the compiled call's graphs are for


def _compile_for(model: SoftTokenLM) -> None:
    """Start the compiled call's graphs afresh when another model's layers enter it: dynamo keeps at most
    ``recompile_limit`` (8) graphs of one function per process and runs it eagerly beyond them, so a plan that
    scores one system after another would score the later ones eagerly, under settings that say compiled."""
    global _compiled_backbone
    if _compiled_backbone is None or _compiled_backbone() is not model.backbone:
        torch._dynamo.reset()
        _compiled_backbone = weakref.ref(model.backbone)


class _KeyValueSink:
    """What a compiled layer takes for its cache: it keeps the keys and values the layer hands it and gives
    them back, as an empty cache does. A real cache inside the compiled call would recompile it for every
    layer (its guards name the layer's slot)."""

    keys = values = None

    def update(self, keys: torch.Tensor, values: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys, self.values = keys, values
        return keys, values


def _call_compiled(layer: torch.nn.Module, *args, cache=None, **kwargs):
    """``layer`` called through the shared compiled call, its adapter mixture (if it mixes) handed in as a tensor
    (``mixture_as_input``); with a ``cache`` (a prompt pass, which starts from an empty one), the layer fills a
    ``_KeyValueSink`` and its keys and values are stored in ``cache`` after."""
    hidden_states = args[0] if args else kwargs["hidden_states"]
    with mixture_as_input(layer, hidden_states.shape[0]):
        if cache is None:
            return _compiled_layer_call()(layer, *args, **kwargs)
        slot = layer.self_attn.layer_idx
        if cache.get_seq_length(slot):
            raise ValueError("a compiled layer fills an empty key/value cache only (a prompt pass, not decoding)")
        sink = _KeyValueSink()
        hidden = _compiled_layer_call()(layer, *args, cache=sink, **kwargs)
    cache.update(sink.keys, sink.values, slot)
    return hidden


def _layer_call(layer: torch.nn.Module, *args, **kwargs):
    return layer._call_impl(*args, **kwargs)


@cache
def _compiled_layer_call():
    """``_layer_call`` compiled, one for every layer (they share their graphs: nn modules are inlined)."""
    return torch.compile(_layer_call, dynamic=True)


def _in_fp32(forward, device_type: str):
    """``forward`` with autocast off and its floating-point tensor arguments in fp32."""
    def run(*args, **kwargs):
        with torch.autocast(device_type=device_type, enabled=False):
            return forward(*_fp32(args), **{key: _fp32(value) for key, value in kwargs.items()})
    return run


def _fp32(value):
    if torch.is_tensor(value) and value.is_floating_point():
        return value.float()
    return tuple(_fp32(v) for v in value) if isinstance(value, tuple) else value
