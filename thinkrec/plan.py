"""The full budget, training and evaluation, as one plan that every session continues from where it stands.

Stages, in order (``STAGES``): ThinkRec-global, the choice of clustering, the chosen experts, CoLLM-style,
TALLRec-style; then the user map, every LLM system scored on the rows ``llm.eval_scope`` names, the
answers of ``plan.reasoning_systems`` on the reference rows (and of ``plan.free_decoding_systems`` decoded
without the no-repeat and minimum-length rules), the faithfulness of
``plan.faithfulness_systems``; last, the promotion. The settings are one file (``training/plan.json``).

Everything the plan trains and scores goes into its own checkpoints tree, the candidate (``plan.candidate_dir``
under ``training/``, seeded with the shipped CF encoders and teacher traces), so that the shipped
``checkpoints/`` stay one consistent set until the whole plan is done: the promotion then replaces the
shipped LLM systems with the candidate's and rewrites the report and the analysts' workbench. Training
state, the choice of clustering and unfinished evaluations live under ``training/``; each session commits
``training/``. ``continue_plan`` skips the stages that are done, runs the others in order inside one time
box (``--max-minutes``) and logs where each stands. A stage is done when what it writes was saved from
its finished state: an LLM system whose ``config.json`` records its state's digest; a choice made from the
current inputs; experts whose selection records that choice and the current global adapter; an
evaluation's files for every system it covers; a promotion when the shipped LLM files are the candidate's.
"""

from __future__ import annotations

import copy
import logging
import shutil
from dataclasses import dataclass

from thinkrec import expert_stages, pipeline
from thinkrec.chunks import saved_rows
from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.explorer import Explorer
from thinkrec.faithfulness import answers_file, read_result, stage_faithfulness
from thinkrec.files import sha256_of
from thinkrec.fusion.experts import experts_dir, load_chosen_clustering, read_choice, user_map_dir
from thinkrec.fusion.user_map import JSON_FILE
from thinkrec.llm.systems import llm_dir, system_spec
from thinkrec.llm.train import read_state, shipped_digest, system_scope
from thinkrec.manifest import write_manifest
from thinkrec.reasoning_scores import answers_path
from thinkrec.report import write_results
from thinkrec.timebox import TimeBox

log = logging.getLogger(__name__)
LLM_STAGES = ("thinkrec", "collm", "tallrec")
TRAINING = ("thinkrec", "clustering", "experts", "collm", "tallrec")
EVALUATION = ("user-map", "scoring", "reasoning", "faithfulness")
STAGES = (*TRAINING, *EVALUATION, "promotion")
SCORED = ("thinkrec", "fused", "collm", "tallrec", "zeroshot")  # centrepiece first; fused reads ThinkRec-global's
SEEDS = ("cf", "teacher")  # what the candidate takes from the shipped checkpoints as they are


@dataclass(frozen=True)
class StageStatus:
    """Where one stage stands: done or not, work done over all runs and planned (tokens for a training stage,
    systems for an evaluation), seconds of training so far, and a note on work in progress."""

    stage: str
    done: bool
    tokens: int
    planned: int | None  # None: known once the stage has started (or once the clustering is chosen)
    seconds: float
    unit: str = "tokens"
    note: str = ""

    def line(self) -> str:
        planned = "?" if self.planned is None else f"{self.planned:,}"
        share = f" ({self.tokens / self.planned:.0%})" if self.planned else ""
        line = f"{self.stage:<12} {'done' if self.done else 'to do':<5} {self.tokens:>11,} / {planned:>11} {self.unit}"
        if self.unit == "tokens":
            return line + f"{share}, {self.seconds / 3600:.1f} h of training so far"
        return line + (f"; {self.note}" if self.note else "")


def candidate_config(config: Config) -> Config:
    """``config`` with the candidate tree in place of ``checkpoints/`` (the training state stays where it is)."""
    candidate = copy.deepcopy(config)
    candidate.paths.checkpoints_dir = str(config.paths.training / config.plan.candidate_dir)
    return candidate


def seed_candidate(config: Config) -> Config:
    """The candidate's settings, its tree first given a copy of each shipped folder of ``SEEDS`` it lacks."""
    candidate = candidate_config(config)
    for folder in SEEDS:
        target = candidate.paths.checkpoints / folder
        if not target.exists():
            shutil.copytree(config.paths.checkpoints / folder, target)
            log.info("plan: the candidate tree starts from the shipped %s/ (%s)", folder, target)
    return candidate


def stage_status(config: Config, stage: str) -> StageStatus:
    """Read from the stored states and files only (``config``: the candidate's): nothing is loaded or trained."""
    if stage in LLM_STAGES:
        return llm_status(config, stage)
    readers = {"clustering": clustering_status, "experts": experts_status, "user-map": user_map_status,
               "scoring": scoring_status, "reasoning": reasoning_status, "faithfulness": faithfulness_status}
    if stage in readers:
        return readers[stage](config)
    raise ValueError(f"unknown plan stage {stage!r}; the stages are {', '.join(STAGES)}")


