"""Event handlers: plain functions of the backend facade and widget values, unit-testable
without a browser. Bad input becomes a friendly message, never a stack trace."""

from __future__ import annotations

import html
import logging
import random
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import gradio as gr
import pandas as pd

from demo.charts import gate_chart, genre_chart, user_map_chart
from demo.views import API, CaseKey, Views
from thinkrec import registry
from thinkrec.claims import FALSE, TRUE, UNCHECKED
from thinkrec.explorer import (
    FOUND,
    MISSING,
    TARGET,
    UNKNOWN,
    Case,
    Citations,
    Claim,
    Explanation,
    Explorer,
    UnknownIdError,
)

log = logging.getLogger(__name__)
SCORE_COLUMNS = ["system", "p_like", "verdict"]
NO_HELD_OUT = "This user has no held-out movies: search the catalogue below."
DECISIONS = {"single": "one expert answers", "fused": "experts are blended", "global": "the global model answers"}


def user_choices(explorer: Explorer) -> list[tuple[str, str]]:
    """Dropdown entries: a readable label per user (with the cluster, when there are experts), the raw id as value."""
    table = explorer.users_table()
    clusters = explorer.clusters
    return [(f"User {r.user_id} · {r.age} · {r.gender} · {r.occupation} · {r.activity} ({r.n_train} ratings)"
             + (f" · cluster {clusters[n] + 1}" if clusters is not None else ""), r.user_id)
            for n, r in enumerate(table.itertuples())]


def system_choices(explorer: Explorer) -> list[tuple[str, str]]:
    return [(registry.label(name), name) for name in explorer.llm_systems()]


def random_user(explorer: Explorer) -> str:
    return random.choice(explorer.users_table()["user_id"].tolist())


def profile_markdown(explorer: Explorer, user_id: str, case: Case | None = None) -> str:
    """The user's card: demographics, the train-only taste summary (the genres follow the Taste chart's
    rule), and, once a movie is picked, the history that case's prompt shows."""
    profile = explorer.profile(user_id)
    features = ", ".join(f"{k}: {html.escape(v)}" for k, v in profile.features.items())
    liked = profile.history[profile.history["liked"]].head(8)["title"].tolist()
    disliked = profile.history[~profile.history["liked"]].head(8)["title"].tolist()
    cluster = explorer.cluster_of(user_id)
    counts = profile.genre_counts.set_index("genre") if len(profile.genre_counts) else None

    def genres(names: list[str]) -> str:
        def one(g: str) -> str:
            if counts is None or g not in counts.index:
                return html.escape(g)
            liked_here = int(counts.loc[g, "liked"])
            return f"{html.escape(g)} ({liked_here}/{liked_here + int(counts.loc[g, 'disliked'])} liked)"
        return ", ".join(map(one, names))

    parts = [
        f"### User {html.escape(profile.user_id)}" + (f" · cluster {cluster}" if cluster else ""),
        (f"{features} · **{profile.activity}** rater · {profile.n_train} train ratings, "
         f"{profile.like_rate:.0%} liked"),
        f"**Train ratings, summarised** (what the recommenders learnt from; the strongest of the genres the Taste "
        f"chart marks): **favours** {genres(profile.liked_genres) or 'no clear favourite'} · "
        f"**avoids** {genres(profile.disliked_genres) or 'nothing in particular'}",
        f"Latest train likes: {', '.join(map(html.escape, liked)) or '—'}",
        f"Latest train dislikes: {', '.join(map(html.escape, disliked)) or '—'}",
    ]
    if case is not None:
        parts.append(prompt_history_markdown(explorer, case))
    return "\n\n".join(parts)


def prompt_history_markdown(explorer: Explorer, case: Case) -> str:
    """The earlier ratings the case's prompt shows, marked as the model's view of the user."""
    shown = explorer.prompt_history(case)
    title = html.escape(explorer.item_label(case.item))
    if shown.empty:
        return f"**What the model saw for {title}:** no earlier ratings (the prompt says so)."
    lines = [f"{n}. {'👍' if liked else '👎'} {html.escape(t)}"
             for n, (t, liked) in enumerate(shown.itertuples(index=False), start=1)]
    return (f"**What the model saw for {title}** (the history in its prompt, oldest first; for a held-out "
            f"movie it holds the ratings just before it, held-out ones included):\n\n" + "\n".join(lines))


