"""Metrics of generated reasoning: overlap with reference traces (METEOR, BLEU-4, ROUGE-L),
grounding of the titles it cites, and agreement of the verdict it states with the model's score.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

import nltk
import sacrebleu
from nltk.translate.meteor_score import meteor_score
from rouge_score import rouge_scorer

from thinkrec.assets import resolve_asset

MIN_TITLE_CHARS = 3
_WORD = re.compile(r"\w+(?:['’]\w+)*")
_LEADING_VERDICT = re.compile(r"\A\s*[*\"']*(yes|no)\b[*\"']*\s*(?:[.!,:;]|\Z)", re.IGNORECASE)
_FINAL_VERDICT = re.compile(
    r"(?:\b(?:verdict|answer|prediction|decision)\b\s*(?:is\b\s*)?[:=-]?\s*|\A\s*)"
    r"[*\"']*(yes|no)\b[*\"'.!\s]*\Z",
    re.IGNORECASE,
)


def _check_pairs(first: list, second: list) -> None:
    """Raise ValueError unless both lists are non-empty and of equal length."""
    if len(first) != len(second):
        raise ValueError(f"length mismatch: {len(first)} vs {len(second)}")
    if len(first) == 0:
        raise ValueError("no texts to score")


def _tokens(text: str) -> list[str]:
    """Lower-cased word tokens (no punkt model needed)."""
    return _WORD.findall(text.lower())


def _use_wordnet(cache_dir: Path | None) -> None:
    """Put the WordNet asset's root at the front of ``nltk.data.path`` (idempotent)."""
    root = str(resolve_asset("wordnet", cache_dir))
    if nltk.data.path[:1] != [root]:
        if root in nltk.data.path:
            nltk.data.path.remove(root)
        nltk.data.path.insert(0, root)


def meteor(references: list[str], hypotheses: list[str], cache_dir: Path | None = None) -> float:
    """Mean sentence METEOR (exact, stem and WordNet-synonym matches) over the pairs."""
    _check_pairs(references, hypotheses)
    _use_wordnet(cache_dir)
    scores = [meteor_score([_tokens(ref)], _tokens(hyp)) for ref, hyp in zip(references, hypotheses)]
    return sum(scores) / len(scores)


def bleu4(references: list[str], hypotheses: list[str]) -> float:
    """Corpus BLEU-4 in 0..1 (sacrebleu, 13a tokenisation)."""
    _check_pairs(references, hypotheses)
    return sacrebleu.corpus_bleu(hypotheses, [references]).score / 100.0


def rouge_l(references: list[str], hypotheses: list[str]) -> float:
    """Mean ROUGE-L F1 (LCS-based, Porter-stemmed) over the pairs."""
    _check_pairs(references, hypotheses)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, hyp)["rougeL"].fmeasure for ref, hyp in zip(references, hypotheses)]
    return sum(scores) / len(scores)


QUOTES = "\"'“”‘’"


def _title_key(title: str) -> str:
    """Case- and spacing-insensitive form of a title."""
    return " ".join(title.lower().split())


@lru_cache(maxsize=8)
def _title_matcher(titles: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str]]:
    """One alternation of all titles, longest first, and a map from title key to catalogue title."""
    by_key: dict[str, str] = {}
    for title in titles:
        key = _title_key(title)
        if len(key) >= MIN_TITLE_CHARS:
            by_key.setdefault(key, title.strip())
    alternatives = (r"\s+".join(map(re.escape, key.split())) for key in sorted(by_key, key=len, reverse=True))
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
    return pattern, by_key


def cited_titles(text: str, catalogue_titles: list[str]) -> list[str]:
    """Catalogue titles the text cites (quoted or plain), each once, in order of first mention.

    Whole titles match case-insensitively on word boundaries; where titles overlap the longest
    wins; titles under 3 characters are ignored. One-word titles ("Heat", "Target") count only
    in quotes, since as plain words they are usually just words.
    """
    pattern, by_key = _title_matcher(tuple(catalogue_titles))
    if not by_key:
        return []
    cited = (by_key[_title_key(match.group())] for match in pattern.finditer(text)
             if " " in _title_key(match.group()) or _quoted(text, match.start(), match.end()))
    return list(dict.fromkeys(cited))


def _quoted(text: str, start: int, end: int) -> bool:
    return start > 0 and end < len(text) and text[start - 1] in QUOTES and text[end] in QUOTES


def grounding_of(text: str, allowed: set[str], catalogue_titles: list[str]) -> tuple[list[str], list[str]]:
    """The text's citations split into (grounded: in ``allowed``, ungrounded: not in it)."""
    allowed_keys = {_title_key(title) for title in allowed}
    grounded: list[str] = []
    ungrounded: list[str] = []
    for title in cited_titles(text, catalogue_titles):
        (grounded if _title_key(title) in allowed_keys else ungrounded).append(title)
    return grounded, ungrounded


def grounding_rate(texts: list[str], allowed: list[set[str]], catalogue_titles: list[str]) -> float:
    """Share of all cited titles that are in their text's allowed set; NaN when nothing is cited."""
    _check_pairs(texts, allowed)
    grounded = cited = 0
    for text, allowed_titles in zip(texts, allowed):
        good, bad = grounding_of(text, allowed_titles, catalogue_titles)
        grounded += len(good)
        cited += len(good) + len(bad)
    return grounded / cited if cited else math.nan


def stated_verdict(text: str) -> int | None:
    """1 / 0 for a stated Yes / No (a final verdict line beats a leading "Yes."/"No."), else None."""
    last_line = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    match = _FINAL_VERDICT.search(last_line) or _LEADING_VERDICT.search(text)
    return None if match is None else int(match.group(1).lower() == "yes")


def verdict_report(texts: list[str], p_yes: list[float]) -> dict:
    """Agreement of stated verdicts with ``p_yes > 0.5``, the share of texts stating one, and rows."""
    _check_pairs(texts, p_yes)
    pairs = [(verdict, p) for verdict, p in zip(map(stated_verdict, texts), p_yes) if verdict is not None]
    agreement = sum(verdict == int(p > 0.5) for verdict, p in pairs) / len(pairs) if pairs else math.nan
    return {"agreement": agreement, "stated_share": len(pairs) / len(texts), "rows": len(texts)}


def verdict_agreement(texts: list[str], p_yes: list[float]) -> float:
    """Share of texts stating a verdict whose verdict equals ``p_yes > 0.5``; NaN if none states one."""
    return verdict_report(texts, p_yes)["agreement"]


def explanation_report(references: list[str], hypotheses: list[str], allowed: list[set[str]],
                       catalogue_titles: list[str], p_yes: list[float],
                       cache_dir: Path | None = None) -> dict:
    """All reasoning metrics of the hypotheses, rounded to 4 decimals (rows: the pair count)."""
    verdicts = verdict_report(hypotheses, p_yes)
    return {
        "meteor": round(meteor(references, hypotheses, cache_dir), 4),
        "bleu4": round(bleu4(references, hypotheses), 4),
        "rouge_l": round(rouge_l(references, hypotheses), 4),
        "grounding_rate": round(grounding_rate(hypotheses, allowed, catalogue_titles), 4),
        "verdict_agreement": round(verdicts["agreement"], 4),
        "stated_share": round(verdicts["stated_share"], 4),
        "rows": verdicts["rows"],
    }
