"""check_handler catches the broken sample handlers and explains the shrunk counterexample."""

from __future__ import annotations

import re
import time

import pytest
import trio
from broken_handlers import (
    BlocksOnRetryHandler,
    DirectForgetsDeltasHandler,
    DropsLastDeltaHandler,
    GoodDirectHandler,
    GoodHandler,
    NeverFlushesHandler,
)
from sluiceway.engine import Delta, Done, Message, Retrying, ToolResult

from sluiceway.testing import (
    HandlerCheckError,
    assert_handler_conforms,
    check_handler,
    event_streams,
)


def _events_fed(message: str) -> list[str]:
    return re.findall(r"^\s+\d+\. (\w+)\(", message, flags=re.MULTILINE)


@pytest.mark.parametrize("cls", [GoodHandler, GoodDirectHandler])
def test_a_correct_handler_passes(cls):
    made = []

    def factory():
        made.append(cls())
        return made[-1]

    check_handler(factory, max_examples=60)
    # Fresh handler per example, each closed exactly once by the run.
    assert len(made) >= 60
    assert all(h.closed for h in made)
    if cls is GoodDirectHandler:  # both paths: events taken directly, and batches through the actor
        assert sum(h.direct for h in made) > 100 and sum(h.batches for h in made) > 60


def test_a_broken_handle_nowait_is_caught_and_the_mode_named():
    with pytest.raises(HandlerCheckError) as info:
        check_handler(DirectForgetsDeltasHandler, max_examples=100)
    message = str(info.value)
    assert "reports the text '', expected 'a'" in message
    assert "handle_nowait took every event offered" in message
    assert "1 delta(s) came through handle_nowait, first Delta(step='draft'" in message
    assert "did not flush in aclose" not in message
    assert _events_fed(message) == ["StepStarted", "Delta", "Message", "Done"]


def test_drops_last_delta_is_caught_and_named():
    with pytest.raises(HandlerCheckError) as info:
        check_handler(DropsLastDeltaHandler, max_examples=100)
    message = str(info.value)
    assert "handler DropsLastDeltaHandler broke the handler protocol" in message
    assert "The handler dropped the last delta before close" in message
    # Shrunk: one step, one one-character delta, ended normally.
    assert _events_fed(message) == ["StepStarted", "Delta", "Message", "Done"]
    assert "cancellation: none" in message
    assert "reports the text '', expected 'a'" in message
    assert "lost it when handling Done(step='draft'" in message


def test_never_flushes_in_aclose_is_caught_and_named():
    with pytest.raises(HandlerCheckError) as info:
        check_handler(NeverFlushesHandler, max_examples=100)
    message = str(info.value)
    assert "The handler did not flush in aclose" in message
    assert "aclose must flush" in message
    assert "dropped the last delta" not in message
    assert _events_fed(message) == ["StepStarted", "Delta", "Message", "Done"]


def test_blocks_forever_on_retrying_is_caught_and_named():
    with pytest.raises(HandlerCheckError) as info:
        check_handler(BlocksOnRetryHandler, max_examples=100)
    message = str(info.value)
    assert "the handler blocked forever" in message
    assert "it was stuck in handle(Retrying(step='draft'" in message
    fed = _events_fed(message)
    assert fed[:2] == ["StepStarted", "Retrying"]
    assert fed[-1] in {"Done", "Failed", "Cancelled"}


def test_an_aclose_that_never_returns_is_caught_and_named():
    class HangsInClose:
        async def handle(self, event):
            pass

        async def aclose(self):
            await trio.sleep_forever()

    with pytest.raises(HandlerCheckError) as info:
        check_handler(HangsInClose, max_examples=10)
    message = str(info.value)
    assert "aclose() did not return within 5 seconds, the engine's bound on closing a handler" in message


def test_a_handle_that_never_returns_is_caught_and_named():
    class HangsInHandle:
        async def handle(self, event):
            if isinstance(event, Delta):
                await trio.sleep_forever()

        async def aclose(self):
            pass

    with pytest.raises(HandlerCheckError) as info:
        check_handler(HangsInHandle, max_examples=20, cancellation=False)
    message = str(info.value)
    assert "the handler blocked forever" in message
    assert "it was stuck in handle(Delta(step=" in message


def test_blocking_is_not_reported_without_retries():
    # Without Retrying events the same handler is fine: the check is about behaviour, not code.
    check_handler(
        BlocksOnRetryHandler,
        max_examples=40,
        streams=event_streams(allow_retries=False),
    )