def llm_status(config: Config, name: str) -> StageStatus:
    scope = system_scope(system_spec(name), config)
    state = read_state(scope.state_folder(config)) or {}
    digest = state.get("data_digest")
    done = digest is not None and shipped_digest(llm_dir(config, name)) == digest
    budget = scope.train_tokens if name == "thinkrec" or config.llm.baseline_rows == "own" else None
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


def evaluation_status(stage: str, systems: list[str], done: list[bool], note: str = "",
                      unit: str = "systems") -> StageStatus:
    """An evaluation stage counted in ``unit`` (plural; singular when it covers one)."""
    return StageStatus(stage, all(done), sum(done), len(systems), 0.0,
                       unit if len(systems) != 1 else unit.removesuffix("s"), note)


def user_map_status(config: Config) -> StageStatus:
    return evaluation_status("user-map", ["fused"], [(user_map_dir(config) / JSON_FILE).exists()])


def scoring_status(config: Config) -> StageStatus:
    folders = [experts_dir(config) if name == "fused" else llm_dir(config, name) for name in SCORED]
    done = [pipeline.evaluated(folder, config) for folder in folders]
    saved = {(name, split): saved_rows(pipeline.scoring_dir(config, name) / split)
             for name, finished in zip(SCORED, done, strict=True) if not finished for split in ("test", "valid")}
    started = [f"{name} {rows:,} {split} rows saved" for (name, split), rows in saved.items() if rows]
    return evaluation_status("scoring", list(SCORED), done, ", ".join(started))


def reasoning_jobs(config: Config) -> list[tuple[str, bool]]:
    """(system, decoding rules on) of every set of answers the reasoning stage writes, in order."""
    return [(name, True) for name in config.plan.reasoning_systems] + \
        [(name, False) for name in config.plan.free_decoding_systems]


def reasoning_status(config: Config) -> StageStatus:
    jobs = reasoning_jobs(config)
    done = [answers_path(config, name, rules).exists() for name, rules in jobs]
    saved = {name if rules else f"{name}_free": saved_rows(pipeline.reasoning_dir(config, name if rules else
                                                                                    f"{name}_free"))
             for (name, rules), finished in zip(jobs, done, strict=True) if not finished}
    started = [f"{name} {rows:,} answers saved" for name, rows in saved.items() if rows]
    return evaluation_status("reasoning", [name for name, _ in jobs], done, ", ".join(started))


def faithfulness_status(config: Config) -> StageStatus:
    systems = list(config.plan.faithfulness_systems)
    return evaluation_status("faithfulness", systems, [measured_answers(config, name) for name in systems])


def measured_answers(config: Config, name: str) -> bool:
    """Whether ``name``'s faithfulness was measured on the answers stored now (rewritten answers are measured
    again, their unchanged records carried over)."""
    result, answers = read_result(config, name), answers_file(config, name)
    return result is not None and answers.exists() and result.get("answers_sha256") == sha256_of(answers)


def promotion_status(config: Config, shipped: Config) -> StageStatus:
    return evaluation_status("promotion", ["llm"], [promoted(config, shipped)], unit="LLM trees")


def llm_files(config: Config) -> dict[str, str]:
    """Every file under the tree's ``llm/`` folder with its sha256, by path relative to the tree."""
    root = config.paths.checkpoints
    return {path.relative_to(root).as_posix(): sha256_of(path)
            for path in sorted((root / "llm").glob("**/*")) if path.is_file()}


def promoted(candidate: Config, shipped: Config) -> bool:
    """Whether the shipped ``llm/`` files are exactly the candidate's."""
    return (candidate.paths.checkpoints / "llm").exists() and llm_files(candidate) == llm_files(shipped)


def plan_status(config: Config) -> list[StageStatus]:
    """Every stage's status; ``config`` is the plan's own (its shipped paths), the candidate is derived."""
    candidate = seed_candidate(config)
    return [promotion_status(candidate, config) if stage == "promotion" else stage_status(candidate, stage)
            for stage in STAGES]


def log_status(statuses: list[StageStatus], heading: str) -> None:
    """Each stage's line, then the tokens left and, at the rate of the runs so far, the hours they take."""
    log.info("plan %s:", heading)
    for status in statuses:
        log.info("  %s", status.line())
    left = [s for s in statuses if not s.done]
    if not left:
        log.info("  every stage is done: the candidate's systems are shipped and reported")
        return
    training = [s for s in left if s.unit == "tokens"]
    tokens = sum(max(s.planned - s.tokens, 0) for s in training if s.planned is not None)
    unknown = [s.stage for s in training if s.planned is None]
    hours = hours_left(statuses)
    rate = f", about {hours:.1f} h at each stage's rate so far" if hours else ""
    log.info("  left: %s training tokens%s%s; %s", f"{tokens:,}", rate,
             f" (plus {', '.join(unknown)}: sized once started)" if unknown else "",
             ", ".join(f"{s.stage} {s.planned - s.tokens} of {s.planned} {s.unit}" for s in left if s.unit != "tokens"))


