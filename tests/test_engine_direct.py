"""Direct hand-off: a handler's ``handle_nowait`` takes events in the step's task while its actor is parked."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from engine_helpers import Recorder, ScriptedProvider, call_script, request
from sluiceway.engine import (
    Cancelled,
    Delta,
    Done,
    Failed,
    HandlerConsumer,
    HandlerWarning,
    RunContext,
    stream_step,
)
from sluiceway.engine._channel import DirectError, open_event_channel
from sluiceway.handlers import BufferHandler

from sluiceway._errors import HandlerError
from sluiceway.testing import StreamingRecorder, check_invariants

# -- the channel ------------------------------------------------------------------


async def test_a_parked_receiver_takes_values_in_the_senders_task_and_stays_parked() -> None:
    send, receive = open_event_channel(2)
    taken: list[tuple[str, Any]] = []
    outcome: list[Any] = []

    def direct(value: str) -> None:
        taken.append((value, trio.lowlevel.current_task()))

    async def receiver() -> None:
        try:
            outcome.append(await receive.receive_batch(direct))
        except trio.EndOfChannel:
            outcome.append("end")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        me = trio.lowlevel.current_task()
        for value in "abcde":  # more than the buffer: nothing is buffered
            send.send_nowait(value)
        assert taken == [(v, me) for v in "abcde"]
        await send.send("f")  # the awaited send too
        assert [v for v, _ in taken] == list("abcdef")
        await trio.testing.wait_all_tasks_blocked()
        assert outcome == [] and not receive.waiting()  # never woken
        send.close()
    assert outcome == ["end"]


async def test_wouldblock_hands_that_value_to_the_receiver_and_later_ones_queue_until_it_parks_again() -> None:
    send, receive = open_event_channel(4)
    taken: list[int] = []

    def direct(value: int) -> None:
        if value % 3 == 2:
            raise trio.WouldBlock
        taken.append(value)

    batches: list[list[int]] = []

    async def receiver() -> None:
        while True:
            try:
                batches.append(await receive.receive_batch(direct))
            except trio.EndOfChannel:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        for value in range(5):
            send.send_nowait(value)
        # 0, 1 direct; 2 declined: the receiver is woken with it; 3, 4 queue behind it (not direct)
        assert taken == [0, 1]
        await trio.testing.wait_all_tasks_blocked()
        assert batches == [[2, 3, 4]]
        send.send_nowait(6)  # parked again: direct
        assert taken == [0, 1, 6]
        send.close()
    assert batches == [[2, 3, 4]]


async def test_a_failing_direct_wakes_the_receiver_with_direct_error() -> None:
    send, receive = open_event_channel(1)
    boom = ValueError("bad event")

    def direct(value: int) -> None:
        raise boom

    async def receiver() -> None:
        with pytest.raises(DirectError) as caught:
            await receive.receive_batch(direct)
        assert caught.value.error is boom and caught.value.__cause__ is boom
        assert "ValueError: bad event" in str(caught.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        send.send_nowait(1)  # counts as sent: no error here
        send.send_nowait(2)  # the receiver is awake now: buffered
        assert receive.waiting()


async def test_a_cancelled_receiver_takes_nothing_more_directly() -> None:
    send, receive = open_event_channel(2)
    taken: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive.receive_batch, taken.append)
        await trio.testing.wait_all_tasks_blocked()
        send.send_nowait(1)
        nursery.cancel_scope.cancel()
    send.send_nowait(2)
    assert taken == [1]
    assert receive.receive_nowait() == 2


async def test_plain_waits_never_take_values_directly() -> None:
    send, receive = open_event_channel(0)
    got: list[int] = []

    async def receiver() -> None:
        got.append(await receive.receive())
        got.extend(await receive.receive_batch())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        send.send_nowait(1)
        await trio.testing.wait_all_tasks_blocked()
        send.send_nowait(2)
    assert got == [1, 2]


# -- the step and its handler actor --------------------------------------------------------


async def run_step(provider: Any, consumers: list[Any], **kwargs: Any) -> Any:
    return await stream_step(
        run=RunContext(run_id="r", origin=trio.current_time()), path="s", provider=provider, request=request(),
        consumers=consumers, **kwargs,
    )


async def test_deltas_reach_handle_nowait_before_the_provider_is_read_again(autojump_clock: Any) -> None:
    # no delay between chunks: no checkpoint between a delta's send and the next read, so an actor
    # woken by the send could not have run yet; handle_nowait already has the delta
    direct, actor = Recorder(direct=0), Recorder()
    seen_at_read: list[tuple[int, int]] = []

    def on_chunk(n: int) -> None:
        seen_at_read.append((sum(isinstance(e, Delta) for e in direct.events),
                             sum(isinstance(e, Delta) for e in actor.events)))

    provider = ScriptedProvider([call_script([("text", list("abcdef"))], first_delay=0.5)], on_chunk=on_chunk)
    response = await run_step(provider, [HandlerConsumer(direct, "direct"), HandlerConsumer(actor, "actor")])
    assert [d for d, _ in seen_at_read] == [0, 1, 2, 3, 4, 5]
    assert [a for _, a in seen_at_read][1:] == [0] * 5  # the actor's handler: not until the step yields
    assert direct.events == actor.events
    assert response.text == "abcdef"
    assert [type(e).__name__ for e in direct.events] == ["StepStarted", *["Delta"] * 6, "Message", "Done"]
    # StepStarted went through the actor (it had not parked yet); the rest went direct
    assert (direct.direct_taken, direct.calls) == (8, 1)
    assert direct.close_count == 1
    check_invariants(direct.events)


async def test_declined_events_go_through_the_actor_in_order(autojump_clock: Any) -> None:
    rec = Recorder(direct=2, delay=0.001)  # every other handle_nowait declines; the actor then sleeps
    pieces = [f"{i}," for i in range(30)]
    provider = ScriptedProvider([call_script([("text", pieces)], delay=0.002)])
    response = await run_step(provider, [HandlerConsumer(rec, "r", "block", 4)])
    assert response.text == "".join(pieces)
    assert "".join(e.content for e in rec.events if isinstance(e, Delta)) == response.text
    assert [e.seq for e in rec.events] == list(range(1, len(rec.events) + 1))
    # both paths were used: deltas taken directly, and batches (declined ones first) through the actor
    assert rec.direct_taken >= 5 and len(rec.events) - rec.direct_taken >= 10
    check_invariants(rec.events)


async def test_handle_nowait_error_isolates_the_handler_and_the_run_goes_on(autojump_clock: Any) -> None:
    bad, good = Recorder(direct=0, fail_at=3), Recorder()
    provider = ScriptedProvider([call_script([("text", list("abcdef"))], delay=0.1)])
    with pytest.warns(HandlerWarning, match=r"handler 'bad'.*handle_nowait raised RuntimeError: boom at 3"):
        response = await run_step(provider, [HandlerConsumer(bad, "bad"), HandlerConsumer(good, "good")])
    assert response.text == "abcdef"
    assert len(bad.events) == 3 and bad.events == good.events[:3]
    assert bad.close_count == 1 and not bad.after_close
    assert isinstance(good.events[-1], Done)


async def test_handle_nowait_error_under_fail_fails_the_step(autojump_clock: Any) -> None:
    bad, good = Recorder(direct=0, fail_at=2), Recorder()
    provider = ScriptedProvider([call_script([("text", list("abcdef"))], delay=0.1)])
    with pytest.raises(HandlerError, match="handle_nowait raised RuntimeError") as caught:
        await run_step(
            provider, [HandlerConsumer(bad, "bad"), HandlerConsumer(good, "good")], on_handler_error="fail"
        )
    assert caught.value.handler == "bad"
    terminal = good.events[-1]
    assert isinstance(terminal, Failed) and terminal.error is caught.value
    assert bad.close_count == 1
    assert provider.open_streams == 0


async def test_cancelled_mid_stream_the_direct_handler_gets_cancelled_once(autojump_clock: Any) -> None:
    rec = Recorder(direct=0)
    provider = ScriptedProvider([call_script([("text", list("abcdefgh"))], delay=1.0)])
    with trio.move_on_after(3.5):
        await run_step(provider, [HandlerConsumer(rec, "r")])
    kinds = [type(e).__name__ for e in rec.events]
    assert kinds == ["StepStarted", "Delta", "Delta", "Delta", "Cancelled"]
    assert rec.close_count == 1 and not rec.after_close
    assert isinstance(rec.events[-1], Cancelled) and rec.events[-1].partial.text == "abc"
    check_invariants(rec.events)


def _built_ins(tmp_path: Any) -> list[tuple[Any, Any]]:
    """(handler, what it has written so far) for each built-in handler (and the testing kit's recorder)."""
    from handler_helpers import make_context
    from sluiceway.handlers import ConsoleHandler, DebugHandler, FileHandler, SimpleHandler

    out = []
    for cls, opts in ((SimpleHandler, {}), (ConsoleHandler, {"color": False}), (DebugHandler, {"file": "stdout"})):
        context = make_context(step="s")
        out.append((cls(cls.Options(**opts), context), context.stdout.getvalue))
    path = tmp_path / "out.txt"
    file = FileHandler(FileHandler.Options(file_path=str(path)), make_context(step="s", output_dir=str(tmp_path)))
    out.append((file, lambda: path.read_text() if path.exists() else ""))
    buffer = BufferHandler(BufferHandler.Options(), make_context(step="s"))
    out.append((buffer, buffer.text))
    recorder = StreamingRecorder()  # the testing kit's
    out.append((recorder, lambda: recorder.text("s")))
    return out


async def test_every_built_in_handler_shows_each_delta_before_the_next_read(autojump_clock: Any, tmp_path: Any) -> None:
    handlers = _built_ins(tmp_path)
    pieces = ["alpha ", "beta ", "gamma ", "delta"]
    seen: list[list[str]] = []

    def on_chunk(n: int) -> None:
        seen.append([written() for _, written in handlers])

    provider = ScriptedProvider([call_script([("text", pieces)], first_delay=0.2)], on_chunk=on_chunk)
    await run_step(provider, [HandlerConsumer(h, type(h).__name__) for h, _ in handlers])
    for n, texts in enumerate(seen):  # at the read of delta n, deltas 0..n-1 are written everywhere
        for (handler, _), text in zip(handlers, texts, strict=True):
            assert pieces[n - 1] in text if n else pieces[0] not in text, (type(handler).__name__, n, text)
            assert pieces[n] not in text, (type(handler).__name__, n, text)
    for handler, written in handlers:
        text = written()
        assert all(piece in text for piece in pieces), (type(handler).__name__, text)
        assert handler.handle_nowait is not None


def test_direct_handle_skips_a_handle_nowait_that_would_bypass_an_override() -> None:
    from sluiceway.engine._actors import direct_handle

    class Base:
        async def handle(self, event: Any) -> None: ...

        async def handle_batch(self, events: Any) -> None: ...

        def handle_nowait(self, event: Any) -> None: ...

    class SlowerBatch(Base):  # overrides handle_batch only: direct calls would skip it
        async def handle_batch(self, events: Any) -> None:
            await trio.sleep(1)

    class SlowerHandle(Base):
        async def handle(self, event: Any) -> None:
            await trio.sleep(1)

    class Consistent(SlowerBatch):  # overrides both: its own handle_nowait is used
        def handle_nowait(self, event: Any) -> None: ...

    class OptedOut(Base):
        handle_nowait = None  # type: ignore[assignment]

    base, consistent = Base(), Consistent()
    assert direct_handle(base) == base.handle_nowait
    assert direct_handle(consistent) == consistent.handle_nowait
    assert direct_handle(SlowerBatch()) is None and direct_handle(SlowerHandle()) is None
    assert direct_handle(OptedOut()) is None
    patched = Base()
    patched.handle_batch = SlowerBatch().handle_batch  # type: ignore[method-assign]
    assert direct_handle(patched) is None  # an instance attribute is the most derived level
    patched.handle_nowait = lambda event: None  # type: ignore[method-assign]
    assert direct_handle(patched) is patched.handle_nowait


async def test_a_subclass_of_a_built_in_that_overrides_handle_batch_gets_every_event_there(autojump_clock: Any) -> None:
    from handler_helpers import make_context
    from sluiceway.handlers import SimpleHandler

    class Paced(SimpleHandler):
        batches: list[int] = []

        async def handle_batch(self, events: Any) -> None:
            self.batches.append(len(events))
            await trio.sleep(0.01)
            await super().handle_batch(events)

    context = make_context(step="s")
    handler = Paced(SimpleHandler.Options(), context)
    provider = ScriptedProvider([call_script([("text", list("abcdef"))], delay=0.1)])
    await run_step(provider, [HandlerConsumer(handler, "paced")])
    assert sum(Paced.batches) == 9  # StepStarted, 6 deltas, Message, Done: all through the override
    assert "abcdef" in context.stdout.getvalue()
