"""The prompt shows what the teacher states: evidence lines, the published prompt one setting away,
the era rule, the trace rows, and every fact of generated traces read back from the rendered prompt."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thinkrec.config import LEGACY_PROMPT, trained_prompt
from thinkrec.data.keywords import ERA_WORDS, era_keyword, restate_era
from thinkrec.llm.prompt import CLOSE_MARK, EVIDENCE_HEADER, MARKER, PromptBuilder
from thinkrec.teacher import grounded
from thinkrec.teacher.dataset import (
    check_traces_match,
    reference_rows,
    sample_rows,
    select_rows,
    system1_errors,
    trace_rows,
)

LEGACY_TINY = Path(__file__).parent / "fixtures" / "legacy_prompts_tiny.json"  # rendered by commit 434e0bd
SPECS = {"thinkrec": (True, True, True), "tallrec": (False, False, False), "zeroshot": (False, True, False)}


def legacy(settings):
    return dataclasses.replace(settings, **LEGACY_PROMPT)


def builder_for(prepared, tokenizer, settings, name="thinkrec", items=None) -> PromptBuilder:
    cf, keywords, match = SPECS[name]
    return PromptBuilder(prepared, tokenizer, settings, use_cf_tokens=cf, use_keywords=keywords, use_match=match,
                         item_embeddings=items)


# --- the prompt ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SPECS))
def test_prompt_evidence_off_renders_the_published_prompt_byte_for_byte(tiny_prepared, tiny_config, tiny_tokenizer,
                                                                        name):
    expected = json.loads(LEGACY_TINY.read_text(encoding="utf-8"))[name]
    builder = builder_for(tiny_prepared, tiny_tokenizer, legacy(tiny_config.llm), name)
    rendered = [builder.encode_row(row).text for _, row in tiny_prepared.rows.iterrows()]
    assert len(rendered) == len(expected) == len(tiny_prepared.rows)
    assert rendered == expected


def test_evidence_prompt_shows_profile_genres_and_close_films_one_marker_per_soft_token(
        tiny_prepared, tiny_config, tiny_tokenizer):
    items = np.random.default_rng(0).normal(size=(tiny_prepared.n_items, 8))
    builder = builder_for(tiny_prepared, tiny_tokenizer, tiny_config.llm, items=items)
    published = builder_for(tiny_prepared, tiny_tokenizer, legacy(tiny_config.llm))
    users = tiny_prepared.users
    marked = 0
    for _, row in tiny_prepared.rows.iterrows():
        prompt, before = builder.encode_row(row), published.encode_row(row)
        assert prompt.text.count(MARKER) == len(prompt.soft_tokens) == len(prompt.soft_positions)
        assert [t for t in prompt.soft_tokens] == before.soft_tokens  # the same CF slots, in the same order
        assert all(prompt.input_ids[p] == builder.placeholder_id for p in prompt.soft_positions)
        profile = users.iloc[int(row["user"])]
        line = next((s for s in prompt.text.splitlines() if s.startswith("Profile: ")), "")
        for genre in profile["liked_genres"]:
            assert genre.lower() in line.split("favours ")[1].split(";")[0]
        if profile["n_train"] >= 5:
            assert f"likes {round(100 * profile['like_rate'])} % of the films they rate" in line
        history = [int(i) for i in row["hist_items"] if i >= 0]
        shown = builder.close_to_target(int(row["item"]), [(i, 1) for i in history])
        assert len(shown) <= 3 and prompt.text.count(CLOSE_MARK) == len(shown)
        marked += len(shown)
        for item in history:  # every genre of a history film is shown
            title = tiny_prepared.items["title"].iloc[item]
            entry = next(s for s in prompt.text.splitlines() if f'"{title}"' in s and not s.startswith("Target"))
            assert all(g.lower() in entry for g in tiny_prepared.items["genres"].iloc[item])
    assert marked > 0


def test_evidence_prompt_without_cf_tokens_needs_no_embeddings_and_marks_nothing(tiny_prepared, tiny_config,
                                                                                 tiny_tokenizer):
    zeroshot = builder_for(tiny_prepared, tiny_tokenizer, tiny_config.llm, "zeroshot")
    text = zeroshot.encode_row(tiny_prepared.rows.iloc[5]).text
    assert "Profile: " in text and CLOSE_MARK not in text and MARKER not in text
    tallrec = builder_for(tiny_prepared, tiny_tokenizer, tiny_config.llm, "tallrec")
    assert "Profile: " not in tallrec.encode_row(tiny_prepared.rows.iloc[5]).text  # titles only, as before
    with pytest.raises(ValueError, match="item embeddings"):
        builder_for(tiny_prepared, tiny_tokenizer, tiny_config.llm, "thinkrec")


def evidence_block(text: str) -> list[str]:
    """The evidence lines of a rendered prompt (none without the header)."""
    if EVIDENCE_HEADER not in text:
        return []
    return text.split(EVIDENCE_HEADER + "\n")[1].split("\nCollaborative-filtering match")[0].splitlines()


DISLIKE_LINE = re.compile(r"did not enjoy|turned down|enjoy least|poorly received|little-known|dislike much")
REACTION_FIRST = re.compile(r"They (?:recently )?(?:enjoyed|did not enjoy|turned down) ")
COUNTER = re.compile(r"Although (.+?), (?:" + "|".join(grounded.REBUTTALS + grounded.WEAK_REBUTTALS) + ")")


def test_evidence_lines_state_every_argument_with_the_reaction_before_the_films(
        tiny_prepared, tiny_config, tiny_tokenizer):
    items = np.random.default_rng(0).normal(size=(tiny_prepared.n_items, 8))
    lines_on = dataclasses.replace(tiny_config.llm, prompt_evidence_lines=True)
    builder = builder_for(tiny_prepared, tiny_tokenizer, lines_on, items=items)
    plain = builder_for(tiny_prepared, tiny_tokenizer, tiny_config.llm, items=items)
    titles = tiny_prepared.items["title"].tolist()
    stated = untitled = 0
    for _, row in tiny_prepared.rows.iterrows():
        text, without = builder.encode_row(row).text, plain.encode_row(row).text
        lines = evidence_block(text)
        assert EVIDENCE_HEADER not in without
        added = "\n".join([EVIDENCE_HEADER, *lines]) + "\n"
        assert text.replace(added, "") == without if lines else text == without  # the lines are all it adds
        shown = {int(i): bool(label) for i, label in zip(row["hist_items"], row["hist_labels"]) if i >= 0}
        close = {title for title in titles if f'"{title}"' in without and f'"{title}"' in "".join(
            line for line in without.splitlines() if line.endswith(CLOSE_MARK))}
        sides = []
        for line in lines:
            liked = not DISLIKE_LINE.search(line)
            sides.append(liked)
            cited = re.findall(r'"([^"]+)"', line)
            untitled += not cited
            if cited:  # the reaction comes first, then the films it is true of
                assert REACTION_FIRST.match(line), line
            for title in cited:
                item = titles.index(title)
                assert item in shown and item != int(row["item"]) and shown[item] == liked, line
                if "nearest neighbour" in line:
                    assert title in close  # a film called close is one the history marks close
        assert sides == sorted(sides, reverse=True)  # arguments for a like first
        titled = [t for line in lines for t in re.findall(r'"([^"]+)"', line)]
        assert len(titled) == len(set(titled))  # each film stated once
        stated += len(lines)
    assert stated > untitled > 0  # lines that cite films, and the profile's and audience's arguments


def test_sides_head_the_arguments_for_a_yes_and_for_a_no_apart(tiny_prepared, tiny_config, tiny_tokenizer):
    from thinkrec.llm.prompt import SIDE_HEADERS

    items = np.random.default_rng(0).normal(size=(tiny_prepared.n_items, 8))
    lines_on = dataclasses.replace(tiny_config.llm, prompt_evidence_lines=True)
    flat = builder_for(tiny_prepared, tiny_tokenizer, lines_on, items=items)
    sided = builder_for(tiny_prepared, tiny_tokenizer, dataclasses.replace(lines_on, prompt_evidence_sides=True),
                        items=items)
    both = 0
    for _, row in tiny_prepared.rows.iterrows():
        lines, headed = evidence_block(flat.encode_row(row).text), evidence_block(sided.encode_row(row).text)
        assert [line for line in headed if line not in SIDE_HEADERS] == lines  # the same lines, in the same order
        side = None
        for number, line in enumerate(headed):
            if line in SIDE_HEADERS:
                assert number + 1 < len(headed) and headed[number + 1] not in SIDE_HEADERS  # no empty side
                side = line
            else:
                assert side == SIDE_HEADERS[bool(DISLIKE_LINE.search(line))], (side, line)
        both += all(header in headed for header in SIDE_HEADERS)
    assert both > 0


def test_the_statements_teacher_words_each_history_argument_as_its_evidence_line(
        tiny_prepared, tiny_config, tiny_tokenizer):
    from thinkrec.teacher.evidence import EvidenceBuilder
    from thinkrec.teacher.grounded import HISTORY, GroundedTeacher, capitalise

    items = np.random.default_rng(0).normal(size=(tiny_prepared.n_items, 8))
    lines_on = dataclasses.replace(tiny_config.llm, prompt_evidence_lines=True)
    builder = builder_for(tiny_prepared, tiny_tokenizer, lines_on, items=items)
    evidence_builder = EvidenceBuilder(tiny_prepared, items, lines_on.history_len)
    history_sentences = [template_pattern(t) for templates in HISTORY.values() for t in templates]
    copied = countered = 0
    for _, row in tiny_prepared.rows.iterrows():
        lines = [line.removesuffix(".") for line in evidence_block(builder.encode_row(row).text)]
        evidence = evidence_builder.gather(row)
        for label in (0, 1):
            rest = trace = GroundedTeacher(0, statements=True).explain(evidence, label)
            for line in lines:
                copied += trace.count(line) + trace.count(line[:1].lower() + line[1:])
                rest = rest.replace(line, "").replace(line[:1].lower() + line[1:], "")
            for pattern in history_sentences:  # recent films named for the verdict, not an argument
                rest = pattern.sub("", rest)
            assert set(grounded.cited_titles(rest)) <= {evidence.title}, (trace, lines)
            counter = COUNTER.search(trace)
            if counter:  # the counter-argument, whatever its kind, is a line the student can copy
                assert capitalise(counter.group(1)) in lines, (trace, lines)
                countered += 1
    assert copied > countered > 0


def test_a_trained_system_keeps_the_prompt_it_recorded(tiny_config):
    settings = tiny_config.llm
    assert (settings.prompt_evidence, settings.era_rule) == (True, "thirds")
    shipped = trained_prompt(settings, {"cf_match": True})  # a config.json written before the settings existed
    assert (shipped.prompt_evidence, shipped.era_rule) == (False, "halves")
    recorded = trained_prompt(legacy(settings), {"prompt_evidence": True, "era_rule": "thirds"})
    assert (recorded.prompt_evidence, recorded.era_rule) == (True, "thirds")
    assert dataclasses.replace(shipped, **{k: getattr(settings, k) for k in LEGACY_PROMPT}) == settings


def test_the_teacher_reads_only_the_history_the_prompt_shows(tiny_prepared, tiny_config, tiny_tokenizer):
    from thinkrec.teacher.evidence import EvidenceBuilder
    from thinkrec.teacher.grounded import GroundedTeacher

    items = np.random.default_rng(0).normal(size=(tiny_prepared.n_items, 8))
    settings = dataclasses.replace(tiny_config.llm, history_len=2)
    builder = builder_for(tiny_prepared, tiny_tokenizer, settings, items=items)
    evidence_builder = EvidenceBuilder(tiny_prepared, items, history_len=2)
    titles = tiny_prepared.items["title"].tolist()
    for _, row in tiny_prepared.rows.iterrows():
        shown = {t for t in titles if f'"{t}"' in builder.encode_row(row).text.split("Target: ")[0]}
        evidence = evidence_builder.gather(row)
        assert {h.title for h in evidence.history} <= shown
        trace = GroundedTeacher(0).explain(evidence, int(row["label"]))
        assert set(grounded.cited_titles(trace)) <= shown | {titles[int(row["item"])]}
    assert EvidenceBuilder(tiny_prepared, items, history_len=0).gather(tiny_prepared.rows.iloc[-1]).history == ()


# --- the era rule --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("year, thirds, halves", [
    (1959, "golden-age classic", "golden-age classic"),
    (1960, "early sixties film", "sixties film"),
    (1973, "early seventies film", "seventies film"),
    (1974, "mid seventies film", "seventies film"),
    (1986, "mid eighties film", "eighties film"),
    (1987, "late eighties film", "eighties film"),
    (1990, "early nineties film", "early nineties film"),
    (1993, "early nineties film", "early nineties film"),
    (1994, "mid nineties film", "early nineties film"),
    (1995, "mid nineties film", "late nineties film"),
    (1996, "mid nineties film", "late nineties film"),
    (1997, "late nineties film", "late nineties film"),
    (1999, "late nineties film", "late nineties film"),
])
def test_era_thirds_on_boundary_years(year, thirds, halves):
    assert era_keyword(year) == era_keyword(year, "thirds") == thirds
    assert era_keyword(year, "halves") == halves
    assert {thirds, halves} <= ERA_WORDS


def test_era_rule_restates_stored_keywords_and_refuses_unknown_rules():
    assert restate_era(["drama", "late nineties film", "acclaimed"], 1995, "thirds") == \
        ["drama", "mid nineties film", "acclaimed"]
    assert restate_era(["drama", "late nineties film"], None, "thirds") == ["drama"]
    assert era_keyword(2004) is None and era_keyword(float("nan")) is None
    with pytest.raises(ValueError, match="era rule"):
        era_keyword(1995, "quarters")


# --- which rows get a trace ------------------------------------------------------------------------------------

def scores_wrong_on(prepared, wrong: np.ndarray) -> np.ndarray:
    labels = prepared.split("train")["label"].to_numpy()
    return np.where(wrong, 1 - labels, labels).astype(float)


def test_the_sample_rule_keeps_system1_errors_at_most_at_their_natural_rate(tiny_prepared):
    train = tiny_prepared.split("train")
    wrong = np.zeros(len(train), bool)
    wrong[::3] = True
    scores = scores_wrong_on(tiny_prepared, wrong)
    for size in (1, 5, 10, len(train), 10 * len(train)):
        rows = sample_rows(tiny_prepared, scores, size, 3, seed=4)
        picked = rows[rows["purpose"] != "reference"]
        assert len(picked) == min(size, len(train))
        assert not picked.duplicated(["user", "item", "timestamp"]).any()
        share = (picked["purpose"] == "train_error").mean()
        assert share <= wrong.mean() and share > wrong.mean() - 1 / len(picked)
        keys = picked.merge(train.assign(wrong=wrong), on=["user", "item", "timestamp"])
        assert (keys["wrong"] == (keys["purpose"] == "train_error")).all()  # the purpose says what MF did
    errors_rule = select_rows(tiny_prepared, scores, 0.0, 3, seed=4)
    assert (errors_rule["purpose"] == "train_error").sum() == wrong.sum()  # the paper's rule: every error


def test_reference_rows_keep_the_first_draw_and_add_more(tiny_prepared):
    keys = ["user", "item", "timestamp"]
    core = reference_rows(tiny_prepared, 2, seed=1)
    n_test = len(tiny_prepared.split("test"))
    more = reference_rows(tiny_prepared, n_test, seed=1, core=2)
    assert more[keys].head(2).values.tolist() == core[keys].values.tolist()
    assert len(more) == n_test > 2 and not more.duplicated(keys).any() and set(more["purpose"]) == {"reference"}
    assert len(reference_rows(tiny_prepared, n_test + 5, seed=1, core=2)) == n_test  # capped at the test split
    legacy_rule = select_rows(tiny_prepared, np.zeros(len(tiny_prepared.split("train"))), 0.0, 2, seed=1)
    assert legacy_rule[legacy_rule["purpose"] == "reference"][keys].values.tolist() == core[keys].values.tolist()


def test_trace_rows_follows_the_setting(tiny_prepared, tiny_config):
    scores = np.zeros(len(tiny_prepared.split("train")))
    settings = dataclasses.replace(tiny_config.llm, max_train_traces=4, reference_rows=3, reference_core_rows=1)
    rows = trace_rows(tiny_prepared, scores, settings)
    assert (rows["purpose"] != "reference").sum() == 4 and (rows["purpose"] == "reference").sum() == 3
    with pytest.raises(ValueError, match="trace_rows"):
        trace_rows(tiny_prepared, scores, dataclasses.replace(settings, trace_rows="all"))


def test_training_refuses_traces_written_for_another_prompt(tiny_config):
    shipped = pd.DataFrame({"trace": ["No. ..."]})  # a file that records nothing: the published prompt
    check_traces_match(shipped, legacy(tiny_config.llm))
    with pytest.raises(ValueError, match="prompt_evidence"):
        check_traces_match(shipped, tiny_config.llm)
    shipped.attrs["prompt"] = {"history_len": 3, "prompt_evidence": True, "era_rule": "thirds"}
    with pytest.raises(ValueError, match="history_len"):
        check_traces_match(shipped, tiny_config.llm)


# --- every fact of a trace, read back from the prompt ---------------------------------------------------------

TITLES = r'"[^"]+"(?:(?:, | and )"[^"]+")*'
GENRE = r"[a-z][a-z'-]*(?: and [a-z][a-z'-]*)?"
HISTORY_LINE = re.compile(r'^\d+\. "(?P<title>.*)"(?: \(\d+\))?(?: <\|cf\|>)?(?: \[(?P<keywords>[^\]]*)\])?: '
                          r'(?P<verdict>liked|disliked)(?P<close>, close to the target)?$')
TARGET_LINE = re.compile(r'^Target: "(?P<title>.*)"(?: \(\d+\))?(?: <\|cf\|>)?(?: \[(?P<keywords>[^\]]*)\])?$')


def template_pattern(template: str) -> re.Pattern:
    """A grounded-teacher template as a regular expression with named groups."""
    slots = {"{titles}": f"(?P<titles>{TITLES})", "{first}": r'(?P<titles>"[^"]+")', "{genre}": f"(?P<genre>{GENRE})",
             "{s}": "s?", "{detail}": r"(?P<detail>[a-z ]+?)", "{T}": r'(?P<target>"[^"]+")',
             "{desc}": r"(?P<desc>an? (?:[a-z' ,-]+ )?film)"}
    return re.compile("".join(slots.get(part, re.escape(part)) for part in re.split(r"(\{\w+\})", template)),
                      re.IGNORECASE)


CLAIMS = [(kind, direction, template_pattern(t)) for (kind, direction), options in grounded.CLAUSES.items()
          for t in options]
CLAIMS += [("audience", word, template_pattern(t)) for word, options in grounded.AUDIENCE_CLAUSES.items()
           for t in options]
CLAIMS += [("recent", "like" if label else "dislike", template_pattern(t))
           for label, options in grounded.HISTORY.items()
           for t in options]
OPENINGS = [template_pattern(t) for t in grounded.OPENINGS]


@dataclasses.dataclass
class ShownPrompt:
    """What a reader of the rendered prompt knows."""

    history: dict[str, list[tuple[bool, bool, list[str]]]]  # title -> (liked, marked close, keywords) per entry
    target: str
    target_keywords: list[str]
    favours: list[str]
    avoids: list[str]
    like_percent: int | None


def read_prompt(text: str) -> ShownPrompt:
    history, target, target_keywords, favours, avoids, percent = {}, "", [], [], [], None
    for line in text.splitlines():
        if (found := HISTORY_LINE.match(line)):
            words = found["keywords"].split(", ") if found["keywords"] else []
            entry = (found["verdict"] == "liked", bool(found["close"]), words)
            history.setdefault(found["title"], []).append(entry)  # two catalogue items may share a title
        elif (found := TARGET_LINE.match(line)):
            target, target_keywords = found["title"], found["keywords"].split(", ")
        elif line.startswith("Profile: "):
            for part in line.removeprefix("Profile: ").removesuffix(".").split("; "):
                if part.startswith("favours "):
                    favours = part.removeprefix("favours ").split(", ")
                elif part.startswith("avoids "):
                    avoids = part.removeprefix("avoids ").split(", ")
                elif (rate := re.fullmatch(r"likes (\d+) % of the films they rate", part)):
                    percent = int(rate[1])
    return ShownPrompt(history, target, target_keywords, favours, avoids, percent)


def split_words(joined: str) -> list[str]:
    return [w for w in re.split(r", | and ", joined) if w]


def check_claim(kind: str, direction: str, found: re.Match, shown: ShownPrompt) -> list[str]:
    """What the prompt contradicts or does not show in one matched claim (empty: all readable)."""
    problems = []
    titles = grounded.cited_titles(found["titles"]) if "titles" in found.groupdict() and found["titles"] else []
    genres = split_words(found["genre"].lower()) if "genre" in found.groupdict() and found["genre"] else []
    liked = direction == "like"
    for title in titles:
        entries = shown.history.get(title, [])
        if not entries:
            problems.append(f"{title!r} is not in the shown history")
        elif not any(entry[0] == liked for entry in entries):
            problems.append(f"{title!r} is shown {'disliked' if liked else 'liked'}")
        elif kind == "similar" and not any(entry[0] == liked and entry[1] for entry in entries):
            problems.append(f"{title!r} is called close but not marked close")
    if kind == "genre":
        shown_genres = {t: {w for entry in shown.history.get(t, []) for w in entry[2]} for t in titles}
        for genre in genres:
            if genre not in shown.target_keywords:
                problems.append(f"{genre} is not a shown genre of the target")
            if not any(genre in shown_genres[t] for t in titles):
                problems.append(f"{genre} is not a shown genre of {titles}")
        problems += [f"{t!r} shows none of {genres}" for t in titles if not set(genres) & shown_genres[t]]
    if kind == "profile_genre":
        listed = shown.favours if liked else shown.avoids
        problems += [f"{g} is not listed as {'favoured' if liked else 'avoided'}" for g in genres if g not in listed]
        problems += [f"{g} is not a shown genre of the target" for g in genres if g not in shown.target_keywords]
    if kind == "audience" and direction not in shown.target_keywords:
        problems.append(f"the target is not shown as {direction}")
    if kind == "history_rate":
        verdicts = [entry[0] for t, entries in shown.history.items() if t != shown.target for entry in entries]
        share = np.mean(verdicts) if len(verdicts) >= 3 else None
        if share is None or (share < 0.75 if liked else share > 0.25):
            problems.append(f"recent like share {share} does not support {direction}")
    if kind == "profile_rate" and (shown.like_percent is None or
                                   (shown.like_percent < 70 if liked else shown.like_percent > 30)):
        problems.append(f"shown like-rate {shown.like_percent} % does not support {direction}")
    return problems


def check_opening(trace: str, shown: ShownPrompt) -> list[str]:
    """The target's era and genres, as the opening describes them, among its shown keywords."""
    found = next((m for pattern in OPENINGS if (m := pattern.search(trace))), None)
    if found is None:
        return ["no opening found"]
    words = found["desc"].split(" ", 1)[1].removesuffix(" film").removesuffix("film").strip()
    problems = []
    eras = sorted((w.removesuffix(" film").removesuffix(" classic") for w in ERA_WORDS), key=len, reverse=True)
    era = next((e for e in eras if words == e or words.startswith(e + " ")), None)
    if era is not None:
        words = words[len(era):].strip()
        if not any(k in ERA_WORDS and k.startswith(era + " ") for k in shown.target_keywords):
            problems.append(f"era {era!r} is not the target's shown era")
    problems += [f"genre {g!r} is not shown for the target" for g in split_words(words)
                 if g not in shown.target_keywords]
    return problems