def gate_markdown(route, whom: str = "") -> str:
    if route is None:
        return "_No cluster experts are trained yet: ThinkRec answers with its global expert._"
    return f"**Routing{' for ' + html.escape(whom) if whom else ''}: {DECISIONS[route.decision]}.** " \
           f"{html.escape(route.reason)}"


def share_markdown(user_id: str | None, item_id: str | None, address: str = "") -> str:
    """A link to the case: absolute when the page's address is known."""
    if not user_id or not item_id:
        return ""
    return link_markdown("this case", address, {"user": user_id, "item": item_id})


def link_markdown(what: str, address: str, params: dict, safe: str = "") -> str:
    """'🔗 Link to <what>: <url>' as a clickable link; urlencode percent-encodes every character markdown
    or HTML could act on."""
    url = f"{address}?{urlencode(params, safe=safe)}"
    return f"🔗 Link to {what}: [{html.escape(url)}]({url})"


def map_figure(explorer: Explorer, user_id: str | None):
    """The UMAP map with ``user_id`` starred; None when no map was trained."""
    table = explorer.map_table()
    return None if table is None else user_map_chart(table, explorer.centroid_coords(), user_id)


def select_user(explorer: Explorer, user_id: str | None, wanted_item: str | None = None):
    """Profile card, genre chart, the user's test items (or the item a link or a case asks for), the gate
    chart and its reason, and the map with the user highlighted."""
    empty_items = gr.update(choices=[], value=None)
    if not user_id:
        return "Pick a user to begin.", None, empty_items, None, "", map_figure(explorer, None)
    try:
        profile = explorer.profile(user_id)
        tests = explorer.test_items(user_id)
        route = explorer.gate(user_id)
        if wanted_item:
            explorer.item_index(wanted_item)
    except UnknownIdError as err:
        log.warning("select_user: %s", err)
        return (f"**Cannot show this user:** {html.escape(str(err))}", None, empty_items, None, "",
                map_figure(explorer, None))
    choices = [(f"{'👍' if liked else '👎'} {title}", item_id)
               for item_id, title, liked in tests.itertuples(index=False)]
    value = choices[0][1] if choices else None
    if wanted_item:
        if wanted_item not in [v for _, v in choices]:
            choices.append((explorer.item_label(explorer.item_index(wanted_item)), wanted_item))
        value = wanted_item
    return (profile_markdown(explorer, user_id), genre_chart(profile.genre_counts, profile.like_rate),
            gr.update(choices=choices, value=value, info=None if choices else NO_HELD_OUT),
            gate_chart(route) if route else None, gate_markdown(route, f"user {user_id}"),
            map_figure(explorer, user_id))


def search_titles(explorer: Explorer, query: str):
    """Catalogue items matching the query, for the 'any movie' picker."""
    found = explorer.search_items(query or "")
    choices = [(title, item_id) for item_id, title in found.itertuples(index=False)]
    note = f"{len(choices)} match(es)" if query else ""
    return gr.update(choices=choices, value=choices[0][1] if choices else None), note


def compare_systems(explorer: Explorer, user_id: str | None, item_id: str | None, with_llm: bool = True):
    """System-1 (and, with ``with_llm``, every LLM system's) scores for the chosen pair, with the true
    outcome when it is known. The UI shows the instant System-1 rows first and the LLM rows after
    the reasoning, so the stream does not wait for them."""
    if not user_id or not item_id:
        return pd.DataFrame(columns=SCORE_COLUMNS), "Pick a user and an item."
    try:
        case = explorer.case(user_id, item_id)
        parts = [explorer.system1_scores(case)]
        if with_llm:
            parts.append(explorer.llm_scores(case))
        table = pd.concat(parts, ignore_index=True)
        truth = case.truth
        title = explorer.item_label(case.item)
    except UnknownIdError as err:
        log.warning("compare_systems: %s", err)
        return pd.DataFrame(columns=SCORE_COLUMNS), f"**Cannot score:** {html.escape(str(err))}"
    outcome = "unknown (not a held-out interaction)" if truth is None else ("liked it" if truth else "did not like it")
    return table, f"**{html.escape(title)}** for user {html.escape(str(user_id))} · what really happened: {outcome}"


EXPLORE_OUTPUTS = ("user", "item", "profile", "genres", "gate", "gate_reason", "map", "scores", "outcome", "verdict",
                   "reasoning", "prompt", "share", "notice", "view")
