"""Integration: the real ML-100K files, the shipped checkpoints and the real backbone."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from thinkrec.config import load_config
from thinkrec.metrics import auc_report

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def prepared(config):
    from thinkrec.data.prepared import prepare_dataset

    return prepare_dataset(config)


def test_real_split_sizes_and_like_rates(prepared):
    splits = prepared.summary["splits"]
    assert [splits[s]["rows"] for s in ("train", "valid", "test")] == [80_367, 10_037, 9_596]
    assert [round(splits[s]["like_rate"], 2) for s in ("train", "valid", "test")] == [0.57, 0.48, 0.47]
    assert prepared.summary["knowledge_graph"]["used"] is False  # the ML-100K links fail the audit


def test_no_real_history_reaches_past_its_target(prepared):
    rows = prepared.rows
    time_of = pd.Series(rows["timestamp"].to_numpy(), index=pd.MultiIndex.from_arrays([rows["user"], rows["item"]]))
    assert time_of.index.is_unique
    hist = np.stack(rows["hist_items"].to_numpy())
    users = np.repeat(rows["user"].to_numpy(), hist.shape[1])
    items = hist.ravel()
    real = items >= 0
    hist_times = time_of.reindex(pd.MultiIndex.from_arrays([users[real], items[real]])).to_numpy()
    target_times = np.repeat(rows["timestamp"].to_numpy(), hist.shape[1])[real]
    assert len(hist_times) > 500_000 and (hist_times < target_times).all()


def test_shipped_checkpoints_match_their_manifest(config):
    from thinkrec.manifest import verify_manifest

    needed = ("cf/", "teacher/", "llm/thinkrec/adapter/", "llm/experts/clusters/", "llm/experts/expert_0/adapter/",
              "llm/experts/user_map/", "llm/experts/test_predictions.parquet", "analysis/")
    manifest = verify_manifest(config.paths.checkpoints, required_prefixes=needed)
    assert all(not name.endswith((".pt", ".bin", ".pkl", ".pickle")) for name in manifest["files"])
    total = sum(entry["size"] for entry in manifest["files"].values())
    assert total < 100 * 2**20, f"checkpoints/ holds {total / 2**20:.1f} MB, over the 100 MB budget"


def test_stored_cf_metrics_recompute_from_stored_predictions(config):
    root = config.paths.checkpoints / "cf"
    metrics = json.loads((root / "metrics.json").read_text())
    predictions = pd.read_parquet(root / "predictions.parquet")
    for split in ("valid", "test"):
        part = predictions[predictions["split"] == split]
        for name in ("item_prior", "mf", "lightgcn", "sasrec"):
            assert auc_report(part["user"], part["label"], part[name]) == metrics[name][split]


def test_shipped_cf_models_rescore_their_stored_predictions(config, prepared):
    from thinkrec.cf.store import cf_dir, load_cf_model
    from thinkrec.cf.train import predict, rows_to_batch

    predictions = pd.read_parquet(cf_dir(config) / "predictions.parquet")
    test = prepared.split("test")
    sample = np.random.default_rng(0).choice(len(test), 20, replace=False)
    stored = predictions[predictions["split"] == "test"].reset_index(drop=True)
    for name in ("mf", "lightgcn", "sasrec"):
        model, _ = load_cf_model(cf_dir(config) / name, prepared, config)
        scores = predict(model, rows_to_batch(prepared, test.iloc[sample]))
        assert np.allclose(scores, stored[name].to_numpy()[sample], atol=1e-5)


@pytest.mark.parametrize("name, median_at_least", [("mf", 0.9), ("lightgcn", 0.97)])
def test_folding_users_back_in_lands_near_their_trained_embeddings(config, prepared, name, median_at_least):
    """Fold every fifth user back in from their own train ratings (measured medians: MF 0.94, LightGCN 0.99;
    RESULTS.md shows the whole distribution)."""
    from thinkrec.cf.fold_in import cosines_to_trained, refold_users
    from thinkrec.cf.store import cf_dir, load_cf_model

    model, _ = load_cf_model(cf_dir(config) / name, prepared, config)
    folded = refold_users(model, prepared, prepared.summary["history_len"], config.guest.fold_in_l2,
                          users=range(0, prepared.n_users, 5))
    cosines = cosines_to_trained(model, prepared, folded)
    assert np.median(cosines) >= median_at_least and np.percentile(cosines, 10) > 0.75


def test_real_backbone_scores_rows_padding_invariantly(config, prepared):
    from thinkrec.llm.model import collate
    from thinkrec.llm.systems import load_system

    model, builder = load_system("zeroshot", prepared, config)
    test = prepared.split("test")
    prompts = [builder.encode_row(test.iloc[i]) for i in (0, 1)]
    prompts.append(builder.encode(0, int(test.iloc[0]["item"]), [], []))  # an empty history, much shorter
    pad = builder.tokenizer.pad_token_id
    together = model.p_yes(collate(prompts, pad))
    alone = [model.p_yes(collate([p], pad))[0] for p in prompts]
    assert ((together > 0) & (together < 1)).all()
    assert np.allclose(together.numpy(), np.array(alone), atol=1e-4)


def test_meteor_works_offline():
    from thinkrec.text_metrics import meteor

    assert meteor(["the user liked the film"], ["the user liked the film"]) > 0.9


SHIPPED_LLMS = {"thinkrec": "ThinkRec-global", "collm": "CoLLM-style", "tallrec": "TALLRec-style"}  # (experts apart)


def scored_rows(prepared, config, stored: pd.DataFrame) -> pd.DataFrame:
    """The prepared test rows a stored prediction file covers, in its order: the fixed subset or the whole split."""
    from thinkrec.subsets import test_subset

    test = prepared.split("test")
    rows = stored[["user", "item"]].merge(test, on=["user", "item"], how="left", validate="one_to_one")
    assert rows["label"].notna().all() and (rows["label"] == stored["label"].to_numpy()).all()
    if len(rows) != len(test):  # not the whole split: then exactly the subset
        assert rows[["user", "item"]].equals(test_subset(prepared, config)[["user", "item"]].reset_index(drop=True))
    return rows


def stored_scoring(metrics: dict):
    """The scoring settings stored predictions were made with (fp32 for files that record none)."""
    from thinkrec.llm.score import ScoreSettings

    return ScoreSettings(**metrics.get("scoring", {}))


def reproduces_to(metrics: dict) -> float:
    """How close stored scores must be scored again: to 1e-4 where they were scored in fp32 or with this machine's
    arithmetic (``cpu.arithmetic``: bfloat16 rounds alike only there), else within the bar that admitted bfloat16."""
    from thinkrec.llm.cpu import arithmetic
    from thinkrec.llm.score import GAP_BAR

    exact = stored_scoring(metrics).bf16_layers == 0 or metrics.get("arithmetic") == arithmetic()
    return 1e-4 if exact else GAP_BAR


def rescored_batches(model, builder, frame: pd.DataFrame, settings, mixtures=None, seed: int = 1
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Two random batches of the scoring job that stored ``frame``'s scores, each scored again as it was scored
    (``score.job_batches``: under bfloat16 a row's score moves with its batch): their rows' positions and scores."""
    from thinkrec.llm.score import job_batches, score_chunk

    prompts = [builder.encode_row(row) for _, row in frame.iterrows()]
    batches = [batch for chunk in job_batches(prompts, settings) for batch in chunk]
    picked = [batches[i] for i in np.random.default_rng(seed).choice(len(batches), 2, replace=False)]
    pad = builder.tokenizer.pad_token_id
    return np.concatenate(picked), np.concatenate([score_chunk(model, prompts, batch, mixtures, settings, pad)
                                                   for batch in picked])


