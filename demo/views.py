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


class Views:
    """The case each (session, view) shows and its live stream; thread-safe."""

    def __init__(self):
        self._shown: OrderedDict[tuple[str, str], tuple[CaseKey, float, int]] = OrderedDict()
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
            return self._show(session, key)

    def _show(self, session: str, key: CaseKey) -> int:
        """``show`` without counting a pick; the caller holds the lock."""
        current = self._shown.get((session, key.view))
        if current is None or current[0] != key:
            self._shown[(session, key.view)] = (key, time.monotonic(), 0)
            self._supersede((session, key.view))
        self._shown.move_to_end((session, key.view))
        while len(self._shown) > MAX_SESSIONS:
            self._shown.popitem(last=False)
        return self.counts["picks"]

    def shows(self, session: str, key: CaseKey) -> bool:
        """Whether the session's view still shows ``key`` (a caller without a session always does)."""
        if session == API:
            return True
        with self._lock:
            current = self._shown.get((session, key.view))
            return current is not None and current[0] == key

    def shown_for(self, session: str, key: CaseKey) -> float:
        """Seconds the view has shown ``key`` (0 if it does not)."""
        with self._lock:
            current = self._shown.get((session, key.view))
            return time.monotonic() - current[1] if current is not None and current[0] == key else 0.0

    def _start_stream(self, session: str, key: CaseKey, stop: Callable[[], None], automatic: bool) -> int | None:
        """Show ``key`` and give it the view's one live stream (stopped by ``stop``), superseding the one
        before; returns the stream's ticket. An ``automatic`` stream (one nobody asked for by name) starts only
        while the view shows ``key`` and no answer for it has started (``answered``); None otherwise."""
        with self._lock:
            current = self._shown.get((session, key.view))
            if automatic and session != API and (current is None or current[0] != key or current[2] != 0):
                return None
            self._show(session, key)
            self._supersede((session, key.view))
            ticket = next(self._tickets)
            shown, since, _ = self._shown[(session, key.view)]
            self._shown[(session, key.view)] = (shown, since, ticket)
            if session != API:
                self._live[(session, key.view)] = (ticket, stop, key)
            self.counts["started"] += 1
            return ticket

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
            current = self._shown.get((session, key.view))
            return current is not None and current[0] == key and current[2] != 0

    def live(self, session: str, key: CaseKey, ticket: int) -> bool:
        """Whether the stream with ``ticket`` is still its view's live one for the shown case."""
        if session == API:
            return True
        with self._lock:
            current = self._shown.get((session, key.view))
            return current is not None and current[0] == key and current[2] == ticket

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
                if outcome == "cancelled" and shown is not None and shown[2] == ticket:
                    self._shown[view] = (shown[0], shown[1], 0)  # cut short: the case has no answer now

    def report(self) -> dict:
        """The counts and the latest stopped answers, for operators and tests."""
        with self._lock:
            return {**self.counts, "stopped": list(self.stopped)}


def session_of(request) -> str:
    """The browser session a request comes from (``API`` for a call without one)."""
    return getattr(request, "session_hash", None) or API
