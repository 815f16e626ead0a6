"""The built-in tools: behaviour, confinement to the workspace, Bash limits."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.engine import ToolRunner
from sluiceway.tools import ALL_TOOLS, DEFAULT_TOOLS, Toolbox


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace and, beside it, an 'outside' folder the tools must never touch."""
    ws = tmp_path / "ws"
    outside = tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    (outside / "sub").mkdir()
    (outside / "sub" / "deep.txt").write_text("deep secret\n")
    return ws, outside


def snapshot(root: Path) -> dict[str, tuple[str | bytes | None, int]]:
    """Every entry under *root*: contents (None for dirs, the target for links) and mtime in ns."""
    out: dict[str, tuple[str | bytes | None, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                value: str | bytes | None = "-> " + os.readlink(p)
            elif p.is_dir():
                value = None
            else:
                value = p.read_bytes()
            out[str(p.relative_to(root))] = (value, st.st_mtime_ns)
    return out


# ---------------------------------------------------------------- definitions


def test_protocol_and_default_definitions(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=None)
    assert isinstance(box, ToolRunner)
    defs = box.definitions()
    assert [d["name"] for d in defs] == list(DEFAULT_TOOLS)
    assert "Bash" not in box.tools
    for d in defs:
        assert set(d) == {"name", "description", "input_schema"}
        assert d["input_schema"]["type"] == "object"
        assert d["description"]
    read = next(d for d in defs if d["name"] == "Read")
    assert read["input_schema"]["required"] == ["file_path"]


def test_allowed_minus_disallowed(tmp_path: Path) -> None:
    # which tools are offered does not depend on the sandbox (none needs no bwrap to build)
    box = Toolbox(tmp_path, allowed=["Bash", "Read", "Edit", "WebSearch"], disallowed=["Edit"], sandbox="none")
    assert box.tools == ("Read", "Bash")  # ALL_TOOLS order
    assert [d["name"] for d in box.definitions()] == ["Read", "Bash"]
    assert box.unknown == ("WebSearch",)
    assert Toolbox(tmp_path, allowed=ALL_TOOLS, sandbox="none").tools == ALL_TOOLS
    assert Toolbox(tmp_path, allowed=None, disallowed=["Write"]).tools == (
        "Read", "Edit", "Glob", "Grep", "LS",
    )
    assert Toolbox(tmp_path, allowed=[]).definitions() == ()


def test_bad_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cwd escapes"):
        Toolbox(tmp_path / "a", allowed=None, cwd="../b")
    with pytest.raises(ValueError, match="bash_timeout"):
        Toolbox(tmp_path, allowed=None, bash_timeout=0)


# ---------------------------------------------------------------- errors are results


async def test_unknown_not_offered_and_bad_input(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=["Read"])
    assert await box.run("Frobnicate", {}) == ("unknown tool: 'Frobnicate'", True)
    assert await box.run("Write", {"file_path": "x", "content": "y"}) == (
        "tool not allowed in this step: 'Write'", True,
    )
    assert not (tmp_path / "x").exists()
    content, is_error = await box.run("Read", {})
    assert is_error and content == "invalid input for Read: 'file_path' is a required property"
    content, is_error = await box.run("Read", {"file_path": 3})
    assert is_error and "['file_path']" in content and "not of type 'string'" in content
    content, is_error = await box.run("Read", {"file_path": "a", "bogus": 1})
    assert is_error and "bogus" in content
    content, is_error = await box.run("Read", ["file_path"])  # type: ignore[arg-type]
    assert (content, is_error) == ("invalid input for Read: expected an object, got list", True)
    content, is_error = await box.run("Read", {"file_path": "missing.txt"})
    assert (content, is_error) == ("file not found: 'missing.txt'", True)


# ---------------------------------------------------------------- read / write / edit


async def test_write_read_edit_read_back(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=None)
    assert await box.run("Write", {"file_path": "src/app.py", "content": "a = 1\nb = 2\nc = 1\n"}) == (
        "Wrote 18 bytes to src/app.py", False,
    )
    assert (tmp_path / "src" / "app.py").read_text() == "a = 1\nb = 2\nc = 1\n"
    assert await box.run("Read", {"file_path": "src/app.py"}) == (
        "     1\ta = 1\n     2\tb = 2\n     3\tc = 1", False,
    )
    assert await box.run("Read", {"file_path": "src/app.py", "offset": 2, "limit": 1}) == (
        "     2\tb = 2", False,
    )
    content, is_error = await box.run("Read", {"file_path": "src/app.py", "offset": 9})
    assert is_error and "past the end" in content

    # not unique without replace_all: refused, file unchanged
    content, is_error = await box.run(
        "Edit", {"file_path": "src/app.py", "old_string": "= 1", "new_string": "= 10"}
    )
    assert is_error and "occurs 2 times" in content
    assert (tmp_path / "src" / "app.py").read_text() == "a = 1\nb = 2\nc = 1\n"
    # not found
    content, is_error = await box.run(
        "Edit", {"file_path": "src/app.py", "old_string": "zzz", "new_string": "y"}
    )
    assert is_error and content == "old_string not found in src/app.py"
    # unique
    assert await box.run(
        "Edit", {"file_path": "src/app.py", "old_string": "b = 2", "new_string": "b = 20"}
    ) == ("Replaced 1 occurrence in src/app.py", False)
    # replace_all
    assert await box.run(
        "Edit",
        {"file_path": "src/app.py", "old_string": "= 1\n", "new_string": "= 7\n", "replace_all": True},
    ) == ("Replaced 2 occurrences in src/app.py", False)
    assert await box.run("Read", {"file_path": "src/app.py"}) == (
        "     1\ta = 7\n     2\tb = 20\n     3\tc = 7", False,
    )


async def test_edit_edge_cases(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=None)
    (tmp_path / "f.txt").write_text("x\r\ny\r\n", newline="")
    assert (await box.run("Edit", {"file_path": "f.txt", "old_string": "", "new_string": "a"}))[1]
    assert (await box.run("Edit", {"file_path": "f.txt", "old_string": "x", "new_string": "x"}))[1]
    assert (await box.run("Edit", {"file_path": "nope", "old_string": "x", "new_string": "y"})) == (
        "file not found: 'nope'", True,
    )
    # line endings are kept
    assert not (await box.run("Edit", {"file_path": "f.txt", "old_string": "y", "new_string": "z"}))[1]
    assert (tmp_path / "f.txt").read_bytes() == b"x\r\nz\r\n"
    (tmp_path / "d").mkdir()
    content, is_error = await box.run("Read", {"file_path": "d"})
    assert is_error and "is a directory" in content
    content, is_error = await box.run("Write", {"file_path": "d", "content": "x"})
    assert is_error and "is a directory" in content
    (tmp_path / "empty").write_text("")
    assert await box.run("Read", {"file_path": "empty"}) == ("(empty file)", False)


async def test_cwd_and_absolute_inside(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("hello\n")
    box = Toolbox(tmp_path, allowed=None, cwd="pkg")
    assert await box.run("Read", {"file_path": "m.py"}) == ("     1\thello", False)
    # an absolute path inside the workspace is fine
    assert await box.run("Read", {"file_path": str(tmp_path / "pkg" / "m.py")}) == (
        "     1\thello", False,
    )
    # `..` that stays inside is fine
    assert await box.run("Read", {"file_path": "../pkg/m.py"}) == ("     1\thello", False)


# ---------------------------------------------------------------- glob / grep / ls


async def test_glob_grep_ls(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=None)
    for rel, text in {
        "a.py": "import os\nprint('hi')\n",
        "b.txt": "hi there\n",
        "pkg/c.py": "def hi():\n    return 1\n",
        "pkg/deep/d.py": "x = 'HI'\n",
        ".git/config": "hi\n",
    }.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (tmp_path / "bin.dat").write_bytes(b"hi\0\0")

    assert await box.run("Glob", {"pattern": "**/*.py"}) == ("a.py\npkg/c.py\npkg/deep/d.py", False)
    assert await box.run("Glob", {"pattern": "*.py", "path": "pkg"}) == ("pkg/c.py", False)
    assert await box.run("Glob", {"pattern": "*.rs"}) == ("No files found.", False)
    content, is_error = await box.run("Glob", {"pattern": "/etc/*"})
    assert is_error and "must be relative" in content

    assert await box.run("Grep", {"pattern": r"\bhi\b"}) == (
        "a.py:2:print('hi')\nb.txt:1:hi there\npkg/c.py:1:def hi():",
        False,
    )
    assert await box.run("Grep", {"pattern": "hi", "glob": "*.py", "path": "pkg"}) == (
        "pkg/c.py:1:def hi():", False,
    )
    assert await box.run("Grep", {"pattern": "(?i)hi", "path": "pkg/deep/d.py"}) == (
        "pkg/deep/d.py:1:x = 'HI'", False,
    )
    assert await box.run("Grep", {"pattern": "nomatch"}) == ("No matches found.", False)
    content, is_error = await box.run("Grep", {"pattern": "("})
    assert is_error and "invalid regular expression" in content

    assert await box.run("LS", {}) == (".:\n.git/\na.py\nb.txt\nbin.dat\npkg/", False)
    assert await box.run("LS", {"path": "pkg"}) == ("pkg:\nc.py\ndeep/", False)
    content, is_error = await box.run("LS", {"path": "a.py"})
    assert is_error and "not a folder" in content
    content, is_error = await box.run("LS", {"path": "zz"})
    assert is_error and "not found" in content


async def test_grep_output_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("match\n" * 2000)
    content, is_error = await Toolbox(tmp_path, allowed=None).run("Grep", {"pattern": "match"})
    assert not is_error
    lines = content.splitlines()
    assert len(lines) == 501
    assert lines[0] == "big.txt:1:match" and lines[499] == "big.txt:500:match"
    assert lines[-1] == "... [1500 more matches]"


# ---------------------------------------------------------------- escapes


ESCAPES = [
    ("Read", {"file_path": "../outside/secret.txt"}),
    ("Read", {"file_path": "OUTSIDE/secret.txt"}),
    ("Read", {"file_path": "/etc/passwd"}),
    ("Read", {"file_path": "link_file"}),
    ("Read", {"file_path": "link_dir/deep.txt"}),
    ("Write", {"file_path": "../outside/new.txt", "content": "pwned"}),
    ("Write", {"file_path": "OUTSIDE/secret.txt", "content": "pwned"}),
    ("Write", {"file_path": "link_file", "content": "pwned"}),
    ("Write", {"file_path": "link_dir/deep.txt", "content": "pwned"}),
    ("Write", {"file_path": "link_dir/new.txt", "content": "pwned"}),
    ("Write", {"file_path": "dangling", "content": "pwned"}),
    ("Write", {"file_path": "ok/../../outside/new.txt", "content": "pwned"}),
    ("Edit", {"file_path": "link_file", "old_string": "top", "new_string": "pwned"}),
    ("Edit", {"file_path": "../outside/secret.txt", "old_string": "top", "new_string": "x"}),
    ("LS", {"path": ".."}),
    ("LS", {"path": "link_dir"}),
    ("Glob", {"pattern": "*", "path": "link_dir"}),
    ("Glob", {"pattern": "*", "path": "/"}),
    ("Grep", {"pattern": "secret", "path": "link_dir"}),
    ("Grep", {"pattern": "secret", "path": "../outside"}),
]


@pytest.mark.parametrize(("tool", "args"), ESCAPES, ids=[f"{t}-{a}" for t, a in ESCAPES])
async def test_escape_is_refused_and_outside_unchanged(
    layout: tuple[Path, Path], tool: str, args: dict[str, str]
) -> None:
    ws, outside = layout
    (ws / "ok").mkdir()
    (ws / "link_file").symlink_to(outside / "secret.txt")
    (ws / "link_dir").symlink_to(outside / "sub")
    (ws / "dangling").symlink_to(outside / "not_yet.txt")
    args = {k: v.replace("OUTSIDE", str(outside)) for k, v in args.items()}
    before_out, before_ws = snapshot(outside), snapshot(ws)

    content, is_error = await Toolbox(ws, allowed=None).run(tool, args)

    assert is_error
    raw = args.get("file_path", args.get("path"))
    assert content == f"path escapes the workspace: {raw!r}"
    assert "secret" not in content.replace(raw or "", "")
    assert snapshot(outside) == before_out
    assert snapshot(ws) == before_ws
    assert not (outside / "not_yet.txt").exists()


async def test_glob_and_grep_never_follow_links_outside(layout: tuple[Path, Path]) -> None:
    ws, outside = layout
    (ws / "mine.txt").write_text("secret of mine\n")
    (ws / "link_file").symlink_to(outside / "secret.txt")
    (ws / "link_dir").symlink_to(outside / "sub")
    box = Toolbox(ws, allowed=None)
    assert await box.run("Grep", {"pattern": "secret"}) == ("mine.txt:1:secret of mine", False)
    assert await box.run("Glob", {"pattern": "**/*.txt"}) == ("mine.txt", False)
    assert await box.run("Glob", {"pattern": "link_dir/*"}) == ("No files found.", False)
    assert await box.run("Glob", {"pattern": "../outside/*"}) == ("No files found.", False)
    # LS shows the links as links, without following them
    assert await box.run("LS", {}) == (".:\nlink_dir@\nlink_file@\nmine.txt", False)


async def test_symlink_inside_workspace_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("real\n")
    (tmp_path / "alias.txt").symlink_to(tmp_path / "real.txt")
    box = Toolbox(tmp_path, allowed=None)
    assert await box.run("Read", {"file_path": "alias.txt"}) == ("     1\treal", False)


# ---------------------------------------------------------------- Bash


@pytest.fixture(params=["real", "virtual"])
def either_clock(request: pytest.FixtureRequest) -> trio.abc.Clock | None:
    """Each Bash test on trio's real clock, and on an autojumping virtual one (pytest-trio uses a
    fixture's Clock): there the command runs on real time while virtual time stands still."""
    return trio.testing.MockClock(autojump_threshold=0) if request.param == "virtual" else None


@pytest.fixture(params=["bubblewrap", "none"])
def sandbox(request: pytest.FixtureRequest) -> str:
    """Each Bash test inside bubblewrap (the default; skipped without ``bwrap``) and opted out."""
    if request.param == "bubblewrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap not installed: apt-get install bubblewrap")
    return request.param


async def test_bash_only_when_allowed(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=None)
    assert await box.run("Bash", {"command": "touch made"}) == (
        "tool not allowed in this step: 'Bash'", True,
    )
    assert not (tmp_path / "made").exists()
    box = Toolbox(tmp_path, allowed=["Bash", "Read"], disallowed=["Bash"])
    assert (await box.run("Bash", {"command": "touch made"}))[1]
    assert not (tmp_path / "made").exists()


async def test_bash_runs_in_workspace_without_stdin(
    tmp_path: Path, either_clock: trio.abc.Clock | None, sandbox: str
) -> None:
    (tmp_path / "sub").mkdir()
    box = Toolbox(tmp_path, allowed=["Bash"], sandbox=sandbox)
    real = box.workspace
    assert await box.run("Bash", {"command": "pwd"}) == (f"{real}\n", False)
    assert await box.run("Bash", {"command": "echo out; echo err >&2"}) == ("out\nerr\n", False)
    # stdin is /dev/null: `cat` sees EOF at once instead of hanging
    with trio.fail_after(10):
        assert await box.run("Bash", {"command": "cat; echo eof"}) == ("eof\n", False)
    assert await box.run("Bash", {"command": "echo bad; exit 3"}) == ("bad\n\n[exit status 3]", True)
    assert await box.run("Bash", {"command": "true"}) == ("(no output)", False)
    sub = Toolbox(tmp_path, allowed=["Bash"], cwd="sub", sandbox=sandbox)
    assert await sub.run("Bash", {"command": "pwd"}) == (f"{real}/sub\n", False)


async def test_bash_timeout_kills(tmp_path: Path, either_clock: trio.abc.Clock | None, sandbox: str) -> None:
    # one of the few real-time tests: a real process, a short real timeout
    box = Toolbox(tmp_path, allowed=["Bash"], bash_timeout=0.5, sandbox=sandbox)
    start = time.monotonic()
    content, is_error = await box.run("Bash", {"command": "echo started; sleep 5; touch late"})
    elapsed = time.monotonic() - start
    assert is_error
    assert content == "command timed out after 0.5s and was killed\nstarted"
    assert 0.4 < elapsed < 3.0
    start = time.monotonic()
    content, is_error = await box.run("Bash", {"command": "sleep 5", "timeout": 0.3})
    assert (content, is_error) == ("command timed out after 0.3s and was killed", True)
    assert time.monotonic() - start < 3.0
    await trio.sleep(0.1)
    assert not (tmp_path / "late").exists()


async def test_bash_on_a_virtual_clock_runs_on_real_time_and_the_clock_stands_still(
    tmp_path: Path, autojump_clock: trio.abc.Clock, sandbox: str
) -> None:
    # before: the process wait looked idle, the clock jumped to the timeout, and a 0.2 s command
    # "timed out after 60s"
    box = Toolbox(tmp_path, allowed=["Bash"], bash_timeout=60, sandbox=sandbox)
    virtual, real = trio.current_time(), time.monotonic()
    assert await box.run("Bash", {"command": "sleep 0.2; echo done"}) == ("done\n", False)
    assert trio.current_time() == virtual
    assert 0.2 <= time.monotonic() - real < 5


async def test_bash_output_is_capped(tmp_path: Path, either_clock: trio.abc.Clock | None, sandbox: str) -> None:
    box = Toolbox(tmp_path, allowed=["Bash"], sandbox=sandbox)
    content, is_error = await box.run("Bash", {"command": "head -c 1000000 /dev/zero | tr '\\0' a"})
    assert not is_error
    assert content.startswith("a" * 1000)
    assert len(content) < 31_000
    assert content.endswith("more characters]")


async def test_bash_does_not_see_anthropic_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, either_clock: trio.abc.Clock | None, sandbox: str
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("SLUICEWAY_TEST_VISIBLE", "yes")
    box = Toolbox(tmp_path, allowed=["Bash"], sandbox=sandbox)
    if sandbox == "none":  # opted out: our environment minus ANTHROPIC_*
        assert await box.run(
            "Bash", {"command": 'echo "${ANTHROPIC_API_KEY:-unset} $SLUICEWAY_TEST_VISIBLE"'}
        ) == ("unset yes\n", False)
    else:  # in the sandbox: a cleared environment, nothing of ours
        assert await box.run(
            "Bash", {"command": 'echo "${ANTHROPIC_API_KEY:-unset} ${SLUICEWAY_TEST_VISIBLE:-unset}"'}
        ) == ("unset unset\n", False)


async def test_read_streams_big_files_and_keeps_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 100_001)))
    box = Toolbox(tmp_path, allowed=None)
    assert await box.run("Read", {"file_path": "big.txt", "offset": 99_999, "limit": 5}) == (
        " 99999\tline 99999\n100000\tline 100000", False,
    )
    content, is_error = await box.run("Read", {"file_path": "big.txt"})
    assert not is_error
    lines = content.splitlines()
    assert len(content) < 31_000
    # 2000 lines would be ~34k characters: cut at the output cap, saying where
    assert lines[-2] == "  1830\tline 1830"
    assert lines[-1] == "... [output truncated at line 1830; use offset to read on]"
    content, _ = await box.run("Read", {"file_path": "big.txt", "offset": 50, "limit": 1000})
    assert content.splitlines()[-1] == "  1049\tline 1049"
    content, is_error = await box.run("Read", {"file_path": "big.txt", "offset": 100_001})
    assert (content, is_error) == ("offset 100001 is past the end of big.txt (100000 lines)", True)
    # a form feed is not a line break; CRLF is
    (tmp_path / "ff.txt").write_bytes(b"a\x0cb\r\nc")
    assert await box.run("Read", {"file_path": "ff.txt"}) == ("     1\ta\x0cb\n     2\tc", False)


