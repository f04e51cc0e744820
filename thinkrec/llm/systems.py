"""The LLM recommenders compared here, built from one code path.

| system    | CF soft tokens | keywords | reasoning traces | trained        |
|-----------|----------------|----------|------------------|----------------|
| zeroshot  | no             | yes      | no               | no             |
| tallrec   | no             | no       | no               | LoRA           |
| collm     | yes            | yes      | no               | LoRA+projector |
| thinkrec  | yes            | yes      | yes              | LoRA+projector |
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from thinkrec import registry
from thinkrec.cf.store import cf_dir, load_embeddings
from thinkrec.config import Config, trained_prompt
from thinkrec.data.prepared import PreparedData
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json, sha256_of
from thinkrec.llm.backbone import load_backbone
from thinkrec.llm.model import CFTables, SoftTokenLM
from thinkrec.llm.prompt import PromptBuilder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemSpec:
    """What distinguishes one LLM recommender from another."""

    name: str
    cf_tokens: bool
    keywords: bool
    reasoning: bool
    trained: bool


SYSTEMS = {
    "zeroshot": SystemSpec("zeroshot", cf_tokens=False, keywords=True, reasoning=False, trained=False),
    "tallrec": SystemSpec("tallrec", cf_tokens=False, keywords=False, reasoning=False, trained=True),
    "collm": SystemSpec("collm", cf_tokens=True, keywords=True, reasoning=False, trained=True),
    "thinkrec": SystemSpec("thinkrec", cf_tokens=True, keywords=True, reasoning=True, trained=True),
}


def system_spec(name: str) -> SystemSpec:
    if name not in SYSTEMS:
        raise ValueError(f"unknown LLM system {name!r}; choose from {', '.join(SYSTEMS)}")
    return SYSTEMS[name]


def llm_dir(config: Config, name: str) -> Path:
    return registry.folder(config, name)


def adapter_dir(config: Config, name: str) -> Path:
    """The PEFT adapter folder of a trained LLM system."""
    return llm_dir(config, name) / "adapter"


def answer_ids(tokenizer) -> tuple[int, int]:
    """Token ids of "Yes" and "No" as the first answer token."""
    yes, no = (tokenizer.encode(word, add_special_tokens=False) for word in ("Yes", "No"))
    if len(yes) != 1 or len(no) != 1:
        raise ValueError(f"the tokenizer splits Yes/No into several tokens ({yes}, {no})")
    return yes[0], no[0]


def lora_config(config: Config) -> LoraConfig:
    settings = config.llm
    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=list(settings.target_modules), task_type="CAUSAL_LM")


def cf_tables(config: Config) -> CFTables:
    """The soft-token encoder's embeddings and the biases of its score."""
    embeddings = load_embeddings(config, config.llm.cf_encoder)
    path = cf_dir(config) / config.llm.cf_encoder / "model.safetensors"
    try:
        weights = load_file(path)
    except Exception as err:  # missing or damaged
        raise CheckpointError(f"{path}: cannot load ({err}); run `python -m thinkrec train-cf`") from err
    return CFTables(embeddings["user"], embeddings["item"], weights["user_bias.weight"], weights["item_bias.weight"],
                    weights["global_bias"])


def build_model(spec: SystemSpec, backbone, tokenizer, config: Config) -> SoftTokenLM:
    """The system's model around ``backbone`` (projectors freshly initialised)."""
    tables = cf_tables(config) if spec.cf_tokens else None
    return SoftTokenLM(backbone, tables, *answer_ids(tokenizer), config.llm.projector_mult, match=config.llm.cf_match)


def load_projected_model(spec: SystemSpec, backbone, tokenizer, config: Config, folder: Path) -> SoftTokenLM:
    """``build_model`` with the projectors trained in ``folder`` (when the system has CF tokens), in eval mode."""
    model = build_model(spec, backbone, tokenizer, config)
    if model.projector is not None:
        model.load_projectors(folder / "projector.safetensors")
    return model.eval()


def recorded_prompt(folder: Path) -> dict | None:
    """The prompt settings a system folder records: a trained system's ``config.json`` (its ``llm_config``),
    else the ``metrics.json`` of its stored test predictions (its ``prompt``); ``None`` when it holds neither."""
    for name, key in (("config.json", "llm_config"), ("metrics.json", "prompt")):
        if (folder / name).exists():
            return read_json(folder / name).get(key, {})
    return None


def with_trained_traces(config: Config) -> Config:
    """``config`` with ``llm.traces_file`` the trace file ThinkRec-global's ``config.json`` records it learnt from,
    where it records one: the traces its phrasebook comes from and its answers are compared with."""
    recorded = (recorded_prompt(llm_dir(config, "thinkrec")) or {}).get("traces_file", config.llm.traces_file)
    return replace(config, llm=replace(config.llm, traces_file=recorded))


