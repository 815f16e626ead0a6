"""``sluiceway run`` end to end, in a subprocess (the only tests here that take real time)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLUICEWAY = str(Path(sys.executable).parent / "sluiceway")
#: Real-time guard for each subprocess.
PROCESS_TIMEOUT = 60.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SLUICEWAY_STREAM_DEBUG", None)
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SLUICEWAY, "run", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )


def read_until(proc: subprocess.Popen[bytes], predicate, chunks: list[tuple[float, bytes]]) -> bytes:
    """Read stdout as it is produced (recording arrival times) until *predicate(all)* holds or EOF."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + PROCESS_TIMEOUT
    data = b"".join(c for _, c in chunks)
    while not predicate(data):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; output so far: {data!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append((time.monotonic(), chunk))
        data += chunk
    return data


HELLO_TEXT = (
    "Hello! Streaming output means you see each word the model writes as soon as it is produced, "
    "instead of waiting for the whole answer. That makes long answers feel fast, lets you stop a "
    "run that goes off track early, and shows progress."
)


def test_hello_example_streams_visibly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [SLUICEWAY, "run", str(ROOT / "examples" / "hello.yaml"), "--output-dir", str(tmp_path)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    chunks: list[tuple[float, bytes]] = []
    try:
        read_until(proc, lambda d: False, chunks)  # to EOF
        _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, stderr.decode()
    out = b"".join(c for _, c in chunks).decode()
    assert "ASSISTANT: " in out
    assert HELLO_TEXT in out
    assert "✓ Stream completed" in out

    def arrival(needle: bytes) -> float:
        seen = b""
        for at, chunk in chunks:
            seen += chunk
            if needle in seen:
                return at
        raise AssertionError(f"{needle!r} never arrived")

    first = arrival(b"Hello!")
    last = arrival(b"progress.")
    # slow pattern: ~41 words at 150 ms each; the first word is on screen ~6 s before the last
    assert last - first > 4.0, (first, last)
    # and it arrived in many pieces, not in one write at the end
    assert sum(1 for _, c in chunks if c.strip()) > 20
    summary = stderr.decode()
    assert "hello: ok" in summary and "greet" in summary


SIGINT_SPEC = """
name: interrupt
steps:
  - name: long
    type: claude
    prompt: "Write a lot"
    stream_handler: [simple, file]
    stream_handler_opts:
      file_path: stream.jsonl
      format: jsonl
      show_timestamps: false
    mock:
      pattern: slow
      response: "{words}"
  - name: never
    type: claude
    prompt: "not reached"
"""


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_mid_stream_exits_gracefully_with_files_kept(
    tmp_path: Path, signum: int, code: int, said: str
) -> None:
    words = " ".join(f"word{i}" for i in range(60))
    spec = tmp_path / "interrupt.yaml"
    spec.write_text(SIGINT_SPEC.format(words=words), encoding="utf-8")
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(
        [SLUICEWAY, "run", str(spec), "--output-dir", str(out_dir)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    chunks: list[tuple[float, bytes]] = []
    try:
        read_until(proc, lambda d: b"word4 " in d, chunks)
        proc.send_signal(signum)
        rest, stderr_bytes = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        proc.kill() if proc.poll() is None else None
    stdout = (b"".join(c for _, c in chunks) + rest).decode()
    stderr = stderr_bytes.decode()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert f"sluiceway run: {said}; partial output kept in " in stderr
    assert "interrupt: cancelled" in stderr  # the summary still says how far it got

    records = [json.loads(line) for line in (out_dir / "stream.jsonl").read_text().splitlines()]
    assert records[0]["type"] == "StepStarted"
    assert records[-1]["type"] == "Cancelled"  # the terminal event reached the file, then it was closed
    file_text = "".join(r["content"] for r in records if r["type"] == "Delta")
    assert file_text.startswith("word0 word1 word2 word3 word4 ")
    assert words.startswith(file_text) and file_text != words
    # every delta the terminal showed is in the file too
    screen_text = stdout.split("ASSISTANT: ", 1)[1].split("\n", 1)[0]
    assert file_text.startswith(screen_text) and len(screen_text) >= len("word0 word1 word2 word3 word4 ")

    (run_dir,) = [p for p in out_dir.iterdir() if p.is_dir()]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "cancelled"
    assert result["steps"]["long"]["status"] == "cancelled"
    assert "never" not in result["steps"]


HANGING_CLOSE = """
import trio


class HangsInClose:
    policy = "block"

    def __init__(self, **options):
        pass

    async def handle(self, event):
        pass

    async def aclose(self):
        await trio.sleep_forever()
"""


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    (tmp_path / "hangs.py").write_text(HANGING_CLOSE, encoding="utf-8")
    spec = tmp_path / "interrupt.yaml"
    text = SIGINT_SPEC.format(words=" ".join(f"word{i}" for i in range(60)))
    spec.write_text(text.replace("[simple, file]", "[simple, hangs.HangsInClose]"), encoding="utf-8")
    env = _env() | {"PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [SLUICEWAY, "run", str(spec), "--output-dir", str(tmp_path / "out")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    chunks: list[tuple[float, bytes]] = []
    try:
        read_until(proc, lambda d: b"word2 " in d, chunks)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the run is cancelled; the handler's close now hangs (bounded at 5 s)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        second = time.monotonic()
        _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
        waited = time.monotonic() - second
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 143, stderr.decode()
    assert "second signal; exiting now" in stderr.decode()
    assert waited < 2.0  # not the 5 s close bound


def test_sigterm_while_loading_exits_143_without_traceback(tmp_path: Path) -> None:
    slow = tmp_path / "slowimport.py"
    slow.write_text("import pathlib, time\npathlib.Path('importing').touch()\ntime.sleep(30)\n", encoding="utf-8")
    spec = tmp_path / "p.yaml"
    spec.write_text(FAST_SPEC.replace("stream_handler: simple", "stream_handler: slowimport.H"))
    proc = subprocess.Popen(
        [SLUICEWAY, "run", str(spec), "--output-dir", str(tmp_path / "out"), "--set", "extra=1"],
        cwd=tmp_path, env=_env() | {"PYTHONPATH": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while not (tmp_path / "importing").exists():  # loading: the handler's module import sleeps
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 143, stderr.decode()
    assert stderr.decode().strip().endswith("sluiceway run: terminated")
    assert "Traceback" not in stderr.decode()


FAST_SPEC = """
name: quick
variables: {extra: ""}
steps:
  - name: first
    type: claude
    prompt: "x"
    mock: {response: "fast answer"}
  - name: second
    type: claude
    prompt: "{{steps.first.text}} and {{vars.extra}}"
    stream_handler: simple
    mock: {response: "second answer"}
"""


def test_json_output_and_set(tmp_path: Path) -> None:
    spec = tmp_path / "quick.yaml"
    spec.write_text(FAST_SPEC.replace("{{vars.extra}}", "{{vars.extra}}"), encoding="utf-8")
    proc = run_cli(str(spec), "--json", "--set", "extra=42", "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # the simple handler went to stderr: stdout is pure JSON
    assert data["status"] == "ok"
    assert data["run_id"].startswith("run_")
    assert data["steps"]["first"]["text"] == "fast answer"
    assert data["steps"]["second"]["text"] == "second answer"
    for step in data["steps"].values():
        assert set(step) >= {"status", "text", "usage", "cost_usd", "metrics"}
        assert step["usage"]["output_tokens"] >= 1
    assert "ASSISTANT: second answer" in proc.stderr
    on_disk = json.loads((tmp_path / "o" / data["run_id"] / "result.json").read_text())
    assert on_disk == data


def test_failed_step_exits_1_with_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "fail.yaml"
    spec.write_text(
        """
name: failing
steps:
  - name: broken
    type: claude
    prompt: "x"
    mock: {response: "a b c", error: rate_limit, error_after: 1}
""",
        encoding="utf-8",
    )
    proc = run_cli(str(spec), "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    failure_lines = [line for line in proc.stderr.splitlines() if line.startswith("sluiceway run:")]
    assert len(failure_lines) == 1
    assert "step 'broken' failed" in failure_lines[0]
    assert failure_lines[0].count("'broken'") == 1  # the cause is not prefixed with the step again
    debug = run_cli(str(spec), "--output-dir", str(tmp_path / "o"), "--debug", cwd=tmp_path)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "RateLimitedError" in debug.stderr


@pytest.mark.parametrize(
    ("spec_text", "extra", "expected"),
    [
        ("name: bad\nsteps:\n  - name: a\n    type: claude\n    promt: x\n", (), "bad.yaml:5"),
        ("name: ok\nsteps:\n  - name: a\n    type: claude\n    prompt: x\n", ("--set", "novalue"), "expected KEY=VALUE"),
        (
            "name: cond\nsteps:\n  - name: a\n    type: claude\n    prompt: x\n    condition: \"vars.x ==\"\n",
            (),
            "condition",
        ),
        ("name: ok\nsteps:\n  - name: a\n    type: claude\n    prompt: x\n", ("--mode", "replay"), "cassette"),
        (
            "name: ok\nsteps:\n  - name: a\n    type: claude\n    prompt: x\n",
            ("--max-starting", "4"),
            "--max-starting: live mode only (the mode is mock)",
        ),
        (
            "name: ok\nsteps:\n  - name: a\n    type: claude\n    prompt: x\n",
            ("--mode", "live", "--max-starting", "0"),
            "--max-starting must be a whole number >= 1 or 'none', not '0'",
        ),
        (
            "name: ok\nsteps:\n  - name: a\n    type: claude\n    prompt: x\n",
            ("--mode", "live", "--streams-per-client", "many"),
            "--streams-per-client must be a whole number >= 1, not 'many'",
        ),
    ],
)
def test_bad_spec_or_flags_exit_2(tmp_path: Path, spec_text: str, extra: tuple[str, ...], expected: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(spec_text, encoding="utf-8")
    proc = run_cli(str(spec), *extra, "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_record_then_replay_cassette(tmp_path: Path) -> None:
    spec = tmp_path / "quick.yaml"
    spec.write_text(FAST_SPEC, encoding="utf-8")
    cassette = tmp_path / "quick.cassette.jsonl"
    record = run_cli(str(spec), "--set", "extra=1", "--record", str(cassette), "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert record.returncode == 0, record.stderr
    spec.write_text(FAST_SPEC.replace("fast answer", "changed"), encoding="utf-8")
    replay = run_cli(
        str(spec), "--set", "extra=1", "--cassette", str(cassette), "--instant", "--json",
        "--output-dir", str(tmp_path / "o"), cwd=tmp_path,
    )
    assert replay.returncode == 0, replay.stderr
    data = json.loads(replay.stdout)
    assert [s["text"] for s in data["steps"].values()] == ["fast answer", "second answer"]
    missing = run_cli(str(spec), "--cassette", str(tmp_path / "nope.jsonl"), "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "nope.jsonl" in missing.stderr and "Traceback" not in missing.stderr


def test_live_run_with_provider_flags(tmp_path: Path, fake_api, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-fake")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    spec = tmp_path / "live.yaml"
    spec.write_text(
        "name: live\nsteps:\n  - name: a\n    type: claude\n    prompt: x\n"
        "    claude_options: {model: 'fake:text?text=flags ok'}\n",
        encoding="utf-8",
    )
    for flags in (("--max-starting", "none", "--streams-per-client", "2"), ("--max-starting", "3")):
        proc = run_cli(str(spec), "--mode", "live", *flags, "--json", "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["steps"]["a"]["text"] == "flags ok"


def test_the_readme_sample_summary_matches_a_real_run(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sample = readme.split("$ sluiceway run examples/hello.yaml\n", 1)[1].split("```", 1)[0].splitlines()
    done = run_cli(str(ROOT / "examples" / "hello.yaml"), "--output-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    real = done.stderr.splitlines()

    def shape(line: str) -> str:  # times, durations, run folders and clock stamps vary; the rest not
        line = re.sub(r"\[[^\]]*run_\d{8}-\d{6}_[0-9a-f]+\]", "[RUN]", line)
        return re.sub(r"\d+(\.\d+)? (ms|s)\b", "T", line)

    summary = [shape(ln) for ln in sample if ln.startswith(("✓ hello", "  greet"))]
    assert summary == [shape(ln) for ln in real if ln.startswith(("✓ hello", "  greet"))]
    assert "cost $0.00000" in summary[0]  # mock mode costs nothing, in the sample too
