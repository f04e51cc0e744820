"""Does more LoRA capacity, or a prompt that states the evidence, make ThinkRec-global's reasoning truer?

    python benchmarks/grown_adapter.py [--config training/plan.json] [--start FOLDER] [--tokens 80000]
                                       [--answers 40] [--arms qv-r8 all-r8 qv-r8-lines qv-r8-sides]
                                       [--baseline FOLDER]

Issue 15 items 4 and 5. Every arm starts from a trained ThinkRec-global (``--start``; by default
``llm/thinkrec`` in the plan's candidate tree): its LoRA on q and v and its projector. ``qv-r8`` is the control
and continues the adapter as it is; ``all-r8`` grows it onto every attention and MLP projection, the new LoRA B
matrices zero, so the grown model starts as the same function; ``qv-r8-lines`` continues it on prompts that also
state each history argument in a line, as the teacher words it (``llm.prompt_evidence_lines``), and
``qv-r8-sides`` on those lines headed by the verdict each side argues for (``llm.prompt_evidence_sides``). Each arm
continues for ``--tokens`` of the plan's recipe (the first rows of its data order) with the training loop's own
step and optimiser. Each arm, and the starting point, is then measured on the held-out traces (rows the teacher
wrote but training never saw): their LM loss, and the claims of the answers it writes for the first
``--answers`` of them, judged by the claim checker, by kind (a reaction inside the "Although" counter-argument
apart), how many of the arguments they state point the way their place calls for (``argument_agreement``), and
how many answers state an argument twice (``repeats``). Every difference to the first arm (or to ``--baseline``,
another trained global measured as it is, such as the run the start grew from) comes with a paired 95 %
interval over users (LM loss) or over answers (claim accuracy, argument agreement, repetition). One model in
memory at a time; each measured arm is cached under ``work/grown_adapter/``, keyed by the starting system's
fingerprint. ``--arms`` with no arm measures the trained global model alone.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from train_speed import Run, train_in_turns

from thinkrec.claims import FALSE, TRUE, Claim, ClaimChecker
from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.files import read_json, write_json
from thinkrec.intervals import UserBootstrap
from thinkrec.llm.backbone import load_backbone
from thinkrec.llm.generate import GenerationSettings, stream_text
from thinkrec.llm.systems import llm_dir, load_projected_model, prompt_builder, system_digest, system_spec
from thinkrec.llm.train import (
    build_examples,
    heldout_examples,
    heldout_lm_losses,
    loss_weights,
    make_batches,
    make_optimiser,
    split_traces,
    uses_bf16_autocast,
)
from thinkrec.plan import candidate_config
from thinkrec.teacher.dataset import load_trace_dataset
from thinkrec.text_metrics import in_its_place, opening_yes, placed_arguments, repeats

QV = ["q_proj", "v_proj"]
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LINES = {"prompt_evidence_lines": True}
ARMS = {  # name -> (adapted projections, the prompt settings it trains and answers under; none: the recorded ones)
    "qv-r8": (QV, {}), "all-r8": (ALL, {}), "qv-r8-lines": (QV, LINES),
    "qv-r8-sides": (QV, LINES | {"prompt_evidence_sides": True})}
START = "start"  # the trained global model as it is, measured once
BASELINE = "baseline"  # another trained global model as it is (``--baseline``), the one differences are taken to
RESAMPLES = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="training/plan.json", help="the plan whose candidate ThinkRec-global grows")
    parser.add_argument("--start", type=Path, help="a trained ThinkRec-global folder to start from "
                        "(default: the plan candidate's, llm/thinkrec)")
    parser.add_argument("--tokens", type=int, default=80_000, help="tokens of further training per arm")
    parser.add_argument("--answers", type=int, default=40, help="held-out rows each arm answers (claims checked)")
    parser.add_argument("--arms", nargs="*", default=["qv-r8", "all-r8"], choices=list(ARMS))
    parser.add_argument("--baseline", type=Path, help="another trained ThinkRec-global folder, measured as it is: "
                        "differences are then to it")
    args = parser.parse_args()
    config = candidate_config(load_config(args.config))
    prepared = prepare_dataset(config)
    traces = load_trace_dataset(config.traces_path)
    folder = config.paths.work / "grown_adapter"
    folder.mkdir(parents=True, exist_ok=True)
    args.start = args.start or llm_dir(config, "thinkrec")
    arms = [(name, args.start) for name in [START, *args.arms]]
    if args.baseline:
        arms.insert(0, (BASELINE, args.baseline))
    results = {}
    for name, start in arms:
        measured = START if name == BASELINE else name
        saved = folder / f"{Path(args.config).stem}-{system_digest(start)[:12]}-{measured}-" \
                         f"{0 if measured == START else args.tokens}-{args.answers}.json"
        if not saved.exists():
            write_json(saved, measure_arm(measured, argparse.Namespace(**{**vars(args), "start": start}), config,
                                          prepared, traces))
        results[name] = read_json(saved)
        print(f"{name}: measured ({saved})", flush=True)
    claims = {name: checked_claims(arm["answers"], prepared, config, traces) for name, arm in results.items()}
    report(results, claims, BASELINE if args.baseline else args.arms[0] if args.arms else START)


def grown_model(folder: Path, modules: list[str], prompt: dict, config, prepared):
    """ThinkRec-global's trained LoRA and projector in a model whose LoRA covers ``modules`` (new B zero), its
    prompt the recorded one or, with ``prompt`` settings, the configured one with those."""
    settings = config.llm
    backbone, tokenizer = load_backbone(config)
    peft = get_peft_model(backbone, LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                                               lora_dropout=settings.lora_dropout, target_modules=modules,
                                               task_type="CAUSAL_LM"))
    loaded = set_peft_model_state_dict(peft, load_file(folder / "adapter" / "adapter_model.safetensors"))
    if loaded.unexpected_keys:
        raise ValueError(f"the global adapter has weights the grown one lacks: {loaded.unexpected_keys[:3]}")
    model = load_projected_model(system_spec("thinkrec"), peft, tokenizer, config, folder)
    for parameter in model.projector.parameters():
        parameter.requires_grad_(True)
    if prompt:
        config = replace(config, llm=replace(config.llm, **prompt))
    return model, prompt_builder(system_spec("thinkrec"), prepared, tokenizer, config, None if prompt else folder)


def measure_arm(name: str, args, config, prepared, traces) -> dict:
    """Continue one arm (none for ``START``), then its held-out LM losses and its answers' claims."""
    settings = config.llm
    torch.manual_seed(settings.seed)
    model, builder = grown_model(args.start, *ARMS.get(name, ARMS["qv-r8"]), config, prepared)
    pad_id = builder.tokenizer.pad_token_id
    bf16 = uses_bf16_autocast(settings)
    seconds = tokens = 0
    if name != START:
        examples = build_examples(system_spec("thinkrec"), builder, prepared, config, traces, budget=args.tokens)
        run = Run(name, model, make_optimiser(model, settings),
                  make_batches(examples, settings.batch_size, settings.length_buckets, settings.seed), bf16,
                  full_head=False)
        print(f"{name}: {len(examples)} examples ({sum(e.reasoning for e in examples)} with a trace), "
              f"{sum(e.tokens for e in examples)} tokens, "
              f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable weights", flush=True)
        train_in_turns([run], 1, pad_id, loss_weights(settings))
        seconds, tokens = run.seconds, run.tokens
    model.eval()
    heldout = heldout_examples(builder, prepared, traces, settings, None)
    losses = heldout_lm_losses(model, heldout, pad_id, 8, bf16)
    return {"tokens": tokens, "seconds": seconds, "heldout_users": [int(e.key[0]) for e in heldout],
            "heldout_losses": losses.tolist(), "answers": held_out_answers(model, builder, prepared, config,
                                                                            traces, args.answers)}


def held_out_rows(prepared, config, traces, count: int) -> list[tuple]:
    """The first ``count`` held-out trace rows: (user, item, the train row with the history its prompt shows)."""
    rows = split_traces(traces, config.llm)[1].head(count)
    train = prepared.split("train").set_index(["user", "item", "timestamp"])
    return [(int(r.user), int(r.item), train.loc[(r.user, r.item, r.timestamp)]) for r in rows.itertuples(index=False)]


def held_out_answers(model, builder, prepared, config, traces, count: int) -> list[dict]:
    """The first ``count`` held-out trace rows answered (greedy, fp32, without the decoding rules)."""
    rows = held_out_rows(prepared, config, traces, count)
    prompts = [builder.encode(user, item, row["hist_items"], row["hist_labels"]) for user, item, row in rows]
    settings = replace(GenerationSettings.from_config(config.llm), min_new_tokens=0, no_repeat_ngram=0)
    texts = ["".join(stream_text(model, builder.tokenizer, prompt, settings)) for prompt in prompts]
    return [{"user": user, "item": item, "text": text} for (user, item, _), text in zip(rows, texts)]


def checked_claims(answers: list[dict], prepared, config, traces) -> list[list[Claim]]:
    """Each answer's claims, judged now (so a cached arm is measured by today's checker)."""
    checker = ClaimChecker(prepared, config)
    claims = []
    for answer, (user, item, row) in zip(answers, held_out_rows(prepared, config, traces, len(answers))):
        if (answer["user"], answer["item"]) != (user, item):
            raise ValueError(f"a cached answer is for ({answer['user']}, {answer['item']}), the held-out row for "
                             f"({user}, {item}): delete work/grown_adapter/ and measure again")
        claims.append(checker.check(answer["text"], user, item, row["hist_items"], row["hist_labels"]))
    return claims


def place_kind(claim: Claim) -> str:
    """A claim's kind, a reaction inside the counter-argument ("Although ...") told apart: a small model may word
    the reaction the sentence's place calls for instead of the user's."""
    return "counter reaction" if claim.kind == "reaction" and claim.counter else claim.kind


def claim_tally(claims_per_answer: list[list[Claim]]) -> dict[str, np.ndarray]:
    """Per answer, (true, false) counts of checked claims: all kinds, and each kind."""
    kinds = sorted({place_kind(c) for claims in claims_per_answer for c in claims})
    tally = {}
    for kind in ["all", *kinds]:
        tally[kind] = np.array([[sum(1 for c in claims if c.verdict == verdict and kind in ("all", place_kind(c)))
                                 for verdict in (TRUE, FALSE)] for claims in claims_per_answer])
    return tally


def argument_tally(answers: list[dict], claims_per_answer: list[list[Claim]]) -> np.ndarray:
    """Per answer, (in their place, not) of the arguments it states (``text_metrics.argument_agreement``)."""
    counts = [placed_arguments(answer["text"], claims) for answer, claims in zip(answers, claims_per_answer)]
    return np.array([[placed, judged - placed] for placed, judged in counts])


def sound_reactions(answers: list[dict], claims_per_answer: list[list[Claim]]) -> tuple[int, int]:
    """(true and in their place, checked) reaction claims over all answers."""
    sound = checked = 0
    for answer, claims in zip(answers, claims_per_answer):
        yes = opening_yes(answer["text"])
        for claim in claims:
            if claim.kind == "reaction" and claim.verdict in (TRUE, FALSE):
                checked += 1
                sound += claim.verdict == TRUE and yes is not None and in_its_place(claim, yes)
    return sound, checked


def repetition_tally(answers: list[dict], claims_per_answer: list[list[Claim]]) -> np.ndarray:
    """Per answer, (states an argument twice, does not) (``text_metrics.repeats``)."""
    return np.array([[int(r), 1 - int(r)] for r in (repeats(a["text"], c) for a, c in zip(answers, claims_per_answer))])


def share_cells(counts: np.ndarray, base: np.ndarray, draws: np.ndarray) -> str:
    """"share (judged) | gap to base [95 % interval]" for per-answer (hits, misses), resampling answers paired."""
    resampled, base_resampled = counts[draws].sum(axis=1), base[draws].sum(axis=1)
    gap = resampled[:, 0] / resampled.sum(axis=1) - base_resampled[:, 0] / base_resampled.sum(axis=1)
    return (f"{counts[:, 0].sum() / max(counts.sum(), 1):.3f} ({counts.sum()}) | {gap.mean():+.3f} "
            f"[{np.percentile(gap, 2.5):+.3f}, {np.percentile(gap, 97.5):+.3f}]")


def report(results: dict, claims: dict[str, list[list[Claim]]], first: str) -> None:
    users = np.array(results[START]["heldout_users"])
    bootstrap = UserBootstrap(users, RESAMPLES, 0)
    rng = np.random.default_rng(0)
    n_answers = len(results[START]["answers"])
    draws = rng.integers(0, n_answers, size=(RESAMPLES, n_answers))
    print(f"\nheld-out traces: {len(users)} ({len(set(users))} users); answers: {n_answers} per arm; "
          f"differences to {first}, paired 95 % intervals\n")
    print("| arm | tokens | tokens/s | held-out LM loss | − first | claim accuracy (all) | − first | "
          "argument agreement (reactions) | − first | repetition (answers) | − first | by kind |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    base_losses = np.array(results[first]["heldout_losses"])
    base_claims = claim_tally(claims[first])["all"]
    base_arguments = argument_tally(results[first]["answers"], claims[first])
    base_repetitions = repetition_tally(results[first]["answers"], claims[first])
    for name, arm in results.items():
        losses = np.array(arm["heldout_losses"])
        gap = losses - base_losses
        low, high = np.percentile(bootstrap.means(gap), [2.5, 97.5])
        tally = claim_tally(claims[name])
        arguments = argument_tally(arm["answers"], claims[name])
        kinds = ", ".join(f"{kind} {c[:, 0].sum()}/{c.sum()}" for kind, c in tally.items() if kind != "all")
        speed = f"{arm['tokens'] / arm['seconds']:.0f}" if arm["seconds"] else "-"
        print(f"| {name} | {arm['tokens']:,} | {speed} | {losses.mean():.4f} | {gap.mean():+.4f} "
              f"[{low:+.4f}, {high:+.4f}] | {share_cells(tally['all'], base_claims, draws)} "
              f"| {share_cells(arguments, base_arguments, draws)} "
              f"| {share_cells(repetition_tally(arm['answers'], claims[name]), base_repetitions, draws)} | {kinds} |",
              flush=True)
    for name, arm in results.items():
        sound, checked = sound_reactions(arm["answers"], claims[name])
        print(f"\n{name}: {sound} of {checked} checked reactions true and in their place; "
              f"first answer: {arm['answers'][0]['text']}")


if __name__ == "__main__":
    main()
