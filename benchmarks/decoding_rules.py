"""Do the decoding rules help a trained system's answers? Each arm writes the first reference rows, then the
measures and their paired differences to the first arm.

    python benchmarks/decoding_rules.py [--config training/plan.json] [--system fused] [--rows 100]
                                        [--arms rules spellings quotes citations free quotes:10 ...]
                                        [--answers-dir DIR]

Arms: ``rules`` (the minimum length and the no-repeat rule, titles included), ``spellings`` (the same, a barred
token also barred with or without its leading space, ``llm.no_repeat_spellings``: no "in theirhistory" where the
answer said "in their history" before), ``quotes`` (the same as ``rules``, the no-repeat rule off inside double
quotes, ``llm.no_repeat_spares_quotes``: a title named again stays whole), ``citations`` (the same as ``quotes``,
and a sentence that cites a history film the answer cited already taken back and rewritten,
``llm.no_repeated_citations``, the plan's setting), ``free`` (none of the rules); ``name:n`` runs an arm with an
n-gram no-repeat rule. Answers are written as the reasoning stage writes them (``LLMBank.answer``: the demo's
stream, in ``llm.decode_dtype``) for the first ``--rows`` reference rows; every measure of
``text_intervals.MEASURES`` is printed with its difference to the first arm, paired over users
(``text_intervals.ratio_difference``). ``--config`` names a plan: its candidate's system is measured;
``--answers-dir`` keeps each arm's answers to read.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.intervals import UserBootstrap
from thinkrec.llm.generate import GenerationSettings
from thinkrec.pipeline import reference_cases, reference_traces
from thinkrec.plan import candidate_config
from thinkrec.reasoning_scores import tallies_of
from thinkrec.serving.bank import load_bank
from thinkrec.text_intervals import MEASURES, judged, ratio_difference

ARMS = ("rules", "spellings", "quotes", "citations", "free")


def arm_settings(config, spec: str) -> GenerationSettings:
    """The settings of an arm given as ``name`` or ``name:n`` (``n``: the no-repeat rule's n-gram instead of
    ``llm.no_repeat_ngram``)."""
    arm, _, ngram = spec.partition(":")
    if arm not in ARMS or (ngram and not (ngram.isdigit() and int(ngram) > 1)):
        raise SystemExit(f"unknown arm {spec!r}: choose from {', '.join(ARMS)}, each perhaps with :n (n > 1)")
    settings = GenerationSettings.from_config(config.llm, rules=arm != "free")
    settings = replace(settings, bar_spellings=arm == "spellings", spare_quotes=arm in ("quotes", "citations"),
                       guard_citations=arm == "citations")
    return replace(settings, no_repeat_ngram=int(ngram)) if ngram and arm != "free" else settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a plan whose candidate system is measured (default: the shipped one)")
    parser.add_argument("--system", default="fused")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--arms", nargs="+", default=["rules", "quotes"],
                        help=f"each one of {', '.join(ARMS)}, perhaps with :n for the no-repeat rule's n-gram")
    parser.add_argument("--answers-dir", help="also store each arm's answers there, as <arm>.parquet, to read")
    args = parser.parse_args()
    config = candidate_config(load_config(args.config)) if args.config else load_config()
    settings = {arm: arm_settings(config, arm) for arm in args.arms}  # a bad arm stops before any model loads
    prepared = prepare_dataset(config)
    references = reference_traces(config).head(args.rows)
    bank = load_bank(prepared, config)
    rows, cases = reference_cases(prepared, references)
    tallies = {}
    for arm in args.arms:
        started = time.perf_counter()
        written = [bank.answer(args.system, case, settings[arm]) for case in cases]
        answers = rows[["user", "item"]].assign(generated=[a.text for a in written],
                                                new_tokens=[a.new_tokens for a in written])
        if args.answers_dir:
            Path(args.answers_dir).mkdir(parents=True, exist_ok=True)
            answers.assign(p_yes=[a.p_yes for a in written]).to_parquet(Path(args.answers_dir) / f"{arm}.parquet")
        tallies[arm] = tallies_of(prepared, config, answers)
        print(f"{arm}: {len(written)} answers in {time.perf_counter() - started:.0f} s", flush=True)
        for text in answers["generated"].head(3):
            print(f"  {text}")
    bootstrap = UserBootstrap(rows["user"].to_numpy(), config.analysis.resamples, config.analysis.seed)
    first = args.arms[0]
    print(f"\n{args.system}, {len(rows)} reference rows; each measure, then its difference to {first} "
          f"[paired 95 % interval over users]\n")
    print("| arm | " + " | ".join(m.label for m in MEASURES) + " |")
    print("|---|" + "---|" * len(MEASURES))
    for arm, tally in tallies.items():
        cells = []
        for measure in MEASURES:
            counts = tally[measure.key]
            share = counts[:, 0].sum() / max(counts[:, 1].sum(), 1)
            if arm == first:
                cells.append(f"{share:.3f}")
                continue
            difference = ratio_difference(bootstrap, counts, tallies[first][measure.key])
            cells.append(f"{share:.3f} ({difference.estimate:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}] "
                         f"{judged(difference, measure)})")
        print(f"| {arm} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
