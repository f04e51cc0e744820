"""The full training budget as one plan that every session continues from where it stands.

Stages, in order (``STAGES``): ThinkRec-global, the choice of clustering, the chosen experts, CoLLM-style,
TALLRec-style. The settings are one file (``training/plan.json``); the state is the training state under
``training/`` that each session commits. ``continue_plan`` skips the stages that are done, runs the
others in order inside one time box (``--max-minutes``) and logs, per stage, the tokens trained so far
against those planned. A stage is done when what it ships was saved from its finished state: an LLM
system whose ``config.json`` records its state's digest; a choice made from the current inputs; experts
whose selection records that choice and the current global adapter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from thinkrec import expert_stages, pipeline
from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.fusion.experts import load_chosen_clustering, read_choice
from thinkrec.llm.systems import llm_dir, system_spec
from thinkrec.llm.train import read_state, shipped_digest, system_scope
from thinkrec.timebox import TimeBox

log = logging.getLogger(__name__)
LLM_STAGES = ("thinkrec", "collm", "tallrec")
STAGES = ("thinkrec", "clustering", "experts", "collm", "tallrec")


@dataclass(frozen=True)
class StageStatus:
    """Where one stage stands: done or not, tokens trained over all runs and planned, training seconds so far."""

    stage: str
    done: bool
    tokens: int
    planned: int | None  # None: known once the stage has started (or once the clustering is chosen)
    seconds: float

    def line(self) -> str:
        planned = "?" if self.planned is None else f"{self.planned:,}"
        share = f" ({self.tokens / self.planned:.0%})" if self.planned else ""
        return (f"{self.stage:<10} {'done' if self.done else 'to do':<5} {self.tokens:>11,} / {planned:>11} "
                f"tokens{share}, {self.seconds / 3600:.1f} h of training so far")


def stage_status(config: Config, stage: str) -> StageStatus:
    """Read from the stored states only: nothing is loaded or trained."""
    if stage in LLM_STAGES:
        return llm_status(config, stage)
    if stage == "clustering":
        return clustering_status(config)
    if stage == "experts":
        return experts_status(config)
    raise ValueError(f"unknown plan stage {stage!r}; the stages are {', '.join(STAGES)}")


def llm_status(config: Config, name: str) -> StageStatus:
    state = read_state(system_scope(system_spec(name), config).state_folder(config)) or {}
    digest = state.get("data_digest")
    done = digest is not None and shipped_digest(llm_dir(config, name)) == digest
    budget = config.llm.train_tokens if name == "thinkrec" or config.llm.baseline_rows == "own" else None
    return StageStatus(name, done, state.get("tokens", 0), state.get("planned_tokens", budget),
                       state.get("seconds") or 0.0)


def clustering_status(config: Config) -> StageStatus:
    choice = read_choice(config)
    done = choice is not None and choice["inputs"] == expert_stages.choice_inputs(config)
    fusion = config.fusion
    planned = len(fusion.methods) * sum(fusion.ks) * fusion.expert_tokens if fusion.probe_experts else 0
    states = []
    if fusion.probe_experts:
        folder = expert_stages.probe_dir(config, expert_stages.global_origin(config))
        states = [read_state(path.parent) for path in folder.glob("*/k*/state/*/progress.json")]
    return StageStatus("clustering", done, sum(s["tokens"] for s in states), planned,
                       sum(s.get("seconds") or 0.0 for s in states))


def experts_status(config: Config) -> StageStatus:
    if read_choice(config) is None:
        return StageStatus("experts", False, 0, None, 0.0)
    scopes = expert_stages.expert_scopes(config, load_chosen_clustering(config), origin="")
    states = [read_state(scope.state_folder(config)) or {} for scope in scopes]
    planned = sum(s.get("planned_tokens", scope.train_tokens) for s, scope in zip(states, scopes, strict=True))
    return StageStatus("experts", expert_stages.experts_current(config), sum(s.get("tokens", 0) for s in states),
                       planned, sum(s.get("seconds") or 0.0 for s in states))


def plan_status(config: Config) -> list[StageStatus]:
    return [stage_status(config, stage) for stage in STAGES]


def log_status(statuses: list[StageStatus], heading: str) -> None:
    """Each stage's line, then the tokens left and, at the rate of the runs so far, the hours they take."""
    log.info("plan %s:", heading)
    for status in statuses:
        log.info("  %s", status.line())
    left = [s for s in statuses if not s.done]
    if not left:
        log.info("  every stage is done: score and report with `python -m thinkrec --config <the plan's file> all`")
        return
    tokens = sum(max(s.planned - s.tokens, 0) for s in left if s.planned is not None)
    unknown = [s.stage for s in left if s.planned is None]
    seconds, trained = sum(s.seconds for s in statuses), sum(s.tokens for s in statuses)
    rate = f", about {tokens / (trained / seconds) / 3600:.1f} h at {trained / seconds:.0f} tokens/s" \
        if seconds and trained else ""
    log.info("  left: %s tokens%s%s", f"{tokens:,}", rate,
             f" (plus {', '.join(unknown)}: sized once started)" if unknown else "")


def continue_plan(prepared: PreparedData, config: Config, max_minutes: float | None = None) -> list[StageStatus]:
    """Run the stages that are not done, in order, until the plan is done or the time box ends (a stage that
    reaches the deadline saves its state; the next call continues it). Returns where the plan stands."""
    timebox = TimeBox(max_minutes)
    log_status(plan_status(config), "at the start")
    for stage in STAGES:
        if stage_status(config, stage).done:
            continue
        if not timebox.may_start():
            log.info("plan: the time box has ended before %s", stage)
            break
        left = timebox.minutes_left()
        log.info("plan: %s%s", stage, "" if left is None else f" ({left:.1f} minutes left)")
        if not run_stage(stage, prepared, config, timebox):
            break
    statuses = plan_status(config)
    log_status(statuses, "at the end")
    return statuses


def run_stage(stage: str, prepared: PreparedData, config: Config, timebox: TimeBox) -> bool:
    """Continue one stage inside the time box; whether it finished."""
    if stage in LLM_STAGES:
        report = pipeline.stage_train_llm(stage, prepared, config, force=True, max_minutes=timebox.minutes_left())
        timebox.started()
        return bool(report["finished"])
    if stage == "clustering":
        return expert_stages.stage_clustering(prepared, config, timebox) is not None
    return expert_stages.stage_experts(prepared, config, force=True, timebox=timebox).get("finished", True)
