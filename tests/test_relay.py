"""``relay_step``: a step streamed elsewhere reaches its consumers as ``stream_step``'s would (no Ray needed)."""

from __future__ import annotations

import trio
import trio.testing
from sluiceway.engine import (
    Cancelled,
    ChannelConsumer,
    Delta,
    Done,
    Event,
    Failed,
    Response,
    RunContext,
    StepStarted,
)
from sluiceway.engine._relay import StepLostError, relay_step


def made_elsewhere(run_id: str, texts: list[str]) -> list[Event]:
    events: list[Event] = [StepStarted(run_id=run_id, step="b[0]", seq=1, at=0.1, provider="mock")]
    events += [Delta(run_id=run_id, step="b[0]", seq=2 + i, at=0.2 + i, content=t) for i, t in enumerate(texts)]
    return events


async def drain(receive: trio.MemoryReceiveChannel[Event], into: list[Event]) -> None:
    async with receive:
        async for event in receive:
            into.append(event)


async def test_every_event_then_the_terminal_last_to_the_consumer_and_the_run_stream() -> None:
    run_send, run_receive = trio.open_memory_channel[Event](100)
    run = RunContext.start("r1", run_send)
    send, receive = trio.open_memory_channel[list[Event]](100)
    out_send, out_receive = trio.open_memory_channel[Event](0)
    events = made_elsewhere("r1", ["a ", "b"])
    done = Done(run_id="r1", step="b[0]", seq=4, at=2.5, response=Response(text="a b"))
    send.send_nowait(events[:2])
    send.send_nowait([*events[2:], done])
    send.close()
    seen: list[Event] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain, out_receive, seen)
        terminal = await relay_step(
            run=run, path="b[0]", consumers=[ChannelConsumer(out_send)], receive_events=receive
        )
    assert terminal is done
    assert seen == [*events, done]  # the same objects, in order, the terminal last
    run_send.close()
    assert [e async for e in run_receive] == [*events, done]


async def test_a_stream_that_ends_without_a_terminal_fails_the_step_after_what_came() -> None:
    run = RunContext.start("r1")
    send, receive = trio.open_memory_channel[list[Event]](100)
    out_send, out_receive = trio.open_memory_channel[Event](100)
    events = made_elsewhere("r1", ["a "])
    send.send_nowait(events)
    send.close()
    terminal = await relay_step(run=run, path="b[0]", consumers=[ChannelConsumer(out_send)], receive_events=receive)
    assert isinstance(terminal, Failed) and isinstance(terminal.error, StepLostError)
    assert (terminal.seq, terminal.attempt) == (3, 1)  # numbered after the last event relayed
    seen = [e async for e in out_receive]
    assert seen == [*events, terminal]


async def test_cancelled_mid_stream_the_consumer_still_gets_one_cancelled_last(autojump_clock: trio.testing.MockClock) -> None:
    run = RunContext.start("r1")
    send, receive = trio.open_memory_channel[list[Event]](100)
    out_send, out_receive = trio.open_memory_channel[Event](100)
    events = made_elsewhere("r1", ["a ", "b "])
    send.send_nowait(events)  # the rest never comes: the remote step is still streaming
    with trio.move_on_after(0.05) as scope:
        await relay_step(run=run, path="b[0]", consumers=[ChannelConsumer(out_send)], receive_events=receive)
    assert scope.cancelled_caught
    seen = [e async for e in out_receive]
    assert seen[:-1] == events
    assert isinstance(seen[-1], Cancelled) and seen[-1].seq == 4
    # the relay closed its side: whoever fed it learns it at once
    try:
        send.send_nowait(events[:1])
    except trio.BrokenResourceError:
        pass
    else:
        raise AssertionError("the relay's channel is still open")