def test_write_refuses_a_symlink_swapped_in_after_the_check(layout: tuple[Path, Path]) -> None:
    ws, outside = layout
    box = Toolbox(ws, allowed=None)
    target = box.files.workspace.resolve("late.txt")  # checked while it did not exist
    (ws / "late.txt").symlink_to(outside / "secret.txt")  # then swapped for a link
    with pytest.raises(Exception, match="cannot write 'late.txt'"):
        box.files.write_text(target, "pwned", "late.txt")
    assert (outside / "secret.txt").read_text() == "top secret\n"


async def test_odd_paths_and_os_errors_are_results(tmp_path: Path) -> None:
    box = Toolbox(tmp_path, allowed=None)
    assert await box.run("Read", {"file_path": "a\x00b"}) == ("invalid path: 'a\\x00b'", True)
    assert await box.run("Write", {"file_path": "x" * 5000, "content": "y"}) == (
        "cannot write '" + "x" * 5000 + "': File name too long", True,
    )
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        if os.geteuid() == 0:  # root reads anything: fake the failure instead
            box.files.ls_sync = lambda path: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))  # type: ignore[method-assign]
        assert await box.run("LS", {"path": "locked"}) == ("LS failed: Permission denied", True)
    finally:
        locked.chmod(0o755)


# ---------------------------------------------------------------- property: confinement

