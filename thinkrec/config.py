"""One configuration object for every path and hyper-parameter.

Defaults live in the dataclasses below; a JSON file (``--config``) and ``--set section.key=value``
overrides from the command line change them. Relative paths resolve against the project root,
so nothing depends on the machine the code runs on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A configuration file or override that cannot be applied."""


@dataclass
class PathsConfig:
    """Where inputs, intermediate work and shipped artefacts live."""

    work_dir: str = "work"  # prepared data and other rebuildable intermediates (git-ignored)
    checkpoints_dir: str = "checkpoints"  # shipped, trained artefacts
    training_dir: str = "training"  # resumable state of unfinished training runs (committed, apart from checkpoints)
    results_file: str = "RESULTS.md"  # the report (its chart goes to assets/ beside it)
    cache_dir: str = ""  # downloaded registry packages; "" -> $THINKREC_CACHE_DIR or ~/.cache/thinkrec

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path

    @property
    def work(self) -> Path:
        return self.resolve(self.work_dir)

    @property
    def checkpoints(self) -> Path:
        return self.resolve(self.checkpoints_dir)

    @property
    def training(self) -> Path:
        return self.resolve(self.training_dir)

    @property
    def results(self) -> Path:
        return self.resolve(self.results_file)

    @property
    def cache(self) -> Path | None:
        return self.resolve(self.cache_dir) if self.cache_dir else None


@dataclass
class FieldNames:
    """Column names of the RecBole atomic files (they differ between datasets)."""

    user: str = "user_id"
    item: str = "item_id"
    rating: str = "rating"
    time: str = "timestamp"
    title: str = "movie_title"
    year: str = "release_year"
    genres: str = "class"
    user_features: tuple[str, ...] = ("age", "gender", "occupation")


@dataclass
class DataConfig:
    """Which dataset, how it is labelled, split and turned into prompt rows."""

    dataset: str = "ml-100k"  # the file stem: <data_dir>/<dataset>.inter ...
    data_dir: str = ""  # a RecBole atomic-file folder; "" -> the packaged MovieLens-100K asset
    fields: FieldNames = field(default_factory=FieldNames)
    like_threshold: float = 4.0  # rating >= threshold -> like (label 1)
    split: str = "per_user"  # "per_user" (chronological per user) or "global" (one time cut)
    valid_share: float = 0.1
    test_share: float = 0.1
    history_len: int = 10
    max_keywords: int = 10
    min_item_support: int = 5  # train ratings an item needs before its rating tier is trusted
    kg_keywords: str = "audit"  # "audit": use the knowledge graph only if its links pass audit_kg; "always"; "never"

    def folder(self, paths: PathsConfig) -> Path | None:
        return paths.resolve(self.data_dir) if self.data_dir else None


@dataclass
class CFModelGrid:
    """A small grid of hyper-parameters for one System-1 encoder."""

    dims: tuple[int, ...] = (32, 64)
    learning_rates: tuple[float, ...] = (1e-3,)
    weight_decays: tuple[float, ...] = (1e-5, 1e-4)
    max_epochs: int = 30
    batch_size: int = 1024


@dataclass
class CFConfig:
    """Training of the System-1 collaborative-filtering encoders."""

    models: tuple[str, ...] = ("mf", "lightgcn", "sasrec")
    mf: CFModelGrid = field(default_factory=lambda: CFModelGrid(weight_decays=(1e-5, 1e-4), max_epochs=50))
    lightgcn: CFModelGrid = field(default_factory=lambda: CFModelGrid(
        dims=(64,), learning_rates=(1e-2,), weight_decays=(0.0, 1e-5), max_epochs=40, batch_size=4096))
    sasrec: CFModelGrid = field(default_factory=lambda: CFModelGrid(
        dims=(32, 64), learning_rates=(3e-3,), weight_decays=(0.0,), max_epochs=12, batch_size=2048))
    lightgcn_layers: int = 2
    sasrec_layers: int = 1
    sasrec_heads: int = 2
    sasrec_dropout: float = 0.2
    patience: int = 3  # epochs without a better valid AUC before stopping
    seed: int = 2025


