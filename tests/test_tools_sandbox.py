"""``Bash`` inside bubblewrap, for real: no key, nothing outside the workspace, no job left behind.

These tests run ``bwrap``; without it they skip, saying how to install it. The
checks that need no ``bwrap`` (the error before a run, the opt-out and its
warning) run everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio
import trio.testing
from sluiceway.engine import ToolResult
from sluiceway.specs import loads
from sluiceway.tools import NO_BWRAP, SandboxWarning, Toolbox
from steptypes_helpers import RecordingMock, of, run_spec

from sluiceway._errors import SpecError
from sluiceway._execution import prepare

requires_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap not installed: apt-get install bubblewrap"
)

SECRET = "sk-test-secret"
#: Real-time guard for each subprocess.
PROCESS_TIMEOUT = 60.0


@pytest.fixture(params=["real", "virtual"])
def either_clock(request: pytest.FixtureRequest) -> trio.abc.Clock | None:
    """Each test on trio's real clock (``trio.run_process``) and on an autojumping virtual
    one (the blocking path): both must run the command in the sandbox."""
    return trio.testing.MockClock(autojump_threshold=0) if request.param == "virtual" else None


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace and, beside it, an 'outside' folder with a secret."""
    ws = tmp_path / "ws"
    outside = tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    return ws, outside


