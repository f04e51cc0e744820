"""Shared fixtures: a tiny RecBole dataset and a configuration that points at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkrec.config import Config, load_config

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def tiny_config(tmp_path: Path) -> Config:
    """Settings for the 4-user, 6-item fixture, writing into a temporary folder."""
    return load_config(overrides=[
        f"paths.work_dir={tmp_path / 'work'}",
        f"paths.checkpoints_dir={tmp_path / 'checkpoints'}",
        f"paths.training_dir={tmp_path / 'training'}",
        f"paths.results_file={tmp_path / 'RESULTS.md'}",
        f"data.data_dir={FIXTURES / 'tiny'}",
        "data.dataset=tiny",
        "data.history_len=4",
        "data.min_item_support=1",
    ])


@pytest.fixture
def tiny_prepared(tiny_config):
    from thinkrec.data.prepared import prepare_dataset

    return prepare_dataset(tiny_config)


@pytest.fixture
def tiny_explorer(tiny_config, tiny_prepared):
    """An Explorer over the tiny dataset with quickly trained System-1 encoders."""
    from thinkrec.cf.store import train_all_cf
    from thinkrec.explorer import Explorer

    for name in tiny_config.cf.models:
        grid = getattr(tiny_config.cf, name)
        grid.dims, grid.learning_rates, grid.weight_decays = (8,), (0.05,), (0.0,)
        grid.max_epochs, grid.batch_size = 2, 16
    train_all_cf(tiny_prepared, tiny_config)
    return Explorer.load(tiny_config, with_llm=False)


CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level tokenizer built in memory, with a chat template and single-token Yes / No."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: index for index, char in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.add_tokens(["Yes", "No"])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture
def tiny_llama(tiny_tokenizer):
    """A randomly initialised two-layer Llama sized for the tiny tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_pipeline_config(tiny_explorer, tiny_config, tiny_llama, tiny_tokenizer, tmp_path):
    folder = tmp_path / "tiny-backbone"
    tiny_llama.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    overrides = {"backbone": str(folder), "cf_encoder": "mf", "train_tokens": 3000, "batch_size": 2,
                 "valid_rows": 3, "eval_rows": 4, "reference_rows": 2, "max_train_traces": 20,
                 "max_new_tokens": 8, "trace_random_share": 1.0, "reasoning_share": 0.5}
    for key, value in overrides.items():
        setattr(tiny_config.llm, key, value)
    fusion = tiny_config.fusion
    fusion.encoder, fusion.ks, fusion.expert_tokens, fusion.top_layers = "mf", (2,), 1500, 1
    return tiny_config


@pytest.fixture
def tiny_llm_explorer(tiny_prepared, tiny_pipeline_config):
    """An Explorer whose LLM bank holds a tiny trained ThinkRec with two cluster experts, its test
    predictions (global and fused) and the user map."""
    from thinkrec import expert_stages, pipeline
    from thinkrec.explorer import Explorer

    config = tiny_pipeline_config
    pipeline.stage_traces(tiny_prepared, config)
    pipeline.stage_train_llm("thinkrec", tiny_prepared, config)
    pipeline.stage_eval_llm("thinkrec", tiny_prepared, config)
    expert_stages.stage_experts(tiny_prepared, config)
    pipeline.stage_user_map(tiny_prepared, config)
    pipeline.stage_eval_fused(tiny_prepared, config)
    return Explorer.load(config)
