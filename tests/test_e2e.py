"""End to end in a real headless Chromium: the app on the shipped checkpoints, opened by a shared
link; profile, System-1 table, verdict and the streamed reasoning must all appear."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = {**os.environ, "PORT": str(port), "TQDM_DISABLE": "1"}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300  # the first start converts the backbone's GGUF once
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited early:\n{process.stdout.read()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("the app did not start within 300 s")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_shared_link_shows_profile_scores_and_streamed_reasoning(server, tmp_path):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's chromium (apt-get install chromium), as .ci/run does")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1700})
        page.goto(server + "?user=7&item=8", timeout=120_000)
        page.wait_for_function("document.querySelector('#profile-card')?.innerText.includes('User 7')",
                               timeout=120_000)
        page.wait_for_selector("#genre-chart .js-plotly-plot", timeout=60_000)
        page.wait_for_function("document.querySelector('#system1-table')?.innerText.includes('LightGCN')",
                               timeout=120_000)
        page.wait_for_function("document.querySelector('#verdict')?.innerText.includes('P(Yes)')", timeout=120_000)
        page.wait_for_function("document.querySelector('#reasoning')?.innerText.includes('tokens in')",
                               timeout=180_000)
        assert "?user=7&item=8" in page.inner_text("#share")
        shot = tmp_path / "explorer.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_bad_link_gives_a_notice_not_a_trace(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page()
        page.goto(server + "?user=abc&item=999999", timeout=120_000)
        page.wait_for_function("document.querySelector('#notice')?.innerText.includes('unknown user id')",
                               timeout=120_000)
        assert "Traceback" not in page.content()
        browser.close()