def _host_processes_with(marker: str) -> list[int]:
    """Pids of the host's processes whose command line holds *marker*."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:  # gone meanwhile
                pass
    return found


# ---------------------------------------------------------------- the key


@requires_bwrap
async def test_the_key_is_not_in_any_environ_nor_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, either_clock: trio.abc.Clock | None
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/")
    box = Toolbox(tmp_path, allowed=["Bash"])
    content, is_error = await box.run("Bash", {"command": (
        "for f in /proc/[0-9]*/environ; do echo \"== $f\"; tr '\\0' '\\n' < $f; done; "
        "echo '== env'; env; echo \"== parent $PPID\"; tr '\\0' '\\n' < /proc/$PPID/environ"
    )})
    assert not is_error, content
    assert SECRET not in content and "ANTHROPIC" not in content
    # it did read them: pid 1 is bwrap itself (its environment is ours to set), and the command
    assert "== /proc/1/environ\nPATH=" in content
    assert "HOME=/nonexistent" in content  # bwrap's own
    assert "== env\n" in content and "HOME=/tmp" in content  # the command's
    assert "== parent 1\n" in content
    # no other process of the machine is visible: only the sandbox's few
    pids = await box.run("Bash", {"command": "ls /proc | grep -E '^[0-9]+$' | wc -l; cat /proc/*/cmdline | tr '\\0' ' '"})
    count, _, cmdlines = pids[0].partition("\n")
    assert int(count) <= 8, pids  # bwrap, bash, the pipeline
    assert sys.executable not in cmdlines  # the process running these tests, for one


# ---------------------------------------------------------------- files


@requires_bwrap
async def test_nothing_outside_the_workspace_can_be_read(
    layout: tuple[Path, Path], either_clock: trio.abc.Clock | None
) -> None:
    ws, outside = layout
    box = Toolbox(ws, allowed=["Bash"])
    for command in (
        f"cat {outside / 'secret.txt'}",
        "cat ../outside/secret.txt",
        f"ls {Path(__file__).parent}",  # this checkout
        "cat /etc/shadow",
        "ls /root /home",
    ):
        content, is_error = await box.run("Bash", {"command": command})
        assert is_error, (command, content)
        assert "No such file or directory" in content, (command, content)
        assert "top secret" not in content
    home = Path.home()
    if not ws.is_relative_to(home):
        content, is_error = await box.run("Bash", {"command": f"ls -A {home}"})
        assert is_error and "No such file or directory" in content
    # what is there: the workspace, the read-only system, an empty private /tmp
    content, _ = await box.run("Bash", {"command": "ls /; ls /tmp | grep -v '^[a-z]*-of-' ; true"})
    assert set(content.split()) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin",
                                    "tmp", "usr", *ws.parts[1:2]}


@requires_bwrap
async def test_nothing_outside_the_workspace_can_be_written(
    layout: tuple[Path, Path], either_clock: trio.abc.Clock | None
) -> None:
    ws, outside = layout
    parent = ws.parent
    before = sorted(p.name for p in parent.iterdir())
    box = Toolbox(ws, allowed=["Bash"])
    marker = f"sluiceway-sandbox-{os.getpid()}-{time.monotonic_ns()}"
    content, is_error = await box.run("Bash", {"command": (
        f"echo made > inside.txt; echo x > ../{marker}; echo x > {outside}/new.txt; echo x > /tmp/{marker}; "
        f"echo pwned > {outside}/secret.txt; touch /usr/{marker}; touch /etc/{marker}; "
        "v=$(cat /proc/sys/kernel/printk_ratelimit); echo $v > /proc/sys/kernel/printk_ratelimit; "
        "mount -o remount,rw /usr"
    )})
    assert is_error, content  # mount's status
    assert "Read-only file system" in content  # /usr, /proc/sys
    assert (ws / "inside.txt").read_text() == "made\n"  # the workspace is writable
    assert sorted(p.name for p in parent.iterdir()) == before
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "top secret\n"
    for gone in (Path("/tmp") / marker, Path("/usr") / marker, Path("/etc") / marker):
        assert not gone.exists()
    # /tmp is private to each command: what one wrote, the next does not see
    await box.run("Bash", {"command": f"echo x > /tmp/{marker}"})
    assert await box.run("Bash", {"command": f"cat /tmp/{marker}"}) == (
        f"cat: /tmp/{marker}: No such file or directory\n\n[exit status 1]", True,
    )


@requires_bwrap
async def test_a_hard_link_to_a_system_file_cannot_be_made(tmp_path: Path) -> None:
    # before: `ln /etc/passwd pw` in the workspace, then Read pw, read an outside file
    box = Toolbox(tmp_path, allowed=["Bash", "Read"])
    for target in ("/etc/passwd", "/usr/bin/env", "/etc/ld.so.cache"):
        content, is_error = await box.run("Bash", {"command": f"ln {target} linked"})
        assert is_error
        assert "Invalid cross-device link" in content, content
        assert not (tmp_path / "linked").exists()
    # a hard link inside the workspace is fine: ln itself works
    (tmp_path / "a.txt").write_text("mine\n")
    assert await box.run("Bash", {"command": "ln a.txt b.txt"}) == ("(no output)", False)
    assert await box.run("Read", {"file_path": "b.txt"}) == ("     1\tmine", False)


# ---------------------------------------------------------------- processes


@requires_bwrap
def test_background_jobs_are_gone_when_the_command_returns(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=["Bash"])
    marker = f"2.{os.getpid()}{time.monotonic_ns() % 1000:03d}"  # a unique sleep of 2.x s
    command = (
        f"(sleep {marker}; echo late > late.txt) & "
        f"setsid sh -c 'sleep {marker}; echo late > setsid.txt' & "
        f"nohup sh -c 'sleep {marker}; echo late > nohup.txt' >/dev/null 2>&1 & "
        f"(trap '' HUP TERM; sleep {marker}; echo late > trapped.txt) & "
        "echo started"
    )
    start = time.monotonic()
    assert trio.run(box.run, "Bash", {"command": command}) == ("started\n", False)
    # it returned at once: no background job held the output open
    assert time.monotonic() - start < 2.0
    deadline = time.monotonic() + 5
    while _host_processes_with(f"sleep {marker}"):  # killed with the namespace, reaped at once
        assert time.monotonic() < deadline, "a background job outlived its command"
        time.sleep(0.05)
    time.sleep(3)  # real time: past the moment they would have written
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@requires_bwrap
def test_background_jobs_are_gone_on_a_virtual_clock_too(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=["Bash"])

    async def main() -> tuple[str, bool]:
        return await box.run("Bash", {"command": "(sleep 1.5; echo late > late.txt) & echo started"})

    start = time.monotonic()
    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == ("started\n", False)
    assert time.monotonic() - start < 1.4
    time.sleep(2.5)  # real time, the command is a real process
    assert not (tmp_path / "late.txt").exists()


@requires_bwrap
async def test_a_timeout_ends_the_sandbox_and_its_background_jobs(
    tmp_path: Path, either_clock: trio.abc.Clock | None
) -> None:
    box = Toolbox(tmp_path, allowed=["Bash"])
    start = time.monotonic()
    content, is_error = await box.run(
        "Bash", {"command": "(sleep 1; echo late > late.txt) & echo started; sleep 30", "timeout": 0.5}
    )
    assert (content, is_error) == ("command timed out after 0.5s and was killed\nstarted", True)
    assert time.monotonic() - start < 3.0
    time.sleep(1.5)  # noqa: ASYNC251 - real time on both clocks: the job would have written by now
    assert not (tmp_path / "late.txt").exists()


@requires_bwrap
async def test_no_network_unless_the_step_allows_it(tmp_path: Path) -> None:
    def interfaces(text: str) -> set[str]:
        return {line.split(":")[0].strip() for line in text.splitlines()[2:]}

    box = Toolbox(tmp_path, allowed=["Bash"])
    content, _ = await box.run("Bash", {"command": "cat /proc/net/dev"})
    assert interfaces(content) == {"lo"}
    networked = Toolbox(tmp_path, allowed=["Bash"], sandbox_network=True)
    content, _ = await networked.run("Bash", {"command": "cat /proc/net/dev"})
    assert interfaces(content) == interfaces(await trio.Path("/proc/net/dev").read_text())


# ---------------------------------------------------------------- without bwrap


def test_a_toolbox_offering_bash_needs_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap here
    with pytest.raises(ValueError, match="apt-get install bubblewrap") as caught:
        Toolbox(tmp_path, allowed=["Bash"])
    assert str(caught.value) == NO_BWRAP
    assert "sandbox: none" in NO_BWRAP
    # no Bash, or an explicit opt-out: no bwrap needed
    assert Toolbox(tmp_path, allowed=["Read"]).tools == ("Read",)
    assert Toolbox(tmp_path, allowed=["Bash"], sandbox="none").tools == ("Bash",)
    with pytest.raises(ValueError, match="sandbox must be one of bubblewrap, none"):
        Toolbox(tmp_path, allowed=["Bash"], sandbox="docker")


BASH_STEPS = """
name: sandboxed
defaults:
  claude_options: {DEFAULTS}
