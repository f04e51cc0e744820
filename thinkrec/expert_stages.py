"""The cluster experts as two stages: choose the clustering by what is cheap, then train only the chosen
experts, fully.

1. ``stage_clustering``: every candidate (method, K) of ``fusion.methods`` x ``fusion.ks`` is clustered and
   measured (``fusion.choice``: silhouette, Cohen's d, where the gate routes each user, the fewest traces
   a cluster holds), with small-budget probe experts and their fused valid AUC when
   ``fusion.probe_experts``; the rule picks one. The table, the pick and the chosen clustering are kept
   under ``training/experts/`` (``fusion.experts``), so every later session trains the same experts.
2. ``stage_experts``: one expert per chosen cluster, each from the global adapter, on its own cluster's
   traces and rows, with ``expert_budget`` tokens (1/K of ``llm.train_tokens`` by default), time-boxed and
   resumable like ``train-llm``; the experts ship into ``checkpoints/llm/experts/`` only when all K are
   trained. Each expert is selected on its own cluster's valid rows by the global run's rule.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from thinkrec.cf.store import cf_dir, load_embeddings
from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.errors import CheckpointError
from thinkrec.files import read_json, sha256_of, write_json
from thinkrec.fusion.choice import candidate_measures, choose, rule_text
from thinkrec.fusion.clusters import Clustering, cluster_users
from thinkrec.fusion.experts import (
    CHOICE,
    adapter_folders,
    choice_dir,
    experts_dir,
    has_experts,
    load_chosen_clustering,
    make_experts,
    read_choice,
    read_selection,
    ship,
    write_choice,
    write_selection,
)
from thinkrec.fusion.fused import build_fused
from thinkrec.llm.systems import expert_start, llm_dir, system_digest, system_spec
from thinkrec.llm.train import Scope, read_state, shipped_digest, split_traces, train_system
from thinkrec.manifest import write_manifest
from thinkrec.metrics import auc_report
from thinkrec.subsets import valid_subset
from thinkrec.teacher.dataset import load_trace_dataset
from thinkrec.timebox import TimeBox

log = logging.getLogger(__name__)


def expert_budget(config: Config, k: int) -> int:
    """Tokens each of the K chosen experts trains on: ``fusion.full_expert_tokens``, or 1/K of the global
    budget (rounded up) when that is 0."""
    return config.fusion.full_expert_tokens or math.ceil(config.llm.train_tokens / k)


def global_origin(config: Config) -> str:
    """The fingerprint of the global ThinkRec adapter the experts start from."""
    return system_digest(llm_dir(config, "thinkrec"))


def choice_inputs(config: Config) -> dict:
    """What a choice depends on; a stored choice made from other inputs is refused."""
    fusion = config.fusion
    inputs = {"encoder": fusion.encoder, "methods": fusion.methods, "ks": fusion.ks, "seed": fusion.seed,
              "gate": dataclasses.asdict(fusion.gate), "min_own_share": fusion.min_own_share,
              "embeddings": sha256_of(cf_dir(config) / fusion.encoder / "embeddings.safetensors"),
              "probe": {"tokens": fusion.expert_tokens, "origin": global_origin(config)} if fusion.probe_experts
              else None}
    return json.loads(json.dumps(inputs))


def stage_clustering(prepared: PreparedData, config: Config, timebox: TimeBox | None = None) -> dict | None:
    """The stored choice when it was made from the same inputs; otherwise measure every candidate, apply the
    rule and store the choice. None when probe experts ran out of time (the next run continues them)."""
    timebox = timebox or TimeBox()
    inputs, stored = choice_inputs(config), read_choice(config)
    if stored is not None:
        if stored["inputs"] != inputs:
            changed = sorted(key for key in inputs if stored["inputs"].get(key) != inputs[key])
            raise CheckpointError(f"{choice_dir(config) / CHOICE}: chosen from other inputs ({', '.join(changed)}); "
                                  f"restore them, or delete {choice_dir(config)} to choose again (the chosen "
                                  "experts' training then starts afresh)")
        return stored
    fusion = config.fusion
    vectors = load_embeddings(config, fusion.encoder)["user"].numpy()
    traces = load_trace_dataset(config.traces_path)
    trace_users = split_traces(traces, config.llm)[0]["user"].to_numpy()
    candidates, clusterings = [], {}
    for method in fusion.methods:
        for k in fusion.ks:
            clustering = cluster_users(vectors, k, method, fusion.seed, activity=prepared.users["n_train"].to_numpy(),
                                       encoder=fusion.encoder)
            row = candidate_measures(clustering, vectors, fusion.gate, trace_users)
            if fusion.probe_experts:
                valid = probe(prepared, config, clustering, inputs["probe"]["origin"], traces, timebox)
                if valid is None:
                    return None
                row["valid"] = valid
            candidates.append(row)
            clusterings[method, k] = clustering
            log.info("clustering %s K=%d: %s", method, k, row)
    chosen, reason = choose(candidates, fusion.min_own_share)
    choice = {"method": chosen["method"], "k": chosen["k"], "reason": reason, "rule": rule_text(fusion.min_own_share),
              "candidates": candidates, "inputs": inputs}
    write_choice(config, choice, clusterings[chosen["method"], chosen["k"]])
    log.info("clustering: chose %s K=%d: %s", chosen["method"], chosen["k"], reason)
    return choice


def probe_dir(config: Config, origin: str) -> Path:
    """Where the probe experts trained from the global adapter ``origin`` are kept (rebuildable work)."""
    return config.paths.work / "experts" / "probe" / origin[:16]


def probe(prepared: PreparedData, config: Config, clustering: Clustering, origin: str, traces,
          timebox: TimeBox) -> dict | None:
    """The fused valid AUC of small-budget experts (``fusion.expert_tokens`` each) for one candidate, kept in the
    work folder under the global adapter's fingerprint; None when the time ran out first."""
    fusion = config.fusion
    work = probe_dir(config, origin) / clustering.method / f"k{clustering.k}"
    if (work / "probe.json").exists():
        return read_json(work / "probe.json")
    for expert in range(clustering.k):
        out = work / f"expert_{expert}"
        if (out / "config.json").exists():
            continue
        if not timebox.may_start():
            return None
        scope = Scope(f"probe {clustering.method} K={clustering.k} expert {expert}", out, fusion.expert_tokens,
                      np.flatnonzero(clustering.labels == expert), evaluate=False, origin=origin,
                      state_dir=work / "state" / f"expert_{expert}")
        report = train_system(system_spec("thinkrec"), prepared, config, traces, scope=scope,
                              start=expert_start(prepared, config, fusion.top_layers),
                              max_minutes=timebox.minutes_left())
        timebox.started()
        if not report["finished"]:
            return None
    experts = make_experts(config, clustering, adapter_folders(work, clustering.k), fusion.gate, fusion.encoder)
    valid = valid_subset(prepared, config)
    scores = build_fused(prepared, config, experts).score(valid, "fused", desc=f"valid {clustering.method} "
                                                                                 f"K={clustering.k}")
    report = auc_report(valid["user"], valid["label"], scores)
    write_json(work / "probe.json", report)
    return report