def hours_left(statuses: list[StageStatus]) -> float | None:
    """Hours of training the unfinished stages of known size still need, each at its own rate so far (a stage
    not yet started: at the rate of all the runs so far); None before any run has been timed."""
    trained = [s for s in statuses if s.unit == "tokens" and s.seconds and s.tokens]
    if not trained:
        return None
    overall = sum(s.tokens for s in trained) / sum(s.seconds for s in trained)
    left = [s for s in statuses if s.unit == "tokens" and not s.done and s.planned is not None]
    return sum(max(s.planned - s.tokens, 0) / (s.tokens / s.seconds if s.seconds and s.tokens else overall)
               for s in left) / 3600


def continue_plan(prepared: PreparedData, config: Config, max_minutes: float | None = None) -> list[StageStatus]:
    """Run the stages that are not done, in order, until the plan is done or the time box ends (a stage that
    reaches the end of the time box saves its state; the next call continues it). Returns where the plan stands."""
    timebox = TimeBox(max_minutes)
    statuses = plan_status(config)
    log_status(statuses, "at the start")
    candidate = candidate_config(config)  # seeded by plan_status
    for stage, status in zip(STAGES, statuses, strict=True):
        if status.done:
            continue
        if not timebox.may_start():
            log.info("plan: the time box has ended before %s", stage)
            break
        left = timebox.minutes_left()
        log.info("plan: %s%s", stage, "" if left is None else f" ({left:.1f} minutes left)")
        if not run_stage(stage, prepared, candidate, config, timebox):
            break
    statuses = plan_status(config)
    log_status(statuses, "at the end")
    return statuses


def run_stage(stage: str, prepared: PreparedData, candidate: Config, shipped: Config, timebox: TimeBox) -> bool:
    """Continue one stage inside the time box; whether it finished."""
    if stage in LLM_STAGES:
        report = pipeline.stage_train_llm(stage, prepared, candidate, force=True, max_minutes=timebox.minutes_left())
        timebox.started()
        return bool(report["finished"])
    if stage == "clustering":
        return expert_stages.stage_clustering(prepared, candidate, timebox) is not None
    if stage == "experts":
        return expert_stages.stage_experts(prepared, candidate, force=True, timebox=timebox).get("finished", True)
    if stage == "promotion":
        promote(prepared, candidate, shipped)
        return True
    return all(result.get("finished", True) for result in evaluate(stage, prepared, candidate, timebox))


def evaluate(stage: str, prepared: PreparedData, candidate: Config, timebox: TimeBox) -> list[dict]:
    """One evaluation stage over the systems it covers, each continuing from its saved chunks; stops at the
    first system left unfinished when the time box ends."""
    if stage == "user-map":
        return [pipeline.stage_user_map(prepared, candidate)]
    results = []
    if stage == "faithfulness":
        measured = [name for name in candidate.plan.faithfulness_systems if not measured_answers(candidate, name)]
        return list(stage_faithfulness(Explorer.load(candidate), candidate, measured, timebox=timebox).values())
    jobs = [(name, True) for name in SCORED] if stage == "scoring" else reasoning_jobs(candidate)
    for name, rules in jobs:
        if stage == "scoring" and name == "fused":
            result = pipeline.stage_eval_fused(prepared, candidate, timebox=timebox)
        elif stage == "scoring":
            result = pipeline.stage_eval_llm(name, prepared, candidate, timebox=timebox)
        else:
            result = pipeline.stage_reasoning(name, prepared, candidate, timebox=timebox, rules=rules)
        results.append(result)
        if not result.get("finished", True):
            break
    return results


def promote(prepared: PreparedData, candidate: Config, shipped: Config) -> None:
    """Replace the shipped LLM systems with the candidate's, then rewrite the manifest, RESULTS.md and the
    analysts' workbench from the promoted predictions."""
    source, target = candidate.paths.checkpoints / "llm", shipped.paths.checkpoints / "llm"
    incoming = target.with_name("llm.incoming")
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.copytree(source, incoming)
    shutil.rmtree(target, ignore_errors=True)
    incoming.replace(target)
    write_manifest(shipped.paths.checkpoints)
    write_results(prepared, shipped)
    log.info("plan: the candidate's LLM systems are shipped in %s; RESULTS.md and the workbench rewritten", target)