steps:
  - name: reads
    type: claude
    prompt: hi
    claude_options: {allowed_tools: [Read]}
  - name: shell
    type: claude
    prompt: hi
    claude_options: {SHELL}
  - name: par
    type: parallel_claude
    parallel_tasks:
      - {id: quiet, prompt: hi}
      - {id: loud, prompt: hi, claude_options: {LOUD}}
"""


def _bash_spec(defaults: str = "{}", shell: str = "{allowed_tools: [Bash]}", loud: str = "{}") -> str:
    return BASH_STEPS.replace("{DEFAULTS}", defaults).replace("{SHELL}", shell).replace("{LOUD}", loud)


def test_without_bwrap_a_step_offering_bash_fails_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = loads(_bash_spec(loud="{allowed_tools: [Read, Bash]}"))
    with pytest.raises(SpecError) as caught:
        prepare(spec)
    issues = caught.value.issues
    assert [i.path for i in issues] == [
        "steps[1].claude_options.allowed_tools",
        "steps[2].parallel_tasks[1].claude_options.allowed_tools",
    ]
    assert all(i.message == NO_BWRAP for i in issues)
    assert "apt-get install bubblewrap" in str(caught.value)
    # Bash offered by the defaults counts too; disallowed Bash does not
    with pytest.raises(SpecError):
        prepare(loads(_bash_spec(defaults="{allowed_tools: [Bash]}", shell="{}")))
    prepare(loads(_bash_spec(defaults="{allowed_tools: [Bash], disallowed_tools: [Bash]}", shell="{}")))
    # the explicit opt-out, per step (or in the defaults)
    prepared = prepare(loads(_bash_spec(shell="{allowed_tools: [Bash], sandbox: none}")))
    assert prepared.unsandboxed == ("shell",)
    prepared = prepare(loads(_bash_spec(defaults="{sandbox: none}", loud="{allowed_tools: [Bash]}")))
    assert prepared.unsandboxed == ("shell", "par.loud")


async def test_opting_out_warns_on_every_run(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    spec = loads("""
name: unconfined
steps:
  - name: shell
    type: claude
    prompt: hi
    claude_options: {allowed_tools: [Bash], sandbox: none}
    mock:
      tool_calls: [{name: Bash, input: {command: 'echo "${ANTHROPIC_API_KEY:-no key}"'}}]
      response: done
""")
    for run in range(2):
        with pytest.warns(SandboxWarning) as caught:
            result, events = await run_spec(spec, tmp_path / str(run))
        assert result.status == "ok", result.error
        assert [str(w.message) for w in caught] == [
            f"run {result.run_id}: step 'shell' runs Bash without a sandbox (claude_options.sandbox: none): "
            "its commands run as this process does, and can read and write its files, reach the network, "
            "and read its environment (the API key included) through /proc"
        ]
        (tool_result,) = [e for e in of(events, "shell") if isinstance(e, ToolResult)]
        assert tool_result.content == "no key\n"


# ---------------------------------------------------------------- end to end


PROC_ENVIRON = """
name: leak
steps:
  - name: shell
    type: claude
    prompt: Show me your environment
    claude_options: {allowed_tools: [Bash], SANDBOX}
    stream_handler: file
    stream_handler_opts: {file_path: stream.jsonl, format: jsonl}
    mock:
      turns:
        - tool_calls:
            - {name: Bash, input: {command: "tr '\\\\0' '\\\\n' < /proc/$PPID/environ; env"}}
        - text: done