def trace_problems(trace: str, prompt_text: str) -> list[str]:
    """Every fact ``trace`` states checked against ``prompt_text``; quoted titles outside a checked claim
    (other than the target's) are problems too."""
    shown = read_prompt(prompt_text)
    problems = check_opening(trace, shown)
    rest = trace
    for kind, direction, pattern in CLAIMS:
        for found in pattern.finditer(trace):
            problems += [f"{kind}/{direction}: {p}" for p in check_claim(kind, direction, found, shown)]
            rest = rest.replace(found.group(0), "")
    leftover = [t for t in grounded.cited_titles(rest) if t != shown.target]
    problems += [f"{t!r} is cited outside any checked claim" for t in leftover]
    return problems


@pytest.fixture(scope="module")
def real():
    from thinkrec.cf.store import cf_dir, load_embeddings
    from thinkrec.config import load_config
    from thinkrec.data.prepared import prepare_dataset
    from thinkrec.llm.backbone import load_backbone

    config = load_config()
    if not (cf_dir(config) / config.llm.cf_encoder / "config.json").exists() or not config.traces_path.exists():
        pytest.skip("the CF checkpoints or the trace file are absent: run `python -m thinkrec train-cf traces`")
    _, tokenizer = load_backbone(config)
    return config, prepare_dataset(config), tokenizer, load_embeddings(config, config.llm.cf_encoder)["item"]


