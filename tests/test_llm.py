"""The LLM recommender on a tiny random Llama: soft tokens, losses, P(Yes), padding, training, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thinkrec.llm.decoder import PackedLinear, can_pack, decode_dtype_here, decoding_backbone
from thinkrec.llm.generate import GenerationSettings, generate_text, stream_text
from thinkrec.llm.model import collate, weighted_loss
from thinkrec.llm.prompt import MARKER
from thinkrec.llm.systems import load_system, new_system, save_system, system_spec


@pytest.fixture
def trained_cf(tiny_explorer):
    """The tiny dataset with System-1 checkpoints (their embeddings feed the soft tokens)."""
    return tiny_explorer


def build(name, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    tiny_config.llm.cf_encoder = "mf"
    return new_system(system_spec(name), tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)


def test_every_placeholder_is_replaced_by_a_projected_vector(trained_cf, tiny_prepared, tiny_config, tiny_llama,
                                                             tiny_tokenizer):
    model, builder = build("collm", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    row = tiny_prepared.split("test").iloc[0]
    prompt = builder.encode_row(row)
    n_history = int((np.asarray(row["hist_items"]) >= 0).sum())
    assert len(prompt.soft_tokens) == n_history + 3 and prompt.text.count(MARKER) == n_history + 3  # + the match
    batch = collate([prompt], tiny_tokenizer.pad_token_id)
    embeds = model.input_embeddings(batch)
    words = model.backbone.get_input_embeddings()(batch.input_ids)
    soft = torch.zeros(batch.input_ids.shape[1], dtype=torch.bool)
    soft[batch.soft_cols] = True
    assert torch.equal(embeds[0, ~soft], words[0, ~soft])
    first = prompt.soft_tokens[0]
    expected = model.projector(model.user_table[first.index])
    assert first.kind == "user" and torch.allclose(embeds[0, batch.soft_cols[0]], expected)
    assert not torch.isclose(embeds[0, soft], words[0, soft]).all(dim=-1).any()


def test_gradients_reach_the_projectors_and_lora(trained_cf, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    model, builder = build("thinkrec", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    rows = tiny_prepared.split("train").head(3)
    prompts = [builder.encode_row(r) for _, r in rows.iterrows()]
    targets = [tiny_tokenizer.encode("Yes. because", add_special_tokens=False) for _ in prompts]
    batch = collate(prompts, tiny_tokenizer.pad_token_id, targets)
    bce, lm = model.losses(batch, torch.tensor(rows["label"].to_numpy()))
    weighted_loss(bce, lm, torch.tensor([True, False, True]), (0.1, 0.9, 0.9, 0.1)).backward()
    assert model.projector.net[0].weight.grad.abs().sum() > 0
    assert model.match_projector.net[0].weight.grad.abs().sum() > 0
    lora = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and all(g is not None for g in lora)
    base = [p for n, p in model.named_parameters() if "lora_" not in n and "projector" not in n.split(".")[0]]
    assert all(not p.requires_grad for p in base)


def test_the_match_token_carries_the_cf_models_own_logit(trained_cf, tiny_prepared, tiny_config, tiny_llama,
                                                        tiny_tokenizer):
    from thinkrec.cf.store import cf_dir, load_cf_model
    from thinkrec.cf.train import rows_to_batch

    model, builder = build("collm", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    rows = tiny_prepared.split("test").head(3)
    prompts = [builder.encode_row(r) for _, r in rows.iterrows()]
    assert all(p.soft_tokens[-1].kind == "match" and p.text.count(MARKER) == len(p.soft_tokens) for p in prompts)
    assert "⟨CF match user×" in builder.readable(prompts[0])
    batch = collate(prompts, tiny_tokenizer.pad_token_id)
    is_match = batch.soft_kind == 2
    users, bias = model.user_features(batch, batch.soft_rows[is_match], batch.soft_user[is_match])
    features = model.match_features(users, bias, batch.soft_index[is_match])
    cf_model, _ = load_cf_model(cf_dir(tiny_config) / "mf", tiny_prepared, tiny_config)
    with torch.no_grad():
        logits = cf_model(rows_to_batch(tiny_prepared, rows))
    assert torch.allclose(features[:, -1], logits, atol=1e-5)
    embeds = model.input_embeddings(batch)
    expected = model.match_projector(features)
    assert torch.allclose(embeds[batch.soft_rows[is_match], batch.soft_cols[is_match]], expected, atol=1e-6)


def test_projectors_round_trip_and_a_mismatched_file_is_refused(trained_cf, tiny_prepared, tiny_config, tiny_llama,
                                                                tiny_tokenizer, tmp_path):
    from safetensors.torch import save_file

    from thinkrec.errors import CheckpointError
    from thinkrec.llm.systems import build_model

    model, _ = build("collm", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    save_file(model.projector_state(), tmp_path / "projector.safetensors")
    again = build_model(system_spec("collm"), tiny_llama, tiny_tokenizer, tiny_config)
    again.load_projectors(tmp_path / "projector.safetensors")
    assert torch.equal(again.match_projector.net[0].weight, model.match_projector.net[0].weight)
    tiny_config.llm.cf_match = False
    plain = build_model(system_spec("collm"), tiny_llama, tiny_tokenizer, tiny_config)
    with pytest.raises(CheckpointError, match="match projector"):
        plain.load_projectors(tmp_path / "projector.safetensors")
    (tmp_path / "projector.safetensors").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match="projector.safetensors"):
        again.load_projectors(tmp_path / "projector.safetensors")


def test_loss_weighting_by_hand():
    bce, lm = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
    reasoning = torch.tensor([True, False])
    # Row 0 (reasoning): 0.1*1 + 0.9*3 = 2.8; row 1 (Yes/No): 0.9*2 + 0.1*4 = 2.2; mean 2.5.
    assert weighted_loss(bce, lm, reasoning, (0.1, 0.9, 0.9, 0.1)).item() == pytest.approx(2.5)


def test_p_yes_is_the_softmax_over_yes_and_no(trained_cf, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    model, builder = build("zeroshot", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    batch = collate([builder.encode_row(tiny_prepared.split("test").iloc[1])], tiny_tokenizer.pad_token_id)
    logits = model.logits(batch)[0, batch.answer_index[0]]
    pair = torch.softmax(torch.stack([logits[model.yes_id], logits[model.no_id]]), dim=0)
    assert model.p_yes(batch)[0].item() == pytest.approx(pair[0].item(), abs=1e-6)


def test_a_row_scores_the_same_alone_and_in_a_padded_batch(trained_cf, tiny_prepared, tiny_config, tiny_llama,
                                                           tiny_tokenizer):
    model, builder = build("collm", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    test = tiny_prepared.split("test")
    short = builder.encode(0, int(test.iloc[0]["item"]), [], [])
    long = builder.encode_row(test.iloc[0])
    assert len(long) > len(short)
    alone = model.p_yes(collate([short], tiny_tokenizer.pad_token_id))
    together = model.p_yes(collate([long, short], tiny_tokenizer.pad_token_id))
    assert together[1].item() == pytest.approx(alone[0].item(), abs=1e-5)


def test_empty_history_is_explicit(trained_cf, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    _, builder = build("collm", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    prompt = builder.encode(1, 2, [-1, -1], [-1, -1])
    assert "No ratings yet" in prompt.text
    assert [t.kind for t in prompt.soft_tokens] == ["user", "item", "match"]
    assert "⟨CF user⟩" in builder.readable(prompt)


def test_the_match_token_can_be_switched_off(trained_cf, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    tiny_config.llm.cf_match = False  # CoLLM's soft tokens as published: user and items only
    model, builder = build("collm", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    prompt = builder.encode(1, 2, [3], [1])
    assert [t.kind for t in prompt.soft_tokens] == ["user", "item", "item"] and model.match_projector is None
    assert "Collaborative-filtering match" not in prompt.text


def test_titles_only_prompt_for_tallrec(trained_cf, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    _, builder = build("tallrec", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    prompt = builder.encode_row(tiny_prepared.split("test").iloc[0])
    assert prompt.soft_tokens == [] and MARKER not in prompt.text and "[" not in prompt.text


def test_save_and_load_give_the_same_scores(trained_cf, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    import copy

    pristine = copy.deepcopy(tiny_llama)
    model, builder = build("collm", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.1)  # make the adapter matter
    batch = collate([builder.encode_row(r) for _, r in tiny_prepared.split("test").iterrows()],
                    tiny_tokenizer.pad_token_id)
    before = model.p_yes(batch)
    save_system(model, system_spec("collm"), tiny_config.paths.checkpoints / "llm" / "collm", {"note": "test"})
    loaded, _ = load_system("collm", tiny_prepared, tiny_config, pristine, tiny_tokenizer)
    assert torch.allclose(loaded.p_yes(batch), before, atol=1e-6)
    assert (tiny_config.paths.checkpoints / "llm" / "collm" / "adapter" / "adapter_config.json").exists()


def test_streaming_yields_pieces_and_respects_the_cap(trained_cf, tiny_prepared, tiny_config, tiny_llama,
                                                     tiny_tokenizer):
    model, builder = build("thinkrec", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    prompt = builder.encode_row(tiny_prepared.split("test").iloc[0])
    stream = stream_text(model, tiny_tokenizer, prompt, GenerationSettings(max_new_tokens=12))
    pieces = list(stream)
    text = "".join(pieces)
    assert pieces and 1 <= stream.new_tokens <= 12
    assert generate_text(model, tiny_tokenizer, prompt, GenerationSettings(max_new_tokens=12)) == text  # greedy


def test_a_greedy_stream_sends_its_first_token_at_once(trained_cf, tiny_prepared, tiny_config, tiny_llama,
                                                      tiny_tokenizer):
    model, builder = build("thinkrec", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    prompt = builder.encode_row(tiny_prepared.split("test").iloc[0])
    with torch.no_grad():
        logits = model.backbone(inputs_embeds=model.input_embeddings(collate([prompt], tiny_tokenizer.pad_token_id)))
    first = tiny_tokenizer.decode([int(logits.logits[0, -1].argmax())], skip_special_tokens=True)
    pieces = list(stream_text(model, tiny_tokenizer, prompt, GenerationSettings(max_new_tokens=12)))
    assert first and pieces[0] == first  # the verdict does not wait for the end of a word


def test_the_stream_reads_p_yes_from_its_first_step(trained_cf, tiny_prepared, tiny_config, tiny_llama,
                                                    tiny_tokenizer):
    model, builder = build("thinkrec", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    prompt = builder.encode_row(tiny_prepared.split("test").iloc[0])
    for settings in (GenerationSettings(max_new_tokens=4), GenerationSettings(max_new_tokens=4, do_sample=True)):
        stream = stream_text(model, tiny_tokenizer, prompt, settings)
        assert stream.p_yes is None
        list(stream)
        expected = model.p_yes(collate([prompt], tiny_tokenizer.pad_token_id))[0].item()
        assert stream.p_yes == pytest.approx(expected, abs=1e-5)  # raw logits even when sampling


def test_a_bf16_decoder_streams_with_the_fp32_head_and_leaves_the_scoring_backbone_alone(
        trained_cf, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    model, builder = build("thinkrec", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    prompt = builder.encode_row(tiny_prepared.split("test").iloc[0])
    assert decoding_backbone(model.backbone, "float32") is model.backbone
    attention = model.backbone.get_base_model().config._attn_implementation
    decoder = decoding_backbone(model.backbone, "bfloat16")
    assert next(model.backbone.parameters()).dtype == torch.float32  # scores still run in fp32
    assert model.backbone.get_base_model().config._attn_implementation == attention
    assert decoder.get_base_model().config._attn_implementation == "eager"
    packed = [m for m in decoder.modules() if isinstance(m, PackedLinear)]
    weight = model.projector.net[0].weight
    assert len(packed) == 2 * 7 * can_pack(weight.bfloat16()) + can_pack(weight)  # 7 per layer, the fp32 head
    assert decoder.get_input_embeddings().weight.dtype == torch.bfloat16
    head = decoder.get_output_embeddings()
    assert head.weight.dtype == torch.float32  # the logits keep fp32 resolution
    assert head.weight.data_ptr() == model.backbone.get_output_embeddings().weight.data_ptr()
    settings = GenerationSettings(max_new_tokens=6)
    fp32 = stream_text(model, tiny_tokenizer, prompt, settings)
    fp32_text = "".join(fp32)
    stream = stream_text(model, tiny_tokenizer, prompt, settings, decoder=decoder)
    text = "".join(stream)
    assert 1 <= stream.new_tokens == len(stream.token_ids) <= 6 and len(fp32.token_ids) == fp32.new_tokens
    assert tiny_tokenizer.decode(stream.token_ids, skip_special_tokens=True) == text
    assert tiny_tokenizer.decode(fp32.token_ids, skip_special_tokens=True) == fp32_text
    assert stream.p_yes == pytest.approx(fp32.p_yes, abs=0.05)
    sampled = stream_text(model, tiny_tokenizer, prompt, GenerationSettings(max_new_tokens=4, do_sample=True),
                          decoder=decoder)
    assert "".join(sampled) is not None and 0 < sampled.p_yes < 1
    with pytest.raises(ValueError, match="decode_dtype"):
        decoding_backbone(model.backbone, "float16")


def test_without_native_bf16_the_decoder_packs_only_its_fp32_head_and_says_so(
        monkeypatch, caplog, trained_cf, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer):
    """oneDNN refuses to pack bfloat16 weights on an AVX2-only CPU: the copy keeps them unpacked and still streams."""
    monkeypatch.setattr("thinkrec.llm.decoder.native_bf16", lambda: False)
    model, builder = build("thinkrec", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    with caplog.at_level("WARNING", logger="thinkrec.llm.decoder"):
        decoder = decoding_backbone(model.backbone, "bfloat16")
    assert "no native bfloat16" in caplog.text
    packed = [m for m in decoder.modules() if isinstance(m, PackedLinear)]
    assert len(packed) == can_pack(model.projector.net[0].weight)  # the fp32 head alone
    prompt = builder.encode_row(tiny_prepared.split("test").iloc[0])
    stream = stream_text(model, tiny_tokenizer, prompt, GenerationSettings(max_new_tokens=4), decoder=decoder)
    assert "".join(stream) == tiny_tokenizer.decode(stream.token_ids, skip_special_tokens=True)
    assert 1 <= stream.new_tokens <= 4 and 0 < stream.p_yes < 1


@pytest.mark.parametrize("native", [False, True])
def test_auto_decodes_in_bfloat16_only_where_the_cpu_multiplies_it_natively(monkeypatch, tiny_llama, native):
    """Emulated bfloat16 decodes several times slower than fp32, so "auto" keeps fp32 on an AVX2-only CPU."""
    monkeypatch.setattr("thinkrec.llm.decoder.native_bf16", lambda: native)
    assert decode_dtype_here("auto") == ("bfloat16" if native else "float32")
    assert decode_dtype_here("float32") == "float32" and decode_dtype_here("bfloat16") == "bfloat16"
    if not native:  # (packing bfloat16 weights needs the native CPU, so the copy is tested where it is made)
        assert decoding_backbone(tiny_llama, "auto") is tiny_llama
    with pytest.raises(ValueError, match="auto or one of float32, bfloat16"):
        decode_dtype_here("fp16")


@pytest.mark.parametrize("sample", [False, True])
def test_a_stopped_stream_ends_at_its_next_step(trained_cf, tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer,
                                               sample):
    model, builder = build("thinkrec", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    prompt = builder.encode_row(tiny_prepared.split("test").iloc[0])
    settings = GenerationSettings(max_new_tokens=500, min_new_tokens=500, do_sample=sample)
    stream = stream_text(model, tiny_tokenizer, prompt, settings)
    pieces = iter(stream)
    next(pieces)
    stream.stop()
    list(pieces)  # what was already decoded when it stopped
    # greedy decoding stops before its next step; a sampling thread at the step after it is told
    assert stream.stopped and 1 <= stream.new_tokens < (100 if sample else 20)


@pytest.mark.parametrize("settings", [GenerationSettings(max_new_tokens=0), GenerationSettings(max_new_tokens=10_000),
                                      GenerationSettings(do_sample=True, temperature=9.0)])
def test_out_of_range_generation_settings_are_refused(settings):
    with pytest.raises(ValueError):
        settings.checked()


@pytest.fixture
def tiny_traces(trained_cf, tiny_prepared, tiny_config):
    from thinkrec.teacher.dataset import build_trace_dataset, system1_train_scores
    from thinkrec.teacher.grounded import GroundedTeacher

    scores = system1_train_scores(tiny_prepared, tiny_config, "mf")
    return build_trace_dataset(tiny_prepared, tiny_config, GroundedTeacher(0), scores, 1.0, 2, 0)


def test_training_mixes_reasoning_rows_resumes_and_ships_an_adapter(tiny_traces, tiny_prepared, tiny_config,
                                                                     tiny_llama, tiny_tokenizer):
    import copy
    import json

    from thinkrec.llm.train import build_examples, train_system

    settings = tiny_config.llm
    settings.cf_encoder, settings.train_tokens, settings.batch_size = "mf", 4000, 2
    settings.valid_rows, settings.eval_every_tokens, settings.reasoning_share = 2, 10**9, 0.5
    spec = system_spec("thinkrec")
    model, builder = new_system(spec, tiny_prepared, tiny_config, copy.deepcopy(tiny_llama), tiny_tokenizer)
    examples = build_examples(spec, builder, tiny_prepared, tiny_config, tiny_traces)
    total = sum(e.tokens for e in examples)
    assert total - max(e.tokens for e in examples) < settings.train_tokens <= total
    reasoning = [e for e in examples if e.reasoning]
    assert reasoning and all(e.target[-1] == tiny_tokenizer.eos_token_id for e in reasoning)
    verdicts = [e for e in examples if not e.reasoning]
    assert verdicts and all(len(e.target) == 1 for e in verdicts)  # the verdict alone: no stop after it
    assert tiny_tokenizer.decode(reasoning[0].target[:1]) in ("Yes", "No")

    report = train_system(spec, tiny_prepared, tiny_config, tiny_traces, copy.deepcopy(tiny_llama), tiny_tokenizer)
    assert report["steps"] == len(examples) // 2 + len(examples) % 2 and report["reasoning_examples"] == len(reasoning)
    progress = json.loads((tiny_config.paths.training / "llm" / "thinkrec" / "progress.json").read_text())
    assert progress["step"] == report["steps"] and len(progress["evaluations"]) == 1
    folder = tiny_config.paths.checkpoints / "llm" / "thinkrec"
    assert (folder / "adapter" / "adapter_model.safetensors").exists() and (folder / "projector.safetensors").exists()

    again = train_system(spec, tiny_prepared, tiny_config, tiny_traces, copy.deepcopy(tiny_llama), tiny_tokenizer)
    assert again["train_tokens"] == report["train_tokens"] and len(again["evaluations"]) == 1  # nothing redone
    assert report["seconds"] > 0 and again["seconds"] == report["seconds"]  # wall time adds up over resumed runs


def test_reasoning_system_refuses_to_train_without_traces(trained_cf, tiny_prepared, tiny_config, tiny_llama,
                                                          tiny_tokenizer):
    from thinkrec.llm.train import build_examples

    model, builder = build("thinkrec", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    with pytest.raises(ValueError, match="reasoning traces"):
        build_examples(system_spec("thinkrec"), builder, tiny_prepared, tiny_config, None)


def test_losses_from_the_answer_window_equal_the_full_lm_head(trained_cf, tiny_prepared, tiny_config, tiny_llama,
                                                             tiny_tokenizer):
    model, builder = build("collm", tiny_prepared, tiny_config, tiny_llama, tiny_tokenizer)
    rows = tiny_prepared.split("train").head(3)
    prompts = [builder.encode_row(row) for _, row in rows.iterrows()]
    targets = [tiny_tokenizer.encode(text, add_special_tokens=False) for text in ("Yes", "No. It is a drama.", "Yes.")]
    batch = collate(prompts, tiny_tokenizer.pad_token_id, targets)
    labels = torch.tensor([1, 0, 1])
    window_bce, window_lm = model.losses(batch, labels)
    full_bce, full_lm = model.losses(batch, labels, full_head=True)
    assert torch.allclose(window_bce, full_bce, atol=1e-6) and torch.allclose(window_lm, full_lm, atol=1e-6)
    assert (window_lm > 0).all()
