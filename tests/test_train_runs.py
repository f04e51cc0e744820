"""Training that spans runs and processes: time-boxed runs resume exactly, data parallelism shards the data."""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from thinkrec.config import PROJECT_ROOT
from thinkrec.errors import CheckpointError
from thinkrec.llm.prompt import EncodedPrompt
from thinkrec.llm.systems import new_system, system_spec
from thinkrec.llm.train import (
    Example,
    Scope,
    build_examples,
    data_digest,
    heldout_examples,
    heldout_lm_losses,
    make_batches,
    shard,
    train_system,
    trainable_state,
    uses_bf16_autocast,
)


@pytest.fixture
def tiny_training(tiny_pipeline_config, tiny_prepared):
    from thinkrec import pipeline

    config = tiny_pipeline_config
    config.llm.train_tokens, config.llm.eval_every_tokens, config.llm.batch_size = 2500, 1200, 1
    traces = pipeline.stage_traces(tiny_prepared, config)
    return config, traces


def shipped_weights(config) -> dict[str, torch.Tensor]:
    folder = config.paths.checkpoints / "llm" / "thinkrec"
    adapter = load_file(folder / "adapter" / "adapter_model.safetensors")
    return {**adapter, **load_file(folder / "projector.safetensors")}


@pytest.mark.parametrize(("asked", "native", "used"), [(True, True, True), (True, False, False), (False, True, False)])
def test_bf16_autocast_is_used_only_where_asked_and_the_cpu_has_native_bf16(monkeypatch, caplog, asked, native, used):
    monkeypatch.setattr("thinkrec.llm.train.native_bf16", lambda: native)
    settings = type("Settings", (), {"autocast_bf16": asked})()
    with caplog.at_level("WARNING", logger="thinkrec.llm.train"):
        assert uses_bf16_autocast(settings) is used
    assert ("no native bfloat16" in caplog.text) == (asked and not native)  # the fallback is said, not silent


def test_length_buckets_keep_every_example_once_and_cut_padding():
    lengths = np.random.default_rng(0).integers(50, 500, size=64)
    examples = [Example(EncodedPrompt(list(range(n)), [], [], ""), [1], 0, False) for n in lengths]
    plain, bucketed = make_batches(examples, 4, 0, 0), make_batches(examples, 4, 8, 0)
    assert sorted(id(e) for b in bucketed for e in b) == sorted(id(e) for e in examples)
    padding = [sum(len(b) * max(e.tokens for e in b) - sum(e.tokens for e in b) for b in batches)
               for batches in (plain, bucketed)]
    assert padding[1] < padding[0] / 3
    assert make_batches(examples, 4, 8, 0) == bucketed  # seeded: the same order in every run


def test_a_run_cut_into_time_boxed_pieces_ends_with_the_uninterrupted_weights(tiny_training, tiny_prepared, tiny_llama,
                                                                             tiny_tokenizer, tmp_path):
    config, traces = tiny_training
    spec = system_spec("thinkrec")
    whole = train_system(spec, tiny_prepared, config, traces, copy.deepcopy(tiny_llama), tiny_tokenizer)
    reference = shipped_weights(config)

    pieces = copy.deepcopy(config)
    pieces.paths.training_dir = str(tmp_path / "pieces-training")
    pieces.paths.checkpoints_dir = str(tmp_path / "pieces-checkpoints")
    pieces.paths.work_dir = config.paths.work_dir  # the same prepared data and CF encoders
    shutil.copytree(config.paths.checkpoints / "cf", pieces.paths.checkpoints / "cf")
    runs = 0
    while True:
        report = train_system(spec, tiny_prepared, pieces, traces, copy.deepcopy(tiny_llama), tiny_tokenizer,
                              max_minutes=0.0)  # stops after every step
        runs += 1
        if report["finished"]:
            break
        assert not (pieces.paths.checkpoints / "llm" / "thinkrec" / "config.json").exists()  # nothing shipped early
    assert runs == whole["steps"] > 2
    assert report["train_tokens"] == whole["train_tokens"]
    assert json.dumps(report["evaluations"]) == json.dumps(whole["evaluations"])  # NaN UAUC compares as text
    resumed = shipped_weights(pieces)
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.allclose(resumed[name], tensor, atol=1e-6), name


