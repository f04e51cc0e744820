"""Batch scoring throughput of an LLM system, fp32 against cheaper settings, in one run, with the precision bar.

    python benchmarks/score_speed.py [--config training/plan.json] [--system thinkrec] [--rows 48] [--rounds 2]
                                     [--bf16-layers 20 24] [--batch-sizes 8 4] [--batch-tokens 2048]
                                     [--split-padding] [--compiled] [--chosen-only] [--fp32-margin M]
                                     [--fp32-answer K] [--sample rows|chunks]

Scores the same test rows (``length_order`` batches of 16, as evaluation forms them) several ways,
taking turns per round so a busy machine slows them alike: ``today`` (fp32 with the LM head over
every position, the scoring before the answer-position head), ``fp32`` (the Yes and No rows of the
LM head at the answer position only: what evaluation runs unless ``llm.score_bf16_layers``), ``bf16
autocast`` over every layer, ``bf16 first K layers`` for each K of ``--bf16-layers`` (the later layers
in fp32, ``score.bf16_leading_layers``) and ``bf16 decoder`` (the bfloat16 copy streamed answers run on,
``decoding_backbone``); ``--batch-sizes`` adds, for each size, the last ``--bf16-layers`` setting in
batches of that many rows (a batch of 16 prompts of 500 tokens holds 8,000 positions, whose activations
outgrow the caches: smaller batches may score faster), and ``--batch-tokens`` the same setting in batches of
at most that many token slots (``ScoreSettings.batch_tokens``: rows x the longest prompt, 16 rows at most).
``--compiled`` adds the last of those settings with its bfloat16 layers compiled (``ScoreSettings.compiled``;
compiled before the clock starts, the seconds that took printed apart); ``--chosen-only`` scores only fp32, that
last setting and, with ``--compiled``, its compiled form (a cheap run on enough rows to test the precision bar).
``--fp32-margin M`` scores those two settings' rows that land within M of 0.5 again in fp32
(``ScoreSettings.fp32_margin``). ``--fp32-answer K`` adds the last of those settings with K bfloat16 layers
that run every position but the answer, which runs alone in fp32 on their keys and values
(``ScoreSettings.fp32_answer``).
``--config`` names a plan: its candidate's system is measured (the one its scoring stage will score).
``--system fused`` measures the fused model on the (row, adapter mixture) pairs its evaluation scores for the
sampled rows (fused and hard routing, ``FusedSystem.mode_jobs``), rows under different mixtures in one batch;
it takes ``--chosen-only``.
``--sample chunks`` measures, instead of ``--rows`` random rows (which, sorted among themselves, form wider,
less even batches than evaluation does), about ``--rows`` rows taken as whole saved chunks of the whole-split
job, spread over its length order (``split_chunks``): their rate estimates what a whole-split evaluation runs at.
Prints rows/s and, against fp32, the largest P(Yes) gap, the share of rows within the bar's gap,
the share of unchanged verdicts and whether the setting meets the bar (``score.PrecisionCheck``);
then the padding share of the batches and what a whole-split evaluation costs at the fp32 rate
(``--split-padding`` also tokenises the whole test split for the padding share of its batches).
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.fusion.experts import has_experts, load_experts
from thinkrec.fusion.fused import load_fused
from thinkrec.llm.decoder import decoding_backbone
from thinkrec.llm.model import collate
from thinkrec.llm.score import (
    GAP_BAR,
    ScoreSettings,
    compare_precision,
    job_batches,
    length_order,
    padding_share,
    score_rows,
)
from thinkrec.llm.systems import load_system
from thinkrec.plan import candidate_config
from thinkrec.subsets import valid_subset


@torch.no_grad()
def score_today(model, builder, frame, batch_size: int = 16) -> np.ndarray:
    """The scoring before the answer-position head: every position through the LM head, in fp32."""
    prompts = [builder.encode_row(row) for _, row in frame.iterrows()]
    order = length_order(prompts)
    scores = np.zeros(len(prompts))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = collate([prompts[i] for i in index], builder.tokenizer.pad_token_id)
        scores[index] = torch.sigmoid(model.yes_no_logit(model.logits(batch), batch)).numpy()
    return scores


@contextmanager
def running_on(model, backbone):
    """``model`` with ``backbone`` in place of its own for the enclosed calls."""
    own = model.backbone
    model.backbone = backbone
    try:
        yield
    finally:
        model.backbone = own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a plan whose candidate system is measured (default: the shipped one)")
    parser.add_argument("--system", default="thinkrec", help="an LLM system, or fused (with --chosen-only)")
    parser.add_argument("--bf16-layers", type=int, nargs="*", default=[20, 24],
                        help="leading decoder layers under bfloat16 autocast, one setting each")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[],
                        help="rows per batch, one more setting each (bfloat16 over the last --bf16-layers)")
    parser.add_argument("--batch-tokens", type=int, nargs="*", default=[],
                        help="token slots per batch at most, one more setting each (bfloat16 as --batch-sizes)")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sample", choices=("rows", "chunks"), default="rows",
                        help="rows: --rows test rows at random; chunks: about --rows rows as whole saved chunks of "
                             "the whole-split job, in its batches (split_chunks)")
    parser.add_argument("--split-padding", action="store_true", help="tokenise the whole test split for its padding")
    parser.add_argument("--compiled", action="store_true", help="also the last setting with its bf16 layers compiled")
    parser.add_argument("--chosen-only", action="store_true", help="only fp32, the last setting and --compiled")
    parser.add_argument("--fp32-margin", type=float, default=0.0,
                        help="the last setting's rows within this of 0.5 scored again in fp32")
    parser.add_argument("--fp32-answer", type=int, default=0, metavar="K",
                        help="also the last setting with K bfloat16 layers and the answer position apart in fp32")
    args = parser.parse_args()
    if (args.batch_sizes or args.batch_tokens or args.compiled or args.chosen_only or args.fp32_answer) \
            and not args.bf16_layers:
        parser.error("--batch-sizes, --batch-tokens, --compiled, --chosen-only and --fp32-answer measure the last "
                     "--bf16-layers setting: give at least one")
    if args.system == "fused" and not args.chosen_only:
        parser.error("--system fused measures fp32 and the chosen settings only: give --chosen-only")
    config = candidate_config(load_config(args.config)) if args.config else load_config()
    prepared = prepare_dataset(config)
    test = prepared.split("test")
    rows = test.sample(n=args.rows, random_state=0) if args.sample == "rows" else test
    mixtures = None
    if args.system == "fused":
        fused = load_fused(prepared, config)
        model, builder = fused.model, fused.builder
        jobs, _ = fused.mode_jobs(rows, ("fused", "hard"))
        rows, mixtures = rows.iloc[jobs[:, 0].astype(int)], jobs[:, 1:]
    else:
        model, builder = load_system(args.system, prepared, config)
    parts = np.array_split(np.arange(len(rows)), args.rounds)
    if args.sample == "chunks":
        chunks = split_chunks([builder.encode_row(row) for _, row in rows.iterrows()], args.rows,
                              ScoreSettings.from_config(config.llm))
        picked = np.concatenate(chunks)
        rows, mixtures = rows.iloc[picked], None if mixtures is None else mixtures[picked]
        positions = np.split(np.arange(len(picked)), np.cumsum([len(chunk) for chunk in chunks])[:-1])
        parts = [np.concatenate([positions[i] for i in group])
                 for group in np.array_split(np.arange(len(chunks)), args.rounds) if len(group)]

    def scored(settings: ScoreSettings | None = None):
        """A way to score: P(Yes) of the rows at some positions of ``rows``, each under its own mixture."""
        return lambda part: score_rows(model, builder, rows.iloc[part], settings,
                                       mixtures=None if mixtures is None else mixtures[part])

    decoder = decoding_backbone(model.backbone, "bfloat16")

    def bf16_weights(part):
        with running_on(model, decoder):
            return scored()(part)

    every_layer = len(model.backbone.get_decoder().layers)
    ways = {"today": lambda part: score_today(model, builder, rows.iloc[part]),
            "fp32": scored(),
            "bf16 autocast": scored(ScoreSettings(bf16_layers=every_layer)),
            **{f"bf16 first {k} layers": scored(ScoreSettings(bf16_layers=k)) for k in args.bf16_layers},
            "bf16 decoder": bf16_weights,
            **{f"bf16 first {args.bf16_layers[-1]} layers, batches of {size}":
               scored(ScoreSettings(batch_size=size, bf16_layers=args.bf16_layers[-1])) for size in args.batch_sizes},
            **{f"bf16 first {args.bf16_layers[-1]} layers, at most {tokens} token slots per batch":
               scored(ScoreSettings(bf16_layers=args.bf16_layers[-1], batch_tokens=tokens))
               for tokens in args.batch_tokens}}
    chosen = ScoreSettings(bf16_layers=args.bf16_layers[-1], batch_tokens=(args.batch_tokens or [0])[-1],
                           fp32_margin=args.fp32_margin) if args.bf16_layers else None
    if args.chosen_only:
        ways = {"fp32": ways["fp32"], chosen_name(chosen): scored(chosen)}
    if args.compiled:
        compiled = replace(chosen, compiled=True)
        ways[chosen_name(compiled)] = scored(compiled)
    if args.fp32_answer:
        apart = replace(chosen, compiled=args.compiled, bf16_layers=args.fp32_answer, fp32_answer=True)
        ways[chosen_name(apart)] = scored(apart)
    seconds = dict.fromkeys(ways, 0.0)
    scores = {name: np.zeros(len(rows)) for name in ways}
    for name, way in ways.items():
        started = time.perf_counter()
        way(np.arange(min(16, len(rows))))  # warm-up: the compiled setting compiles here
        print(f"warm-up of {name}: {time.perf_counter() - started:.1f} s")
    for part in parts:
        for name, way in ways.items():
            started = time.perf_counter()
            scores[name][part] = way(part)
            seconds[name] += time.perf_counter() - started
    prompts = [builder.encode_row(row) for _, row in rows.iterrows()]
    sampled = f"{args.rows} test rows, " if args.sample == "rows" and mixtures is not None else ""
    measured = f"{len(rows)} (row, mixture) pairs" if mixtures is not None else f"{len(rows)} test rows"
    print(f"{args.system}: {sampled}{measured} ({sample_name(args.sample)}), batches of 16 "
          f"({padding_share(prompts, ScoreSettings()):.1%} of the token slots padding), {torch.get_num_threads()} "
          f"threads")
    base = "today" if "today" in ways else "fp32"
    print(f"| setting | rows/s | speed-up vs {base} | max gap to fp32 | within {GAP_BAR} | verdicts as fp32 | bar |")
    print("|---|---|---|---|---|---|---|")
    for name in ways:
        check = compare_precision(scores["fp32"], scores[name])
        print(f"| {name} | {len(rows) / seconds[name]:.2f} | {seconds[base] / seconds[name]:.2f}x | "
              f"{check.max_gap:.4f} | {check.within_gap:.1%} | {check.same_verdict:.1%} | "
              f"{'meets' if check.passes else 'fails'} |")
    whole_split_budget(prepared, config, builder, len(rows) / seconds["fp32"], args.split_padding)


def split_chunks(prompts: list, rows: int, settings: ScoreSettings) -> list[np.ndarray]:
    """About ``rows`` rows of the whole split (``prompts``) as whole saved chunks of the job evaluation runs on it
    under ``settings`` (``job_batches``), spread evenly over its length order from a seeded random start, in that
    order: scored together, they form the very batches evaluation forms, so their rate estimates a whole-split
    evaluation's."""
    chunks = [np.concatenate(chunk) for chunk in job_batches(prompts, settings)]
    picks = min(len(chunks), max(1, round(rows / settings.chunk_rows)))
    step = len(chunks) / picks
    start = np.random.default_rng(0).uniform(0, step)
    return [chunks[int(start + step * i)] for i in range(picks)]


