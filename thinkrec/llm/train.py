"""Thinking activation: train LoRA + projector on a mix of Yes/No rows and reasoning rows.

Every row uses the one prompt. Yes/No rows learn the answer word (0.9 BCE + 0.1 LM by default),
reasoning rows learn ``"<Yes|No>. <trace><eos>"`` (0.1 BCE + 0.9 LM). In a reasoning system the
Yes/No rows carry no end-of-sequence after the verdict, or the model learns to stop there. The data
is budgeted in tokens; traces repeat in new orders when the budget outlasts them (epochs).

Batches come from windows of rows sorted by length (little padding), and the forward and backward
passes run under bfloat16 autocast with fp32 master weights where the CPU multiplies bfloat16
natively (``uses_bf16_autocast``; ``benchmarks/train_speed.py`` measures both). A run may be
time-boxed: its complete state (trainable weights, optimiser moments, position in the fixed data
order, RNG, tokens and wall time so far) is written atomically under
``training/`` every few minutes and at the deadline, and the next run, on any machine with that
folder, continues where it stopped. The weights with the best valid AUC are what the stage ships.
A system without reasoning can train on exactly the Yes/No rows ThinkRec-global trains on
(``llm.baseline_rows``), so that the baselines get the same Yes/No budget.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from thinkrec.config import BASELINE_ROWS, Config, ConfigError
from thinkrec.data.prepared import PreparedData
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json
from thinkrec.llm.cpu import native_bf16
from thinkrec.llm.model import SoftTokenLM, collate, weighted_loss
from thinkrec.llm.prompt import EncodedPrompt, PromptBuilder
from thinkrec.llm.score import score_rows
from thinkrec.llm.systems import (
    SystemSpec,
    init_folder,
    initial_system,
    llm_dir,
    prompt_builder,
    save_system,
    system_digest,
    system_spec,
)
from thinkrec.metrics import auc_report
from thinkrec.subsets import of_users, valid_subset
from thinkrec.teacher.dataset import check_traces_match

log = logging.getLogger(__name__)


@dataclass
class Scope:
    """What one training run covers: the global model by default, or one cluster's expert."""

    name: str  # log label, and the state folder under <training>/llm/ unless ``state_dir`` is given
    out_dir: Path  # where the trained system is saved
    train_tokens: int  # token budget
    users: np.ndarray | None = None  # train and validate only on these users' rows
    evaluate: bool = True  # score the valid subset to pick the best step (probe experts are judged fused)
    origin: str = ""  # fingerprint of the weights the run starts from (an expert's global adapter), part of the digest
    state_dir: Path | None = None  # where the resumable state lives, if not under <training>/llm/<name>

    def state_folder(self, config: Config) -> Path:
        return self.state_dir or config.paths.training / "llm" / self.name


def system_scope(spec: SystemSpec, config: Config) -> Scope:
    """The default run: the whole system on ``llm.train_tokens``, shipped to its checkpoint folder; ThinkRec-global
    under ``llm.init_from`` trains on ``llm.refine_tokens`` from the system there, whose fingerprint keys the
    state, kept apart from a first run's (``<training>/llm/thinkrec-from-<start folder>``)."""
    start = init_folder(config) if spec.reasoning else None
    if start is None:
        return Scope(spec.name, llm_dir(config, spec.name), config.llm.train_tokens)
    return Scope(spec.name, llm_dir(config, spec.name), config.llm.refine_tokens, origin=system_digest(start),
                 state_dir=config.paths.training / "llm" / f"{spec.name}-from-{start.name}")


@dataclass
class Example:
    """One training row: the prompt, the tokens to learn after it, and the true label."""

    prompt: EncodedPrompt
    target: list[int]
    label: int
    reasoning: bool
    key: tuple | None = None  # the train row's (user, item, timestamp)

    @property
    def tokens(self) -> int:
        return len(self.prompt) + len(self.target)


def target_tokens(tokenizer, text: str, end: bool = True) -> list[int]:
    """The tokens to learn after the prompt, closed by end-of-sequence when ``end``."""
    return tokenizer.encode(text, add_special_tokens=False) + ([tokenizer.eos_token_id] if end else [])


def train_row_index(train: pd.DataFrame) -> dict[tuple, int]:
    """Position of each (user, item, timestamp) in the train split: how a trace finds its row."""
    return {key: n for n, key in enumerate(zip(train["user"], train["item"], train["timestamp"]))}


