"""Every trained LLM system on one shared backbone, for serving.

Loading one backbone per system would cost ~540 MB each. Instead the backbone's LoRA layers hold
the adapters of all systems at once (``thinkrec.llm.lora_mixture``): ThinkRec's global adapter,
its cluster experts, CoLLM-style and TALLRec-style. A request names a system and a ``Case`` and
gets that system's adapter mixture (the gate's weights for fused ThinkRec, one-hot for the others,
none for zero-shot), its projector and its prompt. Nothing shared is modified per request. Scores
run on the backbone in fp32; streamed answers run in ``llm.decode_dtype``: on a CPU with native
bfloat16 one bfloat16 copy of it (270 MB more, for faster decoding), elsewhere the backbone itself, and
check the guesses of a phrasebook of the teacher's traces as they go (``thinkrec.llm.phrasebook``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from thinkrec import registry
from thinkrec.config import Config
from thinkrec.data.prepared import PreparedData
from thinkrec.fusion.experts import Experts, adapter_weights, expert_alone, has_experts, load_experts
from thinkrec.fusion.gate import Routing
from thinkrec.guest import GuestUser
from thinkrec.llm.backbone import load_backbone
from thinkrec.llm.decoder import decode_dtype_here, decoding_backbone
from thinkrec.llm.generate import GenerationSettings, TextStream
from thinkrec.llm.lora_mixture import install_mixture, mixture
from thinkrec.llm.model import SoftTokenLM, collate
from thinkrec.llm.phrasebook import Phrasebook
from thinkrec.llm.prompt import EncodedPrompt, PromptBuilder
from thinkrec.llm.systems import (
    adapter_dir,
    build_model,
    llm_dir,
    load_projected_model,
    prompt_builder,
    system_spec,
    with_trained_traces,
)
from thinkrec.serving.case import Case

log = logging.getLogger(__name__)
ABLATION_MEMO_SIZE = 4096


class Memo:
    """A bounded, thread-safe memo: the least recently stored entries go first."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            return self._entries.get(key)

    def put_all(self, entries: dict) -> None:
        with self._lock:
            self._entries.update(entries)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


@dataclass
class Served:
    """How one system answers: its model view (projector), prompt builder and adapter slot."""

    name: str
    model: SoftTokenLM
    builder: PromptBuilder
    slot: int | None  # index of its adapter in the mixture; None for zero-shot and for fused


@dataclass(frozen=True)
class Variant:
    """One way ThinkRec can answer in the expert ablation: a label and its adapter mixture."""

    label: str
    weights: np.ndarray


@dataclass
class Explanation:
    """A streamed answer in progress with what the UI shows beside it."""

    system: str
    prompt: str  # the exact prompt, soft tokens named
    truth: bool | None
    allowed: set[str]  # titles it may cite: the history shown in the prompt and the target
    stream: TextStream
    target: str = ""  # the target's title (citing it is not evidence from the history)
    case: Case | None = None  # the case answered, whose data the answer's claims are checked against

    @property
    def p_yes(self) -> float | None:
        """P(Yes) at the answer position; None until generation has taken its first step."""
        return self.stream.p_yes


@dataclass(frozen=True)
class WrittenAnswer:
    """A whole answer: its text, P(Yes) at the answer position and how many tokens it took."""

    text: str
    p_yes: float
    new_tokens: int