@pytest.mark.parametrize("name", list(SHIPPED_LLMS))
def test_shipped_llm_rescores_its_stored_test_predictions(config, prepared, name):
    from thinkrec.llm.systems import llm_dir, load_system
    from thinkrec.predictions import scored_test_metrics

    folder = llm_dir(config, name)
    stored = pd.read_parquet(folder / "test_predictions.parquet")
    metrics = json.loads((folder / "metrics.json").read_text())
    rows = scored_rows(prepared, config, stored)
    model, builder = load_system(name, prepared, config)
    positions, scores = rescored_batches(model, builder, rows, stored_scoring(metrics))
    assert np.allclose(scores, stored["p_yes"].to_numpy()[positions], atol=reproduces_to(metrics))
    assert auc_report(stored["user"], stored["label"], stored["p_yes"]) == scored_test_metrics(metrics)
    if (folder / "valid_predictions.parquet").exists():  # a whole-split evaluation also stores the valid subset
        valid = pd.read_parquet(folder / "valid_predictions.parquet")
        assert auc_report(valid["user"], valid["label"], valid["p_yes"]) == pytest.approx(metrics["valid"], nan_ok=True)


def test_shipped_fused_model_rescores_its_stored_test_predictions(config, prepared):
    from thinkrec.fusion.experts import experts_dir
    from thinkrec.fusion.fused import load_fused
    from thinkrec.predictions import scored_test_metrics

    stored = pd.read_parquet(experts_dir(config) / "test_predictions.parquet")
    metrics = json.loads((experts_dir(config) / "metrics.json").read_text())
    rows = scored_rows(prepared, config, stored)
    fused = load_fused(prepared, config)
    fused.scoring = stored_scoring(metrics)
    modes = ("fused", "hard")  # scored together, as (row, mixture) jobs (``FusedSystem.score_modes``)
    jobs, inverse = fused.mode_jobs(rows, modes)
    positions, scores = rescored_batches(fused.model, fused.builder, rows.iloc[jobs[:, 0].astype(int)],
                                         fused.scoring, jobs[:, 1:], seed=2)
    table = np.stack([stored["p_yes"].to_numpy(), stored["p_hard"].to_numpy()])  # mode by mode, as ``inverse``
    for job, score in zip(positions, scores, strict=True):
        assert np.allclose(table.reshape(-1)[inverse == job], score, atol=reproduces_to(metrics))
    assert auc_report(stored["user"], stored["label"], stored["p_yes"]) == scored_test_metrics(metrics)
    assert auc_report(stored["user"], stored["label"], stored["p_global"]) == metrics["modes"]["global"]
    if (experts_dir(config) / "valid_predictions.parquet").exists():
        valid = pd.read_parquet(experts_dir(config) / "valid_predictions.parquet")
        assert auc_report(valid["user"], valid["label"], valid["p_hard"]) == pytest.approx(
            metrics["valid_modes"]["hard"], nan_ok=True)  # one row per user: no UAUC (NaN)