def sample_name(sample: str) -> str:
    """How the benchmark's rows were drawn, for its heading."""
    return "drawn at random" if sample == "rows" else "whole chunks of the whole-split job, spread over its lengths"


def chosen_name(settings: ScoreSettings) -> str:
    """A setting's row name: its bfloat16 layers, token cap, whether they run compiled, its fp32 margin and
    whether the answer runs apart in fp32."""
    cap = f", at most {settings.batch_tokens} token slots per batch" if settings.batch_tokens else ""
    margin = f", fp32 within {settings.fp32_margin} of 0.5" if settings.fp32_margin else ""
    answer = ", the answer apart in fp32" if settings.fp32_answer else ""
    return f"bf16 first {settings.bf16_layers} layers{cap}{', compiled' if settings.compiled else ''}{margin}{answer}"


def whole_split_budget(prepared, config, builder, fp32_rate: float, padding: bool) -> None:
    """The minutes a whole-split evaluation takes at ``fp32_rate`` (and, with ``padding``, its batches' padding)."""
    test = prepared.split("test")
    valid = len(valid_subset(prepared, config))
    print(f"whole test split: {len(test)} rows and {valid} valid rows, {(len(test) + valid) / fp32_rate / 60:.0f} min "
          f"per system at {fp32_rate:.2f} rows/s")
    if padding:
        prompts = [builder.encode_row(row) for _, row in test.iterrows()]
        print(f"whole test split in batches of 16: {padding_share(prompts, ScoreSettings()):.2%} of the token slots "
              f"are padding")
    if has_experts(config):
        experts = load_experts(config)
        single = sum(experts.routing(int(user)).decision == "single" for user in test["user"])
        jobs = 2 * len(test) - single
        print(f"eval-fused: fused and hard routing in one pass score {jobs} (row, mixture) pairs instead of "
              f"{2 * len(test)} ({single} rows go to one expert, where both agree): "
              f"{jobs / fp32_rate / 60:.0f} min at that rate")


if __name__ == "__main__":
    main()
