"""Thinking activation: train LoRA + projector on a mix of Yes/No rows and reasoning rows.

Every row uses the one prompt. Yes/No rows learn the answer word (0.9 BCE + 0.1 LM by default),
reasoning rows learn ``"<Yes|No>. <trace><eos>"`` (0.1 BCE + 0.9 LM). In a reasoning system the
Yes/No rows carry no end-of-sequence after the verdict, or the model learns to stop there. The data is budgeted in
tokens. Progress (trainable weights, optimiser moments, step) is saved as safetensors + JSON at
every evaluation, so an interrupted run resumes where it stopped; the weights with the best
valid AUC are what the stage ships.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.llm.model import SoftTokenLM, collate, weighted_loss
from thinkrec.llm.prompt import EncodedPrompt, PromptBuilder
from thinkrec.llm.score import score_rows
from thinkrec.llm.systems import SystemSpec, llm_dir, new_system, save_system
from thinkrec.metrics import auc, auc_report
from thinkrec.subsets import of_users, valid_subset

log = logging.getLogger(__name__)


@dataclass
class Scope:
    """What one training run covers: the global model by default, or one cluster's expert."""

    name: str  # progress folder under <work>/llm/ and log label
    out_dir: Path  # where the trained system is saved
    train_tokens: int  # token budget
    users: np.ndarray | None = None  # train and validate only on these users' rows
    evaluate: bool = True  # score the valid subset to pick the best step (experts are chosen by the fused AUC)


@dataclass
class Example:
    """One training row: the prompt, the tokens to learn after it, and the true label."""

    prompt: EncodedPrompt
    target: list[int]
    label: int
    reasoning: bool

    @property
    def tokens(self) -> int:
        return len(self.prompt) + len(self.target)


def target_tokens(tokenizer, text: str, end: bool = True) -> list[int]:
    """The tokens to learn after the prompt, closed by end-of-sequence when ``end``."""
    return tokenizer.encode(text, add_special_tokens=False) + ([tokenizer.eos_token_id] if end else [])


def build_examples(spec: SystemSpec, builder: PromptBuilder, prepared: PreparedData, config: Config,
                   traces: pd.DataFrame | None, budget: int | None = None,
                   users: np.ndarray | None = None) -> list[Example]:
    """Shuffled training examples filling the token budget; ``reasoning_share`` of them carry a trace."""
    settings = config.llm
    rng = np.random.default_rng(settings.seed)
    tokenizer = builder.tokenizer
    train = of_users(prepared.split("train"), users)
    reasoning_rows = pd.DataFrame()
    if spec.reasoning:
        if traces is None or traces.empty:
            raise ValueError(f"{spec.name} learns from reasoning traces, but none were given")
        reasoning_rows = of_users(traces[traces["purpose"] != "reference"], users)
        reasoning_rows = reasoning_rows.sample(frac=1.0, random_state=settings.seed)
    row_of = {key: n for n, key in enumerate(zip(train["user"], train["item"], train["timestamp"]))}
    examples: list[Example] = []
    budget = settings.train_tokens if budget is None else budget
    trace_iter = iter(reasoning_rows.itertuples(index=False))
    for index in rng.permutation(len(train)):
        if budget <= 0:
            break
        use_trace = spec.reasoning and rng.random() < settings.reasoning_share
        trace = next(trace_iter, None) if use_trace else None
        if trace is not None:
            row = train.iloc[row_of[(trace.user, trace.item, trace.timestamp)]]
            example = Example(builder.encode_row(row), target_tokens(tokenizer, trace.trace), int(row["label"]), True)
        else:
            row = train.iloc[index]
            answer = "Yes" if row["label"] else "No"
            # A reasoning system must not learn to stop after the verdict: its Yes/No rows teach the
            # verdict token alone, and only the traces teach what follows it and where the text ends.
            target = target_tokens(tokenizer, answer, end=not spec.reasoning)
            example = Example(builder.encode_row(row), target, int(row["label"]), False)
        examples.append(example)
        budget -= example.tokens
    return examples


