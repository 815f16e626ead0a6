"""claude_session conversations: carry-over, persistence, corruption, trimming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.tools._sessions import (
    SESSIONS_DIR,
    SessionError,
    SessionStore,
    trim_history,
    validate_session_name,
)

from sluiceway._errors import SluicewayError


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def tool_use(tid: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "tool_use", "id": tid, "name": "Read", "input": {}}]}


def tool_result(tid: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid, "content": "x"}]}


def test_carries_across_steps_in_memory(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    assert store.load("chat", persist=False) == []
    step1 = [user("hi"), assistant("hello")]
    assert store.save("chat", step1, persist=False, max_history=None) == step1
    history = store.load("chat", persist=False)
    assert history == step1
    history.append(user("again"))  # callers get copies
    assert store.load("chat", persist=False) == step1
    step2 = [*step1, user("again"), assistant("yes")]
    store.save("chat", step2, persist=False, max_history=None)
    assert store.load("chat") == step2
    assert store.load("other") == []
    assert not (tmp_path / SESSIONS_DIR).exists()  # nothing written without persist


def test_persist_and_resume_in_a_new_store(tmp_path: Path) -> None:
    messages = [user("hi"), assistant("héllo ✓"), user("more"), assistant("ok")]
    SessionStore(tmp_path).save("proj", messages, persist=True, max_history=None)
    path = tmp_path / ".sluiceway" / "sessions" / "proj.json"
    assert json.loads(path.read_text()) == {"version": 1, "name": "proj", "messages": messages}
    assert [p.name for p in path.parent.iterdir()] == ["proj.json"]  # no temp file left
    fresh = SessionStore(tmp_path)
    assert fresh.path_for("proj") == path
    assert fresh.load("proj") == messages
    # without persist, a new run does not read the file
    assert SessionStore(tmp_path).load("proj", persist=False) == []


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save("s", [user("one")], persist=True, max_history=None)
    path = store.path_for("s")
    before = path.read_bytes()
    with pytest.raises(SessionError, match="the messages are not JSON"):
        store.save("s", [{"role": "user", "content": [object()]}], persist=True, max_history=None)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.json"]
    assert SessionStore(tmp_path).load("s") == [user("one")]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "Expecting property name"),
        ("[]", "expected a JSON object, found list"),
        ('{"version": 7, "messages": []}', "unsupported version 7"),
        ('{"version": 1, "messages": {}}', "'messages' must be a list"),
        ('{"version": 1, "messages": [3]}', r"messages\[0\] must be an object"),
        ('{"version": 1, "messages": [{"role": "system", "content": "x"}]}', r"messages\[0\]\.role"),
        ('{"version": 1, "messages": [{"role": "user", "content": 1}]}', r"messages\[0\]\.content"),
    ],
)
def test_corrupt_file_is_a_clear_error_never_a_reset(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / SESSIONS_DIR / "broken.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    store = SessionStore(tmp_path)
    with pytest.raises(SessionError, match=problem) as info:
        store.load("broken")
    err = info.value
    assert isinstance(err, SluicewayError)
    assert err.path == path and err.session == "broken"
    assert str(path) in str(err) and "fix or delete it" in str(err)
    assert path.read_text() == content  # untouched
    with pytest.raises(SessionError):  # still an error the second time: no silent reset
        store.load("broken")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / SESSIONS_DIR / "bin.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SessionError, match="cannot read the session file"):
        SessionStore(tmp_path).load("bin")


@pytest.mark.parametrize("name", ["", " ", "a/b", "..", ".", "a\\b", "x\ny", "../../etc/passwd", "n" * 201])
def test_invalid_names(tmp_path: Path, name: str) -> None:
    store = SessionStore(tmp_path)
    with pytest.raises(SessionError, match="session name"):
        store.load(name)
    with pytest.raises(SessionError, match="session name"):
        store.save(name, [user("x")], persist=True, max_history=None)
    assert not (tmp_path / ".sluiceway").exists()


def test_valid_names() -> None:
    for name in ["chat", "my session", "proj-1.v2", "ünï", ".hidden"]:
        assert validate_session_name(name) == name


def test_max_history_trimming(tmp_path: Path) -> None:
    conv = [
        user("q1"), assistant("a1"),
        user("q2"), tool_use("t1"), tool_result("t1"), assistant("a2"),
        user("q3"), assistant("a3"),
    ]
    assert trim_history(conv, None) == conv
    assert trim_history(conv, 8) == conv
    assert trim_history(conv, 2) == [user("q3"), assistant("a3")]
    # cutting at the tool_result orphan drops it and the assistant after it
    assert trim_history(conv, 4) == [user("q3"), assistant("a3")]
    assert trim_history(conv, 3) == [user("q3"), assistant("a3")]
    assert trim_history(conv, 6) == conv[2:]
    assert trim_history(conv, 7) == conv[2:]  # starts with an assistant: dropped
    assert trim_history(conv, 0) == []
    assert trim_history(conv, 1) == []  # an assistant alone is no conversation
    with pytest.raises(ValueError, match="max_history must be >= 0"):
        trim_history(conv, -1)

    store = SessionStore(tmp_path)
    assert store.save("t", conv, persist=True, max_history=5) == [user("q3"), assistant("a3")]
    assert SessionStore(tmp_path).load("t") == [user("q3"), assistant("a3")]


def _conversations() -> st.SearchStrategy[list[dict[str, Any]]]:
    exchange = st.one_of(
        st.just([user("q"), assistant("a")]),
        st.integers(1, 3).map(
            lambda n: [user("q")]
            + [m for i in range(n) for m in (tool_use(f"t{i}"), tool_result(f"t{i}"))]
            + [assistant("a")]
        ),
    )
    return st.lists(exchange, max_size=6).map(lambda xs: [m for x in xs for m in x])


@settings(max_examples=200, deadline=None)
@given(conv=_conversations(), max_history=st.integers(0, 30))
def test_trimmed_history_is_a_valid_suffix(conv: list[dict[str, Any]], max_history: int) -> None:
    kept = trim_history(conv, max_history)
    assert len(kept) <= max_history
    assert kept == conv[len(conv) - len(kept) :]  # a suffix, order kept
    if kept:
        assert kept[0]["role"] == "user" and isinstance(kept[0]["content"], str)
        ids_used = {b["id"] for m in kept if isinstance(m["content"], list)
                    for b in m["content"] if b["type"] == "tool_use"}
        for m in kept:
            if isinstance(m["content"], list):
                for b in m["content"]:
                    if b["type"] == "tool_result":
                        assert b["tool_use_id"] in ids_used  # no orphan tool_result
        for a, b in zip(kept, kept[1:], strict=False):
            assert a["role"] != b["role"]  # still alternating
    # the longest valid suffix is kept: nothing valid was dropped needlessly
    tail = conv[len(conv) - min(max_history, len(conv)) :]
    starts = [i for i, m in enumerate(tail) if m["role"] == "user" and isinstance(m["content"], str)]
    assert len(kept) == (len(tail) - starts[0] if starts else 0)


async def test_async_wrappers(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    await store.asave("a", [user("x"), assistant("y")], persist=True, max_history=None)
    assert await SessionStore(tmp_path).aload("a") == [user("x"), assistant("y")]
