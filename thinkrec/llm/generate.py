"""Streaming generation of the verdict and reasoning, token by token.

The prompt (with its soft tokens already projected into input embeddings) is decoded while the
caller iterates, so it can show the text while the model is still writing. Greedy decoding (the
default) runs through ``lookup_decoding`` in the caller's own thread, which gives the same text in
fewer forward passes; sampling runs the backbone's ``generate`` in a worker thread that passes the
text back through a ``TextIteratorStreamer``. Either way decoding runs in a copy of the context
the stream was made in, so a per-request adapter mixture set by the caller applies to it.
The first decoding step's logits sit at the answer position, so the stream also reads P(Yes)
from them: one prompt pass serves both the score and the reasoning. ``TextStream.stop()`` ends a
stream that nobody needs any more at its next decoding step, so its CPU is free at once.

A stream may run on a *decoder* instead of the model's own backbone: the bfloat16 copy that
``thinkrec.llm.decoder.decoding_backbone`` prepares for ``llm.decode_dtype``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from threading import Event, Thread

import torch
from torch import nn
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
    TextStreamer,
)

from thinkrec.llm.citation_guard import CitationGuard
from thinkrec.llm.lookup_decoding import AnswerRules, DecodeCounts, greedy_lookup_decode
from thinkrec.llm.model import SoftTokenLM, collate
from thinkrec.llm.phrasebook import Phrasebook
from thinkrec.llm.prompt import EncodedPrompt

MAX_NEW_TOKENS_LIMIT = 512


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; greedy by default."""

    max_new_tokens: int = 160
    min_new_tokens: int = 0  # the end token is barred before this many tokens (a verdict alone is no reasoning)
    no_repeat_ngram: int = 0  # bar repeating any n-gram of the answer itself (0: off); quoting the prompt stays free
    bar_spellings: bool = False  # a token the no-repeat rule bars is barred with or without its leading space
    spare_quotes: bool = False  # the no-repeat rule is off inside a double-quoted span: a title said again stays whole
    guard_citations: bool = False  # greedy decoding rewrites a sentence that cites a film cited already
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.95

    @classmethod
    def from_config(cls, llm, max_new_tokens: int | None = None, rules: bool = True) -> GenerationSettings:
        """The configured decoding (``config.llm``), optionally with another cap on new tokens; ``rules`` False
        drops the minimum-length, no-repeat and citation rules."""
        cap = llm.max_new_tokens if max_new_tokens is None else max_new_tokens
        return cls(max_new_tokens=cap, min_new_tokens=min(llm.min_new_tokens, cap) if rules else 0,
                   no_repeat_ngram=llm.no_repeat_ngram if rules else 0,
                   bar_spellings=llm.no_repeat_spellings and rules, spare_quotes=llm.no_repeat_spares_quotes and rules,
                   guard_citations=llm.no_repeated_citations and rules,
                   do_sample=llm.do_sample,
                   temperature=llm.temperature, top_p=llm.top_p)

    def checked(self) -> GenerationSettings:
        """Raise ``ValueError`` on settings out of range."""
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(f"max_new_tokens must lie in 1..{MAX_NEW_TOKENS_LIMIT}, not {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"min_new_tokens must lie in 0..max_new_tokens ({self.max_new_tokens}), "
                             f"not {self.min_new_tokens}")
        if not 0 <= self.no_repeat_ngram <= 16:
            raise ValueError(f"no_repeat_ngram must lie in 0..16, not {self.no_repeat_ngram}")
        if self.do_sample and not 0.05 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must lie in 0.05..2.0, not {self.temperature}")
        if self.do_sample and not 0.05 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in 0.05..1.0, not {self.top_p}")
        return self


class CountingStreamer(TextIteratorStreamer):
    """A text streamer that also counts the new tokens it has received."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.new_tokens = 0

    def put(self, value: torch.Tensor) -> None:
        if not (self.skip_prompt and self.next_tokens_are_prompt):
            self.new_tokens += value.numel()
        super().put(value)


class PieceCollector(TextStreamer):
    """Decoded text in word-aligned pieces, collected as tokens are put (no thread, no queue)."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self.pieces: list[str] = []

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.pieces.append(text)

    def flush(self) -> None:
        """Emit what is decoded so far even mid-word: the verdict should not wait for the next word."""
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
        self.on_finalized_text(text[self.print_len:])
        self.print_len = len(text)

    def drain(self) -> list[str]:
        pieces, self.pieces = self.pieces, []
        return pieces


class VerdictProbe(LogitsProcessor):
    """Records P(Yes) = sigmoid(logit Yes - logit No) from the first decoding step (the answer position).

    Generation applies custom processors before temperature and top-p, so these are the raw logits."""

    def __init__(self, yes_id: int, no_id: int):
        self.yes_id, self.no_id = yes_id, no_id
        self.p_yes: float | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.p_yes is None:
            self.p_yes = float(torch.sigmoid(scores[0, self.yes_id] - scores[0, self.no_id]))
        return scores


class AnswerNgramBan(LogitsProcessor):
    """Bars the tokens ``rules``' no-repeat rule bars (``generate`` started from embeddings alone, so
    ``input_ids`` holds only the answer); ``generate`` keeps the minimum length itself."""

    def __init__(self, rules: AnswerRules):
        self.rules = rules

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, answer in enumerate(input_ids.tolist()):
            banned = self.rules.repeat_bans(answer)
            if banned:
                scores[row, banned] = float("-inf")
        return scores


