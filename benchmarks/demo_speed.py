"""Measure the demo as a visitor meets it: cold start, user switch, reasoning stream, memory.

    python benchmarks/demo_speed.py [--cases 5] [--system fused] [--max-new-tokens 120]

Starts ``app.py`` on a free loopback port and times it until the page answers (cold start), then
talks to it through its HTTP API (gradio_client) like the browser does: switching to a user
(profile, map and gate redrawn), scoring every system for a case, and streaming the reasoning
(time to the first reasoning token and to the full answer). Finally prints the server's
resident memory. Targets (issue 6): start < 60 s, first token < 1 s, ~120 tokens < 8 s,
map and gate < 300 ms, memory < 3 GB.
"""

from __future__ import annotations

import statistics
import time

from server import case_arguments, free_port, resident_gb, start_server, stream_timing, test_cases, tokens_in


def stream_reasoning(client, user: str, item: str, system: str, max_new_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first reasoning text, seconds to the full answer, tokens generated)."""
    job = client.submit(user, item, system, max_new_tokens, api_name="/think")
    first, total, final = stream_timing(job, lambda update: update[1])
    return first, total, tokens_in(final)


def main() -> None:
    args = case_arguments(__doc__)
    from gradio_client import Client

    cases = test_cases(args.cases)
    port = free_port()
    process, cold = start_server(port)
    print(f"cold start to a serving page: {cold:.1f} s (target < 60 s); memory {resident_gb(process):.2f} GB")
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        switch, compare, first, full, tokens = [], [], [], [], []
        for user, item in cases:
            started = time.perf_counter()
            client.predict(user, api_name="/select_user")
            switch.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.predict(user, item, api_name="/compare")
            compare.append(time.perf_counter() - started)
            ttft, total, count = stream_reasoning(client, user, item, args.system, args.max_new_tokens)
            first.append(ttft)
            full.append(total)
            tokens.append(count)
            print(f"  user {user} item {item}: switch {switch[-1] * 1000:.0f} ms, all systems {compare[-1]:.2f} s, "
                  f"first token {ttft:.2f} s, {count} tokens in {total:.2f} s")
        print(f"user switch (profile, map, gate): median {statistics.median(switch) * 1000:.0f} ms (target < 300 ms)")
        print(f"every system's score for a case: median {statistics.median(compare):.2f} s")
        print(f"reasoning ({args.system}): median first token {statistics.median(first):.2f} s (target < 1 s), "
              f"median full answer {statistics.median(full):.2f} s for a median {statistics.median(tokens):.0f} "
              f"tokens (target: ~120 tokens < 8 s)")
        print(f"resident memory after the requests: {resident_gb(process):.2f} GB (target < 3 GB)")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