PRESS_THINK = "Press **Think** to watch {system} reason about it"
UNCHANGED = (gr.update(), gr.update(), gr.update())  # (verdict, reasoning, prompt) left as the page shows them


def explore_key(explorer: Explorer, user_id: str, item_id: str, system: str | None, max_new_tokens) -> CaseKey:
    """The Explore view's case: user, item, who thinks and how long (raises UnknownIdError on a bad id)."""
    label = f"user {user_id} · {explorer.item_label(explorer.item_index(item_id))}"
    return CaseKey("explore", str(user_id), str(item_id), (system, max_new_tokens), label)


def show_case(explorer: Explorer, views: Views, session: str, user_id: str | None, wanted_item: str | None,
              system: str | None, max_new_tokens, address: str = "", clear_notice: bool = True) -> tuple:
    """Every cheap panel of one case at once (``EXPLORE_OUTPUTS``): the pickers, the profile card with the
    history the prompt shows, the Taste chart, gate, map, System-1 scores, the outcome, the exact prompt,
    an empty verdict naming the case (a case picked again keeps the answer it has), its link, and the view's
    state for the costly steps that follow. The user's first held-out movie is the case when no item is
    wanted. All of it names the same case."""
    card, chart, items, gate, reason, user_map = select_user(explorer, user_id, wanted_item)
    item_id = items.get("value")
    notice = "" if clear_notice else gr.update()
    empty = pd.DataFrame(columns=SCORE_COLUMNS)
    if not user_id or not item_id or card.startswith("**Cannot"):
        return (gr.update(value=user_id), items, card, chart, gate, reason, user_map, empty, "", "", "", "", "",
                notice, None)
    key = explore_key(explorer, user_id, item_id, system, max_new_tokens)
    pick = views.show(session, key)
    case = explorer.case(user_id, item_id)
    scores, outcome = compare_systems(explorer, user_id, item_id, with_llm=False)
    answer = UNCHANGED if views.answered(session, key) else unanswered(explorer, key, case)
    return (gr.update(value=user_id), items, profile_markdown(explorer, user_id, case), chart, gate, reason,
            user_map, gr.update(value=scores, label=f"Every system's prediction · {key.label}"), outcome,
            *answer, share_markdown(user_id, item_id, address), notice,
            {"session": session, "key": key, "pick": pick})


def unanswered(explorer: Explorer, key: CaseKey, case: Case) -> tuple:
    """(verdict, reasoning, prompt) of a case nobody has answered yet: its name, an invitation, its prompt."""
    system = key.settings[0]
    who = registry.label(system) if system else "a system"
    prompt = explorer.prompt_text(case, system) if system else ""
    return (f"_Case: {html.escape(key.label)}_ · " + PRESS_THINK.format(system=html.escape(who)), "",
            gr.update(value=prompt, label=f"Prompt for {key.label} (⟨CF …⟩ marks a soft token)"))


def llm_rows(explorer: Explorer, views: Views, view: dict | None):
    """The scores table with every LLM system's P(Yes) added, for the view's case, and, unless an answer
    for it has started, the case's unanswered verdict again (so that a message of a superseded answer
    that reached the page after the pick is replaced). Nothing changes when the view has moved on to
    another case by the time the scores are ready."""
    unchanged = (gr.update(),) * 5
    if not view or not views.shows(view["session"], view["key"]):
        return unchanged
    key = view["key"]
    table, outcome = compare_systems(explorer, key.user, key.item)
    if not views.shows(view["session"], key):
        return unchanged
    answer = UNCHANGED if views.answered(view["session"], key) else unanswered(explorer, key,
                                                                             explorer.case(key.user, key.item))
    return gr.update(value=table, label=f"Every system's prediction · {key.label}"), outcome, *answer


def auto_think(explorer: Explorer, views: Views, view: dict | None, automatic: bool, settle_seconds: float):
    """Stream the view's answer once its case has stayed the same for ``settle_seconds`` (when
    ``automatic``), unless an answer for it has started; a case picked meanwhile ends the wait without any
    output. A dropdown may send one pick twice, and the page may keep either pick's state: every wait for
    the case may answer it, and the first to start does (``Views.stream``)."""
    if not automatic or not view:
        yield UNCHANGED  # a generator that yields nothing would clear its outputs
        return
    session, key = view["session"], view["key"]
    while views.shown_for(session, key) < settle_seconds:
        if not views.shows(session, key):
            yield UNCHANGED
            return
        time.sleep(0.05)
    system, max_new_tokens = key.settings
    yield from think(explorer, key.user, key.item, system, max_new_tokens, views, session, automatic=True)