class Progress:
    """Resumable state of one training stage under ``<work>/llm/<system>/``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.state = {"step": 0, "tokens": 0, "best_auc": -1.0, "best_step": 0, "evaluations": [], "seconds": 0.0}
        if (folder / "progress.json").exists():
            self.state = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
        self._clock = time.perf_counter()  # wall time is added up over every run that saved its work

    @property
    def seconds(self) -> float | None:
        """Training wall time over all runs so far; None for a state saved before time was kept."""
        return self.state.get("seconds")

    def save(self, model: SoftTokenLM, optimiser: torch.optim.Optimizer, best: dict[str, torch.Tensor] | None) -> None:
        now = time.perf_counter()
        if self.seconds is not None:
            self.state["seconds"] = round(self.seconds + now - self._clock, 1)
        self._clock = now
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "progress.json").unlink(missing_ok=True)
        save_file(trainable_state(model), self.folder / "last.safetensors")
        save_file(optimiser_state(model, optimiser), self.folder / "optimiser.safetensors")
        if best is not None:
            save_file(best, self.folder / "best.safetensors")
        (self.folder / "progress.json").write_text(json.dumps(self.state, indent=2), encoding="utf-8")

    def restore(self, model: SoftTokenLM, optimiser: torch.optim.Optimizer) -> dict[str, torch.Tensor] | None:
        if self.state["step"] == 0:
            return None
        model.load_state_dict(load_file(self.folder / "last.safetensors"), strict=False)
        load_optimiser_state(model, optimiser, load_file(self.folder / "optimiser.safetensors"))
        log.info("resuming at step %d (%d tokens seen)", self.state["step"], self.state["tokens"])
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


def train_system(spec: SystemSpec, prepared: PreparedData, config: Config, traces: pd.DataFrame | None = None,
                 backbone=None, tokenizer=None, start=None, scope: Scope | None = None) -> dict:
    """Train one LLM system (resuming if interrupted) and save its best weights to checkpoints.

    ``start`` is an optional ``(model, builder)`` to continue from (the experts start from the
    global adapter); ``scope`` limits the run to some users and sets its budget and folders.
    """
    settings = config.llm
    scope = scope or Scope(spec.name, llm_dir(config, spec.name), settings.train_tokens)
    torch.manual_seed(settings.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model, builder = start or new_system(spec, prepared, config, backbone, tokenizer)
    examples = build_examples(spec, builder, prepared, config, traces, scope.train_tokens, scope.users)
    examples = examples[accelerator.process_index::accelerator.num_processes]
    groups = [{"params": [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n],
               "lr": settings.lr_lora},
              {"params": [p for n, p in model.named_parameters() if p.requires_grad and "projector" in n.split(".")[0]],
               "lr": settings.lr_projector}]
    optimiser = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.0)
    progress = Progress(config.paths.work / "llm" / scope.name)
    best = progress.restore(model, optimiser)
    model, optimiser = accelerator.prepare(model, optimiser)
    core: SoftTokenLM = accelerator.unwrap_model(model)
    weights = (settings.bce_weight_reasoning, settings.lm_weight_reasoning, settings.bce_weight_rec,
               settings.lm_weight_rec)
    valid = valid_subset(prepared, config, scope.users)
    batches = [examples[s:s + settings.batch_size] for s in range(0, len(examples), settings.batch_size)]
    total_tokens = sum(e.tokens for e in examples)
    log.info("%s: %d examples (%d with reasoning), %d tokens, %d steps", scope.name, len(examples),
             sum(e.reasoning for e in examples), total_tokens, len(batches))
    started = time.perf_counter()
    since_eval = 0
    bar = tqdm(total=total_tokens, initial=progress.state["tokens"], desc=f"train {scope.name}", unit="tok")
    for step in range(progress.state["step"], len(batches)):
        chunk = batches[step]
        model.train()
        batch = collate([e.prompt for e in chunk], builder.tokenizer.pad_token_id,
                        [e.target for e in chunk]).to(accelerator.device)
        labels = torch.tensor([e.label for e in chunk], device=accelerator.device)
        is_reasoning = torch.tensor([e.reasoning for e in chunk], device=accelerator.device)
        bce, lm = core.losses(batch, labels)
        loss = weighted_loss(bce, lm, is_reasoning, weights)
        optimiser.zero_grad()
        accelerator.backward(loss)
        optimiser.step()
        tokens = sum(e.tokens for e in chunk)
        progress.state["step"], progress.state["tokens"] = step + 1, progress.state["tokens"] + tokens
        since_eval += tokens
        bar.update(tokens)
        bar.set_postfix(loss=f"{loss.item():.3f}", bce=f"{bce.mean().item():.3f}")
        if since_eval >= settings.eval_every_tokens or step + 1 == len(batches):
            since_eval = 0
            if scope.evaluate:
                best = evaluate_and_keep(core, builder, valid, progress, best)
            progress.save(core, optimiser, best)
    bar.close()
    if best is not None:
        core.load_state_dict(best, strict=False)
    seconds = time.perf_counter() - started
    report = {"train_tokens": progress.state["tokens"], "train_examples": len(examples),
              "reasoning_examples": sum(e.reasoning for e in examples), "best_valid_auc": progress.state["best_auc"],
              "best_step": progress.state["best_step"], "steps": len(batches),
              "evaluations": progress.state["evaluations"],
              "seconds_this_run": round(seconds, 1), "seconds": progress.seconds}
    if accelerator.is_main_process:
        save_system(core, spec, scope.out_dir, {"llm_config": json.loads(json.dumps(vars(settings))), "train": report})
    return report


def evaluate_and_keep(model: SoftTokenLM, builder: PromptBuilder, valid: pd.DataFrame, progress: Progress,
                      best: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    """Score the valid subset; keep the trainable weights if they are the best so far."""
    scores = score_rows(model, builder, valid, desc="valid")
    valid_auc = auc(valid["label"].to_numpy(), scores)
    report = auc_report(valid["user"], valid["label"], scores)
    progress.state["evaluations"].append({"step": progress.state["step"], "tokens": progress.state["tokens"], **report})
    log.info("step %d, %d tokens: valid AUC %.4f UAUC %.4f", progress.state["step"], progress.state["tokens"],
             report["auc"], report["uauc"])
    if valid_auc > progress.state["best_auc"]:
        progress.state["best_auc"], progress.state["best_step"] = valid_auc, progress.state["step"]
        return trainable_state(model)
    return best
