"""The reasoning-trace dataset: which rows get a trace, and the traces themselves.

Two rules choose the training rows (``llm.trace_rows``). "errors" is the paper's: every training
row the System-1 model gets wrong, plus a random share of the others. A model trained mostly on
those learns to contradict the CF signal, so the default, "sample", takes a representative sample
of the training rows in which System-1's errors make up no more than their natural rate. Either
way a fixed random subset of test rows gets reference traces, against which generated explanations
are scored (METEOR and the other text metrics); it depends only on the seed, and its first
``reference_core`` rows are drawn as the shipped 100 were.

The saved frame records the prompt settings its evidence was gathered for (``attrs["prompt"]``),
so training can refuse traces that state facts its prompt does not show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from thinkrec.cf.store import cf_dir, load_cf_model, load_embeddings
from thinkrec.cf.train import predict, rows_to_batch
from thinkrec.config import LEGACY_PROMPT, TRACE_PROMPT_KEYS, TRACE_ROWS, Config, LLMConfig
from thinkrec.data.atomic import DataFileError
from thinkrec.data.prepared import PreparedData
from thinkrec.teacher.evidence import EvidenceBuilder
from thinkrec.teacher.grounded import Teacher

COLUMNS = ["user", "item", "timestamp", "label", "split", "purpose", "trace", "teacher", "evidence"]


def system1_train_scores(prepared: PreparedData, config: Config, name: str = "mf") -> np.ndarray:
    """Scores of the trained CF model ``name`` on the train split, in ``prepared.split("train")`` order."""
    model, _ = load_cf_model(cf_dir(config) / name, prepared, config)
    return predict(model, rows_to_batch(prepared, prepared.split("train")))


def system1_errors(prepared: PreparedData, system1_scores_train: np.ndarray) -> np.ndarray:
    """Which train rows (in ``prepared.split("train")`` order) System-1 gets wrong at a 0.5 threshold."""
    train = prepared.split("train")
    scores = np.asarray(system1_scores_train, dtype=float)
    if scores.shape != (len(train),):
        raise ValueError(f"expected {len(train)} train scores, got an array of shape {scores.shape}")
    return (scores > 0.5).astype(int) != train["label"].to_numpy()


def reference_rows(prepared: PreparedData, size: int, seed: int, core: int | None = None) -> pd.DataFrame:
    """``size`` fixed random test rows (purpose "reference"): first ``core`` of them (all when ``None``) drawn
    alone, so they stay the same whatever ``size`` is, then the rest from the other test rows."""
    if size < 0:
        raise ValueError(f"reference_size must not be negative, not {size}")
    test = prepared.split("test")
    size = min(size, len(test))
    first = min(size if core is None else core, size)
    picked = np.sort(np.random.default_rng([seed, 1]).choice(len(test), first, replace=False))
    rest = np.setdiff1d(np.arange(len(test)), picked)
    more = np.sort(np.random.default_rng([seed, 2]).choice(rest, size - first, replace=False))
    return test.iloc[np.concatenate([picked, more])].assign(purpose="reference")


def select_rows(prepared: PreparedData, system1_scores_train: np.ndarray, random_share: float,
                reference_size: int, seed: int, reference_core: int | None = None) -> pd.DataFrame:
    """The paper's rule: System-1 errors, a random share of the other train rows, and the reference test rows,
    with ``purpose``."""
    if not 0.0 <= random_share <= 1.0:
        raise ValueError(f"random_share must lie in [0, 1], not {random_share}")
    wrong = system1_errors(prepared, system1_scores_train)
    train = prepared.split("train")
    others = np.flatnonzero(~wrong)
    extra = np.random.default_rng([seed, 0]).choice(others, int(round(random_share * len(others))), replace=False)
    return pd.concat([train.iloc[np.flatnonzero(wrong)].assign(purpose="train_error"),
                      train.iloc[np.sort(extra)].assign(purpose="train_random"),
                      reference_rows(prepared, reference_size, seed, reference_core)], ignore_index=True)


def sample_rows(prepared: PreparedData, system1_scores_train: np.ndarray, size: int, reference_size: int,
                seed: int, reference_core: int | None = None) -> pd.DataFrame:
    """A representative sample of ``size`` train rows, stratified so that System-1's errors
    ("train_error") make up their natural rate rounded down, the others "train_random"; then the
    reference test rows."""
    if size < 0:
        raise ValueError(f"the number of train traces must not be negative, not {size}")
    wrong = system1_errors(prepared, system1_scores_train)
    train = prepared.split("train")
    size = min(size, len(train))
    n_wrong = int(np.floor(size * wrong.mean())) if len(train) else 0
    rng = np.random.default_rng([seed, 3])
    errors = np.sort(rng.choice(np.flatnonzero(wrong), n_wrong, replace=False))
    rights = np.sort(rng.choice(np.flatnonzero(~wrong), size - n_wrong, replace=False))
    return pd.concat([train.iloc[errors].assign(purpose="train_error"),
                      train.iloc[rights].assign(purpose="train_random"),
                      reference_rows(prepared, reference_size, seed, reference_core)], ignore_index=True)


def trace_rows(prepared: PreparedData, system1_scores_train: np.ndarray, settings: LLMConfig) -> pd.DataFrame:
    """The rows that get a trace under ``settings.trace_rows``: at most ``max_train_traces`` train rows
    (in their selection order) and ``reference_rows`` test rows."""
    if settings.trace_rows not in TRACE_ROWS:
        raise ValueError(f"llm.trace_rows must be one of {', '.join(TRACE_ROWS)}, not {settings.trace_rows!r}")
    reference = (settings.reference_rows, settings.seed, settings.reference_core_rows)
    if settings.trace_rows == "sample":
        return sample_rows(prepared, system1_scores_train, settings.max_train_traces, *reference)
    rows = select_rows(prepared, system1_scores_train, settings.trace_random_share, *reference)
    train = rows[rows["purpose"] != "reference"]
    kept = train.sample(n=min(settings.max_train_traces, len(train)), random_state=settings.seed).sort_index()
    return pd.concat([kept, rows[rows["purpose"] == "reference"]], ignore_index=True)


def build_trace_dataset(prepared: PreparedData, config: Config, teacher: Teacher, system1_scores_train: np.ndarray,
                        random_share: float, reference_size: int, seed: int, item_embeddings: Any = None,
                        cf_name: str = "mf") -> pd.DataFrame:
    """One trace per row ``select_rows`` chooses (the paper's rule); see ``write_traces``."""
    rows = select_rows(prepared, system1_scores_train, random_share, reference_size, seed)
    return write_traces(prepared, config, teacher, rows, item_embeddings, cf_name)


def write_traces(prepared: PreparedData, config: Config, teacher: Teacher, rows: pd.DataFrame,
                 item_embeddings: Any = None, cf_name: str = "mf") -> pd.DataFrame:
    """One trace per row of ``rows``, from evidence gathered for the prompt ``config.llm`` renders;
    similarity uses ``item_embeddings`` or else the CF model ``cf_name``'s."""
    if item_embeddings is None:
        item_embeddings = load_embeddings(config, cf_name)["item"]
    settings = config.llm
    builder = EvidenceBuilder(prepared, item_embeddings, settings.history_len, settings.era_rule)
    traces, evidence = [], []
    values = zip(rows["user"], rows["item"], rows["label"], rows["hist_items"], rows["hist_labels"])
    for user, item, label, hist_items, hist_labels in tqdm(values, total=len(rows), desc=f"traces ({teacher.name})"):
        found = builder.build(user, item, label, hist_items, hist_labels)
        traces.append(teacher.explain(found, found.label))
        evidence.append(json.dumps(found.to_dict()))
    frame = rows.assign(trace=traces, teacher=teacher.name, evidence=evidence)[COLUMNS]
    frame.attrs["prompt"] = written_for(settings)
    return frame


def written_for(settings: LLMConfig) -> dict[str, Any]:
    """The prompt settings a trace's evidence depends on."""
    return {"history_len": settings.history_len, **{key: getattr(settings, key) for key in TRACE_PROMPT_KEYS}}


def check_traces_match(traces: pd.DataFrame, settings: LLMConfig) -> None:
    """Raise when ``traces`` were written for another prompt than ``settings`` render (a file saved before
    traces recorded it was written for the legacy prompt)."""
    stored = {**LEGACY_PROMPT, **traces.attrs.get("prompt", {})}
    wanted = written_for(settings)
    differ = {key: (stored[key], wanted[key]) for key in wanted if key in stored and stored[key] != wanted[key]}
    if differ:
        details = ", ".join(f"{key}: traces {a!r}, prompt {b!r}" for key, (a, b) in differ.items())
        raise ValueError(f"the traces were written for another prompt ({details}); write traces for this prompt "
                         "(`python -m thinkrec traces` with the same settings) or choose llm.traces_file")


def save_trace_dataset(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the traces and the prompt settings they were written for (parquet metadata, no pickle)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = frame[COLUMNS].copy()
    table.attrs = dict(frame.attrs)
    table.to_parquet(path, index=False)


def load_trace_dataset(path: str | Path) -> pd.DataFrame:
    """Read a saved trace dataset; a missing, unreadable or incomplete file raises ``DataFileError``."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise DataFileError(f"{path}: cannot read the trace dataset ({err})") from err
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: the trace dataset lacks columns {missing}")
    return frame
