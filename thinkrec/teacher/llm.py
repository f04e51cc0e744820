"""A stronger LLM as the teacher, where one is available.

``ChatTeacher`` tells the model the true answer, gives it the evidence, and asks for a short
reasoning in the ``"Yes. ..."`` / ``"No. ..."`` format. Every reply is checked: it must start with
the right verdict and every double-quoted span must be a title from the evidence. A reply that
fails (or a client that errors) is replaced by the grounded teacher's trace, and the fallback is
recorded. Two clients: any OpenAI-compatible server (standard library only) and a local
Hugging Face model (transformers, imported lazily; offline, so a local path).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from thinkrec.teacher.evidence import Evidence
from thinkrec.teacher.grounded import GroundedTeacher, Teacher, check_trace, describe_signal, quote, verdict_word

Message = dict[str, str]

SYSTEM_PROMPT = ("You are a film recommendation analyst. In a few short sentences you explain why a user "
                 "liked or disliked a film, using only the evidence you are given.")
THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)


class TeacherClientError(RuntimeError):
    """A chat client that could not produce a reply (network, HTTP or response format)."""


class ChatClient(Protocol):
    """Sends chat messages to a model and returns the reply text."""

    model: str

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> str: ...


def titled(titles) -> str:
    return ", ".join(quote(t) for t in titles) if titles else "none"


def evidence_lines(evidence: Evidence) -> list[str]:
    """The evidence as plain lines; the titles in it are the only ones the reply may cite."""
    lines = [f"Film: {quote(evidence.title)}; genres: {', '.join(evidence.genres) or 'unknown'}; "
             f"keywords: {', '.join(evidence.keywords) or 'none'}."]
    if evidence.has_history:
        lines.append("Their recent films, oldest first:")
        lines += [f"- {quote(h.title)}: {'liked' if h.liked else 'disliked'}" for h in evidence.history]
        lines.append("Most similar to this film by viewing patterns: "
                     + ", ".join(f"{quote(s.title)} ({'liked' if s.liked else 'disliked'})" for s in evidence.similar)
                     + ".")
    else:
        lines.append("They have no earlier films on record: reason from their profile.")
    lines.append(f"Genres they favour: {', '.join(evidence.profile_liked_genres) or 'none known'}; "
                 f"genres they enjoy least: {', '.join(evidence.profile_disliked_genres) or 'none known'}.")
    return lines


def bullets(signals) -> list[str]:
    return [f"- {describe_signal(s)}" for s in signals] or ["- none"]


def build_messages(evidence: Evidence, label: int) -> list[Message]:
    """The chat prompt: evidence, arguments for and against, the true answer and the rules."""
    support, counter = evidence.arguments(label)
    verdict = verdict_word(label)
    lines = evidence_lines(evidence)
    lines += ["Arguments for the answer:", *bullets(support), "Arguments against it:", *bullets(counter)]
    lines += [
        "",
        f"The true answer is {verdict}: the user {'liked' if label else 'did not like'} this film.",
        f"Write 3 to 5 short sentences of reasoning that lead to this answer, acknowledging one argument "
        f"against it if there is one. Begin with \"{verdict}.\". Put film titles in double quotes and cite "
        f"only titles listed above ({titled(sorted(evidence.allowed_titles))}). Do not mention ratings or "
        f"numbers, and do not say that you were told the answer.",
    ]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


def clean_reply(text: str) -> str:
    """Drop a reasoning model's ``<think>`` block and surrounding blank space."""
    return THINKING.sub("", text).strip()


class ChatTeacher:
    """An LLM teacher with validation and a grounded fallback; ``last_source`` names who wrote the last trace."""

    def __init__(self, client: ChatClient, fallback: Teacher | None = None, max_tokens: int = 256,
                 temperature: float = 0.7):
        self.client = client
        self.fallback = fallback or GroundedTeacher()
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.name = f"chat:{client.model}"
        self.last_source = self.name
        self.fallbacks: list[dict[str, Any]] = []  # user, item, reason and reply of every replaced reply

    def explain(self, evidence: Evidence, label: int) -> str:
        try:
            reply = clean_reply(self.client.complete(build_messages(evidence, label), self.max_tokens,
                                                     self.temperature))
            reason = check_trace(reply, label, evidence.allowed_titles)
        except TeacherClientError as err:
            reply, reason = "", f"client error: {err}"
        if reason is None:
            self.last_source = self.name
            return reply
        self.fallbacks.append({"user": evidence.user, "item": evidence.item, "reason": reason, "reply": reply[:300]})
        self.last_source = self.fallback.name
        return self.fallback.explain(evidence, label)


class OpenAICompatibleClient:
    """POST ``<base_url>/chat/completions`` with urllib; the API key is read from ``api_key_env``."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read().decode("utf-8"))
            return payload["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as err:
            raise TeacherClientError(f"{self.url}: {err}") from err


class LocalHFClient:
    """A local Hugging Face causal LM (a folder, or a ``.gguf`` file); loaded on first use, never downloaded."""

    def __init__(self, model_path_or_id: str | os.PathLike, device: str = "cpu"):
        self.model = str(model_path_or_id)
        self.device = device
        self._tokenizer = None
        self._lm = None

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(self.model)
        source, extra = (str(path.parent), {"gguf_file": path.name}) if path.suffix == ".gguf" else (self.model, {})
        self._tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **extra)
        self._lm = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=torch.float32,
                                                        **extra).to(self.device).eval()

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> str:
        import torch

        if self._lm is None:
            self._load()
        inputs = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True).to(self.device)
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            output = self._lm.generate(**inputs, max_new_tokens=max_tokens,
                                       pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
                                       **sampling)
        return self._tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
