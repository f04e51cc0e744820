"""The analysts' view of the stored test predictions: filters, curated cases and CSV export.

Everything here works on ``Explorer.case_table()``: one row per test-subset case with the ids, the
title, the truth, the user's cluster and a P(like) column per system (keys as in
``thinkrec.registry``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from thinkrec import registry

SHOW = ("all cases", "errors", "correct", "disagreements")
ID_COLUMNS = ["user_id", "item_id", "title", "liked", "cluster"]


def scored_systems(table: pd.DataFrame) -> list[str]:
    llms = registry.keys(registry.LLM, registry.FUSED)[::-1]  # the most complete ThinkRec first
    return [s for s in (*llms, *registry.keys(registry.SYSTEM_1)) if s in table.columns]


def default_pair(table: pd.DataFrame) -> tuple[str | None, str | None]:
    """The system analysts look at first (the most complete ThinkRec there is) and its System-1 rival."""
    systems = scored_systems(table)
    main = next((s for s in registry.keys(registry.LLM, registry.FUSED)[::-1] if s in systems),
                systems[0] if systems else None)
    rival = next((s for s in ("lightgcn", "mf", "sasrec") if s in systems and s != main), None)
    return main, rival


def filter_cases(table: pd.DataFrame, system: str, rival: str | None, show: str, cluster: str | int | None,
                 min_confidence: float) -> pd.DataFrame:
    """The cases matching the filters, with the chosen systems' P(like) and verdict correctness.

    ``show``: all cases, errors / correct answers of ``system``, or cases where ``system`` and
    ``rival`` give different verdicts. ``min_confidence`` (0..1) keeps cases where ``system`` is at
    least that sure: |2 P(like) - 1| >= min_confidence. ``cluster`` "all" or None keeps every cluster.
    """
    if show not in SHOW:
        raise ValueError(f"show must be one of {', '.join(SHOW)}, not {show!r}")
    if system not in table.columns or (rival is not None and rival not in table.columns):
        raise ValueError(f"no stored predictions for {system if system not in table.columns else rival!r}")
    verdict = table[system] > 0.5
    keep = np.abs(2 * table[system] - 1) >= min_confidence
    if show == "errors":
        keep &= verdict != table["liked"]
    elif show == "correct":
        keep &= verdict == table["liked"]
    elif show == "disagreements" and rival is not None:
        keep &= verdict != (table[rival] > 0.5)
    if cluster not in (None, "", "all"):
        keep &= table["cluster"] == int(cluster)
    columns = ID_COLUMNS + [system] + ([rival] if rival and rival != system else [])
    shown = table.loc[keep, columns].copy()
    shown[f"{system} right"] = (shown[system] > 0.5) == shown["liked"]
    labels = {s: f"P(like) {registry.label(s)}" for s in (system, rival) if s}
    return shown.rename(columns=labels).reset_index(drop=True)


def curated_cases(table: pd.DataFrame, per_kind: int = 2) -> list[tuple[str, str]]:
    """Example cases worth a stakeholder's look: clear hits, disagreements with System-1 both ways,
    and ThinkRec's most confident mistakes. Values are ``"<user_id>|<item_id>"``."""
    main, rival = default_pair(table)
    if main is None or table.empty:
        return []
    right = (table[main] > 0.5) == table["liked"]
    confidence = np.abs(2 * table[main] - 1)
    kinds = [("Clear hit", right)]
    if rival is not None:
        rival_right = (table[rival] > 0.5) == table["liked"]
        kinds += [(f"{registry.label(main)} right, {registry.label(rival)} wrong", right & ~rival_right),
                  (f"{registry.label(rival)} right, {registry.label(main)} wrong", ~right & rival_right)]
    kinds.append(("Instructive error", ~right))
    cases, seen = [], set()
    for kind, mask in kinds:
        ranked = table[mask].assign(confidence=confidence[mask]).sort_values("confidence", ascending=False)
        taken = 0
        for row in ranked.itertuples():
            key = f"{row.user_id}|{row.item_id}"
            if taken == per_kind:
                break
            if key in seen:
                continue
            seen.add(key)
            taken += 1
            verdict = "liked" if row.liked else "did not like"
            cases.append((f"{kind}: user {row.user_id}, {row.title} ({verdict})", key))
    return cases


def export_csv(frame: pd.DataFrame, folder: Path | None = None) -> Path:
    """Write the current filter's rows to a new CSV file (formula-safe) and return its path."""
    folder = Path(folder or tempfile.gettempdir())
    handle = tempfile.NamedTemporaryFile("w", suffix=".csv", prefix="thinkrec-cases-", dir=folder, delete=False,
                                         encoding="utf-8", newline="")
    with handle:
        frame.map(defuse_formula).to_csv(handle, index=False)
    return Path(handle.name)


def defuse_formula(value):
    """Text a spreadsheet would run as a formula (=, +, -, @ first) is prefixed with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
