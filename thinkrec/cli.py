"""Command-line entry points: fetch assets, prepare data, train the System-1 encoders."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from thinkrec.assets import AssetUnavailableError, fetch_all
from thinkrec.config import ConfigError, load_config
from thinkrec.data.atomic import DataFileError
from thinkrec.errors import CheckpointError

log = logging.getLogger("thinkrec")


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
    commands.add_parser("report", help="write RESULTS.md from the stored predictions")
    for command, text in (("train-llm", "train LLM systems"), ("eval-llm", "score the test subset with LLM systems"),
                          ("eval-reasoning", "generate reasoning for the reference rows and score it")):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("systems", nargs="+", choices=["zeroshot", "tallrec", "collm", "thinkrec"])
    return parser


def run(args: argparse.Namespace) -> None:
    config = load_config(args.config, args.set)
    started = time.perf_counter()
    if args.command == "fetch-assets":
        for name, path in fetch_all(config.paths.cache).items():
            print(f"{name}: {path}")
    elif args.command == "prepare":
        from thinkrec.data.prepared import prepare_dataset

        print(json.dumps(prepare_dataset(config, force=args.force).summary, indent=2))
    elif args.command == "train-cf":
        from thinkrec.cf.store import train_all_cf
        from thinkrec.data.prepared import prepare_dataset

        metrics = train_all_cf(prepare_dataset(config), config, force=args.force)
        print(json.dumps(metrics, indent=2))
    elif args.command == "report":
        from thinkrec.config import PROJECT_ROOT
        from thinkrec.data.prepared import prepare_dataset
        from thinkrec.report import write_report

        print(write_report(prepare_dataset(config), config, PROJECT_ROOT / "RESULTS.md"))
    elif args.command == "traces":
        from thinkrec.data.prepared import prepare_dataset
        from thinkrec.pipeline import stage_traces

        stage_traces(prepare_dataset(config), config, force=args.force)
    elif args.command in ("train-llm", "eval-llm", "eval-reasoning"):
        from thinkrec import pipeline
        from thinkrec.data.prepared import prepare_dataset

        prepared = prepare_dataset(config)
        stage = {"train-llm": pipeline.stage_train_llm, "eval-llm": pipeline.stage_eval_llm,
                 "eval-reasoning": pipeline.stage_reasoning}[args.command]
        for name in args.systems:
            print(json.dumps({name: stage(name, prepared, config, force=args.force)}, indent=2))
    log.info("%s finished in %.1f s", args.command, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (AssetUnavailableError, CheckpointError, ConfigError, DataFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
