"""MCP servers: a real stdio server (tests/mcp_server_sample.py, written with the ``mcp`` SDK)
started, used and closed by a step; a crash, a failed start, and Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sluiceway.engine import Done, ToolResult
from sluiceway.specs import McpServer, load
from sluiceway.tools import McpServerError, open_mcp_tools
from test_function_tools import STEP_YAML

import sluiceway

SERVER = str(Path(__file__).with_name("mcp_server_sample.py"))
SLUICEWAY = shutil.which("sluiceway") or "sluiceway"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie not yet reaped by its parent counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _servers(tmp_path: Path, *extra: str) -> str:
    args = [SERVER, "--pid-file", str(tmp_path / "server.pid"), *extra]
    return json.dumps({"sample": {"command": sys.executable, "args": args}})


def _spec(tmp_path: Path, step_type: str, options: str, mock: str | None) -> Path:
    body = STEP_YAML[step_type].replace("MOCK", mock or "{}")
    text = f"name: t\nsteps:\n  - name: s\n    {body}\n    claude_options: {options}\n"
    if mock is not None and step_type != "parallel_claude":
        text += f"    mock: {mock}\n"
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


_MOCK = '{tool_calls: [{name: mcp__sample__add, input: {a: 2, b: 3}}], response: "the sum is 5"}'


async def test_the_sdk_runs_under_trio_and_closes_the_server(tmp_path: Path) -> None:
    config = McpServer(command=sys.executable, args=(SERVER, "--pid-file", str(tmp_path / "pid")))
    async with open_mcp_tools({"sample": config}, step="s") as tools:
        assert set(tools.names) >= {"mcp__sample__add", "mcp__sample__echo", "mcp__sample__crash"}
        definition = next(d for d in tools.definitions() if d["name"] == "mcp__sample__add")
        assert definition["description"] == "Add two integers."
        assert definition["input_schema"]["required"] == ["a", "b"]
        assert await tools.run("mcp__sample__add", {"a": 2, "b": 40}) == ("42", False)
        pid = int((tmp_path / "pid").read_text())
        assert not _gone(pid)
    assert _gone(pid)


@pytest.mark.parametrize("step_type", sorted(STEP_YAML))
async def test_every_step_type_uses_mcp_tools_in_mock_mode(tmp_path: Path, step_type: str) -> None:
    options = json.dumps({"mcp_servers": json.loads(_servers(tmp_path))})
    path = _spec(tmp_path, step_type, options, _MOCK)
    events: list[Any] = []
    result = await sluiceway.run(load(path), output_dir=tmp_path / "out", handlers=[], on_event=events.append)
    assert result.status == "ok", result.error
    assert [(e.name, e.content, e.is_error) for e in events if isinstance(e, ToolResult)] == [
        ("mcp__sample__add", "5", False)
    ]
    assert _gone(int((tmp_path / "server.pid").read_text()))


@pytest.mark.parametrize("step_type", ["claude", "parallel_claude", "claude_batch", "claude_session"])
async def test_mcp_tools_in_live_mode(
    tmp_path: Path, step_type: str, fake_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.reset()  # requests_seen: this test's requests only
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    model = "fake:tool_loop?tool=mcp__sample__echo&input=" + quote(json.dumps({"text": "hello"}))
    options = {"mcp_servers": json.loads(_servers(tmp_path)), "model": model,
               "allowed_tools": ["mcp__sample__echo"]}
    path = _spec(tmp_path, step_type, json.dumps(options), None)
    events: list[Any] = []
    result = await sluiceway.run(
        load(path), mode="live", output_dir=tmp_path / "out", handlers=[], on_event=events.append
    )
    assert result.status == "ok", result.error
    assert [(e.name, e.content) for e in events if isinstance(e, ToolResult)] == [("mcp__sample__echo", "hello")]
    assert [e.response.text for e in events if isinstance(e, Done) and e.response.text][0].startswith(
        "tool said: hello"
    )
    # allowed_tools named one MCP tool: only it was offered
    assert [t["name"] for t in fake_api.requests_seen[0]["body"]["tools"]] == ["mcp__sample__echo"]


async def test_a_server_crashing_mid_call_fails_the_step_with_its_stderr(tmp_path: Path) -> None:
    mock = '{tool_calls: [{name: mcp__sample__crash, input: {message: "disk on fire"}}], response: "never"}'
    path = _spec(tmp_path, "claude", json.dumps({"mcp_servers": json.loads(_servers(tmp_path))}), mock)
    text = path.read_text() + "  - name: after\n    type: claude\n    prompt: not reached\n"
    path.write_text(text)
    events: list[Any] = []
    result = await sluiceway.run(load(path), output_dir=tmp_path / "out", handlers=[], on_event=events.append)
    assert result.status == "failed" and result.failed_step == "s"
    assert isinstance(result.error, McpServerError)
    message = str(result.error)
    assert "'sample' failed during 'crash'" in message and "disk on fire" in message
    assert "after" not in {e.step for e in events}
    assert _gone(int((tmp_path / "server.pid").read_text()))


async def test_a_server_that_fails_to_start_is_a_clear_step_error(tmp_path: Path) -> None:
    path = _spec(tmp_path, "claude", json.dumps({"mcp_servers": json.loads(_servers(tmp_path, "--fail-start"))}), _MOCK)
    result = await sluiceway.run(load(path), output_dir=tmp_path / "out", handlers=[])
    assert result.status == "failed" and isinstance(result.error, McpServerError)
    assert "failed to start" in str(result.error) and "asked to fail" in str(result.error)
    missing = {"sample": {"command": str(tmp_path / "no-such-server")}}
    path = _spec(tmp_path, "claude", json.dumps({"mcp_servers": missing}), _MOCK)
    result = await sluiceway.run(load(path), output_dir=tmp_path / "out", handlers=[])
    assert result.status == "failed" and "'sample' failed to start" in str(result.error)


def test_ctrl_c_mid_call_stops_the_run_and_the_server(tmp_path: Path) -> None:
    mock = '{tool_calls: [{name: mcp__sample__slow, input: {seconds: 60}}], response: "never"}'
    path = _spec(tmp_path, "claude", json.dumps({"mcp_servers": json.loads(_servers(tmp_path))}), mock)
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [SLUICEWAY, "run", str(path), "--output-dir", str(tmp_path / "out")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    pid_file = tmp_path / "server.pid"
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        time.sleep(1.0)  # let the step reach the slow call
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()
    deadline = time.monotonic() + 10
    while not _gone(pid):
        assert time.monotonic() < deadline, "the MCP server outlived the run"
        time.sleep(0.05)
