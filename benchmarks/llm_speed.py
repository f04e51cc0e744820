"""Measure the LLM recommender's speed on this machine: scoring throughput and streaming generation.

    python benchmarks/llm_speed.py [--system thinkrec] [--rows 64] [--generations 5]
    python benchmarks/llm_speed.py --fusion [--rows 64]

Prints rows/s for batched P(Yes) scoring of test rows, and for streamed generation the time to
the first token, tokens/s and the time to a full answer, each over several prompts. ``--fusion``
instead scores the same rows with the fused experts, the global adapter alone and hard routing
on one mixing model, back to back: the cost of fusion per row.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.fusion.fused import load_fused
from thinkrec.llm.generate import GenerationSettings, stream_text
from thinkrec.llm.score import score_rows
from thinkrec.llm.systems import load_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="thinkrec")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=120)
    parser.add_argument("--fusion", action="store_true", help="measure the cost of expert fusion instead")
    args = parser.parse_args()
    config = load_config()
    prepared = prepare_dataset(config)
    if args.fusion:
        fusion_cost(prepared, config, args.rows)
        return
    started = time.perf_counter()
    model, builder = load_system(args.system, prepared, config)
    print(f"system {args.system}: loaded in {time.perf_counter() - started:.1f} s, {torch.get_num_threads()} threads")
    rows = prepared.split("test").sample(n=args.rows, random_state=0)
    started = time.perf_counter()
    score_rows(model, builder, rows, desc="benchmark")
    seconds = time.perf_counter() - started
    print(f"scoring: {args.rows} rows in {seconds:.1f} s = {args.rows / seconds:.2f} rows/s (batch 16)")
    first, rates, totals = [], [], []
    settings = GenerationSettings.from_config(config.llm, max_new_tokens=args.max_new_tokens)
    for _, row in rows.head(args.generations).iterrows():
        stream = stream_text(model, builder.tokenizer, builder.encode_row(row), settings)
        started = time.perf_counter()
        first_at = None
        for _ in stream:
            first_at = first_at or time.perf_counter() - started
        total = time.perf_counter() - started
        first.append(first_at)
        totals.append(total)
        rates.append(stream.new_tokens / total)
        print(f"  generation: {stream.new_tokens} tokens, first after {first_at:.2f} s, done after {total:.2f} s")
    if not first:
        return
    print(f"generation: median time to first token {statistics.median(first):.2f} s, "
          f"median {statistics.median(rates):.1f} tokens/s, median full answer {statistics.median(totals):.2f} s")


def fusion_cost(prepared, config, n_rows: int) -> None:
    fused = load_fused(prepared, config)
    rows = prepared.split("test").sample(n=n_rows, random_state=0)
    fused.score(rows.head(16), "global", desc="warm-up")
    for mode in ("global", "fused", "hard", "global"):
        started = time.perf_counter()
        fused.score(rows, mode, desc=mode)
        seconds = time.perf_counter() - started
        print(f"{mode:>6}: {n_rows} rows in {seconds:.1f} s = {n_rows / seconds:.2f} rows/s "
              f"({1000 * seconds / n_rows:.0f} ms per row)")


if __name__ == "__main__":
    main()