class LLMBank:
    """All available LLM systems over one backbone with stacked adapters.

    ThinkRec's global adapter takes slot 0 and its experts slots 1..K, so the experts' weights over
    [global, expert 1 .. K] are the first K + 1 entries of a mixture."""

    def __init__(self, served: dict[str, Served], n_adapters: int, titles: list[str], experts: Experts | None = None,
                 decoder=None, phrasebook: Phrasebook | None = None):
        self.served = served
        self.decoder = decoder  # the backbone streamed answers run on (``decoding_backbone``); None: the shared one
        self.phrasebook = phrasebook  # the teacher's phrases, guessed ahead while decoding (the text is unchanged)
        self.n_adapters = n_adapters
        self.titles = titles
        self.experts = experts  # None without trained experts
        self._ablation_memo = Memo(ABLATION_MEMO_SIZE)  # P(Yes) by (user, item, mixture): a new τ re-scores one row

    @property
    def systems(self) -> list[str]:
        return list(self.served)

    def _padded(self, weights: np.ndarray) -> np.ndarray:
        mixture_weights = np.zeros(self.n_adapters)
        mixture_weights[: len(weights)] = weights
        return mixture_weights

    def routing(self, user: int | GuestUser, tau: float | None = None) -> Routing | None:
        """The gate's decision for ``user`` (None without experts)."""
        return None if self.experts is None else self.experts.routing(user, tau)

    def expert_variants(self) -> list[Variant]:
        """Each cluster expert alone (empty without experts)."""
        if self.experts is None:
            return []
        k = self.experts.k
        return [Variant(f"Expert {e + 1}", self._padded(expert_alone(k, e))) for e in range(k)]

    def ablation(self, user: int | GuestUser, tau: float | None = None) -> list[Variant]:
        """ThinkRec's global adapter, each cluster expert alone, and the gate's choice (empty without experts)."""
        if self.experts is None:
            return []
        route = self.experts.routing(user, tau)
        return [Variant("Global adapter", self._padded(adapter_weights(route, "global"))), *self.expert_variants(),
                Variant("Gate's choice (fused)", self._padded(adapter_weights(route, "fused")))]

    def weights(self, system: str, user: int | GuestUser, tau: float | None = None) -> np.ndarray:
        """The adapter mixture ``system`` uses for ``user``."""
        if system == "fused":
            return self._padded(self.experts.weights(user, "fused", tau))
        weights = np.zeros(self.n_adapters)
        if self.served[system].slot is not None:
            weights[self.served[system].slot] = 1.0
        return weights

    def prompt(self, system: str, case: Case) -> EncodedPrompt:
        return self.served[system].builder.encode(case.user, case.item, case.hist_items, case.hist_labels)

    def p_yes(self, system: str, case: Case, tau: float | None = None) -> float:
        return self.p_yes_under(system, case, [self.weights(system, case.user, tau)])[0]

    @torch.no_grad()
    def p_yes_under(self, system: str, case: Case, mixtures: list[np.ndarray]) -> list[float]:
        """P(Yes) of one prompt under several adapter mixtures, in one batch (each row its own mixture)."""
        served = self.served[system]
        batch = collate([self.prompt(system, case)] * len(mixtures), served.builder.tokenizer.pad_token_id)
        with mixture(torch.as_tensor(np.stack(mixtures))):
            return served.model.p_yes(batch).tolist()

    @torch.no_grad()
    def p_yes_cases(self, system: str, cases: list[Case], tau: float | None = None) -> list[float]:
        """P(Yes) of several cases in one batch, each row under the mixture ``system`` uses for its user."""
        served = self.served[system]
        batch = collate([self.prompt(system, case) for case in cases], served.builder.tokenizer.pad_token_id)
        weights = np.stack([self.weights(system, case.user, tau) for case in cases])
        with mixture(torch.as_tensor(weights)):
            return served.model.p_yes(batch).tolist()

    def ablation_scores(self, case: Case, tau: float | None = None) -> tuple[list[Variant], list[float]]:
        """The ablation's variants for the case with each one's P(Yes), scored in one batch; what a
        dataset user's case scored before (at any τ) is remembered. Empty without experts."""
        variants = self.ablation(case.user, tau)
        if not variants:
            return [], []
        memo = isinstance(case.user, int)  # a dataset user's case always has the same prompt; a guest's may not
        keys = [(case.user, case.item, v.weights.tobytes()) for v in variants]
        known = {key: self._ablation_memo.get(key) for key in keys} if memo else {}
        missing = [(key, v.weights) for key, v in zip(keys, variants) if known.get(key) is None]
        if missing:
            scored = self.p_yes_under("thinkrec", case, [weights for _, weights in missing])
            fresh = {key: p for (key, _), p in zip(missing, scored)}
            known.update(fresh)
            if memo:
                self._ablation_memo.put_all(fresh)
        return variants, [known[key] for key in keys]

    def stream(self, system: str, case: Case, settings: GenerationSettings, tau: float | None = None,
               weights: np.ndarray | None = None) -> TextStream:
        """A token stream of the system's answer under its mixture (or ``weights``, for the ablation);
        the mixture travels with the stream's context."""
        served = self.served[system]
        weights = self.weights(system, case.user, tau) if weights is None else weights
        with mixture(torch.as_tensor(weights[None])):
            return TextStream(served.model, served.builder.tokenizer, self.prompt(system, case), settings,
                              decoder=self.decoder, phrasebook=self.phrasebook)

    def answer(self, system: str, case: Case, settings: GenerationSettings) -> WrittenAnswer:
        """The whole answer ``stream`` writes for the case: what the reasoning stage stores and measures, so the
        demo streams the very texts the report scored."""
        stream = self.stream(system, case, settings)
        return WrittenAnswer("".join(stream), stream.p_yes, stream.new_tokens)

    def explain(self, system: str, case: Case, settings: GenerationSettings, tau: float | None = None,
                weights: np.ndarray | None = None) -> Explanation:
        """Start streaming the system's answer, with its readable prompt and the titles it may cite."""
        prompt = self.prompt(system, case)
        allowed = {self.titles[i] for i in case.hist_items if i >= 0} | {self.titles[case.item]}
        return Explanation(system=system, prompt=self.served[system].builder.readable(prompt), truth=case.truth,
                           allowed=allowed, stream=self.stream(system, case, settings, tau, weights),
                           target=self.titles[case.item], case=case)

    def readable_prompt(self, system: str, case: Case) -> str:
        """The exact prompt ``system`` reads for the case, soft tokens named (no model runs)."""
        return self.served[system].builder.readable(self.prompt(system, case))


