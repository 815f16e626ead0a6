"""What ``sluiceway run`` shows: on a terminal (a real pty) and piped (issue 15 items 1, 6, 7).

A step without a handler still shows its answer (a default display; ``--quiet``
turns it off); a TTY gets a spinner, "step i of N" and a batch's live progress;
piped output stays one plain line per step; the summary names a failure once,
with its type, and shows non-``end_turn`` stops.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLUICEWAY = str(Path(sys.executable).parent / "sluiceway")
#: Real-time guard for each subprocess.
PROCESS_TIMEOUT = 60.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SLUICEWAY_STREAM_DEBUG", None)
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "100"
    env["LINES"] = "40"
    return env | extra


def run_piped(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SLUICEWAY, "run", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=PROCESS_TIMEOUT
    )


def run_in_pty(*args: str, cwd: Path) -> tuple[int, str]:
    """Run ``sluiceway run ARGS`` with stdout and stderr on one pty; return its code and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(
        [SLUICEWAY, "run", *args], cwd=cwd, env=_env(), stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    data = b""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    try:
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; output so far: {data!r}"
            ready, _, _ = select.select([master], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            data += chunk
        code = proc.wait(timeout=PROCESS_TIMEOUT)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, data.decode("utf-8", "replace")


def plain(text: str) -> str:
    """Without escape codes and carriage returns: what was written, frames one after another."""
    return ANSI.sub("", text).replace("\r", "")


TWO_STEPS = """
name: quiet_steps
steps:
  - name: ask
    type: claude
    prompt: "Tell me a joke"
    mock: {pattern: slow, first_token_delay_ms: 700, response: "Why did the sluice open? To let the stream through."}
  - name: two
    type: claude
    prompt: "again"
    mock: {response: "Second answer.\\nWith a second line."}
"""


def test_a_step_without_handler_streams_its_answer_on_a_tty(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(TWO_STEPS, encoding="utf-8")
    code, out = run_in_pty("p.yaml", "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert code == 0, out
    text = plain(out)
    header1 = text.index("▶ ask (step 1 of 2) · mock")
    spinner = text.index("waiting for the first token · ")
    answer = text.index("Why did the sluice open? To let the stream through.")
    header2 = text.index("▶ two (step 2 of 2) · mock")
    summary = text.index("quiet_steps: ok")
    assert header1 < spinner < answer < header2 < summary
    # the spinner turned with the elapsed time while the first token was awaited (700 ms)
    assert re.search(r"waiting for the first token · 0\.[3-9] s", text), text
    assert "Second answer.\nWith a second line." in text
    assert "╭" not in text  # no statistics panel: the summary has them


def test_piped_default_display_is_one_line_per_step_and_quiet_turns_it_off(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(TWO_STEPS, encoding="utf-8")
    done = run_piped("p.yaml", "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "✓ ask (step 1 of 2): Why did the sluice open? To let the stream through.",
        "✓ two (step 2 of 2): Second answer. …",
    ]
    assert "\x1b" not in done.stdout + done.stderr
    (run_dir,) = (tmp_path / "o").iterdir()  # where the docs say the full text is
    assert (run_dir / "two.txt").read_text() == "Second answer.\nWith a second line."

    no_stream = run_piped("p.yaml", "--no-stream", "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert no_stream.returncode == 0, no_stream.stderr
    assert no_stream.stdout == done.stdout

    quiet = run_piped("p.yaml", "--quiet", "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    assert "quiet_steps: ok" in quiet.stderr  # the summary stays


def test_a_batch_on_a_tty_shows_a_progress_bar_and_live_lines(tmp_path: Path) -> None:
    code, out = run_in_pty(
        str(ROOT / "examples" / "batch_progress.yaml"), "--output-dir", str(tmp_path / "o"), cwd=tmp_path
    )
    assert code == 0, out
    text = plain(out)
    assert "▶ translate (step 1 of 1) · mock" in text
    # live lines: a running task, its elapsed time, its latest words (or that it waits)
    live = re.findall(r"translate\[(\d+)\] +\d+\.\d s (?:waiting for the first token|Mock response)", text)
    assert len(set(live)) >= 10, text
    # the progress bar counts up to the total, which is known from the start
    counts = [int(n) for n in re.findall(r"^translate [━╸╺ ]*?(\d+)/20 tasks done", text, re.MULTILINE)]
    assert counts and counts == sorted(counts) and counts[-1] == 20 and counts[0] < 20
    # one line per finished task stays; no line per delta
    # (the live region is erased before each, so a completion follows the erase, not a newline)
    assert len(re.findall(r"\[translate\[\d+\]\] ✓ Stream completed", text)) == 20
    assert not re.search(r"\[translate\[\d+\]\] Mock", text)
    assert text.rindex("20/20 tasks done") < text.index("batch_progress: ok")


def test_a_piped_batch_stays_plain_and_append_only(tmp_path: Path) -> None:
    done = run_piped(str(ROOT / "examples" / "batch_progress.yaml"), "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\r" not in done.stdout
    assert "tasks done" not in done.stdout
    assert len(re.findall(r"^\[translate\[\d+\]\] ✓ Stream completed", done.stdout, re.MULTILINE)) == 20


MAX_TURNS = """
name: loop
steps:
  - name: notes
    type: claude
    prompt: "List the folder, again and again."
    claude_options: {allowed_tools: [LS], max_turns: 2}
    mock:
      turns:
        - {text: "Looking. ", tool_calls: [{name: LS, input: {path: "."}}]}
        - {text: "Again. ", tool_calls: [{name: LS, input: {path: "."}}]}
        - {text: "Done."}
"""


def test_a_max_turns_stop_shows_in_the_summary(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(MAX_TURNS, encoding="utf-8")
    done = run_piped("p.yaml", "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stderr.splitlines() if line.startswith("  notes ")]
    assert " ok " in row and row.endswith("stopped: max_turns")


FAILING = """
name: failing
steps:
  - name: ask
    type: claude
    prompt: "x"
    mock: {response: "fine"}
  - name: compute
    type: python
    callable: "helpers:divide"
"""


def test_one_failure_one_message_with_its_type(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(FAILING, encoding="utf-8")
    (tmp_path / "helpers.py").write_text("def divide(ctx):\n    return 1 / 0\n", encoding="utf-8")
    done = run_piped("p.yaml", "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 1
    both = done.stdout + done.stderr
    assert both.count("division by zero") == 1  # once, not three times
    assert done.stdout.splitlines() == ["✓ ask (step 1 of 2): fine", "✗ compute (step 2 of 2) failed"]
    last = done.stderr.splitlines()[-1]
    assert last.startswith("sluiceway run: step 'compute' failed: ZeroDivisionError: division by zero; details in ")
    assert last.endswith("result.json") and Path(last.rsplit(" ", 1)[-1]).is_file()
    assert "Traceback" not in both


def test_a_streamed_failure_says_where_its_partial_output_is(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: failing\nsteps:\n  - name: broken\n    type: claude\n    prompt: x\n"
        "    mock: {response: 'a b c', error: rate_limit, error_after: 2}\n",
        encoding="utf-8",
    )
    for runner in (run_piped, run_in_pty):
        result = runner("p.yaml", "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
        code, both = (
            (result.returncode, result.stdout + result.stderr) if isinstance(result, subprocess.CompletedProcess)
            else result
        )
        assert code == 1
        both = plain(both)
        assert both.count("rate limited") == 1, both
        (line,) = [line for line in both.splitlines() if line.startswith("sluiceway run:")]
        assert "step 'broken' failed: RateLimitedError: " in line
        partial = Path(line.rsplit("partial output in ", 1)[1])
        assert partial.name == "broken.txt" and partial.read_text() == "a b "


def test_the_docs_capture_shows_a_batch_with_progress_and_live_lines() -> None:
    capture = (ROOT / "docs" / "console_batch.txt").read_text(encoding="utf-8")
    assert "sluiceway run examples/batch_progress.yaml" in capture
    assert re.search(r"^translate ━+[━╸╺ ]* \d+/20 tasks done · 6 running", capture, re.MULTILINE)
    assert len(re.findall(r"translate\[\d+\] +\d+\.\d s ", capture)) >= 6
    assert "20/20 tasks done" in capture