@pytest.mark.integration
def test_every_fact_of_200_new_traces_is_readable_from_the_prompt(real):
    from thinkrec.llm.systems import prompt_builder, system_spec
    from thinkrec.teacher.dataset import load_trace_dataset, write_traces
    from thinkrec.teacher.grounded import GroundedTeacher

    config, prepared, tokenizer, items = real
    stored = load_trace_dataset(config.traces_path)
    assert stored.attrs["prompt"] == {"history_len": config.llm.history_len, "prompt_evidence": True,
                                      "era_rule": "thirds"}
    sample = pd.concat([stored[stored["purpose"] != "reference"].sample(n=150, random_state=0),
                        stored[stored["purpose"] == "reference"].sample(n=50, random_state=0)])
    keys = ["user", "item", "timestamp"]
    rows = sample[[*keys, "purpose"]].merge(prepared.rows, on=keys, how="left", validate="one_to_one")
    again = write_traces(prepared, config, GroundedTeacher(config.llm.seed), rows, items)
    assert again["trace"].tolist() == sample["trace"].tolist()  # the committed file is what the code writes
    builder = prompt_builder(system_spec("thinkrec"), prepared, tokenizer, config)
    checked, problems = 0, {}
    for (_, row), trace in zip(rows.iterrows(), again["trace"]):
        text = builder.encode_row(row).text
        found = trace_problems(trace, text)
        checked += 1
        if found:
            problems[trace] = found
    assert checked == 200 and not problems, json.dumps(problems, indent=1)[:4000]


