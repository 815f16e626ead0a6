"""The ``simple`` handler: exact lines, live streaming, options, sub-steps, retries."""

from __future__ import annotations

import io
import re
import sys

import attrs
import pytest
import trio
from handler_helpers import Events, make_context
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.handlers import SimpleHandler
from sluiceway.handlers._base import terminal_text

from sluiceway._errors import OverloadedError
from sluiceway._registry import RegistryError, build_handlers


def make(stdout=None, **options):
    context = make_context(stdout)
    return SimpleHandler(SimpleHandler.Options(**options), context), context.stdout


def conversation(ev: Events):
    return [
        ev.started(),
        ev.delta("I'll analyze ", at=0.2),
        ev.delta("this code.", at=0.3),
        ev.message("I'll analyze this code.", at=0.4),
        ev.tool_use("Read", at=1.1),
        ev.tool_result("File contents loaded\nsecond line", at=2.5),
        ev.delta("Based on my analysis...", at=3.0),
        ev.message("Based on my analysis...", at=3.1),
        ev.done("...", at=3.2, messages=3, duration=3.2),
    ]


async def test_seed_format_exact():
    handler, out = make()
    await handler.handle_batch(conversation(Events()))
    await handler.aclose()
    assert out.getvalue() == (
        "[12:34:56] ASSISTANT: I'll analyze this code.\n"
        "[12:34:57] TOOL USE: Read\n"
        "[12:34:58] TOOL RESULT: File contents loaded\n"
        "[12:34:59] ASSISTANT: Based on my analysis...\n"
        "✓ Stream completed: 3 messages in 3200 ms\n"
    )


async def test_text_streams_onto_the_line_before_the_message_ends():
    handler, out = make()
    ev = Events()
    await handler.handle(ev.delta("Hel", at=0.0))
    assert out.getvalue() == "[12:34:56] ASSISTANT: Hel"  # no newline yet: the line stays open
    await handler.handle(ev.delta("lo", at=0.5))
    assert out.getvalue() == "[12:34:56] ASSISTANT: Hello"
    await handler.handle(ev.message("Hello"))
    assert out.getvalue() == "[12:34:56] ASSISTANT: Hello\n"