@dataclass
class LLMConfig:
    """The LLM recommender: backbone, prompt, LoRA, training budget, scoring and generation."""

    backbone: str = "asset:backbone"  # "asset:backbone" (SmolLM2-135M GGUF) or an HF model id / local folder
    gguf_file: str = ""  # a GGUF file inside ``backbone`` when that is a folder of GGUF weights
    cf_encoder: str = "lightgcn"  # whose embeddings become the soft tokens (the best System-1 on valid)
    cf_match: bool = True  # add a soft token carrying the user-item match (u*i and the CF logit)
    history_len: int = 10  # interactions shown in the prompt (at most data.history_len)
    history_keywords: int = 2  # keywords shown per history item; the target shows all of its own
    prompt_evidence: bool = True  # show what the teacher argues from (profile line, all history genres, close films)
    prompt_evidence_lines: bool = False  # with prompt_evidence: every argument in lines, as traces word them
    prompt_evidence_sides: bool = False  # with prompt_evidence_lines: the arguments for a yes and for a no headed apart
    era_rule: str = "thirds"  # era keywords: "thirds" (early / mid / late decade) or "halves" (the shipped prompt's)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    projector_mult: int = 10  # projector: d -> mult * d -> hidden
    lr_lora: float = 5e-4
    lr_projector: float = 1e-3
    batch_size: int = 8
    autocast_bf16: bool = True  # forward and backward in bfloat16 autocast (fp32 master weights); see train_speed.py
    length_buckets: int = 32  # batches drawn from windows of this many batches sorted by length (0: pad as drawn)
    save_every_minutes: float = 10.0  # the resumable state is written at least this often
    train_tokens: int = 300_000  # training budget in tokens (about 220 tokens/s on 2 CPU cores: 23 min)
    reasoning_share: float = 0.2  # share of training rows that carry a reasoning trace
    init_from: str = ""  # a trained ThinkRec-global folder under training/ that its run starts from, under the
    # current prompt settings ("": fresh weights; its first training is part of the system's history)
    refine_tokens: int = 300_000  # with init_from: this run's budget (train_tokens stays the Yes/No budget of the
    # baselines and the experts' default)
    baseline_rows: str = "own"  # CoLLM / TALLRec rows: "own" draw filling train_tokens, or "thinkrec": exactly the
    # Yes/No rows ThinkRec-global trains on under the same settings (the same Yes/No budget, the fair comparison)
    bce_weight_reasoning: float = 0.1
    lm_weight_reasoning: float = 0.9
    bce_weight_rec: float = 0.9
    lm_weight_rec: float = 0.1
    traces_file: str = "teacher/traces_sample_v2.parquet"  # under checkpoints/ ("teacher/traces.parquet": the shipped)
    trace_rows: str = "sample"  # "sample": random train rows, System-1 errors at most at their rate; "errors": paper
    trace_system1: str = "mf"  # the System-1 model whose training errors receive traces (CoLLM-style in the paper)
    trace_random_share: float = 0.05  # "errors": train rows System-1 gets right that still receive a trace
    max_train_traces: int = 6000  # traces kept for training (the paper used about 4,000; the shipped file 3,000)
    reference_rows: int = 500  # fixed test rows with reference traces (METEOR etc.)
    reference_core_rows: int = 100  # the first reference rows, drawn as before: the shipped file's 100
    valid_rows: int = 200  # valid subset for model selection
    valid_sample: str = "rows"  # "rows": valid_rows random valid rows; "per_user": one valid row of every user
    heldout_traces: int = 0  # train traces kept out of training; their LM loss joins valid AUC in model selection
    select_auc_tolerance: float = 0.01  # a later step within this of the best valid AUC wins on held-out LM loss
    eval_rows: int = 500  # fixed test subset every LLM system is scored on
    eval_scope: str = "subset"  # "subset": the eval_rows test rows; "all": every test row and the valid subset too
    score_batch_size: int = 16  # rows per scoring batch (rows of similar length, so a batch barely pads)
    score_batch_tokens: int = 3072  # token slots per scoring batch at most (rows x longest prompt; 0: no cap):
    # 6 rows of a 500-token prompt score 1.2x faster than 16 (benchmarks/score_speed.py --batch-tokens)
    score_chunk_rows: int = 128  # rows per saved chunk of a resumable scoring run (under training/eval/scoring/)
    reasoning_chunk_rows: int = 20  # answers decoded together and saved as one chunk (training/eval/reasoning/)
    score_bf16_layers: int = 0  # leading decoder layers scored under bfloat16 autocast where the CPU has it
    # natively, the rest in fp32 (0: all fp32; all 30 fail the bar on the shipped ThinkRec: score_speed.py)
    score_compiled: bool = False  # those bfloat16 layers compiled (torch.compile; needs a C++ compiler): 1.1-1.2x
    score_fp32_margin: float = 0.0  # rows scored within this of 0.5 under bfloat16 are scored again in fp32
    score_fp32_answer: bool = False  # the answer position alone in fp32, on the bfloat16 layers' keys and values
    # (every other position): all 30 layers then meet the bar, faster than 24 (benchmarks/score_speed.py)
    score_bf16_fallback_layers: int = 0  # where score_bf16_layers miss the bar on a system's probe, this many
    # (fewer) are tried before fp32 (0: straight to fp32). Zero-shot, whose P(Yes) lie near 0.5, missed the bar on
    # its probe with 30 (gap 0.0101) and 24 (0.0107) answer-apart layers and met it with 12 (0.0066), eagerly
    eval_every_tokens: int = 150_000
    max_new_tokens: int = 160
    min_new_tokens: int = 32  # generation may not stop before this: a verdict alone explains nothing
    no_repeat_ngram: int = 6  # no 6-gram repeated within an answer: greedy decoding of a small LM loops
    no_repeat_spellings: bool = False  # the barred token also without (or with) its leading space: no "theirhistory"
    no_repeat_spares_quotes: bool = True  # the rule is off inside double quotes: a title named again stays whole
    no_repeated_citations: bool = True  # greedy decoding rewrites a sentence citing a film the answer cited already
    # (thinkrec/llm/citation_guard.py; the shipped answers are written with it)
    decoding_rules: str = "auto"  # the rules above: "on", "off", or "auto": off for a system whose answers
    # stored without them loop no more often and end a sentence as often (reasoning_scores.decodes_with_rules)
    decode_dtype: str = "auto"  # streamed answers' dtype: auto = bfloat16 where native, else float32 (llm_speed.py)
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 2025


