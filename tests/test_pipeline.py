"""The whole LLM pipeline on the tiny dataset with a tiny random Llama saved as a local backbone:
traces -> ThinkRec-global -> test scoring -> reasoning -> clusters and experts -> fused scoring."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from thinkrec.errors import CheckpointError
from thinkrec.llm import score
from thinkrec.timebox import TimeBox


def test_pipeline_end_to_end(tiny_prepared, tiny_pipeline_config, monkeypatch):
    from thinkrec import expert_stages, pipeline
    from thinkrec.expert_stages import global_origin
    from thinkrec.fusion.choice import choose
    from thinkrec.fusion.fused import load_fused
    from thinkrec.manifest import verify_manifest
    from thinkrec.subsets import test_subset

    config = tiny_pipeline_config
    config.llm.eval_rows = 3  # of the 4 test rows
    traces = pipeline.stage_traces(tiny_prepared, config)
    assert (traces["purpose"] == "reference").sum() == 2
    pipeline.stage_train_llm("thinkrec", tiny_prepared, config)
    metrics = pipeline.stage_eval_llm("thinkrec", tiny_prepared, config)
    assert metrics["test"]["rows"] == 3 and metrics["scope"] == "subset"
    assert metrics["precision_check"] is None and metrics["scoring"]["bf16_layers"] == 0  # fp32: nothing to check
    config.llm.score_bf16_layers = 1  # on a CPU with native bfloat16, the probe decides
    monkeypatch.setattr(score, "native_bf16", lambda: True)
    cheaper = pipeline.stage_eval_llm("thinkrec", tiny_prepared, config, force=True)
    check = cheaper["precision_check"]
    assert check["rows"] == 3 and cheaper["scoring"]["bf16_layers"] == (1 if check["passes"] else 0)
    config.llm.score_bf16_layers = 0
    restored = pipeline.stage_eval_llm("thinkrec", tiny_prepared, config, force=True)["test"]
    assert json.dumps(restored, sort_keys=True) == json.dumps(metrics["test"], sort_keys=True)  # NaN == NaN
    reasoning = pipeline.stage_reasoning("thinkrec", tiny_prepared, config)
    assert reasoning["rows"] == 2 and 0 <= reasoning["meteor"] <= 1
    assert 0 <= reasoning["loop_rate"] <= 1 and 0 <= reasoning["completion_rate"] <= 1
    stored = pd.read_parquet(config.paths.checkpoints / "llm" / "thinkrec" / "reasoning.parquet")
    assert (stored["new_tokens"] <= config.llm.max_new_tokens).all()
    rescored = pipeline.stage_rescore_reasoning(tiny_prepared, config, ["thinkrec", "references"])  # nothing generated
    assert json.dumps(rescored["thinkrec"], sort_keys=True) == json.dumps(reasoning, sort_keys=True)  # NaN == NaN
    assert rescored["references"]["completion_rate"] == 1.0 and rescored["references"]["rows"] == 2

    selection = expert_stages.stage_experts(tiny_prepared, config)
    assert selection["k"] == 2 and {c["method"] for c in selection["candidates"]} == {"kmeans", "ward"}
    chosen, reason = choose(selection["candidates"], config.fusion.min_own_share)
    assert (selection["method"], selection["k"], selection["reason"]) == (chosen["method"], chosen["k"], reason)
    assert len(selection["experts"]) == 2 and selection["origin"] == global_origin(config)
    fused = load_fused(tiny_prepared, config)
    rows = test_subset(tiny_prepared, config)
    scores = {mode: fused.score(rows, mode) for mode in ("fused", "global", "hard")}
    assert all(((s > 0) & (s < 1)).all() for s in scores.values())
    stored = json.loads((config.paths.checkpoints / "llm" / "thinkrec" / "metrics.json").read_text())
    assert stored["test"]["rows"] == len(rows)
    # The global mode of the fused model is the global ThinkRec model itself.

    global_predictions = pd.read_parquet(config.paths.checkpoints / "llm" / "thinkrec" / "test_predictions.parquet")
    assert np.allclose(scores["global"], global_predictions["p_yes"].to_numpy(), atol=1e-5)

    user_map = pipeline.stage_user_map(tiny_prepared, config)
    assert user_map["n_users"] == tiny_prepared.n_users and user_map["k"] == 2
    evaluation = pipeline.stage_eval_fused(tiny_prepared, config)
    stored_table = pd.read_parquet(config.paths.checkpoints / "llm" / "experts" / "test_predictions.parquet")
    assert np.allclose(stored_table["p_yes"], scores["fused"], atol=1e-5)
    assert np.allclose(stored_table["p_hard"], scores["hard"], atol=1e-5)
    assert evaluation["modes"]["global"]["auc"] == stored["test"]["auc"]
    assert sum(evaluation["routing_share_users"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(evaluation["per_cluster"]) <= {"0", "1"}
    fused_reasoning = pipeline.stage_reasoning("fused", tiny_prepared, config)
    assert fused_reasoning["rows"] == 2
    verify_manifest(config.paths.checkpoints, required_prefixes=("cf/", "llm/thinkrec/", "llm/experts/"))
    # A second run finds everything current and redoes nothing.
    assert expert_stages.stage_experts(tiny_prepared, config) == selection
    assert pipeline.stage_eval_fused(tiny_prepared, config)["rows_per_second"] == evaluation["rows_per_second"]
    # Redoing the selection that picks the same clustering keeps what was scored on its experts.
    assert expert_stages.stage_experts(tiny_prepared, config, force=True) == selection
    assert (config.paths.checkpoints / "llm" / "experts" / "test_predictions.parquet").exists()
    assert (config.paths.checkpoints / "llm" / "experts" / "reasoning.parquet").exists()
    resumed_scoring_keeps_its_precision_check(tiny_prepared, config, monkeypatch)
    whole_split_replaces_the_subset(tiny_prepared, config)


def resumed_scoring_keeps_its_precision_check(prepared, config, monkeypatch):
    """A whole-split scoring stopped by its time box saves the probe's scores both ways; resumed, it scores
    only the next chunk of rows, not the probe again (the test has set ``native_bf16``)."""
    from thinkrec import pipeline

    config.llm.eval_scope, config.llm.score_chunk_rows, config.llm.score_bf16_layers = "all", 1, 1
    stopped = pipeline.stage_eval_llm("thinkrec", prepared, config, timebox=TimeBox(0.0))
    assert stopped["finished"] is False and stopped["scored"] == 1
    probe = pipeline.scoring_dir(config, "thinkrec") / pipeline.PROBE_FOLDER
    assert len(list(probe.iterdir())) == 2  # one job per setting: fp32 and bfloat16 over the first layer
    rows_scored = []
    score_chunk = score.score_chunk
    monkeypatch.setattr(score, "score_chunk", lambda model, prompts, rows, *rest: rows_scored.append(len(rows))
                        or score_chunk(model, prompts, rows, *rest))
    assert pipeline.stage_eval_llm("thinkrec", prepared, config, timebox=TimeBox(0.0))["scored"] == 2
    assert rows_scored == [1]  # the next test row only
    monkeypatch.setattr(score, "score_chunk", score_chunk)
    shutil.rmtree(pipeline.scoring_dir(config, "thinkrec"))
    config.llm.eval_scope, config.llm.score_bf16_layers = "subset", 0


def whole_split_replaces_the_subset(prepared, config):
    """Every test row and the valid subset: time-boxed, resumable, reproducible, and read instead of the subset."""

    from thinkrec import pipeline
    from thinkrec.llm.score import score_rows
    from thinkrec.llm.systems import load_system
    from thinkrec.metrics import auc_report
    from thinkrec.predictions import test_predictions
    from thinkrec.subsets import valid_subset

    folder, experts = config.paths.checkpoints / "llm" / "thinkrec", config.paths.checkpoints / "llm" / "experts"
    test = prepared.split("test")
    config.llm.eval_scope, config.llm.score_chunk_rows = "all", 1
    stopped = pipeline.stage_eval_llm("thinkrec", prepared, config, timebox=TimeBox(0.0))
    assert stopped == {"finished": False, "split": "test", "scored": 1, "rows": len(test)}  # a run does one chunk
    assert len(pd.read_parquet(folder / "test_predictions.parquet")) == 3  # the subset's file stays until the end
    with pytest.raises(CheckpointError, match="eval-llm thinkrec"):  # the fused model needs ThinkRec's rows first
        pipeline.stage_eval_fused(prepared, config)
    metrics = pipeline.stage_eval_llm("thinkrec", prepared, config)  # the subset's files are not current for "all"
    stored = {split: pd.read_parquet(folder / f"{split}_predictions.parquet") for split in ("test", "valid")}
    assert metrics["scope"] == "all" and stored["test"][["user", "item"]].equals(test[["user", "item"]])
    assert stored["valid"][["user", "item"]].equals(valid_subset(prepared, config)[["user", "item"]].reset_index(
        drop=True))
    def same(first, second):  # NaN == NaN: the tiny data leaves UAUC undefined
        return json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)

    for split, table in stored.items():  # every metric recomputes from the stored predictions
        assert same(auc_report(table["user"], table["label"], table["p_yes"]), metrics[split])
    model, builder = load_system("thinkrec", prepared, config)
    assert np.allclose(score_rows(model, builder, test.iloc[[3, 0]]), stored["test"]["p_yes"].to_numpy()[[3, 0]],
                       atol=1e-4)
    assert not pipeline.scoring_dir(config, "thinkrec").exists()  # the chunks go once the predictions are stored
    config.llm.score_bf16_layers = 1  # the fused model's probe is saved the same way (native_bf16 is set)
    assert pipeline.stage_eval_fused(prepared, config, timebox=TimeBox(0.0))["finished"] is False
    assert len(list((pipeline.scoring_dir(config, "fused") / pipeline.PROBE_FOLDER).iterdir())) == 2
    config.llm.score_bf16_layers = 0
    shutil.rmtree(pipeline.scoring_dir(config, "fused"))
    fused = pipeline.stage_eval_fused(prepared, config)
    tables = {split: pd.read_parquet(experts / f"{split}_predictions.parquet") for split in ("test", "valid")}
    for split, table in tables.items():
        assert np.array_equal(table["p_global"], stored[split]["p_yes"])
    test_table, valid_table = tables["test"], tables["valid"]
    assert same(fused["modes"]["fused"], auc_report(test_table["user"], test_table["label"], test_table["p_yes"]))
    assert same(fused["valid_modes"]["hard"], auc_report(valid_table["user"], valid_table["label"],
                                                         valid_table["p_hard"]))
    # One pass: a row the gate hands to one expert is scored once for the fused and the hard routing.
    assert fused["rows_scored"] == sum(len(t) + int((t["decision"] != "single").sum()) for t in tables.values())
    single = tables["test"]["decision"] == "single"
    assert np.array_equal(tables["test"]["p_yes"][single], tables["test"]["p_hard"][single])
    assert len(test_predictions(prepared, config)) == len(test)  # the whole split replaces the subset everywhere
    config.llm.eval_scope = "subset"  # the default scope later: the whole split covers it, nothing is rescored
    assert same(pipeline.stage_eval_llm("thinkrec", prepared, config), metrics)
    assert same(pipeline.stage_eval_fused(prepared, config), fused)


def test_answers_without_the_decoding_rules_are_stored_apart(tiny_prepared, tiny_pipeline_config, monkeypatch):
    from thinkrec import pipeline
    from thinkrec.reasoning_scores import answers_metrics_path, answers_path
    from thinkrec.serving.bank import LLMBank

    config = tiny_pipeline_config
    config.llm.min_new_tokens, config.llm.no_repeat_ngram = 4, 3
    pipeline.stage_traces(tiny_prepared, config)
    pipeline.stage_train_llm("thinkrec", tiny_prepared, config)
    decoded, real_answer = [], LLMBank.answer

    def answer(bank, system, case, settings):
        decoded.append((system, settings.min_new_tokens, settings.no_repeat_ngram))
        return real_answer(bank, system, case, settings)

    monkeypatch.setattr(LLMBank, "answer", answer)
    with_rules = pipeline.stage_reasoning("thinkrec", tiny_prepared, config)
    free = pipeline.stage_reasoning("thinkrec", tiny_prepared, config, rules=False)
    assert decoded == [("thinkrec", 4, 3)] * 2 + [("thinkrec", 0, 0)] * 2  # the two reference rows, each way
    assert with_rules["decoding_rules"] and not free["decoding_rules"] and free["rows"] == 2
    assert answers_path(config, "thinkrec") != answers_path(config, "thinkrec", rules=False)
    assert json.loads(answers_metrics_path(config, "thinkrec").read_text())["decoding_rules"]
    rescored = pipeline.stage_rescore_reasoning(tiny_prepared, config, ["thinkrec"])
    assert set(rescored) == {"thinkrec", "thinkrec (no decoding rules)"}
    assert not rescored["thinkrec (no decoding rules)"]["decoding_rules"]  # the run's facts survive a rescore


def test_stored_answers_are_the_texts_the_demo_streams(tiny_prepared, tiny_pipeline_config):
    """A fresh bank (the demo's) streams, for each reference row, the text and P(Yes) the reasoning stage stored,
    fused answers under the gate's mixture included, also in bfloat16 (where a row decoded in a batch of others
    rounds apart from the same row alone); an unknown system is refused by name."""
    from thinkrec import expert_stages, pipeline
    from thinkrec.llm.generate import GenerationSettings
    from thinkrec.reasoning_scores import answers_path
    from thinkrec.serving.bank import load_bank

    config = tiny_pipeline_config
    pipeline.stage_traces(tiny_prepared, config)
    pipeline.stage_train_llm("thinkrec", tiny_prepared, config)
    expert_stages.stage_experts(tiny_prepared, config)
    config.llm.decode_dtype = "bfloat16"
    with pytest.raises(CheckpointError, match="collm"):
        pipeline.stage_reasoning("collm", tiny_prepared, config)
    bank = load_bank(tiny_prepared, config)
    _, cases = pipeline.reference_cases(tiny_prepared, pipeline.reference_traces(config))
    for system in ("fused", "thinkrec"):
        pipeline.stage_reasoning(system, tiny_prepared, config)
        stored = pd.read_parquet(answers_path(config, system))
        for case, answer in zip(cases, stored.itertuples(), strict=True):
            stream = bank.stream(system, case, GenerationSettings.from_config(config.llm))
            assert "".join(stream) == answer.generated and stream.new_tokens == answer.new_tokens
            assert stream.p_yes == pytest.approx(answer.p_yes, abs=1e-6)


def test_bank_serves_every_system_on_one_backbone(tiny_prepared, tiny_pipeline_config):
    from thinkrec import expert_stages, pipeline
    from thinkrec.fusion.fused import load_fused
    from thinkrec.llm.generate import GenerationSettings
    from thinkrec.serving.bank import load_bank
    from thinkrec.serving.case import Case

    config = tiny_pipeline_config
    pipeline.stage_traces(tiny_prepared, config)
    pipeline.stage_train_llm("thinkrec", tiny_prepared, config)
    expert_stages.stage_experts(tiny_prepared, config)
    bank = load_bank(tiny_prepared, config)
    assert bank.systems == ["fused", "thinkrec", "zeroshot"]
    fused = load_fused(tiny_prepared, config)
    row = tiny_prepared.split("test").iloc[0]
    case = Case(int(row["user"]), int(row["item"]), row["hist_items"], row["hist_labels"])
    args = (case,)
    frame = tiny_prepared.split("test").head(1)
    assert bank.p_yes("fused", *args) == pytest.approx(fused.score(frame, "fused")[0], abs=1e-5)
    assert bank.p_yes("thinkrec", *args) == pytest.approx(fused.score(frame, "global")[0], abs=1e-5)
    route = bank.routing(case.user)
    assert route.decision in ("single", "fused", "global") and len(route.weights) == 2
    stream = bank.stream("fused", *args, GenerationSettings(max_new_tokens=4))
    assert "".join(stream) is not None and 1 <= stream.new_tokens <= 4
    # The expert ablation: global, each expert alone and the gate's mixture, scored in one mixed batch.
    variants = bank.ablation(case.user)
    assert [v.label for v in variants] == ["Global adapter", "Expert 1", "Expert 2", "Gate's choice (fused)"]
    together = bank.p_yes_under("thinkrec", *args, [v.weights for v in variants])
    alone = [bank.p_yes_under("thinkrec", *args, [v.weights])[0] for v in variants]
    assert together == pytest.approx(alone, abs=1e-5)
    assert together[0] == pytest.approx(bank.p_yes("thinkrec", *args), abs=1e-5)
    assert together[-1] == pytest.approx(bank.p_yes("fused", *args), abs=1e-5)
    hot = bank.ablation(case.user, tau=0.001)[-1].weights  # a cold gate hands the case to one expert
    assert sorted(hot[1:3].round(6).tolist()) == [0.0, 1.0]


def test_report_recomputes_from_stored_predictions(tiny_prepared, tiny_pipeline_config, tmp_path):
    from thinkrec import expert_stages, pipeline
    from thinkrec.report import write_report

    config = tiny_pipeline_config
    pipeline.stage_traces(tiny_prepared, config)
    pipeline.stage_train_llm("thinkrec", tiny_prepared, config)
    stored = pipeline.stage_eval_llm("thinkrec", tiny_prepared, config)["test"]
    text = write_report(tiny_prepared, config, tmp_path / "RESULTS.md")
    shown = [("n/a" if np.isnan(stored[k]) else f"{stored[k]:.4f}") for k in ("auc", "uauc")]  # tiny data: no UAUC
    row = next(line for line in text.splitlines() if line.startswith("| ThinkRec-global |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]  # system, AUC, interval, UAUC, interval, ...
    assert (cells[1], cells[3]) == tuple(shown)
    assert "Not trained or scored yet: Zero-shot LLM, TALLRec-style, CoLLM-style, ThinkRec-fused" in text
    assert "| LightGCN |" in text and "ML-1M" in text and "No cluster experts trained yet" in text
    assert (tmp_path / "assets" / "results_auc.svg").read_text().startswith("<svg")
    fold_in = text.split("## Fold-in of new users")[1].split("##")[0]
    assert "| MF |" in fold_in and "| LightGCN |" in fold_in

    expert_stages.stage_experts(tiny_prepared, config)
    fused = pipeline.stage_eval_fused(tiny_prepared, config)
    reasoning = pipeline.stage_reasoning("fused", tiny_prepared, config)
    text = write_report(tiny_prepared, config, tmp_path / "RESULTS.md")
    modes = fused["modes"]
    assert f"| fused (the gate's choice) | {modes['fused']['auc']:.4f} |" in text
    assert f"| hard routing (top expert only) | {modes['hard']['auc']:.4f} |" in text
    assert "Test-subset AUC within each cluster" in text and "| K | own cluster, alone |" in text
    assert f"| ThinkRec-fused | {reasoning['meteor']:.4f} | {reasoning['bleu4']:.4f} |" in text
    assert "Not trained or scored yet: Zero-shot LLM, TALLRec-style, CoLLM-style." in text


def test_the_decoding_rules_stay_on_until_answers_without_them_measure_as_well(tiny_config):
    from dataclasses import replace

    from thinkrec.config import ConfigError
    from thinkrec.files import write_json
    from thinkrec.llm.generate import GenerationSettings
    from thinkrec.reasoning_scores import answers_metrics_path, decodes_with_rules

    assert decodes_with_rules(tiny_config, "thinkrec")  # no evidence: the rules stay
    ruled, free = (answers_metrics_path(tiny_config, "thinkrec", rules) for rules in (True, False))
    ruled.parent.mkdir(parents=True)
    write_json(ruled, {"loop_rate": 0.02, "completion_rate": 0.99})
    write_json(free, {"loop_rate": 0.10, "completion_rate": 0.99})
    assert decodes_with_rules(tiny_config, "thinkrec")  # without them it loops more: keep them
    write_json(free, {"loop_rate": 0.02, "completion_rate": 1.0})
    assert not decodes_with_rules(tiny_config, "thinkrec")  # as good without them: drop them
    write_json(ruled, {"loop_rate": 0.02, "repetition_rate": 0.01, "completion_rate": 0.99})
    write_json(free, {"loop_rate": 0.02, "repetition_rate": 0.08, "completion_rate": 1.0})
    assert decodes_with_rules(tiny_config, "thinkrec")  # without them it states arguments twice: keep them
    assert decodes_with_rules(tiny_config, "collm")  # another system's answers decide nothing here
    forced = replace(tiny_config, llm=replace(tiny_config.llm, decoding_rules="on"))
    assert decodes_with_rules(forced, "thinkrec")
    with pytest.raises(ConfigError, match="decoding_rules"):
        decodes_with_rules(replace(tiny_config, llm=replace(tiny_config.llm, decoding_rules="maybe")), "thinkrec")
    free_settings = GenerationSettings.from_config(tiny_config.llm, 40, rules=False)
    assert (free_settings.min_new_tokens, free_settings.no_repeat_ngram, free_settings.max_new_tokens) == (0, 0, 40)
    ruled_settings = GenerationSettings.from_config(tiny_config.llm, 40)
    assert (ruled_settings.min_new_tokens, ruled_settings.no_repeat_ngram) == (32, 6)