SEGMENTS = ["..", ".", "a", "b.txt", "in_link", "out_link", "out_dir_link", "", "OUT", "WS"]


@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=6),
    tool=st.sampled_from(["Read", "Write", "Edit", "LS", "Glob", "Grep"]),
)
def test_no_generated_path_touches_the_outside(parts: list[str], tool: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(os.path.realpath(tmp))
        ws, outside = root / "ws", root / "outside"
        (ws / "a").mkdir(parents=True)
        outside.mkdir()
        (outside / "b.txt").write_text("outside b\n")
        (ws / "a" / "b.txt").write_text("inside b\n")
        (ws / "in_link").symlink_to(ws / "a")
        (ws / "out_link").symlink_to(outside / "b.txt")
        (ws / "out_dir_link").symlink_to(outside)
        raw = "/".join(str(outside) if p == "OUT" else str(ws) if p == "WS" else p for p in parts)
        args: dict[str, object] = {
            "Read": {"file_path": raw},
            "Write": {"file_path": raw, "content": "new\n"},
            "Edit": {"file_path": raw, "old_string": "b\n", "new_string": "B\n"},
            "LS": {"path": raw},
            "Glob": {"pattern": "*", "path": raw},
            "Grep": {"pattern": "b", "path": raw},
        }[tool]
        before = snapshot(outside)
        content, is_error = trio.run(Toolbox(ws, allowed=None).run, tool, args)
        assert snapshot(outside) == before
        assert "outside b" not in content
        inside = os.path.realpath(os.path.join(ws, raw)).startswith(str(ws) + os.sep) or (
            os.path.realpath(os.path.join(ws, raw)) == str(ws)
        )
        if not inside:
            assert (content, is_error) == (f"path escapes the workspace: {raw!r}", True)
        else:
            assert not content.startswith("path escapes")


def test_the_specs_know_every_built_in_tool() -> None:
    from sluiceway.specs._validate import BUILTIN_TOOL_NAMES
    from sluiceway.tools import ALL_TOOLS

    assert sorted(BUILTIN_TOOL_NAMES) == sorted(ALL_TOOLS)