TITLE_MARKS = {TARGET: ("cited-target", "🎯 target"), FOUND: ("cited-ok", "✓"), MISSING: ("cited-missing", "✗"),
               UNKNOWN: ("cited-missing", "✗ no such film")}
CLAIM_SIGNS = {TRUE: "✓", FALSE: "✗", UNCHECKED: "?"}
CLAIM_KINDS = {"year": "Year", "era": "Era", "genre": "Genre", "reaction": "Reaction", "audience": "Audience",
               "profile_genre": "Profile genre"}


def claim_note(claim: Claim) -> str:
    """A claim's hover text: its kind, its verdict and the fact it was checked against."""
    kind = CLAIM_KINDS.get(claim.kind, claim.kind)
    if claim.verdict == UNCHECKED:
        return f"{kind} claim, unchecked: {claim.fact}"
    return f"{kind} claim, {claim.verdict}. Checked against: {claim.fact}"


def highlight(text: str, cited: Citations, claims: list[Claim] = ()) -> str:
    """The reasoning as safe HTML with every cited title marked, the target (🎯), found in the history the
    prompt showed (✓), not found there (✗) or no film at all (✗ no such film), and every checkable claim
    marked true (✓, solid underline), false (✗, wavy) or unchecked (?, dotted), the fact it was checked
    against in its ``title``."""
    spans = [(c.start, c.end, f'<span class="claim claim-{c.verdict}" title="{html.escape(claim_note(c))}">',
              f'<sup class="claim-sign">{CLAIM_SIGNS[c.verdict]}</sup></span>') for c in claims]
    spans += [(start, end, f'<mark class="{TITLE_MARKS[kind][0]}">', f" {TITLE_MARKS[kind][1]}</mark>")
              for start, end, kind in cited.spans]
    return marked_html(text, spans)


def marked_html(text: str, spans: list[tuple[int, int, str, str]]) -> str:
    """``text`` html-escaped with each (start, end, opening, closing) span wrapped in its tags. Spans nest:
    on equal spans the one listed first wraps the other, and one that would cross the span around it is cut
    at that span's end."""
    pieces, open_ends, position = [], [], 0  # open_ends: (end, closing) of the spans open, innermost last

    def write_to(stop: int) -> None:
        nonlocal position
        while open_ends and open_ends[-1][0] <= stop:
            end, closing = open_ends.pop()
            pieces.extend((html.escape(text[position:end]), closing))
            position = end
        pieces.append(html.escape(text[position:stop]))
        position = stop

    for start, end, opening, closing in sorted(spans, key=lambda span: (span[0], -span[1])):
        write_to(start)
        end = min(end, open_ends[-1][0]) if open_ends else end
        if end > start:
            pieces.append(opening)
            open_ends.append((end, closing))
    write_to(len(text))
    return "".join(pieces)


def marked_answer(explorer: Explorer, text: str, run: Explanation) -> tuple[Citations, list[Claim], str]:
    """The citations and claims of ``text`` (an answer to ``run``, or its settled part) and the text marked."""
    cited, claims = explorer.citations(text, run), explorer.claims(text, run)
    return cited, claims, highlight(text, cited, claims)


def think(explorer: Explorer, user_id: str | None, item_id: str | None, system: str | None, max_new_tokens: float,
          views: Views | None = None, session: str = API, automatic: bool = False):
    """Stream the chosen system's answer: verdict and P(Yes) first, then the reasoning, token by token;
    with ``views``, the answer is the session's one live stream and stops when another case is picked
    (``automatic``: it does not even start unless the case is still the one shown and has no answer yet)."""
    if not user_id or not item_id or not system:
        yield "Pick a user, a movie and a system.", "", ""
        return
    try:
        key = explore_key(explorer, user_id, item_id, system, max_new_tokens)
    except UnknownIdError as err:
        log.warning("cannot explain: %s", err)
        yield f"**Cannot explain this case:** {html.escape(str(err))}", "", ""
        return
    yield from stream_answer(explorer, lambda: explorer.case(user_id, item_id), system, max_new_tokens, views,
                             session, key, automatic)


