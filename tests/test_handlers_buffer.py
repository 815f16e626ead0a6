"""The ``buffer`` handler: bounded memory, dropped counter, superseded attempts."""

from __future__ import annotations

import pytest
from handler_helpers import Events, make_context
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.engine import Delta, Retrying, StepStarted
from sluiceway.handlers import BufferHandler

from sluiceway._registry import RegistryError, build_handlers


def make(**options):
    return BufferHandler(BufferHandler.Options(**options), make_context())


async def test_keeps_events_in_order_and_text():
    buffer = make()
    ev = Events()
    events = [ev.started(), ev.delta("Hel"), ev.delta("lo"), ev.message("Hello"), ev.done("Hello")]
    await buffer.handle_batch(events[:2])
    await buffer.handle(events[2])
    await buffer.handle_batch(events[3:])
    assert buffer.events == events
    assert buffer.text() == "Hello"
    assert buffer.dropped == 0
    await buffer.aclose()
    await buffer.aclose()
    assert buffer.closed
    assert buffer.events == events  # still readable after close


async def test_events_is_a_copy():
    buffer = make()
    await buffer.handle(Events().delta("a"))
    buffer.events.clear()
    assert len(buffer.events) == 1


async def test_max_size_drops_oldest_and_counts():
    buffer = make(max_size=3)
    ev = Events()
    events = [ev.delta(c) for c in "abcde"]
    await buffer.handle_batch(events)
    assert buffer.events == events[2:]
    assert buffer.dropped == 2
    assert buffer.text() == "cde"


async def test_retry_drops_superseded_attempt_by_default():
    # the failed call streamed text and a finished tool block, never its Message: a retry resumes,
    # so only a call in progress is superseded (issue 14; this stream had a superseded Message before)
    buffer = make()
    ev = Events()
    started = ev.started()
    other = ev.delta("other step", step="draft2")
    await buffer.handle_batch(
        [started, other, ev.delta("Hello wor"), ev.tool_use(), ev.retrying()]
    )
    await buffer.handle_batch([ev.delta("Hello world", attempt=2), ev.done("Hello world", attempt=2)])
    assert buffer.text(step="draft") == "Hello world"
    assert buffer.text() == "other stepHello world"
    assert [type(e).__name__ for e in buffer.events] == [
        "StepStarted", "Delta", "Retrying", "Delta", "Done"
    ]
    assert buffer.superseded == 2
    assert buffer.dropped == 0


async def test_keep_superseded_keeps_everything():
    buffer = make(keep_superseded=True)
    ev = Events()
    await buffer.handle_batch([ev.delta("Hello wor"), ev.retrying(), ev.delta("Hello world", attempt=2)])
    assert buffer.text() == "Hello worHello world"
    assert buffer.superseded == 0


@settings(max_examples=150, deadline=None)
@given(
    attempts=st.lists(st.lists(st.text(max_size=3), max_size=6), min_size=1, max_size=4),
    max_size=st.integers(1, 30),
    batch=st.integers(1, 5),
)
def test_property_no_superseded_output_and_bounded(attempts, max_size, batch):
    """For generated retries: the buffer holds only the last attempt's output, within max_size."""
    import trio

    ev = Events()
    events = [ev.started()]
    for number, chunks in enumerate(attempts, start=1):
        events += [ev.delta(c, attempt=number) for c in chunks]
        if number < len(attempts):
            events.append(ev.retrying(attempt=number))
    final = "".join(attempts[-1])
    events.append(ev.done(final, attempt=len(attempts)))
    buffer = make(max_size=max_size)

    async def feed():
        for i in range(0, len(events), batch):
            await buffer.handle_batch(events[i : i + batch])
            assert len(buffer.events) <= max_size

    trio.run(feed)
    kept = buffer.events
    assert all(
        e.attempt == len(attempts) for e in kept if not isinstance(e, StepStarted | Retrying)
    )
    # What is kept is the tail of the surviving events, in order; the text a suffix of the final.
    assert final.endswith(buffer.text())
    assert [e.seq for e in kept] == sorted(e.seq for e in kept)
    if max_size >= len(events):
        assert buffer.dropped == 0
        assert buffer.text() == final
    survivors = [
        e for e in events
        if e.attempt == len(attempts) or isinstance(e, StepStarted | Retrying)
    ]
    assert kept == survivors[len(survivors) - len(kept):]
    assert sum(isinstance(e, Delta) for e in kept) <= max_size


def test_options_are_validated():
    with pytest.raises(RegistryError, match="max_size"):
        build_handlers(["buffer"], {"max_size": 0}, lambda ref: make_context())
    with pytest.raises(RegistryError, match="unknown stream_handler_opts 'size'"):
        build_handlers(["buffer"], {"size": 10}, lambda ref: make_context())
    (buffer,) = build_handlers(["buffer"], {"max_size": 7}, lambda ref: make_context())
    assert buffer.options.max_size == 7
    assert BufferHandler.policy == "block"


async def test_retry_keeps_the_finished_calls_before_the_failed_one():
    """A retry repeats the failed call alone: the tool turn before it stays, the failed call goes."""
    buffer = make()
    ev = Events()
    kept = [ev.started(), ev.delta("Reading."), ev.tool_use(), ev.message("Reading."), ev.tool_result("the file")]
    await buffer.handle_batch([*kept, ev.delta("partial"), ev.retrying()])
    await buffer.handle_batch([ev.delta("new", attempt=2), ev.done("Reading.new", attempt=2)])
    assert buffer.text() == "Reading.new"
    assert [type(e).__name__ for e in buffer.events] == [
        "StepStarted", "Delta", "ToolUse", "Message", "ToolResult", "Retrying", "Delta", "Done"
    ]
    assert buffer.superseded == 1