def test_a_state_from_other_data_is_refused(tiny_training, tiny_prepared, tiny_llama, tiny_tokenizer):
    config, traces = tiny_training
    spec = system_spec("thinkrec")
    train_system(spec, tiny_prepared, config, traces, copy.deepcopy(tiny_llama), tiny_tokenizer, max_minutes=0.0)
    config.llm.train_tokens = 1000  # fewer examples: other data
    with pytest.raises(CheckpointError, match="other data or settings"):
        train_system(spec, tiny_prepared, config, traces, copy.deepcopy(tiny_llama), tiny_tokenizer)


def test_a_damaged_state_names_its_folder(tiny_training, tiny_prepared, tiny_llama, tiny_tokenizer):
    config, traces = tiny_training
    spec = system_spec("thinkrec")
    train_system(spec, tiny_prepared, config, traces, copy.deepcopy(tiny_llama), tiny_tokenizer, max_minutes=0.0)
    folder = config.paths.training / "llm" / "thinkrec"
    (folder / "last.safetensors").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match="cannot resume"):
        train_system(spec, tiny_prepared, config, traces, copy.deepcopy(tiny_llama), tiny_tokenizer)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_train_disjoint_shards_to_identical_weights(tiny_training, tiny_prepared, tiny_tokenizer,
                                                                 tmp_path):
    config, traces = tiny_training
    config.llm.autocast_bf16 = False
    config_file, traces_file, out = tmp_path / "config.json", tmp_path / "traces.parquet", tmp_path / "out"
    out.mkdir()
    config_file.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    traces.to_parquet(traces_file)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(Path(__file__).parent / "parallel_worker.py"), str(config_file),
               str(traces_file), str(out)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    weights = [load_file(out / f"rank{r}.safetensors") for r in (0, 1)]

    spec = system_spec("thinkrec")
    _, builder = new_system(spec, tiny_prepared, config, None, None)
    examples = build_examples(spec, builder, tiny_prepared, config, traces)
    batches = make_batches(examples, config.llm.batch_size, config.llm.length_buckets, config.llm.seed)
    shards = [shard(batches, r, 2) for r in (0, 1)]
    assert [r["shard_digest"] for r in reports] == [data_digest(s) for s in shards]
    rows = [{id(e) for b in s for e in b} for s in shards]
    assert rows[0] and rows[1] and not rows[0] & rows[1]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert any(not torch.equal(t, torch.zeros_like(t)) for n, t in weights[0].items() if "lora_B" in n)  # it trained


def test_held_out_traces_are_never_trained_on_and_their_loss_is_logged(tiny_training, tiny_prepared, tiny_llama,
                                                                      tiny_tokenizer):
    config, traces = tiny_training
    config.llm.heldout_traces, config.llm.reasoning_share = 2, 1.0
    spec = system_spec("thinkrec")
    _, builder = new_system(spec, tiny_prepared, config, copy.deepcopy(tiny_llama), tiny_tokenizer)
    heldout = heldout_examples(builder, tiny_prepared, traces, config.llm, None)
    trained = build_examples(spec, builder, tiny_prepared, config, traces)
    assert len(heldout) == 2
    assert not {tuple(e.prompt.input_ids) for e in heldout} & {tuple(e.prompt.input_ids) for e in trained}
    report = train_system(spec, tiny_prepared, config, traces, copy.deepcopy(tiny_llama), tiny_tokenizer)
    losses = [e["heldout_lm_loss"] for e in report["evaluations"]]
    assert losses and all(np.isfinite(losses)) and all(loss > 0 for loss in losses)