def stream_answer(explorer: Explorer, make_case: Callable[[], Case], system: str, max_new_tokens: float,
                  views: Views | None = None, session: str = API, key: CaseKey | None = None,
                  automatic: bool = False):
    """(verdict, reasoning HTML, prompt) as the answer to ``make_case()`` streams in, each naming the case
    (``key``); a case or a setting that cannot be answered gives a message instead. With ``views`` the
    stream stops as soon as its view shows another case or starts another stream."""
    try:
        run = explorer.explain(make_case(), system, explorer.decoding(system, int(max_new_tokens)))
    except (UnknownIdError, ValueError, TypeError) as err:  # GuestError is a ValueError
        log.warning("cannot explain: %s", err)
        yield f"**Cannot explain this case:** {html.escape(str(err))}", "", ""
        return
    label = f"{key.label} · {registry.label(system)}" if key else registry.label(system)
    pieces = stream_explanation(explorer, run, label)
    if views is not None and key is not None:
        pieces = views.stream(session, key, pieces, run.stream.stop, automatic)
        if pieces is None:  # the page has moved on, or the case is answered already: it keeps what it shows
            yield UNCHANGED
            return
    yield f"_Case: {html.escape(label)}_ · _thinking…_", "", run.prompt
    for verdict, reasoning in pieces:
        yield verdict, reasoning, run.prompt


def stream_explanation(explorer: Explorer, run: Explanation, label: str = "") -> Iterator[tuple[str, str]]:
    """(verdict line, reasoning HTML) as an answer streams in, the verdict naming the case (``label``).
    Cited titles and claims are marked as soon as no more text can change them (``Explorer.settled``), so
    every mark shown while it streams is final; the last pair marks the whole answer, counts the
    citations and claims, and says how long the answer took."""
    text, verdict, started = "", "", time.perf_counter()
    settled, marked = 0, ""
    try:
        for piece in run.stream:
            text += piece
            verdict = verdict or verdict_line(run.p_yes, run.truth, label)
            cut = explorer.settled(text)
            if cut != settled:
                settled, marked = cut, marked_answer(explorer, text[:cut], run)[2]
            yield verdict, marked + html.escape(text[settled:])
    except RuntimeError as err:
        log.warning("generation failed: %s", err)
        yield verdict, marked + html.escape(text[settled:]) + "<br><em>(generation stopped: the model failed)</em>"
        return
    cited, claims, marked = marked_answer(explorer, text, run)
    seconds = time.perf_counter() - started
    note = (f"<br><small>{run.stream.new_tokens} tokens in {seconds:.1f} s · {citation_counts(cited)} · "
            f"{claim_counts(claims)}</small>")
    yield verdict or verdict_line(run.p_yes, run.truth, label), marked + note


def citation_counts(cited: Citations) -> str:
    """The grounding footer: history titles found, titles not found, and the target counted apart."""
    target = f" · the target named {'(not counted as evidence)' if cited.target else 'nowhere'}"
    unknown = f" · {len(cited.unknown)} quoted names that are no film in the catalogue" if cited.unknown else ""
    return (f"cited titles: {len(cited.found)} found in the history the prompt showed, {len(cited.missing)} "
            f"not found{target}{unknown}")


def claim_counts(claims: list[Claim]) -> str:
    """The claims footer: how many checkable claims are true, false and unchecked."""
    verdicts = [claim.verdict for claim in claims]
    return (f"claims checked: {verdicts.count(TRUE)} true, {verdicts.count(FALSE)} false, "
            f"{verdicts.count(UNCHECKED)} unchecked")


def verdict_line(p_yes: float | None, truth: bool | None, label: str = "") -> str:
    case = f"_Case: {html.escape(label)}_ · " if label else ""
    known = "" if truth is None else f" · truth: {'liked' if truth else 'not liked'}"
    if p_yes is None:
        return case + "_No verdict: the model produced no answer._" + known
    return f"{case}**P(Yes) = {p_yes:.3f}** → {'Yes' if p_yes > 0.5 else 'No'}{known}"


def pick_case(value: str | None):
    """A curated case ("<user_id>|<item_id>") -> the user picker and the item to open."""
    if not value or "|" not in value:
        return gr.update(), None
    user_id, item_id = value.split("|", 1)
    return gr.update(value=user_id), item_id


def open_case(evt: gr.SelectData):
    """A click on a row of the analysts' table opens that case in the Explore tab."""
    row = list(evt.row_value or [])
    if len(row) < 2:
        return gr.update(), None, gr.update()
    return gr.update(value=str(row[0])), str(row[1]), gr.Tabs(selected="explore")