def test_an_exception_escaping_is_reported_unless_allowed():
    class Boom(Exception):
        pass

    class RaisesOnDone:
        def __init__(self):
            self.closed = 0

        async def handle(self, event):
            if isinstance(event, Done):
                raise Boom("cannot render the response")

        async def aclose(self):
            self.closed += 1

    streams = event_streams(steps=1, kinds="text", allow_failures=False, allow_cancel=False)
    with pytest.raises(HandlerCheckError) as info:
        check_handler(RaisesOnDone, max_examples=30, streams=streams, cancellation=False)
    message = str(info.value)
    assert "an exception escaped the handler: handle(Done(step='draft'" in message
    assert "raised Boom: cannot render the response" in message


def test_text_of_and_final_text_mode():
    class KeepsFinalAttempt:
        """Shows what the response keeps: a Retrying drops the failed call's text (the step's text
        since its last Message or ToolResult); a retry resumes, so the finished calls stay (issue 14:
        this handler dropped the whole attempt before)."""

        def __init__(self):
            self.parts = []

        async def handle(self, event):
            if isinstance(event, Retrying):
                self.parts = [p for p in self.parts if not (p[0] == event.step and p[3])]
            elif isinstance(event, Message | ToolResult):
                self.parts = [(*p[:3], False) if p[0] == event.step else p for p in self.parts]
            elif isinstance(event, Delta):
                self.parts.append((event.step, event.attempt, event.content, True))

        async def aclose(self):
            pass

    def text_of(handler):
        return "".join(p[2] for p in handler.parts)

    check_handler(KeepsFinalAttempt, max_examples=60, text_of=text_of, expect_text="final")
    with pytest.raises(HandlerCheckError) as info:
        check_handler(
            KeepsFinalAttempt,
            max_examples=100,
            text_of=text_of,
            expect_text="all",
            streams=event_streams(steps=1, kinds="text"),
        )
    message = str(info.value)
    assert "The handler removed text it had already shown: 'a' became '' when handling Retrying(" in message


def test_assert_handler_conforms_is_the_pytest_form():
    assert_handler_conforms(GoodHandler, max_examples=20)
    with pytest.raises(AssertionError, match="did not flush in aclose"):
        assert_handler_conforms(NeverFlushesHandler, max_examples=100)


def test_virtual_time_only():
    # A handler that sleeps 10 minutes per event finishes instantly on the virtual clock.
    class Slow(GoodHandler):
        async def handle_batch(self, events):
            await trio.sleep(600)
            await super().handle_batch(events)

    began = time.perf_counter()
    check_handler(Slow, max_examples=20, timeout=10**9)
    assert time.perf_counter() - began < 10


def test_allowed_errors_are_not_failures():
    class Refuses:
        async def handle(self, event):
            if isinstance(event, Delta):
                raise ValueError("no deltas here")

        async def aclose(self):
            pass

    with pytest.raises(HandlerCheckError, match="raised ValueError: no deltas here"):
        check_handler(Refuses, max_examples=30)
    check_handler(Refuses, max_examples=30, allowed_errors=(ValueError,))


async def test_check_handler_refuses_to_run_inside_trio():
    with pytest.raises(RuntimeError, match="call it from a sync test"):
        check_handler(GoodHandler, max_examples=1)


def test_a_hang_in_handle_or_handle_batch_is_named_with_the_engines_bound():
    # the engine bounds one handler call (HANDLER_TIMEOUT): the report names the call that stalled
    class HangsInBatch:
        async def handle(self, event):
            pass

        async def handle_batch(self, events):
            if any(isinstance(e, Delta) for e in events):
                await trio.sleep_forever()

        async def aclose(self):
            pass

    for broken, method in ((BlocksOnRetryHandler, "handle(Retrying("), (HangsInBatch, "handle_batch([")):
        with pytest.raises(HandlerCheckError) as info:
            check_handler(broken, max_examples=50)
        message = str(info.value)
        assert "the handler blocked forever" in message
        assert "did not return within 30 seconds, the engine's bound on one handler call" in message
        assert f"it was stuck in {method}" in message
    # a smaller bound, as a step's handler_timeout_ms sets it, is the one applied
    class SlowFive(GoodHandler):
        async def handle_batch(self, events):
            await trio.sleep(5)
            await super().handle_batch(events)

    check_handler(SlowFive, max_examples=10)
    with pytest.raises(HandlerCheckError, match="did not return within 2 seconds"):
        check_handler(SlowFive, max_examples=10, handler_timeout=2)