def prompt_builder(spec: SystemSpec, prepared: PreparedData, tokenizer, config: Config,
                   folder: Path | None = None) -> PromptBuilder:
    """The system's prompt; ``folder``, where it records one (``recorded_prompt``), supplies the prompt
    settings the system was trained or scored with (settings it does not record: the published prompt's)."""
    settings = config.llm
    recorded = recorded_prompt(folder) if folder is not None else None
    if recorded is not None:
        settings = trained_prompt(settings, recorded)
    marks_close = settings.prompt_evidence and spec.cf_tokens
    items = load_embeddings(config, settings.cf_encoder)["item"] if marks_close else None
    return PromptBuilder(prepared, tokenizer, settings, use_cf_tokens=spec.cf_tokens, use_keywords=spec.keywords,
                         use_match=settings.cf_match, item_embeddings=items)


def new_system(spec: SystemSpec, prepared: PreparedData, config: Config, backbone=None, tokenizer=None):
    """A fresh (untrained) system: backbone + new LoRA (if trained) + new projector (if CF tokens)."""
    if backbone is None:
        backbone, tokenizer = load_backbone(config)
    if spec.trained:
        backbone = get_peft_model(backbone, lora_config(config))
    model = build_model(spec, backbone, tokenizer, config).eval()
    return model, prompt_builder(spec, prepared, tokenizer, config)


def init_folder(config: Config) -> Path | None:
    """The trained ThinkRec-global that a new run of it starts from (``llm.init_from``, under training/), or None."""
    if not config.llm.init_from:
        return None
    folder = config.paths.training / config.llm.init_from
    if not (folder / "config.json").exists() or not (folder / "adapter").is_dir():
        raise CheckpointError(f"llm.init_from: {folder} holds no trained ThinkRec-global (config.json and adapter/)")
    return folder


def initial_system(spec: SystemSpec, prepared: PreparedData, config: Config, backbone=None, tokenizer=None):
    """What a run of ``spec`` starts from: fresh weights (``new_system``), or, for ThinkRec-global under
    ``llm.init_from``, the system trained there with its LoRA and projector trainable and the prompt of the
    current settings (not the one it was trained with: a refinement may teach a new prompt)."""
    folder = init_folder(config) if spec.reasoning else None
    if folder is None:
        return new_system(spec, prepared, config, backbone, tokenizer)
    if backbone is None:
        backbone, tokenizer = load_backbone(config)
    model, _ = load_system(spec.name, prepared, config, backbone, tokenizer, folder=folder, trainable=True)
    return model, prompt_builder(spec, prepared, tokenizer, config)


def save_system(model: SoftTokenLM, spec: SystemSpec, folder: Path, meta: dict) -> None:
    """LoRA as a standard PEFT folder, projector as safetensors, the rest as JSON (written last). The folder is
    emptied first: what was scored on the weights it held (predictions, reasoning) goes with them."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if spec.trained:
        model.backbone.save_pretrained(folder / "adapter")
    if model.projector is not None:
        save_file(model.projector_state(), folder / "projector.safetensors")
    (folder / "config.json").write_text(json.dumps({"system": asdict(spec), **meta}, indent=2), encoding="utf-8")


def system_digest(folder: Path) -> str:
    """A fingerprint of a trained system's weights (its adapter and projector files): what a run that starts
    from them records, so that it is refused once they have changed."""
    adapter, projector = folder / "adapter" / "adapter_model.safetensors", folder / "projector.safetensors"
    if not adapter.exists():
        raise CheckpointError(f"{adapter}: missing; train the system first")
    files = [adapter, projector] if projector.exists() else [adapter]
    return hashlib.sha256("".join(sha256_of(path) for path in files).encode()).hexdigest()


def load_system(name: str, prepared: PreparedData, config: Config, backbone=None, tokenizer=None,
                folder: Path | None = None, trainable: bool = False):
    """A trained system from ``checkpoints/llm/<name>/`` (or ``folder``); zero-shot needs no files.

    ``trainable`` keeps the LoRA weights trainable so a run can continue from them."""
    spec = system_spec(name)
    if backbone is None:
        backbone, tokenizer = load_backbone(config)
    folder = folder or llm_dir(config, name)
    if spec.trained:
        if not (folder / "config.json").exists():
            raise CheckpointError(f"{folder / 'config.json'}: missing; train it with "
                                  f"`python -m thinkrec train-llm {name}`")
        try:
            backbone = PeftModel.from_pretrained(backbone, folder / "adapter", is_trainable=trainable)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{folder / 'adapter'}: cannot load the LoRA adapter ({err})") from err
    model = load_projected_model(spec, backbone, tokenizer, config, folder)
    return model, prompt_builder(spec, prepared, tokenizer, config, folder if spec.trained else None)


def expert_start(prepared: PreparedData, config: Config, top_layers: int, backbone=None, tokenizer=None):
    """The global ThinkRec model as the starting point of a cluster expert: its LoRA trains (only in
    the top ``top_layers`` layers when that is positive), the projector stays frozen and shared."""
    model, builder = load_system("thinkrec", prepared, config, backbone, tokenizer, trainable=True)
    n_layers = model.backbone.get_base_model().config.num_hidden_layers
    first_trained = n_layers - top_layers if top_layers > 0 else 0
    for name, param in model.named_parameters():
        layer = re.search(r"\.layers\.(\d+)\.", name)
        param.requires_grad_("lora_" in name and (layer is None or int(layer.group(1)) >= first_trained))
    return model, builder