@pytest.mark.integration
def test_the_published_prompt_on_real_data_is_unchanged(real):
    """sha256 of the 500-row test subset's prompts, rendered by commit 434e0bd (before the evidence prompt)."""
    from thinkrec.subsets import test_subset

    config, prepared, tokenizer, _ = real
    expected = {"thinkrec": "9464caa979d63d2cc47959a2e58eef9ae10a73e227922cd9406773de439bd40c",
                "tallrec": "984b0d93ffde7efd781213b563c39677e9e7720d78bb3f59ac4a425232443431",
                "zeroshot": "1e8e4623ef68b8972cf7f3b9eaef89576da23a1755811f062ffce6a42096976e"}
    rows = test_subset(prepared, config)
    for name, digest in expected.items():
        builder = builder_for(prepared, tokenizer, legacy(config.llm), name)
        texts = "\x00".join(builder.encode_row(row).text for _, row in rows.iterrows())
        assert hashlib.sha256(texts.encode()).hexdigest() == digest, name


@pytest.mark.integration
def test_the_new_trace_file_samples_train_rows_at_the_natural_error_rate(real):
    from thinkrec.teacher.dataset import load_trace_dataset, system1_train_scores

    config, prepared, _, _ = real
    traces = load_trace_dataset(config.traces_path)
    train = traces[traces["purpose"] != "reference"]
    assert len(train) >= 6000 and (traces["purpose"] == "reference").sum() >= 500
    natural = system1_errors(prepared, system1_train_scores(prepared, config, config.llm.trace_system1)).mean()
    assert (train["purpose"] == "train_error").mean() <= natural
    shipped = load_trace_dataset(config.paths.checkpoints / "teacher" / "traces.parquet")
    keys = ["user", "item", "timestamp"]
    first = traces[traces["purpose"] == "reference"][keys].head(100).values.tolist()
    assert first == shipped[shipped["purpose"] == "reference"][keys].values.tolist()  # the shipped 100 first
