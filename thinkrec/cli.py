"""Command-line entry points: every pipeline stage on its own, and ``all`` to run them in order."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from functools import partial
from pathlib import Path

from thinkrec import registry
from thinkrec.assets import AssetUnavailableError, fetch_all
from thinkrec.config import ConfigError, load_config
from thinkrec.data.atomic import DataFileError
from thinkrec.data.prepared import prepare_dataset
from thinkrec.errors import CheckpointError
from thinkrec.reasoning_scores import REFERENCES
from thinkrec.timebox import TimeBox

# The stages' modules load torch, transformers and peft: `import thinkrec.pipeline` took 65 s against 6 s for
# `import thinkrec.data.prepared` on the shared 2-core machine (`/usr/bin/time python -c "import ..."`), so
# `--help`, `fetch-assets` and `prepare` go without them: ``run_all`` and ``run_stage`` import them.
log = logging.getLogger("thinkrec")
LLM_SYSTEMS = registry.keys(registry.LLM)
TEXT_SYSTEMS = registry.keys(registry.LLM, registry.FUSED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m thinkrec", description=__doc__)
    parser.add_argument("--config", help="JSON file of settings (see thinkrec/config.py)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set cf.models='[\"mf\"]'")
    parser.add_argument("--force", action="store_true", help="redo stages even when their outputs are current")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch-assets", help="download and unpack the backbone, data, MiniLM and WordNet")
    commands.add_parser("prepare", help="split the data, build histories, keywords and profiles")
    commands.add_parser("train-cf", help="train MF, LightGCN and SASRec; write checkpoints/cf/")
    commands.add_parser("traces", help="write the grounded teacher's reasoning traces")
    commands.add_parser("report", help="write RESULTS.md and the analysts' workbench from the stored predictions")
    for command, text in (("train-llm", "train LLM systems"),
                          ("eval-llm", "score the test rows (llm.eval_scope: the subset, or all) with LLM systems")):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("systems", nargs="+", choices=list(LLM_SYSTEMS))
    commands.choices["train-llm"].add_argument(
        "--max-minutes", type=float, help="stop (with the state saved under training/) after this many minutes; "
                                          "the same command continues")
    sub = commands.add_parser("eval-reasoning", help="generate reasoning for the reference rows and score it")
    sub.add_argument("systems", nargs="+", choices=[*TEXT_SYSTEMS, REFERENCES],
                     help=f"systems to evaluate; {REFERENCES!r} (the teacher's traces, with --rescore-only)")
    sub.add_argument("--rescore-only", action="store_true",
                     help="recompute every measure from the stored answers, generating nothing")
    sub.add_argument("--no-rules", action="store_true",
                     help="decode without the no-repeat and minimum-length rules (answers stored apart)")
    sub = commands.add_parser("eval-faithfulness", help="do the films a stored answer cites move its verdict? "
                              "(necessity, control, sufficiency; no new text is generated)")
    sub.add_argument("systems", nargs="*", choices=list(TEXT_SYSTEMS),
                     help="systems to measure (default: every one with stored answers)")
    sub.add_argument("--rows", type=int, default=None, help="measure only the first ROWS stored answers")
    sub.add_argument("--answers", default=None, help="a parquet of answers (user, item, label, generated, p_yes) "
                     "to measure instead of the stored reference answers; needs exactly one system")
    commands.add_parser("clustering", help="measure every candidate clustering cheaply and choose one "
                                           "(kept under training/experts/)")
    sub = commands.add_parser("experts", help="choose the clustering, then train and ship one expert per cluster")
    sub.add_argument("--max-minutes", type=float, help="stop (with the state saved under training/) after this many "
                                                       "minutes; the same command continues")
    sub = commands.add_parser("plan", help="continue the whole training plan (ThinkRec-global, clustering, experts, "
                                           "CoLLM-style, TALLRec-style) from where it stands")
    sub.add_argument("--max-minutes", type=float, help="time box across the stages; the same command continues")
    sub.add_argument("--status", action="store_true", help="only print where each stage stands")
    commands.add_parser("user-map", help="fit the UMAP map of every user on the chosen clustering")
    commands.add_parser("eval-fused", help="score the test rows with fused ThinkRec and hard routing")
    for command in ("eval-llm", "eval-fused", "eval-reasoning"):
        commands.choices[command].add_argument(
            "--max-minutes", type=float, help="stop before the first chunk of rows that would start after this many "
                                              "minutes (saved under training/eval/); the same command continues")
    commands.add_parser("all", help="every stage in order, skipping those whose outputs are current")
    return parser


def run_all(config, force: bool) -> None:
    """The whole pipeline from the raw atomic files to checkpoints/ and RESULTS.md."""
    from thinkrec import expert_stages, pipeline
    from thinkrec.cf.store import train_all_cf
    from thinkrec.llm.systems import system_spec
    from thinkrec.report import write_results

    trained = [name for name in reversed(LLM_SYSTEMS) if system_spec(name).trained]  # ThinkRec first
    prepared = prepare_dataset(config, force=force)
    stages = [("train-cf", lambda: train_all_cf(prepared, config, force=force)),
              ("traces", lambda: pipeline.stage_traces(prepared, config, force))]
    for name in trained:
        stages.append((f"train-llm {name}", partial(pipeline.stage_train_llm, name, prepared, config, force)))
    for name in LLM_SYSTEMS:
        stages.append((f"eval-llm {name}", partial(pipeline.stage_eval_llm, name, prepared, config, force)))
    stages += [("experts", lambda: expert_stages.stage_experts(prepared, config, force)),
               ("user-map", lambda: pipeline.stage_user_map(prepared, config, force)),
               ("eval-fused", lambda: pipeline.stage_eval_fused(prepared, config, force))]
    for name in ("fused", *trained):
        stages.append((f"eval-reasoning {name}", partial(pipeline.stage_reasoning, name, prepared, config, force)))
    for number, (name, stage) in enumerate(stages, start=1):
        started = time.perf_counter()
        log.info("[%d/%d] %s", number, len(stages), name)
        stage()
        log.info("[%d/%d] %s done in %.1f s", number, len(stages), name, time.perf_counter() - started)
    print(write_results(prepared, config))


def run(args: argparse.Namespace) -> None:
    config = load_config(args.config, args.set)
    started = time.perf_counter()
    if args.command == "fetch-assets":
        for name, path in fetch_all(config.paths.cache).items():
            print(f"{name}: {path}")
    elif args.command == "prepare":
        print(json.dumps(prepare_dataset(config, force=args.force).summary, indent=2))
    elif args.command == "all":
        run_all(config, args.force)
    else:
        run_stage(args, config)
    log.info("%s finished in %.1f s", args.command, time.perf_counter() - started)


def run_stage(args: argparse.Namespace, config) -> None:
    """One stage that needs the models (see the note on imports at the top)."""
    from thinkrec import pipeline
    from thinkrec.cf.store import train_all_cf
    from thinkrec.report import write_results

    if args.command == "train-cf":
        metrics = train_all_cf(prepare_dataset(config), config, force=args.force)
        print(json.dumps(metrics, indent=2))
    elif args.command == "report":
        print(write_results(prepare_dataset(config), config))
    elif args.command == "traces":
        pipeline.stage_traces(prepare_dataset(config), config, force=args.force)
    elif args.command == "eval-reasoning" and args.rescore_only:
        print(json.dumps(pipeline.stage_rescore_reasoning(prepare_dataset(config), config, args.systems), indent=2))
    elif args.command == "eval-reasoning" and REFERENCES in args.systems:
        raise ConfigError(f"{REFERENCES!r} are the teacher's stored traces: score them with --rescore-only")
    elif args.command in ("train-llm", "eval-llm", "eval-reasoning"):
        prepared = prepare_dataset(config)
        if args.command == "train-llm":
            stage = partial(pipeline.stage_train_llm, max_minutes=args.max_minutes)
        elif args.command == "eval-llm":  # one time box for every system named
            stage = partial(pipeline.stage_eval_llm, timebox=time_box(args.max_minutes))
        else:
            stage = partial(pipeline.stage_reasoning, timebox=time_box(args.max_minutes), rules=not args.no_rules)
        for name in args.systems:
            print(json.dumps({name: stage(name, prepared, config, force=args.force)}, indent=2))
    elif args.command == "eval-faithfulness":
        print(json.dumps(run_faithfulness(args, config), indent=2))
    elif args.command in ("clustering", "experts", "plan"):
        run_training_stage(args, config)
    elif args.command == "eval-fused":
        metrics = pipeline.stage_eval_fused(prepare_dataset(config), config, args.force, time_box(args.max_minutes))
        print(json.dumps(metrics, indent=2))
    elif args.command == "user-map":
        print(json.dumps(pipeline.stage_user_map(prepare_dataset(config), config, force=args.force), indent=2))


def time_box(max_minutes: float | None) -> TimeBox | None:
    """The time box of an evaluation command (``--max-minutes``), or None without one."""
    if max_minutes is None:
        return None
    if max_minutes <= 0:
        raise ConfigError(f"--max-minutes must be positive, got {max_minutes}")
    return TimeBox(max_minutes)


def run_training_stage(args: argparse.Namespace, config) -> None:
    """The stages of the cluster experts and the whole training plan, time-boxed by ``--max-minutes``."""
    from thinkrec import expert_stages, plan

    if args.command == "plan" and args.status:
        plan.log_status(plan.plan_status(config), "now")
        return
    prepared = prepare_dataset(config)
    if args.command == "clustering":
        print(json.dumps(expert_stages.stage_clustering(prepared, config), indent=2))
    elif args.command == "experts":
        print(json.dumps(expert_stages.stage_experts(prepared, config, args.force, TimeBox(args.max_minutes)),
                         indent=2))
    else:
        plan.continue_plan(prepared, config, args.max_minutes)


def run_faithfulness(args: argparse.Namespace, config) -> dict:
    """``eval-faithfulness``: load every system once, then measure the chosen ones on their stored answers."""
    from thinkrec.explorer import Explorer
    from thinkrec.faithfulness import answers_file, stage_faithfulness

    systems = args.systems or [name for name in TEXT_SYSTEMS if answers_file(config, name).exists()]
    if args.answers and len(systems) != 1:
        raise ConfigError("--answers names one file of answers: give exactly one system with it")
    if not systems:
        raise ConfigError("no system has stored answers yet (run `python -m thinkrec eval-reasoning ...`)")
    if args.rows is not None and args.rows < 1:
        raise ConfigError(f"--rows must be at least 1, got {args.rows}")
    explorer = Explorer.load(config)
    return stage_faithfulness(explorer, config, systems, args.rows, Path(args.answers) if args.answers else None)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (AssetUnavailableError, CheckpointError, ConfigError, DataFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
