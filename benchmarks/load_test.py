"""Load test on loopback: concurrent visitors, cross-talk, the queue bound, and a memory soak.

    python benchmarks/load_test.py [--sessions 8] [--system fused] [--tokens 48] [--soak 200]

1. Each of ``--sessions`` users' first test case is streamed alone, one after another (the reference).
2. All sessions stream at once, each from its own client: every stream must complete with exactly
   the text and verdict it produced alone (greedy decoding, so any difference is cross-talk).
3. More jobs than the queue holds are submitted at once: the surplus must be refused with the
   queue-full message while the others complete.
4. ``--soak`` requests (user switches and all-system scoring, alternating) after a warm-up: resident
   memory may grow by under 10%.
Prints requests/s, p50/p95 latency and memory. Bounded: every phase has a fixed count and timeout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from server import free_port, resident_gb, start_server, test_cases

QUEUE_SIZE = 32  # app.py: demo.queue(max_size=32)


def stream(url: str, user: str, item: str, system: str, tokens: int) -> tuple[str, str, float]:
    """(verdict, final reasoning without its timing note, seconds) of one streamed answer."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    started = time.perf_counter()
    last = ("", "", "")
    for last in client.submit(user, item, system, tokens, api_name="/think"):  # noqa: B007 (the final update counts)
        pass
    verdict, reasoning, _ = last
    return verdict, reasoning.split("<br><small>")[0], time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def concurrent_phase(url: str, cases, system: str, tokens: int) -> bool:
    alone = [stream(url, user, item, system, tokens) for user, item in cases]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(cases)) as pool:
        together = list(pool.map(lambda case: stream(url, *case, system, tokens), cases))
    wall = time.perf_counter() - started
    same = [a[:2] == t[:2] for a, t in zip(alone, together)]
    latencies = [t[2] for t in together]
    print(f"{len(cases)} sessions at once: {sum(same)}/{len(cases)} identical to their solo answer, "
          f"{len(cases) / wall:.2f} requests/s, latency p50 {percentile(latencies, 0.5):.1f} s, "
          f"p95 {percentile(latencies, 0.95):.1f} s (solo median {statistics.median(a[2] for a in alone):.1f} s)")
    for (user, item), ok in zip(cases, same):
        if not ok:
            print(f"  cross-talk or nondeterminism for user {user}, item {item}")
    return all(same)


def queue_phase(url: str, cases, system: str) -> bool:
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    client = Client(url, verbose=False)
    jobs = [client.submit(*cases[n % len(cases)], system, 16, api_name="/think") for n in range(QUEUE_SIZE + 12)]
    refused, completed, other = 0, 0, []
    for job in jobs:
        try:
            job.result(timeout=600)
            completed += 1
        except (QueueError, AppError) as err:
            if "queue is full" in str(err).lower():
                refused += 1
            else:
                other.append(str(err)[:200])
    print(f"queue bound: {len(jobs)} jobs at once -> {completed} completed, {refused} refused with "
          f"'queue is full', {len(other)} other errors {other[:2]}")
    return refused > 0 and not other and completed + refused == len(jobs)


def soak_phase(url: str, process, cases, count: int) -> bool:
    from gradio_client import Client

    client = Client(url, verbose=False)
    for user, item in cases[:2]:  # warm-up: first requests allocate caches
        client.predict(user, api_name="/select_user")
        client.predict(user, item, api_name="/compare")
    before = resident_gb(process)
    latencies = []
    started = time.perf_counter()
    for number in range(count):
        user, item = cases[number % len(cases)]
        tick = time.perf_counter()
        if number % 2:
            client.predict(user, item, api_name="/compare")
        else:
            client.predict(user, api_name="/select_user")
        latencies.append(time.perf_counter() - tick)
    wall = time.perf_counter() - started
    after = resident_gb(process)
    growth = (after - before) / before
    print(f"soak: {count} requests, {count / wall:.2f} requests/s, latency p50 {percentile(latencies, 0.5) * 1000:.0f} "
          f"ms, p95 {percentile(latencies, 0.95) * 1000:.0f} ms; memory {before:.2f} -> {after:.2f} GB "
          f"({growth:+.1%}, limit +10%)")
    return growth < 0.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--system", default="fused")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--soak", type=int, default=200)
    parser.add_argument("--phases", default="concurrent,queue,soak", help="comma-separated subset to run")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    cases = test_cases(args.sessions)
    port = free_port()
    process, cold = start_server(port)
    url = f"http://127.0.0.1:{port}/"
    print(f"server ready in {cold:.1f} s, memory {resident_gb(process):.2f} GB")
    try:
        runs = {"concurrent": lambda: concurrent_phase(url, cases, args.system, args.tokens),
                "queue": lambda: queue_phase(url, cases, args.system),
                "soak": lambda: soak_phase(url, process, cases, args.soak)}
        results = {name: run() for name, run in runs.items() if name in phases}
        alive = process.poll() is None
        print(f"server still serving: {alive}; " + ", ".join(f"{k}: {'pass' if v else 'FAIL'}"
                                                            for k, v in results.items()))
        return 0 if alive and all(results.values()) else 1
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
