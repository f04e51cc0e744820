"""LoRA capacity side by side: which layers and rank ThinkRec-global adapts, chosen on validation (issue 15 item 5).

    python benchmarks/lora_capacity.py [--config training/plan.json] [--tokens 100000] [--valid-rows 943]
                                       [--arms qv-r8 all-r8 all-r16]

Every arm trains a fresh ThinkRec-global from the same seed on the same examples (the configured recipe: with
the plan, half the rows carry a reasoning trace) through the training loop's own step, optimiser, bf16 autocast
and length buckets. Each arm is then measured as the training's model selection measures a step: the LM loss
of the held-out traces and the AUC of the validation rows. The arms run one after another, one model in memory
at a time (about 5 GB), so run it on a quiet machine for tokens/s that compare. Every difference to the first
arm comes with a paired 95 % interval that resamples users. Prints tokens/s, the trainable weights and both
measures per arm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from train_speed import Run, train_in_turns

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.files import read_json, write_json
from thinkrec.intervals import UserBootstrap, system_intervals
from thinkrec.llm.score import score_rows
from thinkrec.llm.systems import new_system, system_spec
from thinkrec.llm.train import (
    build_examples,
    heldout_examples,
    heldout_lm_losses,
    loss_weights,
    make_batches,
    make_optimiser,
    uses_bf16_autocast,
)
from thinkrec.subsets import valid_subset
from thinkrec.teacher.dataset import load_trace_dataset

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]
ARMS = {  # name -> (adapted projections, rank); alpha is twice the rank in every arm, as in the default (8, 16)
    "qv-r8": (["q_proj", "v_proj"], 8),
    "qv-r16": (["q_proj", "v_proj"], 16),
    "attn-r8": (ATTENTION, 8),
    "all-r8": (ATTENTION + MLP, 8),
    "all-r16": (ATTENTION + MLP, 16),
}
RESAMPLES = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="training/plan.json", help="the recipe the arms train with")
    parser.add_argument("--tokens", type=int, default=100_000, help="real tokens of training data per arm")
    parser.add_argument("--valid-rows", type=int, default=None, help="score only this many of the validation rows")
    parser.add_argument("--arms", nargs="+", default=["qv-r8", "all-r8", "all-r16"], choices=list(ARMS))
    args = parser.parse_args()
    base = load_config(args.config)
    prepared = prepare_dataset(base)
    traces = load_trace_dataset(base.traces_path)
    settings = base.llm
    valid = valid_subset(prepared, base)
    valid = valid.sample(n=args.valid_rows, random_state=settings.seed) if args.valid_rows else valid
    table = valid[["user", "label"]].reset_index(drop=True)
    folder = base.paths.work / "lora_capacity"
    folder.mkdir(parents=True, exist_ok=True)
    arms = {}
    for name in args.arms:
        # an arm measured before under the same recipe (a killed run) is kept
        saved = folder / f"{Path(args.config).stem}-{name}-{args.tokens}-{len(valid)}.json"
        if not saved.exists():
            write_json(saved, measure_arm(name, args, prepared, traces, valid))
        arms[name] = read_json(saved)
        print(f"{name}: {arms[name]['tokens']} tokens in {arms[name]['seconds']:.0f} s ({saved})", flush=True)
    heldout_users = np.array(arms[args.arms[0]]["heldout_users"])
    for name, arm in arms.items():
        table[name] = arm["valid_p_yes"]
    losses = {name: np.array(arm["heldout_losses"]) for name, arm in arms.items()}
    names = list(arms)
    aucs = system_intervals(table, names, names[0], RESAMPLES, settings.seed).set_index("key")
    bootstrap = UserBootstrap(heldout_users, RESAMPLES, settings.seed)
    print(f"\nvalid: {len(table)} rows, {table['user'].nunique()} users; held-out traces: {len(heldout_users)}; "
          f"differences to {names[0]}, paired 95 % intervals over users\n")
    print("| arm | trainable weights | tokens/s | valid AUC | AUC - first arm | held-out LM loss "
          "| LM loss - first arm |")
    print("|---|---|---|---|---|---|---|")
    for name, arm in arms.items():
        row = aucs.loc[name]
        gap = losses[name] - losses[names[0]]
        low, high = np.percentile(bootstrap.means(gap), [2.5, 97.5])
        print(f"| {name} | {arm['trainable']:,} | {arm['tokens'] / arm['seconds']:.0f} | {row['auc']:.4f} "
              f"[{row['auc_low']:.4f}, {row['auc_high']:.4f}] | {_difference(row)} | "
              f"{losses[name].mean():.4f} | {gap.mean():+.4f} [{low:+.4f}, {high:+.4f}] |", flush=True)


def measure_arm(name: str, args, prepared, traces, valid: pd.DataFrame) -> dict:
    """Train one arm from scratch, then its P(Yes) on ``valid``, each held-out trace's LM loss, its speed."""
    modules, rank = ARMS[name]
    config = load_config(args.config, [f"llm.target_modules={json.dumps(modules)}", f"llm.lora_r={rank}",
                                       f"llm.lora_alpha={2 * rank}"])
    settings = config.llm
    spec = system_spec("thinkrec")
    torch.manual_seed(settings.seed)
    model, builder = new_system(spec, prepared, config)
    examples = build_examples(spec, builder, prepared, config, traces, budget=args.tokens)
    bf16 = uses_bf16_autocast(settings)
    run = Run(name, model, make_optimiser(model, settings),
              make_batches(examples, settings.batch_size, settings.length_buckets, settings.seed), bf16,
              full_head=False)
    pad_id = builder.tokenizer.pad_token_id
    print(f"{name}: {len(examples)} examples ({sum(e.reasoning for e in examples)} with a trace), "
          f"{sum(e.tokens for e in examples)} tokens, {torch.get_num_threads()} threads", flush=True)
    train_in_turns([run], 1, pad_id, loss_weights(settings))
    heldout = heldout_examples(builder, prepared, traces, settings, None)
    return {"modules": modules, "rank": rank, "tokens": run.tokens, "seconds": run.seconds,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "valid_p_yes": score_rows(model, builder, valid, desc=f"valid {name}").tolist(),
            "heldout_users": [int(e.key[0]) for e in heldout],
            "heldout_losses": heldout_lm_losses(model, heldout, pad_id, 8, bf16).tolist()}


def _difference(row: pd.Series) -> str:
    return f"{row['auc_diff']:+.4f} [{row['auc_diff_low']:+.4f}, {row['auc_diff_high']:+.4f}] ({row['verdict']})"


if __name__ == "__main__":
    main()