class StopWhenAsked(StoppingCriteria):
    """Ends ``generate`` at the next step once ``event`` is set."""

    def __init__(self, event: Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class TextStream:
    """Iterate to receive pieces of the answer (verdict first, then the reasoning) as they arrive;
    ``new_tokens`` counts the tokens generated so far and ``p_yes`` is known once the first piece arrived.
    ``stop()`` ends the stream at its next decoding step (``stopped`` then says so)."""

    def __init__(self, model: SoftTokenLM, tokenizer, prompt: EncodedPrompt, settings: GenerationSettings,
                 timeout: float = 120.0, decoder: nn.Module | None = None, phrasebook: Phrasebook | None = None):
        settings = settings.checked()
        device = next(model.parameters()).device
        batch = collate([prompt], tokenizer.pad_token_id).to(device)
        self._decoder = model.backbone if decoder is None else decoder  # a decoding_backbone of model.backbone
        self._phrasebook = phrasebook  # guesses greedy decoding checks (the text stays the same)
        with torch.no_grad():
            embeds = model.input_embeddings(batch).to(next(self._decoder.parameters()).dtype)
        self.streamer = CountingStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout)
        sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p} \
            if settings.do_sample else {"do_sample": False}
        self._tokenizer = tokenizer
        self._greedy = not settings.do_sample
        self._rules = AnswerRules.from_settings(tokenizer, settings)
        self._guard = CitationGuard.for_tokenizer(tokenizer) if settings.guard_citations else None
        self.token_ids: list[int] = []  # the greedy answer's tokens so far
        self.counts = DecodeCounts()  # the greedy answer's forward passes and sentences taken back
        self._prompt_ids = batch.input_ids[0]
        self._probe = VerdictProbe(model.yes_id, model.no_id)
        self._stop = Event()
        self._kwargs = dict(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                            max_new_tokens=settings.max_new_tokens, min_new_tokens=settings.min_new_tokens,
                            streamer=self.streamer,
                            logits_processor=LogitsProcessorList([self._probe,
                                                                  AnswerNgramBan(self._rules)]),
                            stopping_criteria=StoppingCriteriaList([StopWhenAsked(self._stop)]),
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling)
        self._errors: list[BaseException] = []
        self._context = contextvars.copy_context()  # carries the caller's adapter mixture, if any

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids) if self._greedy else self.streamer.new_tokens

    @property
    def p_yes(self) -> float | None:
        """P(Yes) at the answer position, read from the first decoding step; None before it."""
        return self._probe.p_yes

    def stop(self) -> None:
        """End the stream at its next decoding step (thread-safe; a finished stream stays as it is)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[str]:
        return self._stream_greedy() if self._greedy else self._stream_sampled()

    def _stream_greedy(self) -> Iterator[str]:
        collector = PieceCollector(self._tokenizer)
        groups = greedy_lookup_decode(self._decoder, self._kwargs["inputs_embeds"], self._prompt_ids.tolist(),
                                      self._kwargs["max_new_tokens"], self._rules,
                                      on_first_logits=lambda logits: self._probe(self._prompt_ids[None], logits[None]),
                                      phrasebook=self._phrasebook, guard=self._guard, counts=self.counts)
        while not self._stop.is_set():
            try:
                group = self._context.run(next, groups, None)
            except Exception as err:
                raise RuntimeError(f"generation failed: {err}") from err
            if group is None:
                break
            first = not self.token_ids
            self.token_ids += group
            collector.put(torch.tensor(group))
            if first:
                collector.flush()
            yield from collector.drain()
        groups.close()  # frees the decoding cache now, also when stopped early
        collector.end()
        yield from collector.drain()

    def _sample(self) -> None:
        try:
            with torch.inference_mode():
                self._decoder.generate(**self._kwargs)
        except BaseException as err:  # surfaced to the caller in _stream_sampled, never lost in the thread
            self._errors.append(err)
            self.streamer.on_finalized_text("", stream_end=True)

    def _stream_sampled(self) -> Iterator[str]:
        worker = Thread(target=self._context.run, args=(self._sample,), daemon=True)
        worker.start()
        for piece in self.streamer:
            if piece:
                yield piece
        worker.join()
        if self._errors:
            raise RuntimeError(f"generation failed: {self._errors[0]}") from self._errors[0]


def stream_text(model: SoftTokenLM, tokenizer, prompt: EncodedPrompt, settings: GenerationSettings,
                timeout: float = 120.0, decoder: nn.Module | None = None,
                phrasebook: Phrasebook | None = None) -> TextStream:
    """A ``TextStream`` over the generated answer (run on ``decoder``, a ``decoding_backbone``, when given;
    greedy decoding checks ``phrasebook``'s guesses too)."""
    return TextStream(model, tokenizer, prompt, settings, timeout, decoder, phrasebook)


def generate_text(model: SoftTokenLM, tokenizer, prompt: EncodedPrompt, settings: GenerationSettings) -> str:
    """The whole generated answer at once."""
    return "".join(stream_text(model, tokenizer, prompt, settings))