def split_traces(traces: pd.DataFrame, settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(traces to train on, traces held out for the selection's LM loss): a seeded draw of
    ``heldout_traces`` train traces is held out, then at most ``max_train_traces`` of the rest are
    trained on; reference traces (test rows) never are."""
    train = traces[traces["purpose"] != "reference"]
    heldout = train.sample(n=min(settings.heldout_traces, len(train)), random_state=settings.seed + 1)
    rest = train.drop(index=heldout.index)
    if len(rest) > settings.max_train_traces:
        rest = rest.sample(n=settings.max_train_traces, random_state=settings.seed).sort_index()
    return rest, heldout


def trace_epochs(traces: pd.DataFrame, seed: int) -> Iterator:
    """Every trace once in a seeded order, then again in a new order, for as long as the budget asks."""
    for epoch in itertools.count():
        if traces.empty:
            return
        yield from traces.sample(frac=1.0, random_state=seed + epoch).itertuples(index=False)


def build_examples(spec: SystemSpec, builder: PromptBuilder, prepared: PreparedData, config: Config,
                   traces: pd.DataFrame | None, budget: int | None = None,
                   users: np.ndarray | None = None) -> list[Example]:
    """Shuffled training examples filling the token budget; ``reasoning_share`` of them carry a trace."""
    settings = config.llm
    rng = np.random.default_rng(settings.seed)
    tokenizer = builder.tokenizer
    train = of_users(prepared.split("train"), users)
    reasoning_rows, heldout = pd.DataFrame(), set()
    if spec.reasoning:
        if traces is None or traces.empty:
            raise ValueError(f"{spec.name} learns from reasoning traces, but none were given")
        check_traces_match(traces, builder.config)
        reasoning_rows, held = split_traces(traces, settings)
        reasoning_rows = of_users(reasoning_rows, users)
        heldout = set(zip(held["user"], held["item"], held["timestamp"]))
    row_of = train_row_index(train)
    keys = list(zip(train["user"], train["item"], train["timestamp"]))
    examples: list[Example] = []
    budget = settings.train_tokens if budget is None else budget
    trace_iter = trace_epochs(reasoning_rows, settings.seed)
    for index in rng.permutation(len(train)):
        if budget <= 0:
            break
        if keys[index] in heldout:  # a held-out trace's row is not trained on in any form
            continue
        use_trace = spec.reasoning and rng.random() < settings.reasoning_share
        trace = next(trace_iter, None) if use_trace else None
        if trace is not None:
            key = (trace.user, trace.item, trace.timestamp)
            row = train.iloc[row_of[key]]
            example = Example(builder.encode_row(row), target_tokens(tokenizer, trace.trace), int(row["label"]), True,
                              key)
        else:
            example = yes_no_example(spec, builder, train.iloc[index], keys[index])
        examples.append(example)
        budget -= example.tokens
    return examples


def yes_no_example(spec: SystemSpec, builder: PromptBuilder, row, key: tuple) -> Example:
    """One train row answered Yes or No. A reasoning system must not learn to stop after the verdict: its
    Yes/No rows teach the verdict token alone, and only the traces teach what follows it and where it ends."""
    target = target_tokens(builder.tokenizer, "Yes" if row["label"] else "No", end=not spec.reasoning)
    return Example(builder.encode_row(row), target, int(row["label"]), False, key)


def needs_traces(spec: SystemSpec, config: Config) -> bool:
    """Whether training ``spec`` reads the traces: to learn them, or to find ThinkRec's Yes/No rows."""
    return spec.reasoning or config.llm.baseline_rows == "thinkrec"


def training_examples(spec: SystemSpec, builder: PromptBuilder, prepared: PreparedData, config: Config,
                      traces: pd.DataFrame | None, scope: Scope) -> list[Example]:
    """The run's examples: ``build_examples`` within the scope's budget, or, for a system without reasoning under
    ``llm.baseline_rows`` = "thinkrec", exactly the Yes/No rows ThinkRec-global draws within that budget, in its
    order (each encoded with this system's own prompt), so both see the same Yes/No budget."""
    rule = config.llm.baseline_rows
    if rule not in BASELINE_ROWS:
        raise ConfigError(f"llm.baseline_rows must be one of {', '.join(BASELINE_ROWS)}, not {rule!r}")
    if spec.reasoning or rule == "own":
        return build_examples(spec, builder, prepared, config, traces, scope.train_tokens, scope.users)
    reference = system_spec("thinkrec")
    reference_builder = prompt_builder(reference, prepared, builder.tokenizer, config)
    keys = [e.key for e in build_examples(reference, reference_builder, prepared, config, traces,
                                          scope.train_tokens, scope.users) if not e.reasoning]
    train = of_users(prepared.split("train"), scope.users)
    row_of = train_row_index(train)
    return [yes_no_example(spec, builder, train.iloc[row_of[key]], key) for key in keys]


def make_batches(examples: list[Example], batch_size: int, buckets: int, seed: int) -> list[list[Example]]:
    """Batches in a fixed, seeded order. With ``buckets`` > 1, each window of ``buckets`` batches' worth of
    rows is sorted by length before it is cut into batches, and the batches are then shuffled: rows of a
    batch pad to similar lengths while the order stays random."""
    if buckets <= 1:
        return [examples[s:s + batch_size] for s in range(0, len(examples), batch_size)]
    window = batch_size * buckets
    batches = []
    for start in range(0, len(examples), window):
        chunk = sorted(examples[start:start + window], key=lambda e: e.tokens)
        batches.extend(chunk[s:s + batch_size] for s in range(0, len(chunk), batch_size))
    order = np.random.default_rng(seed).permutation(len(batches))
    return [batches[i] for i in order]


def data_digest(batches: list[list[Example]]) -> str:
    """A fingerprint of the exact training data in its order: a resumed run must see the same batches."""
    digest = hashlib.sha256()
    for chunk in batches:
        for example in chunk:
            digest.update(np.asarray(example.prompt.input_ids + example.target, dtype=np.int64).tobytes())
            digest.update(bytes([example.label, example.reasoning]))
    return digest.hexdigest()


def shard(batches: list[list[Example]], index: int, count: int) -> list[list[Example]]:
    """This process's batches under data parallelism: disjoint, and as many for every process."""
    return batches[index::count][: len(batches) // count] if count > 1 else batches


def train_step(model: torch.nn.Module, chunk: list[Example], pad_id: int, device, weights, bf16: bool,
               full_head: bool = False) -> tuple:
    """The loss of one batch (forward under bfloat16 autocast when ``bf16``), with its BCE and LM parts.
    ``model`` is a ``SoftTokenLM`` or its data-parallel wrapper."""
    batch = collate([e.prompt for e in chunk], pad_id, [e.target for e in chunk]).to(device)
    labels = torch.tensor([e.label for e in chunk], device=device)
    is_reasoning = torch.tensor([e.reasoning for e in chunk], device=device)
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        bce, lm = model(batch, labels, full_head)
    return weighted_loss(bce, lm, is_reasoning, weights), bce, lm


class Progress:
    """Resumable state of one training run under ``training/llm/<scope>/``, written atomically."""

    FILES = ("progress.json", "last.safetensors", "optimiser.safetensors", "best.safetensors")

    def __init__(self, folder: Path, data_digest: str = "", writer: bool = True):
        self.folder = folder
        self.writer = writer  # under data parallelism only the main process writes; every process reads
        self.state = {"step": 0, "tokens": 0, "best_auc": -1.0, "best_step": 0, "evaluations": [], "seconds": 0.0,
                      "data_digest": data_digest}
        if writer:
            self._recover()
        if (folder / "progress.json").exists():
            self.state = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
            stored = self.state.get("data_digest", data_digest)
            if stored != data_digest:
                raise CheckpointError(f"{folder}: this state trained on other data or settings, or from other starting "
                                      f"weights (digest {stored[:12]} here, {data_digest[:12]} now); restore the "
                                      "settings it was made with, or delete the folder to start afresh")
        self._clock = time.perf_counter()  # wall time is added up over every run that saved its work

    def _recover(self) -> None:
        """Finish a swap that a killed run left half done: the old state stays valid until the new one is whole."""
        old = self.folder.with_name(self.folder.name + ".old")
        if old.exists() and not (self.folder / "progress.json").exists():
            shutil.rmtree(self.folder, ignore_errors=True)
            old.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)

    @property
    def seconds(self) -> float | None:
        """Training wall time over all runs so far; None for a state saved before time was kept."""
        return self.state.get("seconds")

    def save(self, model: SoftTokenLM, optimiser: torch.optim.Optimizer, best: dict[str, torch.Tensor] | None) -> None:
        """Write the whole state into a fresh folder, then swap it in: a kill at any point leaves one whole state."""
        now = time.perf_counter()
        if self.seconds is not None:
            self.state["seconds"] = round(self.seconds + now - self._clock, 1)
        self._clock = now
        if not self.writer:
            return
        partial = self.folder.with_name(self.folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        save_file(trainable_state(model), partial / "last.safetensors")
        save_file({**optimiser_state(model, optimiser), "rng::torch": torch.get_rng_state()},
                  partial / "optimiser.safetensors")
        if best is not None:
            save_file(best, partial / "best.safetensors")
        (partial / "progress.json").write_text(json.dumps(self.state, indent=2), encoding="utf-8")
        old = self.folder.with_name(self.folder.name + ".old")
        if self.folder.exists():
            self.folder.rename(old)
        partial.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)

    def restore(self, model: SoftTokenLM, optimiser: torch.optim.Optimizer) -> dict[str, torch.Tensor] | None:
        if self.state["step"] == 0:
            return None
        try:
            model.load_state_dict(load_file(self.folder / "last.safetensors"), strict=False)
            tensors = load_file(self.folder / "optimiser.safetensors")
        except Exception as err:  # missing or damaged files
            raise CheckpointError(f"{self.folder}: cannot resume the training state ({err}); delete the folder "
                                  "to start this run afresh") from err
        if "rng::torch" in tensors:
            torch.set_rng_state(tensors.pop("rng::torch"))
        load_optimiser_state(model, optimiser, tensors)
        log.info("resuming at step %d (%d tokens seen, %.0f s so far)", self.state["step"], self.state["tokens"],
                 self.seconds or 0.0)
        best = self.folder / "best.safetensors"
        return load_file(best) if best.exists() else None


def trainable_state(model: SoftTokenLM) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def optimiser_state(model: SoftTokenLM, optimiser: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam moments keyed by parameter name (safetensors instead of a pickled state dict)."""
    tensors = {}
    for name, param in model.named_parameters():
        for key, value in optimiser.state.get(param, {}).items():
            tensors[f"{name}::{key}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    return tensors


def load_optimiser_state(model: SoftTokenLM, optimiser: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]):
    for name, param in model.named_parameters():
        state = {key.split("::", 1)[1]: value for key, value in tensors.items() if key.split("::", 1)[0] == name}
        if state:
            optimiser.state[param] = {k: v.to(param.device) for k, v in state.items()}


def loss_weights(settings) -> tuple[float, float, float, float]:
    """The paper's loss weights as ``weighted_loss`` takes them: BCE and LM on trace rows, BCE and LM on Yes/No rows."""
    return settings.bce_weight_reasoning, settings.lm_weight_reasoning, settings.bce_weight_rec, settings.lm_weight_rec


def uses_bf16_autocast(settings) -> bool:
    """Whether training runs under bfloat16 autocast: where ``autocast_bf16`` asks for it and this CPU multiplies
    bfloat16 natively (``thinkrec.llm.cpu``); elsewhere emulated bfloat16 is slower than fp32, so training stays
    fp32."""
    if not settings.autocast_bf16:
        return False
    if not native_bf16():
        log.warning("this CPU has no native bfloat16 (%s): training in fp32 instead of bfloat16 autocast",
                    torch.backends.cpu.get_cpu_capability())
        return False
    return True


def make_optimiser(model: SoftTokenLM, settings) -> torch.optim.AdamW:
    """AdamW over the trainable weights: the LoRA layers at ``lr_lora``, the projectors at ``lr_projector``."""
    groups = [{"params": [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n],
               "lr": settings.lr_lora},
              {"params": [p for n, p in model.named_parameters() if p.requires_grad and "projector" in n.split(".")[0]],
               "lr": settings.lr_projector}]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.0)


def train_system(spec: SystemSpec, prepared: PreparedData, config: Config, traces: pd.DataFrame | None = None,
                 backbone=None, tokenizer=None, start=None, scope: Scope | None = None,
                 max_minutes: float | None = None) -> dict:
    """Train one LLM system (resuming if interrupted) and save its best weights to checkpoints.

    ``start`` is an optional ``(model, builder)`` to continue from (the experts start from the
    global adapter); ``scope`` limits the run to some users and sets its budget and folders.
    ``max_minutes`` time-boxes this run: at the deadline the state is saved and the report says
    ``finished: false``; nothing is shipped until the last batch has been trained.
    """
    settings = config.llm
    scope = scope or system_scope(spec, config)
    deadline = None if max_minutes is None else time.perf_counter() + 60 * max_minutes
    torch.manual_seed(settings.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model, builder = start or initial_system(spec, prepared, config, backbone, tokenizer)
    examples = training_examples(spec, builder, prepared, config, traces, scope)
    batches = make_batches(examples, settings.batch_size, settings.length_buckets, settings.seed)
    digest = state_digest(data_digest(batches), scope.origin)
    batches = shard(batches, accelerator.process_index, accelerator.num_processes)
    optimiser = make_optimiser(model, settings)
    progress = Progress(scope.state_folder(config), digest, writer=accelerator.is_main_process)
    best = progress.restore(model, optimiser)
    model, optimiser = accelerator.prepare(model, optimiser)
    core: SoftTokenLM = accelerator.unwrap_model(model)
    weights = loss_weights(settings)
    valid = valid_subset(prepared, config, scope.users)
    heldout = heldout_examples(builder, prepared, traces, settings, scope.users) if spec.reasoning else []
    total_tokens = sum(e.tokens for chunk in batches for e in chunk)
    progress.state["steps"], progress.state["planned_tokens"] = len(batches), total_tokens  # for the plan's status
    log.info("%s: %d examples (%d with reasoning), %d tokens, %d steps per process", scope.name, len(examples),
             sum(e.reasoning for e in examples), total_tokens, len(batches))
    started = last_save = time.perf_counter()
    bf16 = uses_bf16_autocast(settings)
    bar = tqdm(total=total_tokens, initial=progress.state["tokens"], desc=f"train {scope.name}", unit="tok")
    for step in range(progress.state["step"], len(batches)):
        chunk = batches[step]
        model.train()
        loss, bce, _ = train_step(model, chunk, builder.tokenizer.pad_token_id, accelerator.device, weights, bf16)
        optimiser.zero_grad()
        accelerator.backward(loss)
        optimiser.step()
        tokens = sum(e.tokens for e in chunk)
        progress.state["step"], progress.state["tokens"] = step + 1, progress.state["tokens"] + tokens
        bar.update(tokens)
        bar.set_postfix(loss=f"{loss.item():.3f}", bce=f"{bce.mean().item():.3f}")
        crossed = progress.state["tokens"] // settings.eval_every_tokens > \
            (progress.state["tokens"] - tokens) // settings.eval_every_tokens
        if crossed or step + 1 == len(batches):
            if scope.evaluate:
                best = evaluate_and_keep(core, builder, valid, progress, best, heldout, settings, bf16)
            progress.save(core, optimiser, best)
            last_save = time.perf_counter()
        elif time.perf_counter() - last_save >= 60 * settings.save_every_minutes or \
                (deadline is not None and time.perf_counter() >= deadline):
            progress.save(core, optimiser, best)
            last_save = time.perf_counter()
        if deadline is not None and time.perf_counter() >= deadline and step + 1 < len(batches):
            break
    bar.close()
    finished = progress.state["step"] >= len(batches)
    report = {"finished": finished, "train_tokens": progress.state["tokens"], "planned_tokens": total_tokens,
              "train_examples": len(examples), "reasoning_examples": sum(e.reasoning for e in examples),
              "best_valid_auc": progress.state["best_auc"], "best_step": progress.state["best_step"],
              "steps_done": progress.state["step"], "steps": len(batches), "shard_digest": data_digest(batches),
              "data_digest": digest,
              "evaluations": progress.state["evaluations"],
              "seconds_this_run": round(time.perf_counter() - started, 1), "seconds": progress.seconds}
    if not finished:
        log.info("%s: stopped at the deadline after step %d of %d; state in %s", scope.name,
                 progress.state["step"], len(batches), progress.folder)
        return report
    if shipped_digest(scope.out_dir) == digest:
        log.info("%s: this run is shipped in %s already", scope.name, scope.out_dir)
        return report
    if best is not None:
        core.load_state_dict(best, strict=False)
    if accelerator.is_main_process:
        # The builder's settings: those of the run, with the prompt settings of the system it started from.
        earlier = earlier_training(spec, config) if start is None else None  # an expert's start: see its selection
        meta = {"llm_config": json.loads(json.dumps(vars(builder.config))),
                "train": {**report, "earlier": earlier} if earlier else report}
        save_system(core, spec, scope.out_dir, meta)
    return report


def earlier_training(spec: SystemSpec, config: Config) -> dict | None:
    """The training record of the system that ``spec``'s own run grows from (ThinkRec-global's ``llm.init_from``),
    or None for a run from fresh weights."""
    start = init_folder(config) if spec.reasoning else None
    if start is None:
        return None
    return {"init_from": config.llm.init_from, **read_json(start / "config.json")["train"]}


def state_digest(data: str, origin: str) -> str:
    """What a resumable state is keyed by: the data digest, joined by the starting weights' fingerprint when the
    run starts from trained weights (an expert from the global adapter); a run from fresh weights keeps the bare
    data digest."""
    return data if not origin else hashlib.sha256(f"{data}:{origin}".encode()).hexdigest()


def read_state(folder: Path) -> dict | None:
    """The progress record of the state in ``folder`` (tokens, steps, digest ...), or None when there is none."""
    path = folder / "progress.json"
    return read_json(path) if path.exists() else None


def shipped_digest(folder: Path) -> str | None:
    """The state digest recorded by the trained system saved in ``folder`` (None: nothing saved, or saved before
    digests were recorded)."""
    path = folder / "config.json"
    return read_json(path).get("train", {}).get("data_digest") if path.exists() else None


def heldout_examples(builder: PromptBuilder, prepared: PreparedData, traces: pd.DataFrame | None, settings,
                     users: np.ndarray | None) -> list[Example]:
    """The held-out traces as examples, for their LM loss at each evaluation."""
    if traces is None or not settings.heldout_traces:
        return []
    heldout = of_users(split_traces(traces, settings)[1], users)
    train = prepared.split("train")
    row_of = train_row_index(train)
    return [Example(builder.encode_row(train.iloc[row_of[(t.user, t.item, t.timestamp)]]),
                    target_tokens(builder.tokenizer, t.trace), int(t.label), True, (t.user, t.item, t.timestamp))
            for t in heldout.itertuples(index=False)]


def heldout_lm_loss(model: SoftTokenLM, examples: list[Example], pad_id: int, batch_size: int, bf16: bool) -> float:
    """Mean per-token-averaged LM loss of the held-out traces (NaN without any)."""
    losses = heldout_lm_losses(model, examples, pad_id, batch_size, bf16)
    return float(losses.mean()) if len(losses) else float("nan")


@torch.no_grad()
def heldout_lm_losses(model: SoftTokenLM, examples: list[Example], pad_id: int, batch_size: int,
                      bf16: bool) -> np.ndarray:
    """Each held-out trace's per-token-averaged LM loss, in the order of ``examples`` (batched by length)."""
    model.eval()
    losses = np.zeros(len(examples))
    order = sorted(range(len(examples)), key=lambda n: examples[n].tokens)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        chunk = [examples[n] for n in index]
        batch = collate([e.prompt for e in chunk], pad_id, [e.target for e in chunk]).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            _, lm = model.losses(batch, torch.tensor([e.label for e in chunk], device=device))
        losses[index] = lm.float().cpu().numpy()
    return losses


def evaluate_and_keep(model: SoftTokenLM, builder: PromptBuilder, valid: pd.DataFrame, progress: Progress,
                      best: dict[str, torch.Tensor] | None, heldout: list[Example] | None = None,
                      settings=None, bf16: bool = False) -> dict[str, torch.Tensor] | None:
    """Score the valid subset (and the held-out traces' LM loss, under bfloat16 autocast when ``bf16``);
    keep the weights the selection rule prefers.

    The rule: the best valid AUC so far sets a bar ``select_auc_tolerance`` below it; the kept step must
    clear the bar, and among the kept step and this one, the lower held-out LM loss wins (without
    held-out traces: the higher AUC). So a later, better-reasoning step is not lost to a noisy AUC."""
    scores = score_rows(model, builder, valid, desc="valid")
    report = auc_report(valid["user"], valid["label"], scores)
    lm_loss = heldout_lm_loss(model, heldout or [], builder.tokenizer.pad_token_id, 8, bf16)
    step = progress.state["step"]
    progress.state["evaluations"].append({"step": step, "tokens": progress.state["tokens"], **report,
                                          "heldout_lm_loss": lm_loss})
    log.info("step %d, %d tokens: valid AUC %.4f UAUC %.4f, held-out trace LM loss %.4f", step,
             progress.state["tokens"], report["auc"], report["uauc"], lm_loss)
    evaluations = {e["step"]: e for e in progress.state["evaluations"]}
    bar = max(e["auc"] for e in evaluations.values()) - (settings.select_auc_tolerance if heldout else 0.0)
    kept = evaluations.get(progress.state["best_step"]) if best is not None else None
    if report["auc"] >= bar and (kept is None or kept["auc"] < bar or
                                 (heldout and lm_loss < kept["heldout_lm_loss"]) or
                                 (not heldout and report["auc"] > kept["auc"])):
        progress.state["best_auc"], progress.state["best_step"] = report["auc"], step
        return trainable_state(model)
    return best