def test_each_held_out_trace_keeps_its_own_loss_in_the_given_order(tiny_training, tiny_prepared, tiny_llama,
                                                                   tiny_tokenizer):
    config, traces = tiny_training
    config.llm.heldout_traces = 3
    model, builder = new_system(system_spec("thinkrec"), tiny_prepared, config, copy.deepcopy(tiny_llama),
                                tiny_tokenizer)
    heldout = heldout_examples(builder, tiny_prepared, traces, config.llm, None)
    pad_id = tiny_tokenizer.pad_token_id
    batched = heldout_lm_losses(model, heldout, pad_id, batch_size=2, bf16=False)
    alone = [heldout_lm_losses(model, [example], pad_id, batch_size=1, bf16=False)[0] for example in heldout]
    assert len(heldout) == 3 and len({round(v, 6) for v in alone}) == 3  # three different traces
    assert batched == pytest.approx(alone, abs=1e-5)
    assert all(example.key[0] in set(tiny_prepared.split("train")["user"]) for example in heldout)


def test_a_refinement_starts_from_the_system_it_names_under_the_current_prompt(tiny_training, tiny_prepared,
                                                                               tiny_llama, tiny_tokenizer):
    from thinkrec import pipeline
    from thinkrec.llm.systems import initial_system, load_system
    from thinkrec.report import training_runs

    config, traces = tiny_training
    spec = system_spec("thinkrec")
    first = train_system(spec, tiny_prepared, config, traces, copy.deepcopy(tiny_llama), tiny_tokenizer)
    start = config.paths.training / "starts" / "first"
    shutil.copytree(config.paths.checkpoints / "llm" / "thinkrec", start)
    refined = copy.deepcopy(config)
    refined.llm.init_from, refined.llm.refine_tokens = "starts/first", 1200
    refined.llm.prompt_evidence_lines, refined.llm.traces_file = True, "teacher/traces_lines.parquet"
    line_traces = pipeline.stage_traces(tiny_prepared, refined)

    model, builder = initial_system(spec, tiny_prepared, refined, copy.deepcopy(tiny_llama), tiny_tokenizer)
    start_model, recorded = load_system("thinkrec", tiny_prepared, config, copy.deepcopy(tiny_llama),
                                        tiny_tokenizer, folder=start, trainable=True)
    assert builder.config.prompt_evidence_lines and not recorded.config.prompt_evidence_lines
    weights, expected = trainable_state(model), trainable_state(start_model)
    fresh = trainable_state(new_system(spec, tiny_prepared, refined, copy.deepcopy(tiny_llama), tiny_tokenizer)[0])
    assert any("lora_" in n for n in weights) and any(n.startswith("projector.") for n in weights)
    assert weights.keys() == expected.keys() == fresh.keys()
    assert all(torch.equal(weights[n], expected[n]) for n in expected)  # LoRA and projector train on from the start
    assert not all(torch.equal(weights[n], fresh[n]) for n in fresh)

    report = train_system(spec, tiny_prepared, refined, line_traces, copy.deepcopy(tiny_llama), tiny_tokenizer)
    assert report["finished"] and 1200 <= report["train_tokens"] < first["train_tokens"]
    saved = json.loads((refined.paths.checkpoints / "llm" / "thinkrec" / "config.json").read_text())
    assert saved["llm_config"]["prompt_evidence_lines"] is True
    assert [run["train_tokens"] for run in training_runs(saved["train"])] == [report["train_tokens"],
                                                                              first["train_tokens"]]
    own_start = initial_system(spec, tiny_prepared, refined, copy.deepcopy(tiny_llama), tiny_tokenizer)
    expert = Scope("expert", refined.paths.training / "expert-out", 600)  # a run given its start, as an expert is
    train_system(spec, tiny_prepared, refined, line_traces, start=own_start, scope=expert)
    assert "earlier" not in json.loads((expert.out_dir / "config.json").read_text())["train"]

    projector = load_file(start / "projector.safetensors")
    save_file({name: tensor + 1 for name, tensor in projector.items()}, start / "projector.safetensors")
    with pytest.raises(CheckpointError, match="other starting weights"):  # its state is keyed by the start
        train_system(spec, tiny_prepared, refined, line_traces, copy.deepcopy(tiny_llama), tiny_tokenizer)
    refined.llm.init_from = "starts/none"
    with pytest.raises(CheckpointError, match="llm.init_from: .*starts/none holds no trained ThinkRec-global"):
        initial_system(spec, tiny_prepared, refined, copy.deepcopy(tiny_llama), tiny_tokenizer)
