"""Batch scoring throughput of an LLM system, fp32 against bfloat16 autocast, in one run.

    python benchmarks/score_speed.py [--system thinkrec] [--rows 96] [--rounds 3]

Scores the same test rows (batches of similar length, as ``score_rows`` forms them) three ways,
taking turns per round so a busy machine slows them alike: ``today`` (fp32, the LM head over every
position), ``fp32`` (the LM head at the answer position only) and ``bf16`` (that, under bfloat16
autocast). Prints rows/s and, against fp32, the largest P(Yes) difference and the share of rows
whose verdict (P(Yes) >= 0.5) is unchanged.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.llm.model import collate
from thinkrec.llm.score import score_rows
from thinkrec.llm.systems import load_system


@torch.no_grad()
def score_today(model, builder, frame, batch_size: int = 16) -> np.ndarray:
    """The scoring before the answer-position head: every position through the LM head, in fp32."""
    prompts = [builder.encode_row(row) for _, row in frame.iterrows()]
    order = np.argsort([len(p) for p in prompts], kind="stable")
    scores = np.zeros(len(prompts))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = collate([prompts[i] for i in index], builder.tokenizer.pad_token_id)
        scores[index] = torch.sigmoid(model.yes_no_logit(model.logits(batch), batch)).numpy()
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="thinkrec")
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = load_config()
    prepared = prepare_dataset(config)
    model, builder = load_system(args.system, prepared, config)
    rows = prepared.split("test").sample(n=args.rows, random_state=0)
    ways = {"today": lambda part: score_today(model, builder, part),
            "fp32": lambda part: score_rows(model, builder, part, bf16=False),
            "bf16": lambda part: score_rows(model, builder, part, bf16=True)}
    seconds = dict.fromkeys(ways, 0.0)
    scores = {name: np.zeros(len(rows)) for name in ways}
    parts = np.array_split(np.arange(len(rows)), args.rounds)
    ways["fp32"](rows.head(4))  # warm-up
    for part in parts:
        for name, way in ways.items():
            started = time.perf_counter()
            scores[name][part] = way(rows.iloc[part])
            seconds[name] += time.perf_counter() - started
    print(f"{args.system}: {len(rows)} test rows, {torch.get_num_threads()} threads")
    print("| setting | rows/s | speed-up vs today | max |P(Yes) - fp32| | verdicts as fp32 |")
    print("|---|---|---|---|---|")
    for name in ways:
        gap = np.abs(scores[name] - scores["fp32"])
        same = np.mean((scores[name] >= 0.5) == (scores["fp32"] >= 0.5))
        print(f"| {name} | {len(rows) / seconds[name]:.2f} | {seconds['today'] / seconds[name]:.2f}x | "
              f"{gap.max():.4f} | {same:.1%} |")


if __name__ == "__main__":
    main()
