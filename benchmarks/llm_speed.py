"""Measure the LLM recommender's speed on this machine: scoring throughput and streamed generation.

    python benchmarks/llm_speed.py [--config training/plan.json] [--system thinkrec] [--rows 64] [--generations 10]
                                   [--candidate-rows 3]
    python benchmarks/llm_speed.py --fusion [--rows 64]

Prints rows/s for batched P(Yes) scoring of test rows (``--rows 0`` skips it). Then streams the
answers to the first reference rows (those the system's stored reasoning covers) with the
configured greedy decoding, taking turns per row between settings: fp32 (the scoring backbone),
``bfloat16`` (the ``decoding_backbone`` copy: packed weights, eager attention, fp32 LM head, stepped by
``decode_steps.LlamaSteps``), the same copy stepped through its own forward (``ModelSteps``: the decoding before
``LlamaSteps``; whether both write the same tokens is printed) and,
on the first ``--candidate-rows`` rows only, that copy on one thread (what a stream gets while
another one holds the other core) and a plain bfloat16 copy (nothing packed, the fused attention
kernel). For each: the time from the request to the first piece of text, tokens/s and the time to
the full answer. Last, the generated token ids of fp32 and of the configured ``llm.decode_dtype``:
how many answers are identical and, where they differ, the reasoning measures (loops, completion,
claims, conclusion) of both. ``--fusion`` instead scores the same rows with the fused experts, the
global adapter alone and hard routing on one mixing model, back to back.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import pandas as pd
import torch

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.fusion.fused import load_fused
from thinkrec.llm.decoder import Float32Head, decode_dtype_here, decoding_backbone
from thinkrec.llm.generate import GenerationSettings, stream_text
from thinkrec.llm.score import score_rows
from thinkrec.llm.systems import load_system
from thinkrec.plan import candidate_config
from thinkrec.reasoning_scores import answers_path, check_claims, with_history
from thinkrec.serving.bank import trace_phrasebook
from thinkrec.text_metrics import text_measures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a plan whose candidate system is measured (default: the shipped one)")
    parser.add_argument("--system", default="thinkrec")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--candidate-rows", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: llm.max_new_tokens")
    parser.add_argument("--fusion", action="store_true", help="measure the cost of expert fusion instead")
    args = parser.parse_args()
    config = candidate_config(load_config(args.config)) if args.config else load_config()
    prepared = prepare_dataset(config)
    if args.fusion:
        fusion_cost(prepared, config, args.rows)
        return
    started = time.perf_counter()
    model, builder = load_system(args.system, prepared, config)
    threads = torch.get_num_threads()
    print(f"system {args.system}: loaded in {time.perf_counter() - started:.1f} s, {threads} threads")
    if args.rows:
        rows = prepared.split("test").sample(n=args.rows, random_state=0)
        started = time.perf_counter()
        score_rows(model, builder, rows, desc="benchmark")
        seconds = time.perf_counter() - started
        print(f"scoring: {args.rows} rows in {seconds:.1f} s = {args.rows / seconds:.2f} rows/s (batch 16)")
    started = time.perf_counter()
    bf16 = decoding_backbone(model.backbone, "bfloat16")
    print(f"bfloat16 decoder copy made in {time.perf_counter() - started:.1f} s")
    plain = copy.deepcopy(model.backbone).to(torch.bfloat16)  # the copy before packing and eager attention
    head = model.backbone.get_output_embeddings()
    plain.get_base_model().set_output_embeddings(Float32Head(head.weight, head.bias))
    settings = GenerationSettings.from_config(config.llm, args.max_new_tokens)
    stored = pd.read_parquet(answers_path(config, args.system)).head(args.generations)
    cases = stored[["user", "item"]].merge(prepared.split("test"), on=["user", "item"], how="left",
                                           validate="one_to_one")
    book = trace_phrasebook(config, builder.tokenizer)
    ways = {"fp32": (None, threads, book), "bfloat16": (bf16, threads, book),
            "bfloat16, prompt lookup only": (bf16, threads, None),
            "bfloat16, model forward, prompt lookup only": (OwnForward(bf16), threads, None),
            "bfloat16, 1 thread": (bf16, 1, book), "bfloat16, unpacked, fused attention": (plain, threads, book)}
    extra = list(ways)[4:]  # measured on the first --candidate-rows rows only
    runs = {name: [] for name in ways}
    stream_text(model, builder.tokenizer, builder.encode_row(cases.iloc[0]), GenerationSettings(max_new_tokens=2),
                decoder=bf16).__iter__().__next__()  # warm-up
    for number, (_, case) in enumerate(cases.iterrows()):
        for name, (decoder, count, phrasebook) in ways.items():
            if name in extra and number >= args.candidate_rows:
                continue
            torch.set_num_threads(count)
            runs[name].append(timed_stream(model, builder, case, settings, decoder, phrasebook))
            torch.set_num_threads(threads)
    print(f"generation on {len(cases)} reference rows (greedy, at most {settings.max_new_tokens} new tokens):")
    print("| setting | rows | first token (median) | tokens/s (median) | full answer (median) |")
    print("|---|---|---|---|---|")
    for name, measured in runs.items():
        if not measured:  # a candidate setting with --candidate-rows 0
            continue
        print(f"| {name} | {len(measured)} | {statistics.median(r['first'] for r in measured):.2f} s | "
              f"{statistics.median(r['rate'] for r in measured):.1f} | "
              f"{statistics.median(r['total'] for r in measured):.2f} s |")
    before = runs["bfloat16, model forward, prompt lookup only"]
    for name in ("bfloat16", "bfloat16, prompt lookup only"):
        same = sum(a["ids"] == b["ids"] for a, b in zip(runs[name], before))
        print(f"{name} against the model forward with prompt lookup only: {same} of {len(cases)} answers the same "
              f"tokens, {sum(r['passes'] for r in runs[name])} forward passes against "
              f"{sum(r['passes'] for r in before)}")
    if settings.max_new_tokens == config.llm.max_new_tokens:  # as the stored answers were written
        kept = sum(run["text"] == text for run, text in zip(runs["fp32"], stored["generated"]))
        print(f"fp32 writes the stored answer word for word on {kept} of {len(cases)} rows")
    chosen = {"float32": "fp32", "bfloat16": "bfloat16"}[decode_dtype_here(config.llm.decode_dtype)]
    if chosen == "fp32":
        print(f"llm.decode_dtype={config.llm.decode_dtype} decodes in fp32 on this CPU, as the demo streams it")
    else:
        compare_answers(prepared, config, cases, runs["fp32"], runs[chosen], chosen)


class OwnForward(torch.nn.Module):
    """A backbone that ``decode_steps`` steps through its own forward (``ModelSteps``), not ``LlamaSteps``."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, **kwargs):
        return self.backbone(**kwargs)