def test_the_evaluations_scoring_meets_the_bar_on_real_rows(config, prepared, tmp_path):
    """On 48 real test rows of the shipped ThinkRec, the scoring evaluation runs (the configured dtype, length-sorted
    batches, saved in chunks and read back) meets the bar against fp32 with every row scored alone. bfloat16
    autocast does not meet it on this checkpoint (benchmarks/score_speed.py: 4 of 240 rows beyond 0.01, max 0.015),
    so ``llm.score_bf16_layers`` stays 0 here; were it set, this test would hold it to the bar."""
    from thinkrec.llm.score import ScoreSettings, compare_precision, score_job, score_rows
    from thinkrec.llm.systems import load_system
    from thinkrec.subsets import test_subset

    rows = test_subset(prepared, config).head(48)
    model, builder = load_system("thinkrec", prepared, config)
    alone = np.array([score_rows(model, builder, rows.iloc[[i]])[0] for i in range(len(rows))])
    settings = ScoreSettings.from_config(config.llm)
    evaluated = score_job(model, builder, rows, settings, resume=tmp_path).p_yes
    assert np.array_equal(score_job(model, builder, rows, settings, resume=tmp_path).p_yes, evaluated)  # read back
    check = compare_precision(alone, evaluated)
    assert check.passes, check
    if not settings.bf16_layers:
        assert check.max_gap < 1e-4  # fp32 in batches is the same model as fp32 alone


def test_the_demo_regenerates_the_stored_fused_reasoning_word_for_word(config, prepared):
    """The bank the demo serves from, decoding in the dtype the stored answers were written in (fp32 for files that
    record none), writes the very texts the report scored. bfloat16 answers written on another machine type
    (``cpu.arithmetic``) round apart from some token on: there the verdict and P(Yes) within the bar must hold."""
    from thinkrec.fusion.experts import experts_dir
    from thinkrec.llm.cpu import arithmetic
    from thinkrec.llm.generate import GenerationSettings
    from thinkrec.llm.score import GAP_BAR
    from thinkrec.serving.bank import load_bank
    from thinkrec.serving.case import Case
    from thinkrec.text_metrics import opening_yes

    stored = pd.read_parquet(experts_dir(config) / "reasoning.parquet")
    cases = stored.sample(n=2, random_state=3).merge(prepared.rows, on=["user", "item"], how="left")
    generated = json.loads((experts_dir(config) / "reasoning_metrics.json").read_text())
    dtype = generated.get("decode_dtype", "float32")
    exact = dtype == "float32" or generated.get("arithmetic") == arithmetic()
    config = load_config(overrides=[f"llm.decode_dtype={dtype}"])  # as written
    bank = load_bank(prepared, config)
    for case in cases.itertuples():
        stream = bank.stream("fused", Case(case.user, case.item, case.hist_items, case.hist_labels),
                             GenerationSettings.from_config(config.llm))
        text = "".join(stream)
        if exact:
            assert text == case.generated
            assert stream.p_yes == pytest.approx(case.p_yes, abs=1e-5)
        else:
            assert opening_yes(text) == opening_yes(case.generated)
            assert stream.p_yes == pytest.approx(case.p_yes, abs=GAP_BAR)