async def test_each_batch_is_flushed():
    class Recorder(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1
            super().flush()

    stream = Recorder()
    handler, _ = make(stream)
    ev = Events()
    await handler.handle_batch([ev.delta("a"), ev.delta("b")])
    assert stream.flushes == 1
    await handler.handle(ev.delta("c"))
    assert stream.flushes == 2
    assert stream.getvalue() == "[12:34:56] ASSISTANT: abc"


async def test_writes_to_sys_stdout_resolved_at_write_time(monkeypatch):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    context = attrs.evolve(make_context(), stdout=None)  # None: sys.stdout, looked up per write
    handler = SimpleHandler(SimpleHandler.Options(), context)
    await handler.handle(Events().delta("hi"))
    monkeypatch.setattr(sys, "stdout", second)
    await handler.handle(Events().delta(" there"))
    await handler.aclose()
    assert (first.getvalue(), second.getvalue()) == ("[12:34:56] ASSISTANT: hi", " there\n")


async def test_options_off():
    handler, out = make(show_timestamps=False, show_tool_use=False, show_tool_results=False)
    await handler.handle_batch(conversation(Events()))
    await handler.aclose()
    assert out.getvalue() == (
        "ASSISTANT: I'll analyze this code.\n"
        "ASSISTANT: Based on my analysis...\n"
        "✓ Stream completed: 3 messages in 3200 ms\n"
    )


async def test_hidden_events_print_nothing():
    handler, out = make()
    ev = Events()
    await handler.handle_batch(
        [ev.started(), ev.thinking("hmm"), ev.tool_input('{"a"'), ev.message("x", role="user")]
    )
    assert out.getvalue() == ""


async def test_message_without_deltas_is_shown_whole():
    handler, out = make(show_timestamps=False)
    await handler.handle(Events().message("whole text"))
    assert out.getvalue() == "ASSISTANT: whole text\n"


async def test_tool_error_result_and_first_line_only():
    handler, out = make(show_timestamps=False)
    await handler.handle(Events().tool_result("path outside workspace\ndetails", is_error=True))
    assert out.getvalue() == "TOOL RESULT (error): path outside workspace\n"


async def test_failed_and_cancelled_lines_end_an_open_line():
    handler, out = make(show_timestamps=False)
    ev = Events()
    await handler.handle_batch([ev.delta("partial"), ev.failed(OverloadedError("API overloaded"))])
    assert out.getvalue() == "ASSISTANT: partial\n✗ Stream failed: API overloaded\n"
    handler, out = make(show_timestamps=False)
    await handler.handle_batch([ev.delta("partial"), ev.cancelled()])
    assert out.getvalue() == "ASSISTANT: partial\n✗ Stream cancelled\n"


async def test_retry_line_says_output_is_discarded_and_which_attempt_follows():
    handler, out = make(show_timestamps=False)
    ev = Events()
    await handler.handle_batch(
        [
            ev.delta("Hello wor"),
            ev.retrying("overloaded", delay=1.0),
            ev.delta("Hello world", attempt=2),
            ev.message("Hello world", attempt=2),
        ]
    )
    assert out.getvalue() == (
        "ASSISTANT: Hello wor\n"
        "↻ attempt 1 failed (overloaded); output above is discarded; attempt 2 follows in 1.0 s\n"
        "ASSISTANT: Hello world\n"
    )


async def test_retry_before_any_output_does_not_claim_a_discard():
    handler, out = make()
    await handler.handle(Events().retrying("rate limited", attempt=2, delay=2.5, started=False))
    assert out.getvalue() == "↻ attempt 2 failed (rate limited); attempt 3 follows in 2.5 s\n"


async def test_substeps_are_prefixed_and_interleaving_starts_new_lines():
    context = make_context(step="batch")
    handler = SimpleHandler(SimpleHandler.Options(), context)
    ev = Events(step="batch")
    await handler.handle_batch(
        [
            ev.delta("one ", step="batch[0]", at=1.0),
            ev.delta("two ", step="batch[1]", at=1.0),
            ev.delta("three", step="batch[0]", at=2.0),
            ev.message("one three", step="batch[0]", at=2.0),
            ev.delta("four", step="batch[1]", at=2.0),
            ev.message("two four", step="batch[1]", at=2.0),
            ev.done(step="batch[0]", at=2.0, messages=1, duration=1.0),
            ev.tool_use("Grep", step="batch[1]", at=3.0),
        ]
    )
    await handler.aclose()
    assert context.stdout.getvalue() == (
        "[12:34:57] [batch[0]] ASSISTANT: one \n"
        "[12:34:57] [batch[1]] ASSISTANT: two \n"
        "[12:34:58] [batch[0]] ASSISTANT: three\n"
        "[12:34:58] [batch[1]] ASSISTANT: four\n"
        "[batch[0]] ✓ Stream completed: 1 messages in 1000 ms\n"
        "[12:34:59] [batch[1]] TOOL USE: Grep\n"
    )


async def test_multiline_text_keeps_streaming_on_following_lines():
    handler, out = make(show_timestamps=False)
    ev = Events()
    await handler.handle_batch([ev.delta("line one\nline "), ev.delta("two"), ev.message("...")])
    assert out.getvalue() == "ASSISTANT: line one\nline two\n"


async def test_aclose_is_idempotent_and_ends_the_open_line():
    handler, out = make(show_timestamps=False)
    await handler.handle(Events().delta("cut"))
    await handler.aclose()
    await handler.aclose()
    assert out.getvalue() == "ASSISTANT: cut\n"


def test_policy_is_coalesce():
    assert SimpleHandler.policy == "coalesce"


def test_registry_builds_with_options_and_rejects_unknown_ones():
    (handler,) = build_handlers(["simple"], {"show_timestamps": False}, lambda ref: make_context())
    assert isinstance(handler, SimpleHandler)
    assert handler.options == SimpleHandler.Options(show_timestamps=False)
    with pytest.raises(RegistryError, match="unknown stream_handler_opts 'bogus'"):
        build_handlers(["simple"], {"bogus": 1}, lambda ref: make_context())
    with pytest.raises(RegistryError, match="expected bool @ \\$.show_tool_use"):
        build_handlers(["simple"], {"show_tool_use": "false"}, lambda ref: make_context())


@settings(max_examples=150, deadline=None)
@given(
    chunks=st.lists(
        st.tuples(st.integers(0, 2), st.text(st.characters(blacklist_characters="\n\r"), max_size=4)),
        max_size=30,
    ),
    batch=st.integers(1, 6),
)
def test_property_interleaved_substeps_stay_attributed(chunks, batch):
    """Every line names one sub-step, and each sub-step's lines hold exactly its text, in order."""
    context = make_context(step="batch")
    handler = SimpleHandler(SimpleHandler.Options(show_timestamps=False), context)
    ev = Events(step="batch")
    events = [ev.delta(text, step=f"batch[{i}]") for i, text in chunks]

    async def feed():
        for start in range(0, len(events), batch):
            await handler.handle_batch(events[start : start + batch])
        await handler.aclose()

    trio.run(feed)
    output = context.stdout.getvalue()
    assert output == "" or output.endswith("\n")
    seen = {i: "" for i in range(3)}
    for line in output.split("\n")[:-1]:  # not splitlines(): text may hold \u2028...
        match = re.fullmatch(r"\[batch\[(\d)\]\] ASSISTANT: (.*)", line, re.DOTALL)
        assert match, line
        seen[int(match[1])] += match[2]
    for i in range(3):
        # the text as a terminal may show it: control characters dropped (tests/test_handlers_line.py)
        assert seen[i] == terminal_text("".join(text for j, text in chunks if j == i))
