"""Metrics of generated reasoning: overlap with reference traces (METEOR, BLEU-4, ROUGE-L),
grounding of the titles it cites (a quoted name that is no catalogue film counts as ungrounded), and
agreement of the verdict it states with the model's score.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import nltk
import sacrebleu
from nltk.translate.meteor_score import meteor_score
from rouge_score import rouge_scorer

from thinkrec.assets import resolve_asset

MIN_TITLE_CHARS = 3
LOOP_NGRAM, LOOP_REPEATS = 3, 3  # a word 3-gram seen three times or more is a loop
REPEATED_PHRASE_WORDS = 7  # a phrase this long said twice (a quoted title one word) states an argument twice
_WORD = re.compile(r"\w+(?:['’]\w+)*")
_LEADING_VERDICT = re.compile(r"\A\s*[*\"']*(yes|no)\b[*\"']*\s*(?:[.!,:;]|\Z)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*\s*\Z")
_SENTENCES = re.compile(r"[^.!?\n]*(?:[.!?]+[\"'”’)\]]*|\n|\Z)")
_QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”')
_QUOTED_NAME = re.compile(r'"([^"\n]{2,80})"|“([^”\n]{2,80})”')  # a name in double quotes, captured
_LETTERS = re.compile(r"[A-Za-z]+")
_YEAR_AT_END = re.compile(r"\s*\(\d{4}\)\s*\Z")
_BRACKETS_AT_END = re.compile(r"\s*\([^()]*\)\s*\Z")
_PAUSE_AT_END = re.compile(r"[\s,;:.…]+\Z")  # "The Great Race," or "Heat..." inside the quotes still names the film
_YEAR_AFTER = re.compile(r"[\"'”’]?[^\S\n]*\(\d{4}\)")  # a title's year in brackets right after it
_YES_WORDS = r"(?:enjoy|like|love|appreciate)"
_STANCES = (  # (pattern, stance) on one sentence
    (re.compile(r"\bpoints?\s+to\s+a\s+yes\b|^\W*(?:so|overall|thus|therefore|in\s+short)?\W*yes\b", re.I), 1),
    (re.compile(r"\bpoints?\s+to\s+a\s+no\b|^\W*(?:so|overall|thus|therefore|in\s+short)?\W*no\b(?![.\s]*\d)",
                re.I), 0),
    (re.compile(rf"\b(?:will|would|should|'ll)\s+(?:likely\s+|probably\s+|surely\s+|certainly\s+)?{_YES_WORDS}\b"
                rf"|(?<!not\s)\blikely\s+to\s+{_YES_WORDS}\b|\ba\s+film\s+they\s+would\s+like\b", re.I), 1),
    (re.compile(rf"\b(?:will|would|should)\s+(?:likely\s+|probably\s+)?not\s+(?:likely\s+|probably\s+)?"
                rf"{_YES_WORDS}\b|\b(?:won't|wouldn't)\s+{_YES_WORDS}\b|\bunlikely\s+to\s+(?:{_YES_WORDS}|win)\b"
                r"|\bwould\s+(?:probably\s+)?pass\s+on\b", re.I), 0),
)
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


def title_key(title: str) -> str:
    """Case- and spacing-insensitive form of a title."""
    return " ".join(title.lower().split())


def short_form(title: str) -> str:
    """A title without its bracketed alternative: "Nikita" for "Nikita (La Femme Nikita)"."""
    return _BRACKETS_AT_END.sub("", title)


@lru_cache(maxsize=8)
def _title_matcher(titles: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str]]:
    """One alternation of all titles and their short forms, longest first, and a map from the key of each to
    its catalogue title (a short form that is another film's whole title names that film)."""
    by_key: dict[str, str] = {}
    for key, title in [*((title_key(t), t) for t in titles), *((title_key(short_form(t)), t) for t in titles)]:
        if len(key) >= MIN_TITLE_CHARS:
            by_key.setdefault(key, title.strip())
    alternatives = (r"\s+".join(map(re.escape, key.split())) for key in sorted(by_key, key=len, reverse=True))
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
    return pattern, by_key


@lru_cache(maxsize=8)
def _title_keys(titles: tuple[str, ...]) -> frozenset[str]:
    """The keys a quoted name may take to name a catalogue film: a title, or one without its bracketed
    alternative title ("Nikita" for "Nikita (La Femme Nikita)")."""
    return frozenset(key for title in titles for key in (title_key(title), title_key(short_form(title))))


def unknown_titles(text: str, catalogue_titles: list[str]) -> list[tuple[int, int, str]]:
    """Every name in double quotes that is no catalogue film, as (start, end, the name as written): a span
    written as a title (it begins with a capital or a digit) whose text, a year in brackets aside, is no
    catalogue title, such as an invented or garbled one ("Sleepless in Selecion", "Independence Day ( ID4)")."""
    pattern, by_key = _title_matcher(tuple(catalogue_titles))
    titles = [match.span() for match in pattern.finditer(text)] if by_key else []
    return _unknown_names(text, _title_keys(tuple(catalogue_titles)), titles)


def _unknown_names(text: str, keys: frozenset[str], titles: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """``unknown_titles`` given the catalogue's keys and the spans where catalogue titles match the text."""
    names = []
    for match in _QUOTED_NAME.finditer(text):
        group = 1 if match.group(1) is not None else 2
        start, end, name = match.start(group), match.end(group), match.group(group)
        written_as_title = name[:1].isupper() or name[:1].isdigit()
        # a title that holds quotes itself ('The "Co"') reaches out of the quotes it pairs with: no unknown name
        reaches_out = any(a < end and start < b and not (start <= a and b <= end) for a, b in titles)
        forms = {title_key(name), title_key(_YEAR_AT_END.sub("", name)), title_key(_PAUSE_AT_END.sub("", name))}
        if written_as_title and not reaches_out and not forms & keys:
            names.append((start, end, name))
    return names


def title_mentions(text: str, catalogue_titles: list[str]) -> list[tuple[int, int, str]]:
    """Every catalogue title the text cites, as (start, end, catalogue title), in order: the one rule for
    what counts as citing a film, shared by grounding, the claim checker and the demo's marks.

    Whole titles match case-insensitively on word boundaries; where titles overlap the longest
    wins; titles under 3 characters are ignored. A match is a citation when the text names the film
    rather than uses its words: it is written with its year in brackets, ``Heat (1995)``, or it is
    quoted (a one-word title, "Heat", needs quotes on both sides; a longer one a quote before it), or,
    for a title of several words, it begins with a capital or a digit as a name does ("The Lion King
    is ..."), so that "here the candidate is" does not cite "The Candidate". A title's short form, without
    its bracketed alternative ("Nikita"), cites the film only in quotes on both sides or with its year.
    Words inside a quoted name that is no catalogue title (``unknown_titles``: "Toy Story 7") cite nothing.
    """
    pattern, by_key = _title_matcher(tuple(catalogue_titles))
    if not by_key:
        return []
    matches = list(pattern.finditer(text))  # one pass of the catalogue's pattern serves both rules
    unknown = [(start, end) for start, end, _ in
               _unknown_names(text, _title_keys(tuple(catalogue_titles)), [match.span() for match in matches])]
    return [(match.start(), match.end(), by_key[title_key(match.group())]) for match in matches
            if _names_film(text, match, by_key)
            and not any(start <= match.start() and match.end() <= end for start, end in unknown)]


def _names_film(text: str, match: re.Match, by_key: dict[str, str]) -> bool:
    """Whether a title or short-form match cites the film (see ``title_mentions``)."""
    key = title_key(match.group())
    if key != title_key(by_key[key]):  # a short form: quoted on both sides, or with its year
        return _quoted(text, match.start(), match.end()) or bool(_YEAR_AFTER.match(text, match.end()))
    return _cites(text, match.start(), match.end(), " " in key)


def _cites(text: str, start: int, end: int, several_words: bool) -> bool:
    """Whether the title matched at ``text[start:end]`` is cited (see ``title_mentions``)."""
    if _YEAR_AFTER.match(text, end):
        return True
    if not several_words:
        return _quoted(text, start, end)
    return not text[start].islower() or (start > 0 and text[start - 1] in QUOTES)


@lru_cache(maxsize=8)
def _title_beginnings(titles: tuple[str, ...]) -> tuple[frozenset[str], int]:
    """The keys of every multi-word title's first words ("dr.", "star wars:"), and the longest title key's length."""
    keys = {title_key(title) for title in titles if len(title_key(title)) >= MIN_TITLE_CHARS}
    beginnings = frozenset(key[:i] for key in keys for i, char in enumerate(key) if char == " ")
    return beginnings, max(map(len, keys), default=0)


def title_may_continue(text: str, catalogue_titles: list[str]) -> bool:
    """Whether ``text`` (trailing white space aside) may end inside a title, that is, ends with the first
    words of some title of several words ("... like Dr." may go on as "Dr. Strangelove")."""
    beginnings, longest = _title_beginnings(tuple(catalogue_titles))
    text = text.rstrip()
    window = max(0, len(text) - longest)
    return any(title_key(text[start:]) in beginnings for start in range(window, len(text))
               if start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_"))


def cited_titles(text: str, catalogue_titles: list[str]) -> list[str]:
    """Catalogue titles the text cites (see ``title_mentions``), each once, in order of first mention."""
    return list(dict.fromkeys(title for _, _, title in title_mentions(text, catalogue_titles)))


def _quoted(text: str, start: int, end: int) -> bool:
    return start > 0 and end < len(text) and text[start - 1] in QUOTES and text[end] in QUOTES


def grounding_of(text: str, allowed: set[str], catalogue_titles: list[str]) -> tuple[list[str], list[str]]:
    """The text's citations split into (grounded: in ``allowed``, ungrounded: not in it, and every quoted name
    that is no catalogue film, ``unknown_titles``), each once."""
    allowed_keys = {title_key(title) for title in allowed}
    grounded: list[str] = []
    ungrounded: list[str] = []
    for title in cited_titles(text, catalogue_titles):
        (grounded if title_key(title) in allowed_keys else ungrounded).append(title)
    ungrounded += dict.fromkeys(name for _, _, name in unknown_titles(text, catalogue_titles))
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


def loops(text: str) -> bool:
    """Whether some word 3-gram occurs three times or more in the text."""
    words = _tokens(text)
    grams = Counter(zip(*(words[i:] for i in range(LOOP_NGRAM))))
    return any(count >= LOOP_REPEATS for count in grams.values())


def loop_rate(texts: list[str]) -> float:
    """Share of texts that loop (see ``loops``)."""
    _check_pairs(texts, texts)
    return sum(map(loops, texts)) / len(texts)


def complete(text: str, new_tokens: int | None = None, max_new_tokens: int | None = None) -> bool:
    """Whether the text ends a sentence (. ! or ?, then perhaps a closing quote or bracket) and, when the
    token count is known, stopped before the token cap."""
    if new_tokens is not None and max_new_tokens is not None and new_tokens >= max_new_tokens:
        return False
    return bool(_SENTENCE_END.search(text))


def completion_rate(texts: list[str], new_tokens: list[int] | None = None,
                    max_new_tokens: int | None = None) -> float:
    """Share of texts that are complete (see ``complete``)."""
    counts = new_tokens if new_tokens is not None else [None] * len(texts)
    _check_pairs(texts, counts)
    return sum(complete(text, count, max_new_tokens) for text, count in zip(texts, counts)) / len(texts)


def claim_accuracy(claims_per_text: list[list]) -> tuple[float, int]:
    """Share of checked claims (verdict true or false) that are true, and how many were checked."""
    verdicts = [claim.verdict for claims in claims_per_text for claim in claims if claim.verdict != "unchecked"]
    return (verdicts.count("true") / len(verdicts) if verdicts else math.nan), len(verdicts)


def states_falsehood(claims: list) -> bool:
    """Whether one text's claims include a false one: a reader who checks meets a wrong fact."""
    return any(claim.verdict == "false" for claim in claims)


def falsehood_rate(claims_per_text: list[list]) -> float:
    """Share of texts stating at least one false claim: claim accuracy counts claims, so a few short answers'
    false reactions hide among many true genres and eras; this counts the answers a reader would distrust."""
    return sum(map(states_falsehood, claims_per_text)) / len(claims_per_text) if claims_per_text else math.nan


def claims_by_kind(claims_per_text: list[list]) -> dict[str, list[int]]:
    """Per claim kind, [true, checked] over the checked claims (verdict true or false), kinds in name order."""
    tally: dict[str, list[int]] = {}
    for claim in (claim for claims in claims_per_text for claim in claims if claim.verdict != "unchecked"):
        counts = tally.setdefault(claim.kind, [0, 0])
        counts[0] += claim.verdict == "true"
        counts[1] += 1
    return dict(sorted(tally.items()))


def sentence_stance(sentence: str) -> int | None:
    """1 / 0 when a sentence clearly concludes yes / no (a prediction or an outright yes or no), else None."""
    stances = {stance for pattern, stance in _STANCES if pattern.search(sentence)}
    return stances.pop() if len(stances) == 1 else None


def _mask_quoted(text: str) -> str:
    """``text`` with the full stops, "!" and "?" inside double-quoted titles ("Dr. Moreau") masked, same length."""
    return _QUOTED.sub(lambda match: re.sub(r"[.!?]", "·", match.group()), text)


def last_sentence(text: str) -> str | None:
    """The last complete sentence after the opening verdict; None when there is none. A full stop
    inside a quoted title ends no sentence."""
    opening = _LEADING_VERDICT.match(text)
    body = text[opening.end():] if opening else text
    spans = [m.span() for m in _SENTENCES.finditer(_mask_quoted(body))]
    sentences = [body[a:b].strip() for a, b in spans if _SENTENCE_END.search(body[a:b]) and _tokens(body[a:b])]
    return sentences[-1] if sentences else None


def conclusion_report(texts: list[str]) -> dict:
    """Agreement of each answer's last-sentence stance with its opening verdict, over the answers that have
    both; the share of answers whose last sentence takes no clear stance (or that have no opening verdict)."""
    _check_pairs(texts, texts)
    agree = clear = 0
    for text in texts:
        opening = _LEADING_VERDICT.match(text)
        sentence = last_sentence(text)
        stance = sentence_stance(sentence) if sentence else None
        if opening is None or stance is None:
            continue
        clear += 1
        agree += stance == int(opening.group(1).lower() == "yes")
    return {"agreement": agree / clear if clear else math.nan, "unclear_share": 1 - clear / len(texts)}


def opening_yes(text: str) -> bool | None:
    """Whether the answer opens with Yes (None: no opening verdict)."""
    opening = _LEADING_VERDICT.match(text)
    return None if opening is None else opening.group(1).lower() == "yes"


def in_its_place(claim, yes: bool) -> bool:
    """An argument (``argues_yes`` set) points towards the verdict in support, against it after "Although"."""
    return (claim.argues_yes == yes) != claim.counter


def argument_agreement(texts: list[str], claims_per_text: list[list]) -> tuple[float, int]:
    """(share, judged) of the arguments an answer states that point the way their place calls for: towards
    the opening verdict in a supporting sentence ("Yes. ... they enjoyed "X""), against it in the
    counter-argument ("Although they did not enjoy "Y", ..."), whether or not they are true. The arguments are
    the reactions it gives the user, what viewers made of the target and the user's appetite for its genres
    (``Claim.argues_yes``). An answer that argues for a No with a film the user liked, or that concedes "No.
    ... Although it was poorly received, ...", is true and still broken; claim accuracy cannot see it."""
    counts = [placed_arguments(text, claims) for text, claims in zip(texts, claims_per_text)]
    agree, judged = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return (agree / judged if judged else math.nan), judged


def placed_arguments(text: str, claims: list) -> tuple[int, int]:
    """(in their place, judged) of one answer's arguments (``argument_agreement``); none judged without an
    opening verdict."""
    yes = opening_yes(text)
    arguments = [c for c in claims if c.argues_yes is not None] if yes is not None else []
    return sum(in_its_place(c, yes) for c in arguments), len(arguments)


def repeats(text: str, claims: list) -> bool:
    """Whether the answer states one argument twice: it gives the user a reaction to the same film twice
    (a supporting line said again, or the counter-argument citing a film the support cited), or, outside the
    sentences that give reactions, it says a phrase of ``REPEATED_PHRASE_WORDS`` words twice, a quoted title
    counting as one word ("The clearest signal is that they enjoy most of what they watch. Although they
    enjoy most of what they watch, ..."); a frame that cites different films each time ("X, one of the
    closest matches in their history, ...") is no repetition. The loop rate misses an argument said two or
    three times: its words are the prompt's lines, not a loop."""
    reactions = [claim for claim in claims if claim.kind == "reaction"]
    films = Counter(title_key(text[claim.start:claim.end]) for claim in reactions)
    spans = [match.span() for match in _SENTENCES.finditer(_mask_quoted(text))]
    rest = " ".join(text[a:b] for a, b in spans if not any(a <= claim.start < b for claim in reactions))
    words = _tokens(_QUOTED.sub(lambda title: " " + "_".join(_tokens(title.group())) + " ", rest))
    phrases = Counter(zip(*(words[i:] for i in range(REPEATED_PHRASE_WORDS))))
    return any(count > 1 for count in (*films.values(), *phrases.values()))


def glued_words(text: str, known_words: frozenset[str] = frozenset()) -> list[str]:
    """Words that run together two words the answer says apart elsewhere ("theirhistory" beside "their history",
    "suchas", "ItGets" beside "As Good As It Gets"): what decoding leaves when the no-repeat rule bars the spaced
    token of a phrase said before. ``known_words`` (lower case, the catalogue titles' words, say) are never glued:
    "Goodnight" is a title's word even where the answer also writes "Good Night"."""
    words = list(_LETTERS.finditer(text))
    pairs = {(a.group() + b.group()).lower() for a, b in zip(words, words[1:]) if text[a.end():b.start()] == " "}
    return [w.group() for w in words if w.group().lower() in pairs and w.group().lower() not in known_words]


def title_words(catalogue_titles: list[str]) -> frozenset[str]:
    """Every word of the catalogue's titles, lower case (``glued_words``' known words)."""
    return frozenset(word.lower() for title in catalogue_titles for word in _LETTERS.findall(title))


def garble_rate(texts: list[str], known_words: frozenset[str] = frozenset()) -> float:
    """Share of texts with a glued word (see ``glued_words``)."""
    _check_pairs(texts, texts)
    return sum(bool(glued_words(text, known_words)) for text in texts) / len(texts)


def repetition_rate(texts: list[str], claims_per_text: list[list]) -> float:
    """Share of texts that state an argument twice (see ``repeats``)."""
    _check_pairs(texts, claims_per_text)
    return sum(map(repeats, texts, claims_per_text)) / len(texts)


def text_measures(texts: list[str], claims_per_text: list[list], new_tokens: list[int] | None = None,
                  max_new_tokens: int | None = None, known_words: frozenset[str] = frozenset()) -> dict:
    """Loop rate, repetition rate, garble rate, completion rate, claim accuracy (with claims checked, and [true,
    checked] per kind), the share of answers with a false claim, conclusion agreement and argument agreement
    (with the arguments judged), rounded."""
    accuracy, checked = claim_accuracy(claims_per_text)
    conclusion = conclusion_report(texts)
    arguments, judged = argument_agreement(texts, claims_per_text)
    return {"loop_rate": round(loop_rate(texts), 4),
            "repetition_rate": round(repetition_rate(texts, claims_per_text), 4),
            "garble_rate": round(garble_rate(texts, known_words), 4),
            "completion_rate": round(completion_rate(texts, new_tokens, max_new_tokens), 4),
            "claim_accuracy": round(accuracy, 4), "claims_checked": checked,
            "falsehood_rate": round(falsehood_rate(claims_per_text), 4),
            "claims_by_kind": claims_by_kind(claims_per_text),
            "conclusion_agreement": round(conclusion["agreement"], 4),
            "conclusion_unclear_share": round(conclusion["unclear_share"], 4),
            "argument_agreement": round(arguments, 4), "arguments_judged": judged}