def timed_stream(model, builder, case, settings, decoder, phrasebook=None) -> dict:
    """One streamed answer: seconds to the first piece and to the end, tokens/s, token ids, text, P(Yes), and
    the decoding passes it took."""
    started = time.perf_counter()
    stream = stream_text(model, builder.tokenizer, builder.encode_row(case), settings, decoder=decoder,
                         phrasebook=phrasebook)
    first, pieces = None, []
    for piece in stream:
        first = first or time.perf_counter() - started
        pieces.append(piece)
    total = time.perf_counter() - started
    return {"first": first, "total": total, "rate": stream.new_tokens / total, "ids": stream.token_ids,
            "text": "".join(pieces), "p_yes": stream.p_yes, "new_tokens": stream.new_tokens,
            "passes": stream.counts.passes}


def compare_answers(prepared, config, cases: pd.DataFrame, fp32: list[dict], chosen: list[dict], name: str) -> None:
    """How many answers keep fp32's token ids exactly; the reasoning measures of both where they differ."""
    same = [a["ids"] == b["ids"] for a, b in zip(fp32, chosen)]
    gaps = [abs(a["p_yes"] - b["p_yes"]) for a, b in zip(fp32, chosen)]
    print(f"{name} against fp32: {sum(same)} of {len(same)} answers have identical token ids; "
          f"P(Yes) gap of the streams max {max(gaps):.4f}, median {statistics.median(gaps):.4f}")
    differ = [i for i, kept in enumerate(same) if not kept]
    if not differ:
        return
    frame = with_history(prepared, cases.iloc[differ][["user", "item"]].reset_index(drop=True))
    for label, runs in (("fp32", fp32), (name, chosen)):
        texts = [runs[i]["text"] for i in differ]
        claims = check_claims(prepared, config, frame.assign(generated=texts), "generated")
        measures = text_measures(texts, claims, [runs[i]["new_tokens"] for i in differ], config.llm.max_new_tokens)
        print(f"  {label} on the {len(differ)} differing rows: {measures}")
    for i in differ:
        common = next((n for n, (a, b) in enumerate(zip(fp32[i]["ids"], chosen[i]["ids"])) if a != b),
                      min(len(fp32[i]["ids"]), len(chosen[i]["ids"])))
        print(f"  row {i}: the same first {common} tokens of {len(fp32[i]['ids'])} (fp32) and "
              f"{len(chosen[i]['ids'])} ({name})")


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
