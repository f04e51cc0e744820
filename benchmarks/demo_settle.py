"""Measure how the Explore tab settles after a visitor changes their mind: quick Random clicks in a real
headless Chromium, then the time until every panel names one case and its reasoning has finished.

    python benchmarks/demo_settle.py [--clicks 5] [--gap 0.3] [--trials 2] [--think auto|button]

Starts ``app.py`` on a free loopback port, clicks Random ``--clicks`` times ``--gap`` seconds apart and
then (``--think auto``) waits for the answer the demo starts by itself once the case has settled, or
(``--think button``) presses Think. Prints, per trial, the seconds from the last click until the case's
cheap panels show (profile, verdict line), until its reasoning has finished, the server's CPU seconds
spent meanwhile, and the server's answer counts (started, finished, superseded, cancelled). Needs
Debian's chromium and playwright (the e2e tests' setup).
"""

from __future__ import annotations

import argparse
import re
import time

import psutil
from server import free_port, start_server

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]


def case_of(page) -> dict[str, str]:
    """The user each panel names (profile card, verdict line, gate reason) and the verdict's movie."""
    card = re.search(r"User (\d+)", page.inner_text("#profile-card") or "")
    verdict = re.search(r"Case: user (\d+) · (.+?) · ", page.inner_text("#verdict") or "")
    gate = re.search(r"Routing for user (\d+)", page.inner_text("#gate-reason") or "")
    return {"card": card and card.group(1), "verdict": verdict and verdict.group(1),
            "gate": gate and gate.group(1), "movie": verdict and verdict.group(2)}


def one_case(page) -> bool:
    seen = case_of(page)
    return seen["card"] is not None and seen["card"] == seen["verdict"] == seen["gate"]


def trial(page, clicks: int, gap: float, think: str, server: psutil.Process) -> dict:
    cpu = sum(server.cpu_times()[:2])
    for _ in range(clicks):
        page.click("button:has-text('Random')")
        time.sleep(gap)
    last = time.perf_counter()
    page.wait_for_function("document.querySelector('#verdict')?.innerText.includes('Case: user')", timeout=120_000)
    while not one_case(page):
        time.sleep(0.05)
    shown = time.perf_counter() - last
    if think == "button":
        page.click("#think")
    page.wait_for_function("document.querySelector('#reasoning')?.innerText.includes('tokens in')", timeout=300_000)
    done = time.perf_counter() - last
    assert one_case(page), case_of(page)
    return {"panels": shown, "reasoning": done, "cpu": sum(server.cpu_times()[:2]) - cpu, "case": case_of(page)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--gap", type=float, default=0.3)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--think", choices=("auto", "button"), default="auto")
    args = parser.parse_args()
    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    port = free_port()
    process, cold = start_server(port)
    url = f"http://127.0.0.1:{port}/"
    print(f"server up in {cold:.1f} s")
    try:
        server = psutil.Process(process.pid)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(url, timeout=120_000)
            if args.think == "button":
                page.click("#auto-think input")  # off: only the button starts an answer
            for number in range(args.trials):
                result = trial(page, args.clicks, args.gap, args.think, server)
                counts = Client(url, verbose=False).predict(api_name="/stream_counts")
                print(f"trial {number + 1}: {args.clicks} Random clicks {args.gap:.2f} s apart -> one case on every "
                      f"panel {result['panels']:.2f} s after the last click, reasoning done after "
                      f"{result['reasoning']:.1f} s; server CPU {result['cpu']:.1f} s; case {result['case']}; "
                      f"answers so far {counts}")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
