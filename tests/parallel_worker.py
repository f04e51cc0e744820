"""One process of the data-parallel training test (started twice by torch.distributed.run).

    python -m torch.distributed.run --nproc_per_node 2 tests/parallel_worker.py CONFIG.json TRACES.parquet OUT/

Trains ThinkRec on the tiny fixture and writes this rank's final trainable weights and report to OUT/.
"""

from __future__ import annotations

import json
import os
import sys

from safetensors.torch import save_file

from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.llm.systems import new_system, system_spec
from thinkrec.llm.train import train_system, trainable_state
from thinkrec.teacher.dataset import load_trace_dataset


def main(config_file: str, traces_file: str, out: str) -> None:
    config = load_config(config_file)
    prepared = prepare_dataset(config)
    spec = system_spec("thinkrec")
    model, builder = new_system(spec, prepared, config)
    report = train_system(spec, prepared, config, load_trace_dataset(traces_file), start=(model, builder))
    rank = os.environ["RANK"]
    save_file(trainable_state(model), os.path.join(out, f"rank{rank}.safetensors"))
    with open(os.path.join(out, f"rank{rank}.json"), "w", encoding="utf-8") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main(*sys.argv[1:4])
