"""The ``debug`` handler: one line per event, with type, envelope and fields."""

from __future__ import annotations

import io

import pytest
from handler_helpers import Events, make_context
from sluiceway.handlers import DebugHandler, describe_event

from sluiceway._errors import StreamInterruptedError
from sluiceway._registry import RegistryError, build_handlers


def make(**options):
    context = make_context()
    return DebugHandler(DebugHandler.Options(**options), context), context


async def test_every_event_one_line_on_stderr_by_default():
    handler, context = make()
    ev = Events()
    events = [
        ev.started(),
        ev.delta("Hel", at=0.012),
        ev.delta("lo\nworld", at=0.02),
        ev.message("Hello\nworld", at=0.03),
        ev.retrying(at=0.04),
        ev.done("Hello", at=0.05),
    ]
    await handler.handle_batch(events[:2])
    await handler.handle_batch(events[2:])
    await handler.aclose()
    assert context.stdout.getvalue() == ""
    lines = context.stderr.getvalue().split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == len(events)  # newlines inside fields never break a line
    assert lines[0] == (
        "StepStarted step=draft attempt=1 seq=0 at=0.000 provider='mock' "
        "model='claude-test' step_type='claude' tasks=None replayed=False"
    )
    assert lines[1] == "Delta step=draft attempt=1 seq=1 at=0.012 content='Hel' index=0"
    assert lines[2] == "Delta step=draft attempt=1 seq=2 at=0.020 content='lo\\nworld' index=0"
    assert lines[3].startswith("Message step=draft attempt=1 seq=3 at=0.030 role='assistant' content=(")
    assert lines[4] == (
        "Retrying step=draft attempt=1 seq=4 at=0.040 reason='overloaded' delay=1.0 "
        "output_may_have_started=True next_attempt=2 usage=Usage(input_tokens=0, output_tokens=0, "
        "cache_creation_input_tokens=0, cache_read_input_tokens=0) cost_usd=None"
    )
    assert lines[5].startswith("Done step=draft attempt=1 seq=5 at=0.050 response=Response(text='Hello'")
    assert [line.split(" ", 1)[0] for line in lines] == [
        "StepStarted", "Delta", "Delta", "Message", "Retrying", "Done"
    ]


async def test_stdout_option_and_terminal_failure():
    handler, context = make(file="stdout")
    await handler.handle(Events().failed(StreamInterruptedError("connection lost")))
    assert context.stderr.getvalue() == ""
    assert context.stdout.getvalue() == (
        "Failed step=draft attempt=1 seq=0 at=0.000 "
        "error=StreamInterruptedError('connection lost') message='connection lost' partial=None\n"
    )


def test_max_field_len_cuts_long_values():
    event = Events().delta("x" * 50)
    line = describe_event(event, max_field_len=10)
    assert line == "Delta step=draft attempt=1 seq=0 at=0.000 content='xxxxxxxx… index=0"
    assert "x" * 50 in describe_event(event)  # default 200 keeps it


async def test_max_field_len_option_applies():
    handler, context = make(max_field_len=5)
    await handler.handle(Events().delta("abcdefgh"))
    assert context.stderr.getvalue() == "Delta step=draft attempt=1 seq=0 at=0.000 content='abc… index=0\n"


async def test_each_batch_is_flushed():
    class Recorder(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1

    stream = Recorder()
    context = make_context(stderr=stream)
    handler = DebugHandler(DebugHandler.Options(), context)
    await handler.handle_batch([Events().delta("a"), Events().delta("b")])
    assert stream.flushes == 1
    assert stream.getvalue().count("\n") == 2


def test_options_are_validated():
    with pytest.raises(RegistryError, match="format"):
        build_handlers(["debug"], {"format": "x"}, lambda ref: make_context())
    with pytest.raises(RegistryError, match=r"\$\.file"):
        build_handlers(["debug"], {"file": "stdlog"}, lambda ref: make_context())
    with pytest.raises(RegistryError, match="max_field_len"):
        build_handlers(["debug"], {"max_field_len": 0}, lambda ref: make_context())
    assert DebugHandler.policy == "block"


def test_a_value_exactly_max_field_len_long_is_whole_and_a_length_of_one_shows_only_the_cut():
    event = Events().delta("abc")  # shown as 'abc': 5 characters
    assert "content='abc' " in describe_event(event, max_field_len=5)
    assert "content='ab… " in describe_event(event, max_field_len=4)
    assert "content=… " in describe_event(event, max_field_len=1)


async def test_aclose_flushes_once():
    class Flushes(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1

    stream = Flushes()
    handler = DebugHandler(DebugHandler.Options(), make_context(stderr=stream))
    await handler.aclose()
    await handler.aclose()
    assert stream.flushes == 1


def test_the_default_cut_is_200_characters():
    line = describe_event(Events().delta("x" * 199))  # shown as 201 characters with its quotes
    assert "content='" + "x" * 198 + "… " in line