def load_bank(prepared: PreparedData, config: Config, backbone=None, tokenizer=None,
              experts: Experts | None = None) -> LLMBank:
    """Load every LLM system whose checkpoint exists (zero-shot always) onto one backbone; ThinkRec's
    experts (``experts``, or the shipped ones) join when ThinkRec is trained."""
    if backbone is None:
        backbone, tokenizer = load_backbone(config)
    trained = [name for name in reversed(registry.keys(registry.LLM))  # ThinkRec first: its slot is 0
               if system_spec(name).trained and (llm_dir(config, name) / "config.json").exists()]
    adapters = [adapter_dir(config, name) for name in trained]
    if "thinkrec" not in trained:
        experts = None
    elif experts is None and has_experts(config):
        experts = load_experts(config)
    if experts is not None:
        adapters = [adapters[0], *experts.adapters, *adapters[1:]]
    if adapters:
        install_mixture(backbone, adapters)
    served: dict[str, Served] = {}
    slot = 0
    for name in trained:
        spec = system_spec(name)
        model = load_projected_model(spec, backbone, tokenizer, config, llm_dir(config, name))
        builder = prompt_builder(spec, prepared, tokenizer, config, llm_dir(config, name))
        served[name] = Served(name, model, builder, slot)
        slot += 1 + (experts.k if name == "thinkrec" and experts is not None else 0)
    if experts is not None:
        served = {"fused": Served("fused", served["thinkrec"].model, served["thinkrec"].builder, None), **served}
    zeroshot = system_spec("zeroshot")
    zeroshot_prompt = prompt_builder(zeroshot, prepared, tokenizer, config, llm_dir(config, "zeroshot"))
    served["zeroshot"] = Served("zeroshot", build_model(zeroshot, backbone, tokenizer, config).eval(), zeroshot_prompt,
                                None)
    decoder = decoding_backbone(backbone, config.llm.decode_dtype)
    log.info("LLM systems ready on one backbone: %s (%d adapters); answers stream in %s", ", ".join(served),
             len(adapters), decode_dtype_here(config.llm.decode_dtype))
    return LLMBank(served, max(len(adapters), 1), prepared.items["title"].tolist(), experts, decoder,
                   trace_phrasebook(config, tokenizer))


def trace_phrasebook(config: Config, tokenizer) -> Phrasebook | None:
    """The phrasebook of the training traces ThinkRec learnt from (the trace file its ``config.json`` records,
    else ``llm.traces_file``); None, with a warning, where that file is missing or unreadable: answers then
    decode with prompt lookup alone, the same text more slowly."""
    path = with_trained_traces(config).traces_path
    try:
        traces = pd.read_parquet(path, columns=["split", "trace"])
    except Exception as err:  # missing, damaged, or without those columns
        log.warning("no phrasebook for decoding: cannot read the traces %s (%s)", path, err)
        return None
    phrasebook = Phrasebook.from_texts(tokenizer, traces.loc[traces["split"] == "train", "trace"].tolist())
    log.info("decoding phrasebook: %d contexts from %s", len(phrasebook), path)
    return phrasebook