GATE_TAU_RANGE = (0.01, 2.0)  # the gate temperatures a visitor may try (the ablation slider and shared links)


def check_number(name: str, value: object, low: float, high: float = math.inf, strict: bool = False) -> None:
    """A ValueError naming ``name`` unless ``value`` is a finite number in [low, high] (low excluded if strict)."""
    bound = f"greater than {low:g}" if strict else f"at least {low:g}"
    if high < math.inf:
        bound += f" and at most {high:g}"
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or value < low or (strict and value == low) or value > high:
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")


@dataclass(frozen=True)
class GateSettings:
    """The expert gate's softmax temperature and its two routing thresholds (``thinkrec.fusion.gate``)."""

    tau: float = 0.1
    single_margin: float = 0.6  # one expert if its weight > 0.5 + single_margin / K
    entropy_ratio: float = 0.95  # the global adapter if entropy >= entropy_ratio * ln K

    def __post_init__(self) -> None:
        check_number("gate tau", self.tau, low=0.0, strict=True)
        check_number("gate single_margin", self.single_margin, low=0.0)
        check_number("gate entropy_ratio", self.entropy_ratio, low=0.0, high=1.0)

    def single_threshold(self, k: int) -> float:
        return 0.5 + self.single_margin / k


@dataclass
class FusionConfig:
    """Instance-wise expert fusion: clusters, experts, gate and the user map."""

    encoder: str = "lightgcn"  # whose user embeddings are clustered and drive the gate
    ks: tuple[int, ...] = (2, 3, 4, 5)  # candidate numbers of clusters; chosen with the method by ``fusion.choice``
    methods: tuple[str, ...] = ("kmeans", "ward")  # clustering algorithms tried (the rule: ``fusion.choice``)
    expert_tokens: int = 20_000  # budget of each small-budget probe expert (``probe_experts``)
    probe_experts: bool = False  # also train small-budget experts of every candidate and add their fused valid AUC
    min_own_share: float = 0.95  # the choice rule: the gate must route this share of users to their own cluster
    full_expert_tokens: int = 0  # budget of each chosen expert; 0: 1/K of llm.train_tokens (rounded up)
    top_layers: int = 8  # only the LoRA of the top layers trains in an expert (0: all layers)
    gate: GateSettings = field(default_factory=GateSettings)
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    seed: int = 2025


@dataclass
class GuestConfig:
    """Visitors who build their own profile: how many picks, and how they are folded into the CF spaces."""

    min_picks: int = 3  # rated movies a built profile needs
    max_picks: int = 50
    fold_in_l2: float = 1.0  # L2 weight of the fold-in regression (median cosine to the trained user: 0.99 LightGCN)


@dataclass
class AnalysisConfig:
    """Honest intervals (a bootstrap over users) and the analysts' workbench slices and calibration bins."""

    resamples: int = 1000  # bootstrap resamples of the users
    confidence: float = 0.95  # coverage of every interval
    seed: int = 2025
    activity_edges: tuple[int, ...] = (25, 50, 100, 200)  # a user's train ratings: fewer than 25, 25-49, ...
    popularity_edges: tuple[int, ...] = (25, 50, 100, 200)  # an item's train ratings, binned the same way
    age_edges: tuple[int, ...] = (18, 25, 35, 45, 50, 56)  # MovieLens-1M's age bands: under 18, 18-24, ..., 56+
    calibration_bins: int = 10  # equal-width P(like) bins of the reliability diagram and the ECE
    disagreements: int = 200  # rows the disagreements table keeps
    cases_shown: int = 500  # rows the cases table shows, surest first (the CSV keeps all): a browser draws 10k slowly


@dataclass
class DemoConfig:
    """How the demo spends the CPU: a pick shows the cheap panels at once; the reasoning streams on Think,
    or by itself once the case has stayed the same for ``settle_seconds`` (with ``auto_think``)."""

    auto_think: bool = True
    settle_seconds: float = 1.5