def expert_scopes(config: Config, clustering: Clustering, origin: str) -> list[Scope]:
    """One training run per chosen cluster: its users, the expert budget, its state under
    ``training/llm/experts/<method>/k<K>/expert_<e>``, its trained folder under the work folder."""
    work = config.paths.work / "experts" / "full" / clustering.method / f"k{clustering.k}"
    budget = expert_budget(config, clustering.k)
    return [Scope(f"experts/{clustering.method}/k{clustering.k}/expert_{e}", work / f"expert_{e}", budget,
                  np.flatnonzero(clustering.labels == e), evaluate=True, origin=origin)
            for e in range(clustering.k)]


def expert_done(config: Config, scope: Scope) -> bool:
    """Whether the expert of ``scope`` is trained to the end and saved from its current state."""
    state = read_state(scope.state_folder(config))
    return state is not None and shipped_digest(scope.out_dir) == state["data_digest"]


def experts_current(config: Config) -> bool:
    """Whether the shipped experts are the stored choice's, trained from the current global adapter."""
    choice = read_choice(config)
    if choice is None or not has_experts(config):
        return False
    selection = read_selection(config)
    return ((selection["method"], selection["k"]) == (choice["method"], choice["k"])
            and selection.get("origin") == global_origin(config))


def stage_experts(prepared: PreparedData, config: Config, force: bool = False, timebox: TimeBox | None = None) -> dict:
    """Choose the clustering (``stage_clustering``), then train the chosen experts until they are done or the time
    box ends; ship them with selection.json once all K are done. Returns the selection, or a report with
    ``finished: false`` and the tokens trained so far; the same call continues."""
    if has_experts(config) and not force:
        log.info("experts: selection in %s", experts_dir(config))
        return read_selection(config)
    timebox = timebox or TimeBox()
    started = time.perf_counter()
    choice = stage_clustering(prepared, config, timebox)
    if choice is None:
        return {"finished": False, "stage": "clustering"}
    clustering, origin = load_chosen_clustering(config), global_origin(config)
    scopes, traces = expert_scopes(config, clustering, origin), None
    for number, scope in enumerate(scopes):
        if expert_done(config, scope):
            continue
        if not timebox.may_start():
            return unfinished(config, scopes)
        traces = traces if traces is not None else load_trace_dataset(config.traces_path)
        log.info("experts: %s K=%d, expert %d of %d, %d tokens from the global adapter", clustering.method,
                 clustering.k, number + 1, clustering.k, scope.train_tokens)
        report = train_system(system_spec("thinkrec"), prepared, config, traces, scope=scope,
                              start=expert_start(prepared, config, config.fusion.top_layers),
                              max_minutes=timebox.minutes_left())
        timebox.started()
        if not report["finished"]:
            return unfinished(config, scopes)
    trained = [read_json(scope.out_dir / "config.json")["train"] for scope in scopes]
    summaries = [{key: report[key] for key in ("train_tokens", "planned_tokens", "reasoning_examples",
                                               "best_valid_auc", "best_step", "steps", "seconds", "data_digest")}
                 for report in trained]
    shipped = read_selection(config) if has_experts(config) else {}
    if shipped.get("origin") == origin and shipped.get("experts") == summaries:
        log.info("experts: the shipped experts are these already")
        return shipped
    ship(config, choice_dir(config) / "clusters", [scope.out_dir for scope in scopes])
    write_selection(config, choice, origin, summaries)
    write_manifest(config.paths.checkpoints)
    log.info("experts: shipped %s K=%d (%.0f s in this run)", clustering.method, clustering.k,
             time.perf_counter() - started)
    return read_selection(config)


def unfinished(config: Config, scopes: list[Scope]) -> dict:
    """The report of an experts stage that stopped at the deadline: tokens so far per expert."""
    states = [read_state(scope.state_folder(config)) or {} for scope in scopes]
    report = {"finished": False, "stage": "experts",
              "train_tokens": sum(state.get("tokens", 0) for state in states),
              "planned_tokens": sum(state.get("planned_tokens", scope.train_tokens)
                                    for state, scope in zip(states, scopes, strict=True))}
    log.info("experts: %d of %d tokens trained over all runs; continue with the same command",
             report["train_tokens"], report["planned_tokens"])
    return report
