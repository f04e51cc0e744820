"""Mean prompt length in tokens (soft tokens count one each), the published prompt beside the evidence prompt.

    python benchmarks/prompt_length.py [--system thinkrec] [--rows 2000]

Renders the same rows (the fixed test subset, and a random sample of train rows) with
``llm.prompt_evidence`` off (and the shipped era wording) and on, with the backbone's tokenizer,
and prints the mean, median and maximum lengths and the mean growth per row.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.llm.backbone import load_backbone
from thinkrec.llm.systems import prompt_builder, system_spec
from thinkrec.subsets import test_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="thinkrec", choices=["thinkrec", "collm", "tallrec", "zeroshot"])
    parser.add_argument("--rows", type=int, default=2000, help="train rows sampled beside the test subset")
    args = parser.parse_args()
    config = load_config()
    prepared = prepare_dataset(config)
    _, tokenizer = load_backbone(config)
    spec = system_spec(args.system)
    frames = {"test subset": test_subset(prepared, config),
              "train sample": prepared.split("train").sample(n=args.rows, random_state=0)}
    variants = {"published": {"prompt_evidence": False, "era_rule": "halves"},
                "evidence": {"prompt_evidence": True, "era_rule": "thirds"}}
    for label, rows in frames.items():
        lengths = {}
        for variant, settings in variants.items():
            varied = dataclasses.replace(config, llm=dataclasses.replace(config.llm, **settings))
            builder = prompt_builder(spec, prepared, tokenizer, varied)
            lengths[variant] = np.array([len(builder.encode_row(row)) for _, row in rows.iterrows()])
        for variant, values in lengths.items():
            print(f"{args.system} {label} ({len(rows)} rows) {variant}: mean {values.mean():.1f} tokens, "
                  f"median {np.median(values):.0f}, max {values.max()}")
        growth = lengths["evidence"] - lengths["published"]
        print(f"{args.system} {label}: evidence adds {growth.mean():.1f} tokens per row "
              f"({100 * growth.mean() / lengths['published'].mean():.1f} %)")


if __name__ == "__main__":
    main()
