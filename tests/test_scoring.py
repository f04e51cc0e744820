"""Batch scoring on a tiny random Llama: the precision bar, length-sorted batches, resumable chunks, time boxes."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from thinkrec.chunks import Chunks, Unfinished
from thinkrec.llm import score
from thinkrec.llm.model import collate
from thinkrec.llm.score import (
    GAP_BAR,
    ScoreSettings,
    bar_checked,
    batches_of,
    bf16_leading_layers,
    can_compile,
    compare_precision,
    job_batches,
    length_order,
    padding_share,
    score_job,
    score_rows,
)
from thinkrec.llm.systems import new_system, system_spec
from thinkrec.timebox import TimeBox


@pytest.fixture
def tiny_scorer(tiny_explorer, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    """An untrained ThinkRec (CF soft tokens, LoRA) on the tiny Llama, and every prepared row to score."""
    tiny_config.llm.cf_encoder = "mf"
    model, builder = new_system(system_spec("thinkrec"), tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    return model, builder, tiny_prepared.rows.head(12).reset_index(drop=True)


def test_the_bar_takes_every_gap_and_the_share_of_kept_verdicts():
    reference = np.linspace(0.05, 0.95, 200)
    assert compare_precision(reference, reference).passes
    one_off = reference.copy()
    one_off[3] += 0.011  # one row beyond 0.01 fails the bar, however good the others are
    check = compare_precision(reference, one_off)
    assert not check.passes and check.max_gap == pytest.approx(0.011) and check.within_gap == pytest.approx(0.995)
    flips = np.full(400, 0.499)
    for flipped, passes in ((2, True), (3, False)):  # 398 / 400 = 99.5 % kept passes, 397 / 400 does not
        candidate = flips.copy()
        candidate[:flipped] = 0.501
        check = compare_precision(flips, candidate)
        assert check.max_gap == pytest.approx(0.002) and check.passes is passes
    with pytest.raises(ValueError, match="same rows"):
        compare_precision(reference, reference[:-1])


def test_bf16_scoring_is_measured_against_fp32_on_the_tiny_model(tiny_scorer):
    model, builder, rows = tiny_scorer
    fp32 = score_rows(model, builder, rows)
    bf16 = score_rows(model, builder, rows, ScoreSettings(bf16_layers=2))
    check = compare_precision(fp32, bf16)
    gap = np.abs(bf16 - fp32)
    assert check.rows == len(rows) and check.max_gap == pytest.approx(gap.max())
    assert check.same_verdict == pytest.approx(np.mean((bf16 >= 0.5) == (fp32 >= 0.5)))
    assert 0 < check.max_gap and check.passes == (gap.max() <= 0.01 and check.same_verdict >= 0.995)
    assert compare_precision(fp32, score_rows(model, builder, rows, ScoreSettings(batch_size=5))).max_gap < 1e-5


def test_bf16_leading_layers_run_in_bf16_and_the_later_ones_in_fp32(tiny_scorer):
    model, builder, rows = tiny_scorer
    layers = model.backbone.get_decoder().layers
    seen = {}

    def note_dtype(number):
        def hook(module, args, out):
            seen.setdefault(number, out.dtype)
        return hook

    for number, layer in enumerate(layers):
        layer.mlp.down_proj.register_forward_hook(note_dtype(number))
    with bf16_leading_layers(model, 1):
        score_rows(model, builder, rows.head(2))
    assert seen == {0: torch.bfloat16, 1: torch.float32}
    assert all("forward" not in layer.__dict__ for layer in layers)  # the class's forward again afterwards
    seen.clear()
    score_rows(model, builder, rows.head(2))
    assert seen == {0: torch.float32, 1: torch.float32}
    fp32, one = score_rows(model, builder, rows), score_rows(model, builder, rows, ScoreSettings(bf16_layers=1))
    assert 0 < np.abs(one - fp32).max()  # the first layer's rounding shows
    assert np.array_equal(score_rows(model, builder, rows, ScoreSettings(bf16_layers=0)), fp32)
    with pytest.raises(ValueError, match="bfloat16 layers"):
        ScoreSettings(bf16_layers=-1)


def test_the_answer_apart_in_fp32_scores_as_one_pass_and_only_its_prompt_runs_in_bfloat16(tiny_scorer):
    model, builder, rows = tiny_scorer
    layers = model.backbone.get_decoder().layers
    fp32 = score_rows(model, builder, rows)
    apart = score_rows(model, builder, rows, ScoreSettings(fp32_answer=True))  # the split pass, all in fp32
    assert np.abs(apart - fp32).max() < 1e-5
    seen = []
    layers[-1].mlp.down_proj.register_forward_hook(lambda module, args, out: seen.append((out.shape[1], out.dtype)))
    bf16 = score_rows(model, builder, rows.head(1), ScoreSettings(bf16_layers=2, fp32_answer=True))
    width = len(builder.encode_row(rows.iloc[0]))
    assert seen == [(width - 1, torch.bfloat16), (1, torch.float32)]  # the prompt in bfloat16, the answer in fp32
    assert 0 < abs(bf16[0] - fp32[0]) <= GAP_BAR  # the prompt's rounding reaches P(Yes) through attention only
    with pytest.raises(ValueError, match="answer at the last position"):
        model.p_yes(collate([builder.encode_row(rows.iloc[0])], 0, targets=[[1, 2]]), prompt_context=nullcontext)


def test_the_answer_apart_is_configured_only_with_bf16_layers(tiny_config, monkeypatch):
    tiny_config.llm.score_bf16_layers, tiny_config.llm.score_fp32_answer = 20, True
    for native, apart in ((True, True), (False, False)):
        monkeypatch.setattr(score, "native_bf16", lambda native=native: native)
        assert ScoreSettings.from_config(tiny_config.llm).fp32_answer is apart


def test_bf16_layers_are_configured_only_where_the_cpu_has_bfloat16(tiny_config, monkeypatch):
    tiny_config.llm.score_bf16_layers = 20
    for native, layers in ((True, 20), (False, 0)):
        monkeypatch.setattr(score, "native_bf16", lambda native=native: native)
        assert ScoreSettings.from_config(tiny_config.llm).bf16_layers == layers


@pytest.mark.skipif(not can_compile(), reason="torch.compile's inductor needs a C++ compiler (g++ or c++)")
def test_compiled_layers_run_compiled_only_while_scoring_and_score_as_the_eager_ones(tiny_scorer):
    from torch._dynamo.utils import counters

    model, builder, rows = tiny_scorer
    layers = model.backbone.get_decoder().layers
    eager = score_rows(model, builder, rows, ScoreSettings(bf16_layers=2))
    graphs = counters["stats"]["unique_graphs"]
    compiled = score_rows(model, builder, rows, ScoreSettings(bf16_layers=2, compiled=True))
    assert counters["stats"]["unique_graphs"] > graphs  # the layers really ran through torch.compile
    assert all(layer._compiled_call_impl is None for layer in layers)  # eager again outside scoring
    assert np.abs(compiled - eager).max() <= GAP_BAR
    assert np.array_equal(score_rows(model, builder, rows, ScoreSettings(bf16_layers=2)), eager)


@pytest.mark.skipif(not can_compile(), reason="torch.compile's inductor needs a C++ compiler (g++ or c++)")
def test_compiled_layers_fill_the_prompt_cache_the_answer_reads_without_a_graph_per_layer(
        tiny_explorer, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    from torch._dynamo.utils import counters
    from transformers import LlamaForCausalLM

    tiny_config.llm.cf_encoder = "mf"
    deep = LlamaForCausalLM(replace(tiny_llama.config, num_hidden_layers=6)).eval()
    model, builder = new_system(system_spec("thinkrec"), tiny_prepared, tiny_config, deep, tiny_tokenizer)
    rows = tiny_prepared.rows.head(12)
    settings = ScoreSettings(batch_size=4, bf16_layers=6, fp32_answer=True)
    eager = score_rows(model, builder, rows, settings)
    torch._dynamo.reset()
    graphs = counters["stats"]["unique_graphs"]
    compiled = score_rows(model, builder, rows, replace(settings, compiled=True))  # 6 layers x 3 batches
    assert counters["stats"]["unique_graphs"] - graphs <= 2  # not one per layer (nor 8 and then eager)
    assert np.abs(compiled - eager).max() <= GAP_BAR
    cache = DynamicCache(config=model.backbone.config)
    layer = model.backbone.get_decoder().layers[0]
    cache.update(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), layer.self_attn.layer_idx)
    with score.compiled_layers(model, 1), pytest.raises(ValueError, match="empty key/value cache"):
        layer(torch.zeros(1, 1, deep.config.hidden_size), cache=cache)


@pytest.mark.skipif(not can_compile(), reason="torch.compile's inductor needs a C++ compiler (g++ or c++)")
def test_each_model_scored_after_another_runs_compiled_not_past_the_recompile_limit(
        tiny_explorer, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer, monkeypatch):
    """A plan scores its systems one after another in one process: the later ones must not inherit the
    earlier ones' graphs and hit dynamo's recompile limit, which would run them eagerly."""
    from torch._dynamo.utils import counters
    from transformers import LlamaForCausalLM

    tiny_config.llm.cf_encoder = "mf"
    systems = [new_system(system_spec(name), tiny_prepared, tiny_config, LlamaForCausalLM(tiny_llama.config).eval(),
                          tiny_tokenizer) for name in ("thinkrec", "tallrec", "thinkrec")]
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    rows = tiny_prepared.rows.head(8)
    for model, builder in systems:
        graphs = counters["stats"]["unique_graphs"]
        score_rows(model, builder, rows, ScoreSettings(batch_size=4, bf16_layers=2, compiled=True))
        assert counters["stats"]["unique_graphs"] > graphs  # its layers compiled, not eager past the limit


def test_compiled_scoring_and_the_fp32_margin_need_bf16_layers(tiny_config, monkeypatch, caplog):
    llm = tiny_config.llm
    llm.score_bf16_layers, llm.score_compiled, llm.score_fp32_margin = 20, True, 0.01
    monkeypatch.setattr(score, "native_bf16", lambda: True)
    for compiler, compiled in ((True, True), (False, False)):
        monkeypatch.setattr(score, "can_compile", lambda compiler=compiler: compiler)
        settings = ScoreSettings.from_config(llm)
        assert settings.compiled is compiled and settings.fp32_margin == 0.01
    assert "no C++ compiler" in caplog.text
    monkeypatch.setattr(score, "native_bf16", lambda: False)  # nothing in bfloat16: nothing to compile or guard
    settings = ScoreSettings.from_config(llm)
    assert settings.bf16_layers == 0 and not settings.compiled and settings.fp32_margin == 0.0


def test_rows_near_the_verdict_line_are_scored_again_in_fp32(tiny_scorer):
    model, builder, rows = tiny_scorer
    fp32 = score_rows(model, builder, rows)
    bf16 = score_rows(model, builder, rows, ScoreSettings(bf16_layers=2))
    margin = float(np.median(np.abs(bf16 - 0.5)))  # about half the rows lie nearer 0.5 than this
    guarded = score_rows(model, builder, rows, ScoreSettings(bf16_layers=2, fp32_margin=margin))
    near = np.abs(bf16 - 0.5) < margin
    assert 0 < near.sum() < len(rows)
    assert np.allclose(guarded[near], fp32[near], atol=1e-5)  # their verdicts are fp32's
    assert np.array_equal(guarded[~near], bf16[~near])  # the others keep their bfloat16 score
    with pytest.raises(ValueError, match="fp32 margin"):
        ScoreSettings(fp32_margin=0.5)


def test_a_cheaper_setting_is_trusted_only_where_it_meets_the_bar_on_the_probe():
    reference = np.linspace(0.1, 0.9, 64)
    cheap = ScoreSettings(bf16_layers=20)
    for gap, trusted in ((0.004, cheap), (0.02, ScoreSettings())):
        asked = []

        def score(settings, gap=gap, asked=asked):
            asked.append(settings.bf16_layers)
            return reference + (gap if settings.bf16_layers else 0.0)

        chosen, tried = bar_checked(score, cheap)
        assert chosen == trusted and sorted(asked) == [0, 20]
        assert [settings for settings, _ in tried] == [cheap] and tried[0][1].max_gap == pytest.approx(gap)
    assert bar_checked(lambda settings: pytest.fail("fp32 needs no check"), ScoreSettings()) == (ScoreSettings(), [])


def test_a_setting_that_misses_the_bar_falls_back_to_fewer_bfloat16_layers_before_fp32():
    reference = np.linspace(0.1, 0.9, 64)
    cheap = ScoreSettings(bf16_layers=30, fp32_answer=True)
    for last_gap, trusted, fallback_passes in ((0.006, replace(cheap, bf16_layers=24), True),
                                               (0.011, ScoreSettings(), False)):
        gaps = {0: 0.0, 30: 0.0101, 24: last_gap}  # each layer count's gap to fp32

        def score(settings, gaps=gaps):
            return reference + gaps[settings.bf16_layers]

        chosen, tried = bar_checked(score, cheap, fallback_layers=24)
        assert chosen == trusted
        assert [(settings.bf16_layers, check.passes) for settings, check in tried] == [(30, False),
                                                                                       (24, fallback_passes)]
        assert tried[0][0].fp32_answer and tried[1][0].fp32_answer  # only the layer count changes
    for fallback in (0, 30, 40):  # none, or not fewer layers: no second try
        chosen, tried = bar_checked(lambda settings: reference + 0.02 * bool(settings.bf16_layers), cheap, fallback)
        assert chosen == ScoreSettings() and len(tried) == 1


def test_sorted_batches_barely_pad_and_score_as_rows_alone(tiny_scorer):
    model, builder, rows = tiny_scorer
    prompts = [builder.encode_row(row) for _, row in rows.iterrows()]
    lengths = np.array([len(p) for p in prompts])
    assert (np.diff(lengths[length_order(prompts)]) >= 0).all()
    assert padding_share(prompts, ScoreSettings(batch_size=1)) == 0.0
    drawn = [lengths[s:s + 4] for s in range(0, len(lengths), 4)]  # batches as the rows come
    unsorted_share = 1 - lengths.sum() / sum(len(b) * b.max() for b in drawn)
    assert padding_share(prompts, ScoreSettings(batch_size=4)) <= unsorted_share
    alone = np.array([score_rows(model, builder, rows.iloc[[i]])[0] for i in range(len(rows))])
    assert np.allclose(score_rows(model, builder, rows, ScoreSettings(batch_size=4)), alone, atol=1e-5)


def test_a_token_cap_cuts_batches_of_long_prompts_smaller_and_scores_the_same(tiny_scorer):
    model, builder, rows = tiny_scorer
    prompts = [builder.encode_row(row) for _, row in rows.iterrows()]
    lengths = np.array([len(p) for p in prompts])
    cap = int(lengths.max()) * 3  # three of the longest prompts fit, four do not
    settings = ScoreSettings(batch_size=5, chunk_rows=12, batch_tokens=cap)
    (chunk,) = job_batches(prompts, settings)
    assert np.array_equal(np.concatenate(chunk), length_order(prompts))  # every row once, in length order
    assert all(len(batch) <= 5 and len(batch) * lengths[batch].max() <= cap for batch in chunk)
    for batch, following in zip(chunk, chunk[1:]):  # each batch as large as the rules let it grow
        grown = np.append(batch, following[0])
        assert len(grown) > 5 or len(grown) * lengths[grown].max() > cap
    assert any(len(batch) < 5 for batch in chunk[:-1])  # the cap, not the size, cut some
    assert all(len(batches_of(prompts, batch, settings)) == 1 for batch in chunk)  # a batch cut again stays whole
    assert batches_of(prompts, length_order(prompts)[-1:], replace(settings, batch_tokens=1)) == \
        [length_order(prompts)[-1:]]  # a row wider than the cap is still scored, alone
    assert np.allclose(score_rows(model, builder, rows, settings), score_rows(model, builder, rows), atol=1e-5)
    with pytest.raises(ValueError, match="batch tokens"):
        ScoreSettings(batch_tokens=-1)


def test_a_killed_run_continues_from_its_last_saved_chunk(tiny_scorer, tmp_path, monkeypatch):
    model, builder, rows = tiny_scorer
    settings = ScoreSettings(batch_size=2, chunk_rows=2)  # 12 rows: 6 chunks
    uninterrupted = score_rows(model, builder, rows, settings)
    saved, real_save = [], Chunks.save

    def save_then_die(self, number, *args):
        if len(saved) == 2:
            raise KeyboardInterrupt  # the process dies after two chunks reached the disk
        real_save(self, number, *args)
        saved.append(number)

    monkeypatch.setattr(Chunks, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        score_job(model, builder, rows, settings, resume=tmp_path / "scoring")
    monkeypatch.setattr(Chunks, "save", real_save)
    assert saved == [0, 1] and len(list((tmp_path / "scoring").glob("*/chunk_*.parquet"))) == 2

    scored_chunks, real_chunk = [], score.score_chunk
    monkeypatch.setattr(score, "score_chunk", lambda *args: scored_chunks.append(1) or real_chunk(*args))
    resumed = score_job(model, builder, rows, settings, resume=tmp_path / "scoring")
    assert len(scored_chunks) == 4  # only the chunks the killed run had not saved
    assert np.allclose(resumed.p_yes, uninterrupted, atol=1e-6) and resumed.seconds > 0
    assert np.array_equal(score_job(model, builder, rows, settings, resume=tmp_path / "scoring").p_yes, resumed.p_yes)
    assert len(scored_chunks) == 4  # a finished job is read back, nothing scored


def test_an_ended_time_box_stops_after_the_first_chunk_and_the_rerun_finishes(tiny_scorer, tmp_path):
    model, builder, rows = tiny_scorer
    settings = ScoreSettings(batch_size=2, chunk_rows=4)
    with pytest.raises(Unfinished) as stop:  # every run does its first chunk, so every run moves on
        score_job(model, builder, rows, settings, resume=tmp_path, timebox=TimeBox(0.0))
    assert (stop.value.done, stop.value.total) == (4, len(rows))
    box = TimeBox(60.0)
    done = score_job(model, builder, rows, settings, resume=tmp_path, timebox=box)
    assert np.allclose(done.p_yes, score_rows(model, builder, rows, settings), atol=1e-6) and not box.expired
    ended = TimeBox(0.0)
    ended.started()  # the box has ended after some work: nothing may start, and nothing is left to do
    assert np.array_equal(score_job(model, builder, rows, settings, resume=tmp_path, timebox=ended).p_yes, done.p_yes)


def test_saved_chunks_of_another_model_or_rows_are_never_reused(tiny_scorer, tmp_path):
    model, builder, rows = tiny_scorer
    settings, work = ScoreSettings(batch_size=2, chunk_rows=4), tmp_path / "scoring"
    before = score_job(model, builder, rows, settings, resume=work).p_yes
    with torch.no_grad():
        model.projector.net[0].bias.add_(0.5)
    after = score_job(model, builder, rows, settings, resume=work).p_yes
    assert not np.allclose(after, before) and np.allclose(after, score_rows(model, builder, rows, settings))
    score_job(model, builder, rows.iloc[::-1], settings, resume=work)
    assert len(list(work.iterdir())) == 3  # one folder per job: its digest names it
