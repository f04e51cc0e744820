"""Load the backbone causal LM and its tokenizer.

The default is SmolLM2-135M-Instruct from its GGUF (a registry package). Dequantising the GGUF
takes a while, so the float weights are converted once into a safetensors folder under the work
directory and loaded from there afterwards. Any Hugging Face causal LM (hub id or local folder,
safetensors or GGUF) works through ``llm.backbone`` / ``llm.gguf_file``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkrec.assets import resolve_asset
from thinkrec.config import Config

log = logging.getLogger(__name__)
ASSET_PREFIX = "asset:"


def _converted_dir(config: Config, name: str) -> Path:
    return config.paths.work / "backbones" / name


def _load(source: str | Path, gguf_file: str | None, dtype: torch.dtype):
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    return model, tokenizer


def _from_asset(config: Config, asset: str, dtype: torch.dtype):
    """A registry GGUF, converted once to a safetensors folder for fast later loads."""
    folder = _converted_dir(config, asset)
    if (folder / "config.json").exists():
        return _load(folder, None, dtype)
    gguf = resolve_asset(asset, config.paths.cache)
    log.info("converting %s to a safetensors folder (once): %s", gguf.name, folder)
    model, tokenizer = _load(gguf.parent, gguf.name, torch.float32)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # save_pretrained refuses GGUF-loaded models; the dequantised weights are plain float tensors.
    save_model(model, str(partial / "model.safetensors"), metadata={"format": "pt"})
    model.config.to_json_file(partial / "config.json")
    tokenizer.save_pretrained(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return model.to(dtype), tokenizer


def load_backbone(config: Config, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) for ``config.llm.backbone``, in eval mode, with a padding token set."""
    source = config.llm.backbone
    if source.startswith(ASSET_PREFIX):
        model, tokenizer = _from_asset(config, source[len(ASSET_PREFIX):], dtype)
    else:
        local = config.paths.resolve(source)
        model, tokenizer = _load(local if local.exists() else source, config.llm.gguf_file or None, dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer
