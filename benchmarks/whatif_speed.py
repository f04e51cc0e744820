"""Measure what-if through the app's HTTP API: an edit's System-1 scores, map and gate, and the first token.

    python benchmarks/whatif_speed.py [--cases 5] [--system fused] [--max-new-tokens 120]

Starts ``app.py`` on a free loopback port. For each case of the fixed test subset it edits the user's
ratings (removes the two newest films the prompt shows and flips the third) and times ``/what_if``
(refold into every encoder, System-1 before and after, the map with its arrow, the gate before and
after), then streams the reasoning of the real user (``/think``, the Explore tab) and of the edited one
(``/what_if_think``) and times each one's first reasoning token. Targets (issue 18): the edit's
scores, map and gate < 300 ms; the edited answer's first token as fast as Explore's.
"""

from __future__ import annotations

import os
import statistics
import time

from server import case_arguments, free_port, start_server, stream_timing, test_cases


def edits(cases: list[tuple[str, str]]) -> list[tuple[list[str], list[str]]]:
    """(removed, flipped) item ids per case: the two newest films the prompt shows go, the third flips."""
    from thinkrec.config import load_config
    from thinkrec.explorer import Explorer

    explorer = Explorer.load(load_config(os.environ.get("THINKREC_CONFIG")), with_llm=False)
    chosen = []
    for user, item in cases:
        shown = explorer.rated_films(user, item).query("in_prompt")["item_id"].tolist()
        chosen.append((shown[:2], shown[2:3]))
    return chosen


def main() -> None:
    args = case_arguments(__doc__)
    from gradio_client import Client

    cases = test_cases(args.cases)
    changes = edits(cases)
    port = free_port()
    process, cold = start_server(port)
    print(f"cold start {cold:.1f} s")
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        edit_ms, explore_first, whatif_first = [], [], []
        for (user, item), (removed, flipped) in zip(cases, changes):
            client.predict(user, api_name="/select_user")
            for _ in range(2):  # the second call is the one a visitor meets after the first edit
                started = time.perf_counter()
                summary, *_ = client.predict(user, item, removed, flipped, api_name="/what_if")
                edit_ms.append((time.perf_counter() - started) * 1000)
            assert "Cannot" not in summary, summary
            job = client.submit(user, item, args.system, args.max_new_tokens, api_name="/think")
            explore_first.append(stream_timing(job, lambda update: update[1])[0])
            job = client.submit(user, item, removed, flipped, args.system, args.max_new_tokens,
                                api_name="/what_if_think")
            whatif_first.append(stream_timing(job, lambda update: update[1])[0])
            print(f"  user {user} item {item}: edit {edit_ms[-2]:.0f} / {edit_ms[-1]:.0f} ms, first token "
                  f"Explore {explore_first[-1]:.2f} s, what-if {whatif_first[-1]:.2f} s")
        print(f"an edit's System-1 scores, map and gate (round trip through the API): median "
              f"{statistics.median(edit_ms):.0f} ms, max {max(edit_ms):.0f} ms (target < 300 ms)")
        print(f"first reasoning token ({args.system}): Explore median {statistics.median(explore_first):.2f} s, "
              f"what-if median {statistics.median(whatif_first):.2f} s (target: as fast as Explore's)")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
