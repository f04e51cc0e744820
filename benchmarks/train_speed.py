"""Training throughput of the LoRA + projector step, several settings side by side in one run.

    python benchmarks/train_speed.py [--tokens 16000] [--rounds 4]

Every setting trains its own fresh ThinkRec model (same seed, same LoRA and projector start, same
examples: real prompts, half of them with a reasoning trace) through the training loop's own step.
The settings take turns, a block of steps each per round, so a busy machine slows them alike.
Prints real (unpadded) tokens per second, padding share, and the loss curve of each setting
against the fp32 reference with the same batches.

Settings: ``today`` (fp32, batches as drawn, LM head over every position), ``head`` (LM head from
the answer position on), ``head+buckets`` (plus length-bucketed batches), ``head+buckets+bf16``
(plus bfloat16 autocast: the default), ``head+bf16``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.llm.systems import new_system, system_spec
from thinkrec.llm.train import build_examples, loss_weights, make_batches, train_step
from thinkrec.teacher.dataset import load_trace_dataset

SETTINGS = {  # name -> (length buckets, bf16 autocast, LM head over every position)
    "today": (0, False, True),
    "head": (0, False, False),
    "head+buckets": (32, False, False),
    "head+buckets+bf16": (32, True, False),
    "head+bf16": (0, True, False),
}


@dataclass
class Run:
    """One setting's model, optimiser, batches and measurements."""

    name: str
    model: object
    optimiser: torch.optim.Optimizer
    batches: list
    bf16: bool
    full_head: bool
    position: int = 0
    seconds: float = 0.0
    tokens: int = 0
    padded: int = 0
    losses: list = field(default_factory=list)


def train_in_turns(runs: list[Run], rounds: int, pad_id: int, weights: tuple) -> None:
    """Train every run through all of its batches, the runs taking turns a block of steps each per round, so a
    busy machine slows them alike; each run's time, tokens, padded slots and losses are recorded."""
    for _ in range(rounds):
        for run in runs:
            block = -(-len(run.batches) // rounds)
            for chunk in run.batches[run.position:run.position + block]:
                torch.manual_seed(run.position)  # the same dropout masks for every setting at this step
                started = time.perf_counter()
                run.model.train()
                loss, _, _ = train_step(run.model, chunk, pad_id, "cpu", weights, run.bf16, run.full_head)
                run.optimiser.zero_grad()
                loss.backward()
                run.optimiser.step()
                run.seconds += time.perf_counter() - started
                run.tokens += sum(e.tokens for e in chunk)
                run.padded += len(chunk) * max(e.tokens for e in chunk)
                run.losses.append(loss.item())
                run.position += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16_000, help="real tokens of training data per setting")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    config = load_config(overrides=["llm.reasoning_share=0.5"])
    prepared = prepare_dataset(config)
    traces = load_trace_dataset(config.traces_path)
    spec = system_spec("thinkrec")
    weights = loss_weights(config.llm)
    runs = []
    for name in args.settings:
        buckets, bf16, full_head = SETTINGS[name]
        torch.manual_seed(config.llm.seed)
        model, builder = new_system(spec, prepared, config)
        examples = build_examples(spec, builder, prepared, config, traces, budget=args.tokens)
        params = [p for p in model.parameters() if p.requires_grad]
        runs.append(Run(name, model, torch.optim.AdamW(params, lr=config.llm.lr_lora),
                        make_batches(examples, config.llm.batch_size, buckets, config.llm.seed), bf16, full_head))
    pad_id = builder.tokenizer.pad_token_id
    print(f"{len(examples)} examples ({sum(e.reasoning for e in examples)} with a trace), "
          f"{sum(e.tokens for e in examples)} tokens, batch {config.llm.batch_size}, {torch.get_num_threads()} threads")
    train_in_turns(runs, args.rounds, pad_id, weights)
    reference = {(SETTINGS[r.name][0]): r for r in runs if not r.bf16 and not r.full_head}
    base = next((r for r in runs if r.name == "today"), runs[0])
    print(f"\n| setting | tokens/s | speed-up vs {base.name} | padding | mean loss | loss gap to fp32, same batches |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        rate = run.tokens / run.seconds
        twin = reference.get(SETTINGS[run.name][0])
        gap = "" if twin is None or twin is run else \
            f"{statistics.mean(abs(a - b) for a, b in zip(run.losses, twin.losses)):.4f} mean abs " \
            f"({np.corrcoef(run.losses, twin.losses)[0, 1]:.4f} corr)"
        print(f"| {run.name} | {rate:.0f} | {rate / (base.tokens / base.seconds):.2f}x | "
              f"{1 - run.tokens / run.padded:.1%} | {statistics.mean(run.losses):.4f} | {gap} |")


if __name__ == "__main__":
    main()
