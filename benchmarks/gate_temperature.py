"""Fused ThinkRec's validation AUC at several gate temperatures (the shipped clustering and experts).

    python benchmarks/gate_temperature.py [--taus 0.1 0.3 1.0 2.0]

Scores the validation subset that chose K once per temperature, with every row's adapter mixture
from the gate at that temperature, and prints AUC / UAUC and how the routing rules fire. A low
temperature hands most users to one expert; a high one spreads the weights until the global
adapter answers. About 3 minutes per temperature on 2 cores.
"""

from __future__ import annotations

import argparse
from collections import Counter

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.fusion.fused import load_fused
from thinkrec.llm.score import score_rows
from thinkrec.metrics import auc_report
from thinkrec.subsets import valid_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taus", type=float, nargs="+", default=[0.1, 0.3, 1.0, 2.0])
    args = parser.parse_args()
    config = load_config()
    prepared = prepare_dataset(config)
    fused = load_fused(prepared, config)
    valid = valid_subset(prepared, config)
    users = valid["user"].to_numpy()
    for tau in args.taus:
        mixtures = fused.mixtures(users, "fused", tau)
        scores = score_rows(fused.model, fused.builder, valid, desc=f"tau {tau}", mixtures=mixtures)
        report = auc_report(valid["user"], valid["label"], scores)
        routes = Counter(fused.experts.routing(int(user), tau).decision for user in users)
        print(f"tau {tau:g}: valid AUC {report['auc']:.4f}, UAUC {report['uauc']:.4f} on {report['rows']} rows; "
              f"routing of the rows: {dict(routes)}", flush=True)


if __name__ == "__main__":
    main()
