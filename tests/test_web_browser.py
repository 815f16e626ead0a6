"""The live web view in a real browser: Chromium driven by Playwright, against ``sluiceway run --web``.

Each test starts the real command in a subprocess (mock mode, paced so there is
time to watch), opens the URL it prints, and reads the page. Playwright's own
browser download is not used: the system's Chromium is (Debian's ``chromium``
package; ``.ci/run`` installs it when missing). Without it, or without
Playwright, the tests skip and say why.

``SLUICEWAY_UPDATE_SCREENSHOTS=1`` also saves the running and finished page as
``docs/web-running.png`` and ``docs/web-finished.png`` (shown in the README).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SLUICEWAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--headless",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the test extra has it
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="Playwright's Python package is not installed (test extra)"),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does it)",
    ),
]

STORY = " ".join(f"word{i:02d}" for i in range(60))

SPEC = f"""
name: webdemo
steps:
  - name: warmup
    type: claude_robust
    prompt: "say hello"
    retry_config: {{max_retries: 2, base_delay_ms: 200}}
    mock: {{response: "hello there, reader", error: overloaded, error_after: 2, error_attempts: 1, chunk_size: 4, delay_ms: 40}}
  - name: story
    type: claude
    prompt: "tell a story"
    mock: {{response: "{STORY}", delay_ms: 60, chunk_size: 8}}
"""

BATCH = """
name: webbatch
steps:
  - name: translate
    type: claude_batch
    prompt: "Translate item {{{{index}}}}"
    items: [{items}]
    batch_config: {{max_parallel: 5}}
    mock: {{response: "one two three four five six", delay_ms: 50}}
""".format(items=", ".join(f"w{i}" for i in range(50)))


class WebRun:
    """``sluiceway run --web 127.0.0.1:0`` in a subprocess, and the URL it printed."""

    def __init__(self, spec: Path, out: Path, *, linger: float) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "sluiceway._cli", "run", str(spec), "--web", "127.0.0.1:0",
                "--web-linger", str(linger), "--output-dir", str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(out),
        )
        self.stderr_lines: list[str] = []
        self.url = ""
        deadline = time.monotonic() + 30
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.stderr_lines.append(line)
            found = re.search(r"sluiceway web: (http://\S+)", line)
            if found:
                self.url = found.group(1)
                break
        assert self.url, "".join(self.stderr_lines)
        self.base = self.url.split("/?", 1)[0]
        self.token = self.url.rsplit("token=", 1)[1]

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        assert self.process.stderr is not None
        self.stderr_lines.extend(self.process.stderr.readlines())
        return code

    def run_dir(self) -> Path:
        (run_dir,) = [p for p in self.out.iterdir() if p.is_dir() and p.name.startswith("run_")]
        return run_dir

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def _start(tmp_path: Path, spec_text: str, *, linger: float = 20.0) -> WebRun:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    return WebRun(spec, out, linger=linger)


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SLUICEWAY_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, ROOT / "docs" / name)


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text("utf-8").splitlines()]


def test_text_grows_live_and_a_forced_reconnect_loses_and_repeats_nothing(browser: Any, tmp_path: Path) -> None:
    web = _start(tmp_path, SPEC)
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(web.url)
        page.wait_for_function("() => (window.sluiceway.text('story') || '').length > 0", timeout=20_000)
        samples = []
        for _ in range(8):
            samples.append(page.evaluate("() => window.sluiceway.text('story')"))
            page.wait_for_timeout(180)
        lengths = [len(s) for s in samples]
        assert len(set(lengths)) >= 5, lengths  # sampled growing at least 5 times
        assert lengths == sorted(lengths)
        for shorter, longer in zip(samples, samples[1:], strict=False):
            assert longer.startswith(shorter)  # it grows at the end, never rewrites
        _screenshot(page, tmp_path, "web-running.png")

        # drop the stream while the step is still writing, then resume from the last id
        page.evaluate("() => window.sluiceway.drop()")
        page.wait_for_timeout(700)
        missed_while_away = page.evaluate("() => window.sluiceway.text('story')")
        page.evaluate("() => window.sluiceway.reconnect()")
        page.wait_for_function("() => document.body.dataset.ended === 'true'", timeout=30_000)
        final_page_text = page.evaluate("() => window.sluiceway.text('story')")
        assert len(missed_while_away) < len(STORY), "the reconnect happened after the step had finished"

        # the retried step: the superseded attempt is struck through, the final text is the second's
        superseded = page.locator('.step[data-step="warmup"] .attempt.superseded')
        assert superseded.count() == 1
        assert page.evaluate("() => getComputedStyle(document.querySelector('.attempt.superseded')).textDecorationLine") == "line-through"
        assert page.evaluate("() => window.sluiceway.text('warmup')") == "hello there, reader"
        assert page.locator('.step[data-step="story"]').get_attribute("data-status") == "ok"
        stats = page.locator('.step[data-step="story"] .stats').inner_text()
        assert "tokens" in stats and "first token" in stats and "backpressure wait" in stats and "cost" in stats
        _screenshot(page, tmp_path, "web-finished.png")
        page.close()
        assert web.wait() == 0
        result = json.loads((web.run_dir() / "result.json").read_text("utf-8"))
        assert final_page_text == result["steps"]["story"]["text"] == STORY
    finally:
        web.close()


def test_cancel_ends_the_run_with_cancelled_events_and_exit_130(browser: Any, tmp_path: Path) -> None:
    web = _start(tmp_path, SPEC, linger=0)
    try:
        # a cancel without the console's token is refused
        request = urllib.request.Request(f"{web.base}/runs/x/cancel", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        refused.value.close()  # the error holds the response, and with it the socket
        assert refused.value.code == 403
        page = browser.new_page()
        page.goto(web.url)
        page.wait_for_function("() => (window.sluiceway.text('story') || '').length > 0", timeout=20_000)
        page.click("#cancel")
        page.wait_for_function("() => document.body.dataset.run === 'cancelled'", timeout=20_000)
        assert page.locator('.step[data-step="story"]').get_attribute("data-status") == "cancelled"
        page.close()
        assert web.wait() == 130
        events = _events(web.run_dir())
        cancelled = [e for e in events if e["type"] == "Cancelled"]
        assert [e["step"] for e in cancelled] == ["story"]
        assert events[-1]["type"] == "RunFinished" and events[-1]["status"] == "cancelled"
        result = json.loads((web.run_dir() / "result.json").read_text("utf-8"))
        assert result["status"] == "cancelled"
    finally:
        web.close()


def test_a_batch_of_50_shows_its_progress(browser: Any, tmp_path: Path) -> None:
    web = _start(tmp_path, BATCH, linger=10)
    try:
        page = browser.new_page()
        page.goto(web.url)
        bar = page.locator('.step[data-step="translate"] > .progress')
        page.wait_for_function(
            "() => document.querySelector('.step[data-step=\"translate\"] > .progress')?.dataset.total === '50'",
            timeout=20_000,
        )
        seen = set()
        for _ in range(40):
            seen.add(int(bar.get_attribute("data-done") or 0))
            if 50 in seen:
                break
            page.wait_for_timeout(100)
        page.wait_for_function("() => document.body.dataset.ended === 'true'", timeout=30_000)
        assert bar.get_attribute("data-done") == "50"
        assert len(seen - {0, 50}) >= 2, sorted(seen)  # in-between values were shown as it went
        assert page.locator('.step[data-step="translate"] .children .step').count() == 50
        page.close()
        assert web.wait() == 0
    finally:
        web.close()