@dataclass
class WhatIfConfig:
    """Editing a user's ratings (remove or flip films) and measuring whether cited reasons are real ones."""

    max_edits: int = 50  # films one edit may remove or flip
    min_shift: float = 0.05  # a P(like) move against the stated verdict that counts as "the reason mattered"
    bootstrap: int = 2000  # resamples of the answers for the faithfulness intervals
    seed: int = 2025  # the random control films and the bootstrap
    chunk_answers: int = 10  # answers per saved chunk of a resumable faithfulness run (training/eval/faithfulness/)


@dataclass
class PlanConfig:
    """The plan that sessions continue (``thinkrec.plan``): where it keeps what it trains and scores until all of
    it replaces the shipped checkpoints, and which systems' answers it evaluates first."""

    candidate_dir: str = "candidate"  # the plan's checkpoints tree, under paths.training_dir (committed with it)
    reasoning_systems: tuple[str, ...] = ("fused", "thinkrec", "collm", "tallrec")  # answers on the reference rows
    free_decoding_systems: tuple[str, ...] = ("fused", "thinkrec")  # also decoded without the rules: needed?
    faithfulness_systems: tuple[str, ...] = ("fused", "thinkrec", "collm", "tallrec")  # every system that writes text


@dataclass
class Config:
    """Everything the pipeline and the demo need to know."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cf: CFConfig = field(default_factory=CFConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    guest: GuestConfig = field(default_factory=GuestConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    whatif: WhatIfConfig = field(default_factory=WhatIfConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)

    @property
    def traces_path(self) -> Path:
        """The trace file the teacher writes and the LLMs learn from (``llm.traces_file``, under checkpoints/)."""
        return self.paths.checkpoints / self.llm.traces_file

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TRACE_ROWS = ("sample", "errors")
BASELINE_ROWS = ("own", "thinkrec")
# the prompt of a system saved before these settings existed
LEGACY_PROMPT = {"prompt_evidence": False, "era_rule": "halves", "prompt_evidence_lines": False,
                 "prompt_evidence_sides": False}
TRACE_PROMPT_KEYS = ("prompt_evidence", "era_rule", "prompt_evidence_lines")  # what a trace's wording depends on


def trained_prompt(settings: LLMConfig, stored: dict[str, Any]) -> LLMConfig:
    """``settings`` with the prompt settings a trained system recorded (``stored``: its saved ``llm_config``);
    a setting it does not record takes the value that system was trained with (``LEGACY_PROMPT``)."""
    return dataclasses.replace(settings, **{key: stored.get(key, legacy) for key, legacy in LEGACY_PROMPT.items()})


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Convert a JSON or command-line value to the type of the field it replaces."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if isinstance(current, (int, float)) and not isinstance(value, bool) and isinstance(value, (int, float)):
        return type(current)(value)
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        template = current[0] if current else None
        return tuple(_coerce(v, template, key) if template is not None else v for v in value)
    if isinstance(current, str) and isinstance(value, str):
        return value
    if current is None:
        return value
    raise ConfigError(f"{key}: expected {type(current).__name__}, got {value!r}")


def _apply(target: Any, updates: dict[str, Any], prefix: str = "") -> Any:
    """``target`` with ``updates`` applied; a frozen section (the gate's settings) is replaced, not changed."""
    known = {f.name for f in dataclasses.fields(target)}
    changes = {}
    for name, value in updates.items():
        key = f"{prefix}{name}"
        if name not in known:
            raise ConfigError(f"unknown setting {key!r}; known here: {', '.join(sorted(known))}")
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a section (object), got {value!r}")
            changes[name] = _apply(current, value, prefix=f"{key}.")
        else:
            changes[name] = _coerce(value, current, key)
    if not target.__dataclass_params__.frozen:
        for name, value in changes.items():
            setattr(target, name, value)
        return target
    try:
        return dataclasses.replace(target, **changes)
    except ValueError as err:
        raise ConfigError(f"{prefix.rstrip('.')}: {err}") from err


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b=value`` into ``{"a": {"b": value}}``; the value is JSON or a bare string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    nested: dict[str, Any] = {}
    cursor = nested
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the JSON file at ``path`` (if any), then ``section.key=value`` overrides."""
    config = Config()
    if path is not None:
        file = Path(path)
        try:
            updates = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"configuration file {file} does not exist") from err
        except json.JSONDecodeError as err:
            raise ConfigError(f"configuration file {file}: invalid JSON at line {err.lineno}: {err.msg}") from err
        if not isinstance(updates, dict):
            raise ConfigError(f"configuration file {file}: the top level must be an object")
        config = _apply(config, updates)
    for text in overrides or []:
        config = _apply(config, parse_override(text))
    return config
