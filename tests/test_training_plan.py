"""The plan on the tiny fixture and model: the choice table, the experts' budget, the baselines' Yes/No rows,
and a plan (training, evaluation, promotion) cut into time-boxed calls ending where one uninterrupted call ends."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from thinkrec.errors import CheckpointError
from thinkrec.faithfulness import result_file
from thinkrec.files import read_json
from thinkrec.fusion.choice import ROUTES, choose


def test_the_hours_left_take_each_stage_at_its_own_rate():
    from thinkrec.plan import StageStatus, hours_left

    statuses = [StageStatus("thinkrec", True, 360_000, 360_000, 3_600.0),  # 100 tokens/s, done
                StageStatus("experts", False, 300_000, 1_380_000, 1_000.0),  # 300 tokens/s: 1 h left
                StageStatus("collm", False, 0, 400_000, 0.0),  # not started: at the 660,000 / 4,600 s of all runs
                StageStatus("tallrec", False, 0, None, 0.0),  # size unknown: not counted
                StageStatus("scoring", False, 0, 5, 0.0, unit="systems")]
    assert hours_left(statuses) == pytest.approx(1 + 400_000 / (660_000 / 4_600) / 3_600)
    assert hours_left([StageStatus("thinkrec", False, 0, 360_000, 0.0)]) is None  # nothing timed yet


@pytest.fixture
def plan_config(tiny_pipeline_config, tiny_prepared):
    from thinkrec import pipeline

    config = tiny_pipeline_config
    config.llm.baseline_rows = "thinkrec"
    config.llm.train_tokens, config.llm.batch_size = 2400, 1
    pipeline.stage_traces(tiny_prepared, config)
    return config


def copy_of(config, tmp_path, name: str):
    """The same settings writing elsewhere, with the same CF encoders and traces."""
    other = copy.deepcopy(config)
    for field in ("work_dir", "checkpoints_dir", "training_dir", "results_file"):
        setattr(other.paths, field, str(tmp_path / name / field))
    for folder in ("cf", "teacher"):
        shutil.copytree(config.paths.checkpoints / folder, other.paths.checkpoints / folder)
    return other


def weights_of(folder) -> dict[str, torch.Tensor]:
    tensors = load_file(folder / "adapter" / "adapter_model.safetensors")
    projector = folder / "projector.safetensors"
    return {**tensors, **(load_file(projector) if projector.exists() else {})}


def test_the_choice_table_measures_every_candidate_and_the_rule_picks_from_it(plan_config, tiny_prepared):
    from thinkrec.expert_stages import stage_clustering
    from thinkrec.fusion.experts import choice_dir, load_chosen_clustering

    config = plan_config
    config.fusion.ks = (1, 2)
    choice = stage_clustering(tiny_prepared, config)
    table = choice["candidates"]
    assert [(c["method"], c["k"]) for c in table] == [("kmeans", 1), ("kmeans", 2), ("ward", 1), ("ward", 2)]
    for row in table:
        assert set(row["routing"]) == set(ROUTES) and sum(row["routing"].values()) == pytest.approx(1.0, abs=1e-3)
        assert row["own_share"] == pytest.approx(row["routing"]["single_own"] + row["routing"]["fused_own"])
        assert sum(row["sizes"]) == tiny_prepared.n_users and "valid" not in row  # no probes by default
    assert next(r for r in table if r["k"] == 1)["routing"]["global"] == 1.0  # one cluster: the global adapter
    chosen, reason = choose(table, config.fusion.min_own_share)
    assert (choice["method"], choice["k"], choice["reason"]) == (chosen["method"], chosen["k"], reason)
    assert load_chosen_clustering(config).k == choice["k"]
    assert stage_clustering(tiny_prepared, config) == choice  # stored: the next session trains the same experts
    config.fusion.ks = (2, 3)
    refusal = re.escape(f"{choice_dir(config) / 'choice.json'}: chosen from other inputs (ks)")
    with pytest.raises(CheckpointError, match=refusal):
        stage_clustering(tiny_prepared, config)


def test_probe_experts_add_their_fused_valid_auc_to_the_table(plan_config, tiny_prepared):
    from thinkrec import pipeline
    from thinkrec.expert_stages import stage_clustering

    config = plan_config
    config.fusion.probe_experts, config.fusion.expert_tokens, config.fusion.methods = True, 600, ("kmeans",)
    pipeline.stage_train_llm("thinkrec", tiny_prepared, config)
    choice = stage_clustering(tiny_prepared, config)
    assert [c["valid"]["rows"] for c in choice["candidates"]] == [config.llm.valid_rows]
    assert choice["inputs"]["probe"]["tokens"] == 600 and "probe valid AUC" in choice["reason"]


def test_each_expert_trains_a_kth_of_the_global_budget_on_its_own_cluster(plan_config, tiny_prepared):
    from thinkrec import expert_stages, pipeline
    from thinkrec.fusion.experts import load_shipped_clustering

    config = plan_config
    assert expert_stages.expert_budget(config, 3) == math.ceil(config.llm.train_tokens / 3)
    pipeline.stage_train_llm("thinkrec", tiny_prepared, config)
    selection = expert_stages.stage_experts(tiny_prepared, config)
    clustering = load_shipped_clustering(config)
    budget = config.llm.train_tokens // selection["k"]
    scopes = expert_stages.expert_scopes(config, clustering, selection["origin"])
    assert [s.train_tokens for s in scopes] == [budget] * selection["k"]
    for scope, expert, cluster in zip(scopes, selection["experts"], range(clustering.k), strict=True):
        assert set(scope.users) == set(np.flatnonzero(clustering.labels == cluster))
        rows = tiny_prepared.split("train")["user"].isin(scope.users).sum()
        assert expert["train_tokens"] >= budget or expert["steps"] * config.llm.batch_size >= rows  # or every row
    config.fusion.full_expert_tokens = 5
    assert expert_stages.expert_budget(config, 2) == 5


def test_the_baselines_train_on_exactly_thinkrecs_yes_no_rows(plan_config, tiny_prepared, tiny_tokenizer):
    from thinkrec.llm.systems import prompt_builder, system_spec
    from thinkrec.llm.train import build_examples, system_scope, training_examples
    from thinkrec.teacher.dataset import load_trace_dataset

    config = plan_config
    traces = load_trace_dataset(config.traces_path)
    thinkrec = system_spec("thinkrec")
    reference = build_examples(thinkrec, prompt_builder(thinkrec, tiny_prepared, tiny_tokenizer, config),
                               tiny_prepared, config, traces)
    yes_no = [e.key for e in reference if not e.reasoning]
    assert yes_no and len(yes_no) < len(reference)
    for name in ("collm", "tallrec"):
        spec = system_spec(name)
        examples = training_examples(spec, prompt_builder(spec, tiny_prepared, tiny_tokenizer, config), tiny_prepared,
                                     config, traces, system_scope(spec, config))
        assert [e.key for e in examples] == yes_no and not any(e.reasoning for e in examples)
        assert all(e.target[-1] == tiny_tokenizer.eos_token_id for e in examples)  # a baseline stops after Yes/No


def plan_done(config) -> bool:
    from thinkrec.plan import plan_status

    return all(status.done for status in plan_status(config))


def test_a_plan_cut_into_time_boxed_calls_ends_where_one_call_ends(plan_config, tiny_prepared, tmp_path):
    from thinkrec.fusion.experts import read_selection
    from thinkrec.plan import STAGES, candidate_config, continue_plan, plan_status, reasoning_jobs
    from thinkrec.reasoning_scores import answers_path

    whole = plan_config
    statuses = continue_plan(tiny_prepared, whole)
    assert [s.stage for s in statuses] == list(STAGES) and all(s.done for s in statuses)
    assert whole.paths.results.exists() and (whole.paths.checkpoints / "analysis").exists()  # reported once shipped

    pieces = copy_of(whole, tmp_path, "pieces")
    candidate = candidate_config(pieces)
    calls, finished = 0, []
    while not plan_done(pieces):
        continue_plan(tiny_prepared, pieces, max_minutes=0.0)  # one training step or one chunk of rows per call
        calls += 1
        assert calls < 200
        status = {s.stage: s for s in plan_status(pieces)}
        finished.append([stage for stage in STAGES if status[stage].done])
        if not status["experts"].done:  # the experts ship all together, once all K are trained
            assert not (candidate.paths.checkpoints / "llm" / "experts" / "selection.json").exists()
        if not status["promotion"].done:  # nothing reaches the shipped checkpoints before the whole plan is done
            assert not (pieces.paths.checkpoints / "llm").exists() and not pieces.paths.results.exists()
    assert calls > len(STAGES) and finished[-2] == list(STAGES[:-1])  # the promotion comes last, on its own
    assert all(done == list(STAGES[:len(done)]) for done in finished)  # the stages end in their order
    for name in ("thinkrec", "collm", "tallrec", "zeroshot", "experts"):
        for file in ("metrics.json", "test_predictions.parquet"):
            assert (pieces.paths.checkpoints / "llm" / name / file).exists(), (name, file)
    for name, rules in reasoning_jobs(pieces):  # answers written a chunk per call are the uninterrupted run's
        whole_answers, piece_answers = (pd.read_parquet(answers_path(c, name, rules)) for c in (whole, pieces))
        assert piece_answers["generated"].tolist() == whole_answers["generated"].tolist(), (name, rules)
        assert np.allclose(piece_answers["p_yes"], whole_answers["p_yes"], atol=1e-4), (name, rules)
    assert reasoning_jobs(pieces)[-2:] == [("fused", False), ("thinkrec", False)]  # also decoded without the rules
    assert "ThinkRec-fused, no decoding rules" in pieces.paths.results.read_text()
    assert "ThinkRec-global, no decoding rules" in pieces.paths.results.read_text()
    differences = pieces.paths.results.read_text().split("Differences to ThinkRec-fused")[1]
    assert "| ThinkRec-global, no decoding rules | 2 |" in differences  # each set, on the 2 reference rows
    assert "| teacher's references (ceiling) | 2 |" in differences
    for name in pieces.plan.faithfulness_systems:  # each answer draws its controls from its own stream
        whole_records, piece_records = (read_json(result_file(c, name))["records"] for c in (whole, pieces))
        assert [(r["kind"], r["cited_items"], r["control_items"]) for r in piece_records] == \
            [(r["kind"], r["cited_items"], r["control_items"]) for r in whole_records], name
    assert not any((pieces.paths.training / "eval").glob("**/chunk_*.parquet"))  # finished jobs leave no chunks
    for stage in ("thinkrec", "collm", "tallrec"):
        reference, resumed = (weights_of(c.paths.checkpoints / "llm" / stage) for c in (whole, pieces))
        assert resumed.keys() == reference.keys()
        for name, tensor in reference.items():
            assert torch.allclose(resumed[name], tensor, atol=1e-6), (stage, name)
    selections = [read_selection(c) for c in (whole, pieces)]
    for selection in selections:
        for expert in selection["experts"]:
            expert.pop("seconds")  # wall time differs; everything else is the same
    assert json.dumps(selections[0], sort_keys=True) == json.dumps(selections[1], sort_keys=True)
    for number in range(selections[0]["k"]):
        reference, resumed = (weights_of(c.paths.checkpoints / "llm" / "experts" / f"expert_{number}")
                              for c in (whole, pieces))
        for name, tensor in reference.items():
            assert torch.allclose(resumed[name], tensor, atol=1e-6), (number, name)
    totals = [[(s.stage, s.tokens, s.planned) for s in plan_status(c)] for c in (whole, pieces)]
    assert totals[0] == totals[1]


def test_an_experts_state_from_another_global_adapter_is_refused(plan_config, tiny_prepared):
    from thinkrec.plan import candidate_config, continue_plan, stage_status

    config = plan_config
    candidate = candidate_config(config)
    while stage_status(candidate, "experts").tokens == 0:
        continue_plan(tiny_prepared, config, max_minutes=0.0)
    assert not stage_status(candidate, "experts").done
    adapter = candidate.paths.checkpoints / "llm" / "thinkrec" / "adapter" / "adapter_model.safetensors"
    save_file({name: tensor + 0.01 for name, tensor in load_file(adapter).items()}, adapter)
    with pytest.raises(CheckpointError, match="experts/.*/expert_0: this state trained on other data or settings, "
                                              "or from other starting weights"):
        continue_plan(tiny_prepared, config, max_minutes=0.0)


def test_a_baselines_state_from_its_own_rows_is_refused_under_thinkrecs_rows(plan_config, tiny_prepared):
    from thinkrec import pipeline

    config = plan_config
    config.llm.baseline_rows = "own"
    assert not pipeline.stage_train_llm("collm", tiny_prepared, config, max_minutes=0.0)["finished"]
    config.llm.baseline_rows = "thinkrec"
    with pytest.raises(CheckpointError, match="llm/collm: this state trained on other data or settings"):
        pipeline.stage_train_llm("collm", tiny_prepared, config, force=True, max_minutes=0.0)


def test_an_evaluation_stage_counts_its_unit_in_the_singular_when_it_covers_one():
    from thinkrec.plan import evaluation_status

    promotion = evaluation_status("promotion", ["llm"], [False], unit="LLM trees")
    assert promotion.line().endswith("0 /           1 LLM tree")
    assert evaluation_status("scoring", ["a", "b"], [True, False]).line().endswith("1 /           2 systems")
