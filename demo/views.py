"""One case per view: which case each browser session shows now, and which answer may still stream.

Every pick registers the case it opens (``Views.show``); costly work for a case asks ``Views.shows``
before it spends time and before it hands a result back, and a streamed answer holds a ticket that
any later stream of the same view, or a pick of another case, supersedes. A superseded stream is
stopped and counted the moment it is superseded (``Views.stream`` ends the model's decoding too) and
passes nothing more on, so no answer for a case that is no longer picked reaches the page and the CPU
goes to the case that is. The counters let tests and operators see how many answers finished, were
superseded, or were cancelled by the page.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)
MAX_SESSIONS = 10_000  # sessions remembered; the oldest are forgotten first
API = "api"  # the session of a caller without a browser session (its work is never superseded)
STOPPED_KEPT = 50  # stopped answers remembered for ``Views.report``


@dataclass(frozen=True)
class CaseKey:
    """What one view shows: ``view`` (explore, build, ablation), the user or guest, the item and the settings
    that change its answer. ``label`` is how every panel names it."""

    view: str
    user: str
    item: str
    settings: tuple = ()
    label: str = ""


@dataclass
class Shown:
    """What one (session, view) shows: the case, since when, and the ticket of its answer (0: none, or one the
    page cut short)."""

    key: CaseKey
    since: float
    ticket: int = 0


class Views:
    """The case each (session, view) shows and its live stream; thread-safe."""

    def __init__(self):
        self._shown: OrderedDict[tuple[str, str], Shown] = OrderedDict()
        self._tickets = itertools.count(1)
        self._live: dict[tuple[str, str], tuple[int, Callable[[], None], CaseKey]] = {}  # ticket, stop, case
        self._lock = threading.Lock()
        self.counts: Counter = Counter()  # picks; streams started, finished, superseded, cancelled
        self.stopped: deque[str] = deque(maxlen=STOPPED_KEPT)  # "<outcome>: <case label>" of the latest stops

    def show(self, session: str, key: CaseKey) -> int:
        """The session's view now shows ``key``; streams of any other case in that view are superseded.
        Returns a number that grows with every pick (so showing the same case again is a new pick)."""
        with self._lock:
            self.counts["picks"] += 1
            self._show(session, key)
            return self.counts["picks"]

    def _show(self, session: str, key: CaseKey) -> Shown:
        """``show`` without counting a pick; the caller holds the lock."""
        view = (session, key.view)
        if view not in self._shown or self._shown[view].key != key:
            self._shown[view] = Shown(key, time.monotonic())
            self._supersede(view)
        self._shown.move_to_end(view)
        while len(self._shown) > MAX_SESSIONS:
            self._shown.popitem(last=False)
        return self._shown[view]

    def _current(self, session: str, key: CaseKey) -> Shown | None:
        """The view's record when it shows ``key``; the caller holds the lock."""
        shown = self._shown.get((session, key.view))
        return shown if shown is not None and shown.key == key else None

    def shows(self, session: str, key: CaseKey) -> bool:
        """Whether the session's view still shows ``key`` (a caller without a session always does)."""
        if session == API:
            return True
        with self._lock:
            return self._current(session, key) is not None

    def shown_for(self, session: str, key: CaseKey) -> float:
        """Seconds the view has shown ``key`` (0 if it does not)."""
        with self._lock:
            current = self._current(session, key)
            return time.monotonic() - current.since if current is not None else 0.0

    def _start_stream(self, session: str, key: CaseKey, stop: Callable[[], None], automatic: bool) -> int | None:
        """Show ``key`` and give it the view's one live stream (stopped by ``stop``), superseding the one
        before; returns the stream's ticket. An ``automatic`` stream (one nobody asked for by name) starts only
        while the view shows ``key`` and no answer for it has started (``answered``); None otherwise."""
        with self._lock:
            current = self._current(session, key)
            if automatic and session != API and (current is None or current.ticket != 0):
                return None
            shown = self._show(session, key)
            self._supersede((session, key.view))
            shown.ticket = next(self._tickets)
            if session != API:
                self._live[(session, key.view)] = (shown.ticket, stop, key)
            self.counts["started"] += 1
            return shown.ticket

    def _supersede(self, view: tuple[str, str]) -> None:
        """Stop the view's live stream, if any, and count it superseded; the caller holds the lock."""
        live = self._live.pop(view, None)
        if live is not None:
            _, stop, key = live
            stop()
            self._count("superseded", key)

    def _count(self, outcome: str, key: CaseKey) -> None:
        """Count the end of a stream of ``key`` (``finished``, ``superseded``, ``cancelled``); the caller holds
        the lock."""
        self.counts[outcome] += 1
        if outcome != "finished":
            label = key.label or str(key)
            log.info("answer for %s %s: stopped before the end", label, outcome)
            self.stopped.append(f"{outcome}: {label}")

    def answered(self, session: str, key: CaseKey) -> bool:
        """Whether an answer for the shown case ``key`` has started and was not cancelled by the page (it is
        streaming, or it finished and shows)."""
        with self._lock:
            current = self._current(session, key)
            return current is not None and current.ticket != 0

    def live(self, session: str, key: CaseKey, ticket: int) -> bool:
        """Whether the stream with ``ticket`` is still its view's live one for the shown case."""
        if session == API:
            return True
        with self._lock:
            current = self._current(session, key)
            return current is not None and current.ticket == ticket

    def stream(self, session: str, key: CaseKey, pieces: Iterable, stop: Callable[[], None],
               automatic: bool = False) -> Iterator | None:
        """Start a stream of ``pieces`` at once; the iterator returned passes them on while it is live.
        Superseded, it is stopped (``stop()``) and counted at once and passes nothing more on; closed by the
        page, it is stopped and counted as cancelled, and its case counts as unanswered again. ``stop`` may run
        under the views' lock, from another request's thread: it only signals, never calls back. An
        ``automatic`` stream that may not start (``_start_stream``) is stopped and None is returned."""
        ticket = self._start_stream(session, key, stop, automatic)
        if ticket is None:
            stop()
            return None
        passed_on = self._passed_on(session, key, ticket, pieces, stop)
        next(passed_on)  # inside its try block: closed or dropped before its first piece, it still stops and counts
        return passed_on

    def _passed_on(self, session: str, key: CaseKey, ticket: int, pieces: Iterable, stop: Callable[[], None]
                   ) -> Iterator:
        view, outcome = (session, key.view), "cancelled"
        try:
            yield  # the priming step of ``stream``
            for piece in pieces:
                if not self.live(session, key, ticket):
                    outcome = "superseded"
                    return
                yield piece
            outcome = "finished"
        finally:
            with self._lock:
                ours = session == API or self._live.get(view, (None,))[0] == ticket
                if ours:  # not yet counted by the stream that superseded it
                    self._live.pop(view, None)
                    if outcome != "finished":
                        stop()
                    self._count(outcome, key)
                shown = self._shown.get(view)
                if outcome == "cancelled" and shown is not None and shown.ticket == ticket:
                    shown.ticket = 0  # cut short: the case has no answer now

    def report(self) -> dict:
        """The counts and the latest stopped answers, for operators and tests."""
        with self._lock:
            return {**self.counts, "stopped": list(self.stopped)}


def session_of(request) -> str:
    """The browser session a request comes from (``API`` for a call without one)."""
    return getattr(request, "session_hash", None) or API
