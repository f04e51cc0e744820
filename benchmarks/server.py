"""Start ``app.py`` on a free loopback port for a benchmark, and read its memory."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def case_arguments(doc: str) -> argparse.Namespace:
    """The options both demo benchmarks take: how many test cases, which system reasons, how long."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--system", default="fused")
    parser.add_argument("--max-new-tokens", type=int, default=120)
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, timeout: float = 600, env: dict | None = None) -> tuple[subprocess.Popen, float]:
    """Run app.py and return it with the seconds until its page answered."""
    env = {**os.environ, "PORT": str(port), "TQDM_DISABLE": "1", **(env or {})}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited with code {process.returncode} before serving")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return process, time.perf_counter() - started
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit(f"app.py did not serve within {timeout:.0f} s")


def resident_gb(process: subprocess.Popen) -> float:
    """Resident memory of the server and its children, in GiB."""
    root = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**30


def test_cases(count: int) -> list[tuple[str, str]]:
    """(user_id, item_id) of the first ``count`` rows of the fixed test subset, one per user."""
    from thinkrec.config import load_config
    from thinkrec.data.prepared import prepare_dataset
    from thinkrec.subsets import test_subset

    config = load_config(os.environ.get("THINKREC_CONFIG"))
    prepared = prepare_dataset(config)
    rows = test_subset(prepared, config).drop_duplicates("user").head(count)
    return [(str(prepared.users["user_id"].iloc[r.user]), str(prepared.items["item_id"].iloc[r.item]))
            for r in rows.itertuples()]


def stream_timing(job, text_of) -> tuple[float, float, str]:
    """(seconds to the first reasoning text, seconds to the end, the final text) of a streaming gradio_client
    job; ``text_of`` picks the reasoning out of one update."""
    started, first, final = time.perf_counter(), None, ""
    for update in job:
        text = text_of(update)
        if text and first is None:
            first = time.perf_counter() - started
        final = text or final
    return first or float("nan"), time.perf_counter() - started, final


def tokens_in(text: str) -> int:
    """The token count the UI prints under a finished answer ("N tokens in S s"), 0 if absent."""
    found = re.search(r"(\d+) tokens in", text or "")
    return int(found.group(1)) if found else 0