def test_an_fp32_stream_opens_with_the_p_yes_the_scores_table_shows(config, prepared):
    """Where answers decode in fp32 (``llm.decode_dtype=auto`` without native bfloat16), the verdict line's P(Yes)
    is the scores table's: the About tab says so."""
    from thinkrec.llm.generate import GenerationSettings
    from thinkrec.serving.bank import load_bank
    from thinkrec.serving.case import Case

    bank = load_bank(prepared, load_config(overrides=["llm.decode_dtype=float32"]))
    row = prepared.split("test").iloc[7]
    case = Case(int(row["user"]), int(row["item"]), row["hist_items"], row["hist_labels"])
    for system in ("fused", "collm"):
        stream = bank.stream(system, case, GenerationSettings(max_new_tokens=1))
        "".join(stream)
        assert stream.p_yes == pytest.approx(bank.p_yes(system, case), abs=1e-4)


def test_report_figures_match_the_stages_metrics(config, prepared, tmp_path):
    from thinkrec.predictions import scored_test_metrics
    from thinkrec.report import write_report

    text = write_report(prepared, config, tmp_path / "RESULTS.md")

    def shown(label: str) -> tuple[str, str]:  # AUC and UAUC cells of the system's row (intervals between them)
        row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        return cells[1], cells[3]

    for name, label in SHIPPED_LLMS.items():
        metrics = json.loads((config.paths.checkpoints / "llm" / name / "metrics.json").read_text())
        subset = scored_test_metrics(metrics)
        assert shown(label) == (f"{subset['auc']:.4f}", f"{subset['uauc']:.4f}")
    fused = scored_test_metrics(json.loads((config.paths.checkpoints / "llm" / "experts" / "metrics.json").read_text()))
    assert shown("ThinkRec-fused") == (f"{fused['auc']:.4f}", f"{fused['uauc']:.4f}")
    assert "**The paper's claim on this data:** ThinkRec-fused" in text
    reasoning = json.loads((config.paths.checkpoints / "llm" / "experts" / "reasoning_metrics.json").read_text())
    assert f"| ThinkRec-fused | {reasoning['meteor']:.4f} | {reasoning['bleu4']:.4f} |" in text


def test_shipped_experts_are_standard_peft_adapters(config):
    from peft import PeftModel

    from thinkrec.files import read_json
    from thinkrec.llm.backbone import load_backbone

    root = config.paths.checkpoints / "llm" / "experts"
    backbone, _ = load_backbone(config)
    for expert in range(int(read_json(root / "selection.json")["k"])):
        model = PeftModel.from_pretrained(backbone, root / f"expert_{expert}" / "adapter",
                                          adapter_name=f"expert_{expert}")
        assert any("lora_B" in name for name, _ in model.named_parameters())
        backbone = model.unload()


def test_shipped_workbench_is_current_and_recomputes(config, prepared):
    from thinkrec.metrics import auc
    from thinkrec.predictions import test_predictions
    from thinkrec.workbench import FOLDER, fingerprint, load_workbench

    predictions = test_predictions(prepared, config)
    workbench = load_workbench(config.paths.checkpoints / FOLDER)
    assert workbench.summary["fingerprint"] == fingerprint(predictions)  # built from the shipped predictions
    overall = workbench.overall.set_index("key")
    for system in workbench.systems:
        assert overall.loc[system, "auc"] == pytest.approx(auc(predictions["label"], predictions[system]))
        assert overall.loc[system, "auc_low"] <= overall.loc[system, "auc"] <= overall.loc[system, "auc_high"]
    fused = pd.read_parquet(config.paths.checkpoints / "llm" / "experts" / "test_predictions.parquet")
    assert workbench.rows["routing"].astype(str).tolist() == fused["decision"].tolist()  # the gate the stage used
