"""Measure the analysts' views as a visitor meets them: a built profile and the expert ablation.

    python benchmarks/analyst_speed.py [--cases 5] [--system fused] [--max-new-tokens 120]

Starts ``app.py`` and talks to it through its HTTP API like the browser does. For each case, a
real test user's five most recent train ratings become a guest's picks (with the case's movie as
the target); it times placing the guest (fold-in, map, gate and System-1 scores), the guest's
streamed reasoning, and every system's scores. For the expert ablation it times the side-by-side
scores (one batch, every row its own adapter mixture), a change of the gate temperature, and the
streamed answers of every variant. Targets are the demo's (issue 6): map and gate < 300 ms, first
token < 1 s, ~120 tokens < 8 s.
"""

from __future__ import annotations

import statistics
import time

from server import case_arguments, free_port, resident_gb, start_server, stream_timing, test_cases, tokens_in

ABLATION_TOKENS = 64  # the ablation tab's default per answer


def guest_picks(cases: list[tuple[str, str]], count: int = 5) -> list[tuple[list[str], list[str]]]:
    """Each case user's ``count`` most recent train ratings, split into liked and disliked item ids."""
    from thinkrec.config import load_config
    from thinkrec.data.prepared import prepare_dataset

    prepared = prepare_dataset(load_config())
    train = prepared.split("train")
    ids = prepared.items["item_id"].to_numpy()
    picks = []
    for user_id, _ in cases:
        user = int(prepared.users.index[prepared.users["user_id"] == user_id][0])
        recent = train[train["user"] == user].sort_values("timestamp").tail(count)
        picks.append(([str(ids[i]) for i in recent.loc[recent["label"] == 1, "item"]],
                      [str(ids[i]) for i in recent.loc[recent["label"] == 0, "item"]]))
    return picks


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def main() -> None:
    args = case_arguments(__doc__)
    from gradio_client import Client

    cases = test_cases(args.cases)
    picks = guest_picks(cases)
    port = free_port()
    process, cold = start_server(port)
    print(f"cold start {cold:.1f} s")
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        measure_guests(client, cases, picks, args)
        measure_ablation(client, cases)
        print(f"resident memory after the requests: {resident_gb(process):.2f} GB (target < 3 GB)")
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure_guests(client, cases, picks, args) -> None:
    place, first, full, tokens, scores = [], [], [], [], []
    for (_, item), (liked, disliked) in zip(cases, picks):
        seconds, _ = timed(lambda: client.predict(liked, disliked, item, api_name="/place_guest"))  # noqa: B023
        place.append(seconds)
        job = client.submit(liked, disliked, item, args.system, args.max_new_tokens, api_name="/think_guest")
        ttft, total, final = stream_timing(job, lambda update: update[1])
        first.append(ttft)
        full.append(total)
        tokens.append(tokens_in(final))
        seconds, _ = timed(lambda: client.predict(liked, disliked, item, api_name="/build_profile"))  # noqa: B023
        scores.append(seconds)
        print(f"  guest {len(liked)} liked / {len(disliked)} disliked, target {item}: placed in "
              f"{place[-1] * 1000:.0f} ms, first token {ttft:.2f} s, {tokens[-1]} tokens in {total:.2f} s, "
              f"every system {scores[-1]:.2f} s")
    print(f"built profile (fold-in, map, gate, System-1): median {statistics.median(place) * 1000:.0f} ms "
          f"(target < 300 ms)")
    print(f"guest reasoning ({args.system}): median first token {statistics.median(first):.2f} s (target < 1 s), "
          f"median full answer {statistics.median(full):.2f} s for a median {statistics.median(tokens):.0f} tokens "
          f"(target: ~120 tokens < 8 s)")
    print(f"every system's score for a guest: median {statistics.median(scores):.2f} s")


def measure_ablation(client, cases) -> None:
    scored, tempered, first, columns = [], [], [], []
    for user, item in cases:
        seconds, _ = timed(lambda: client.predict(user, item, 0.1, api_name="/ablation_scores"))  # noqa: B023
        scored.append(seconds)
        seconds, _ = timed(lambda: client.predict(user, item, 1.0, api_name="/ablation_scores"))  # noqa: B023
        tempered.append(seconds)
        started, ends, ttft, done = time.perf_counter(), [], None, set()
        for update in client.submit(user, item, 0.1, ABLATION_TOKENS, api_name="/ablation"):
            reasonings = update[1::2]
            if ttft is None and reasonings[0]:
                ttft = time.perf_counter() - started
            for column, text in enumerate(reasonings):
                if "tokens in" in (text or "") and column not in done:
                    done.add(column)
                    ends.append(time.perf_counter() - started)
        first.append(ttft or float("nan"))
        columns.append(ends)
        print(f"  user {user} item {item}: scores {scored[-1]:.2f} s, at another temperature {tempered[-1]:.2f} s, "
              f"first token {first[-1]:.2f} s, columns done after " + ", ".join(f"{s:.1f}" for s in ends) + " s")
    print(f"ablation scores ({len(columns[0])} variants, one batch): median {statistics.median(scored):.2f} s; "
          f"after a temperature change {statistics.median(tempered):.2f} s")
    print(f"ablation answers ({ABLATION_TOKENS} tokens each): median first token {statistics.median(first):.2f} s "
          f"(target < 1 s), all columns done after a median {statistics.median(c[-1] for c in columns):.1f} s")


if __name__ == "__main__":
    main()
