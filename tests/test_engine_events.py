"""The hot-path event builders build exactly what the events' own ``__init__`` builds."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sluiceway.engine._events import (
    Cancelled,
    Delta,
    Done,
    Response,
    ThinkingDelta,
    ToolInputDelta,
    Usage,
    _builder,
    _slot,
    new_delta,
    new_thinking_delta,
    new_tool_input_delta,
)

_text = st.text(max_size=20)
_envelope = {
    "run_id": _text,
    "step": _text,
    "attempt": st.integers(1, 10),
    "seq": st.integers(0, 10**9),
    "at": st.floats(0, 1e6),
    "index": st.integers(0, 100),
}
_BUILDERS = {
    Delta: (new_delta, {**_envelope, "content": _text}),
    ThinkingDelta: (new_thinking_delta, {**_envelope, "content": _text}),
    ToolInputDelta: (new_tool_input_delta, {**_envelope, "tool_use_id": _text, "partial_json": _text}),
}


@pytest.mark.parametrize("cls", list(_BUILDERS), ids=lambda c: c.__name__)
@given(data=st.data())
def test_a_builder_builds_the_same_frozen_value_as_init(cls, data):
    build, fields = _BUILDERS[cls]
    values = data.draw(st.fixed_dictionaries(fields))
    order = build.__code__.co_varnames[: build.__code__.co_argcount]
    built = build(*(values[name] for name in order))
    expected = cls(**values)
    assert type(built) is cls
    assert built == expected and hash(built) == hash(expected) and repr(built) == repr(expected)
    assert attrs.asdict(built) == attrs.asdict(expected)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.seq = 0  # type: ignore[misc]


def test_a_builder_must_name_every_field():
    with pytest.raises(TypeError, match="Delta has fields"):
        _builder(Delta, ("run_id", "step", "content"))


@pytest.mark.parametrize("cls", list(_BUILDERS), ids=lambda c: c.__name__)
def test_a_builder_made_now_builds_what_init_builds_and_says_so(cls):
    """``_builder`` called here (the module's builders were made at import), fields in an odd order."""
    fields = tuple(reversed([f.name for f in attrs.fields(cls)]))
    build = _builder(cls, fields)
    values = {name: f"v{i}" if name not in ("attempt", "seq", "at", "index") else i for i, name in enumerate(fields)}
    assert build(*[values[name] for name in fields]) == cls(**values)
    assert build.__name__ == build.__qualname__ == f"new_{cls.__name__}"
    assert build.__doc__ == f"``{cls.__name__}({', '.join(f'{n}={n}' for n in fields)})``, faster."


def test_a_missing_slot_is_named():
    with pytest.raises(TypeError) as info:
        _slot(Delta, "nope")
    assert str(info.value) == "Delta has no slot 'nope'"


def test_usages_add_field_by_field():
    assert Usage(1, 20, 300, 4000) + Usage(5, 60, 700, 8000) == Usage(6, 80, 1000, 12000)
    assert Usage(1, 2, 3, 4).total_tokens == 10


def test_done_as_cancelled_keeps_the_envelope_and_the_response_as_partial():
    response = Response(text="abc")
    done = Done(run_id="r", step="s", attempt=2, seq=7, at=1.5, response=response)
    assert done.as_cancelled() == Cancelled(run_id="r", step="s", attempt=2, seq=7, at=1.5, partial=response)


async def test_run_started_and_finished_carry_the_runs_clock_and_what_was_given(autojump_clock):
    import time

    import trio
    from sluiceway.engine._events import RunFinished, RunStarted
    from sluiceway.engine._run import RunContext, emit_run_finished, emit_run_started

    await trio.sleep(100)  # the run's origin is not the clock's zero
    send, receive = trio.open_memory_channel(10)
    run = RunContext.start("r1", send)
    await trio.sleep(5)
    before = time.time()
    started = await emit_run_started(run, "pipe", ["a", "b"])
    after = time.time()
    assert started == RunStarted(
        run_id="r1", step="", at=5.0, pipeline="pipe", steps=("a", "b"), started_wall=started.started_wall
    )
    assert before - 5.0 <= started.started_wall <= after - 5.0  # wall time of the run's start
    await trio.sleep(2)
    finished = await emit_run_finished(run, "failed", {"steps": 2})
    assert finished == RunFinished(run_id="r1", step="", at=7.0, status="failed", summary={"steps": 2})
    assert (await emit_run_finished(run, "ok")).summary == {}
    assert [receive.receive_nowait() for _ in range(3)] == [started, finished, RunFinished(
        run_id="r1", step="", at=7.0, status="ok")]