"""


@requires_bwrap
async def test_a_mock_step_cannot_read_the_key_through_proc(
    autojump_clock: trio.abc.Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    spec = loads(PROC_ENVIRON.replace("SANDBOX", "sandbox_network: false"))
    provider = RecordingMock()
    result, events = await run_spec(spec, tmp_path, provider=provider)
    assert result.status == "ok", result.error
    (tool_result,) = [e for e in of(events, "shell") if isinstance(e, ToolResult)]
    assert not tool_result.is_error
    assert "PATH=" in tool_result.content and "HOME=/nonexistent" in tool_result.content
    assert SECRET not in tool_result.content
    # the next request carries the tool result: no key in it
    assert len(provider.requests) == 2
    sent = json.dumps(provider.requests[1].messages)
    assert "HOME=/nonexistent" in sent and SECRET not in sent
    (log,) = (tmp_path / "out").rglob("stream.jsonl")
    text = log.read_text()
    assert "HOME=/nonexistent" in text and SECRET not in text


@requires_bwrap
@pytest.mark.parametrize("sandbox", ["none", "bubblewrap"])
def test_the_key_in_the_runs_own_environment_stays_out_of_the_log(tmp_path: Path, sandbox: str) -> None:
    # the issue as it was found: the key in the environment sluiceway started with,
    # /proc/$PPID/environ read by Bash; without the sandbox it is there, in it it is not
    (tmp_path / "leak.yaml").write_text(PROC_ENVIRON.replace("SANDBOX", f"sandbox: {sandbox}"))
    env = {**os.environ, "ANTHROPIC_API_KEY": SECRET, "NO_COLOR": "1"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sluiceway"), "run", "leak.yaml", "--output-dir", "out",
         "--workspace", "."],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    (log,) = (tmp_path / "out").rglob("stream.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    (tool_result,) = [r for r in records if r.get("type") == "ToolResult"]
    if sandbox == "none":
        assert f"ANTHROPIC_API_KEY={SECRET}" in tool_result["content"]  # the leak the sandbox closes
        assert "runs Bash without a sandbox" in done.stderr
    else:
        assert "HOME=/nonexistent" in tool_result["content"]
        assert SECRET not in log.read_text()
        assert "without a sandbox" not in done.stderr


@requires_bwrap
async def test_a_long_command_outlives_trios_idle_worker_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before: trio.run_process starts the process from a worker thread, `--die-with-parent` ties
    # the sandbox to that thread, and trio retires a thread idle for 10 s: every command longer
    # than that was killed midway ("[exit status -9]"). Retire idle threads sooner to see it fast.
    from trio._core import _thread_cache

    monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 0.2)
    box = Toolbox(tmp_path, allowed=["Bash"])
    worker = await trio.to_thread.run_sync(threading.get_ident)
    content, is_error = await box.run("Bash", {"command": "sleep 1.5; echo done", "timeout": 10})
    # the path engaged: the worker thread retired while the command ran
    assert worker not in {t.ident for t in threading.enumerate()}
    assert (content, is_error) == ("done\n", False)


@requires_bwrap
def test_a_cancelled_command_ends_the_sandbox(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=["Bash"])
    marker = f"3.{os.getpid()}{time.monotonic_ns() % 1000:03d}"  # a unique sleep of 3.x s
    command = f"(sleep {marker}; echo late > late.txt) & sleep {marker}; echo late > later.txt"

    async def main() -> None:
        with trio.move_on_after(0.5) as scope:
            await box.run("Bash", {"command": command})
        assert scope.cancelled_caught

    start = time.monotonic()
    trio.run(main)
    assert time.monotonic() - start < 2.5
    # the cancellation killed bwrap and so its namespace: nothing is left on the machine
    deadline = time.monotonic() + 2
    while _host_processes_with(f"sleep {marker}"):  # the kernel kills the namespace's processes
        assert time.monotonic() < deadline, "a process outlived its cancelled command"
        time.sleep(0.05)
    time.sleep(float(marker) - (time.monotonic() - start) + 0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
