"""Backpressure and coalescing: 10,000 deltas into slow handlers, in virtual time; the tee itself."""

from __future__ import annotations

import pytest
import trio
from engine_helpers import Recorder, ScriptedProvider, call_script, request
from sluiceway.engine import (
    Delta,
    Done,
    HandlerConsumer,
    Message,
    Response,
    RunContext,
    ThinkingDelta,
    ToolInputDelta,
    stream_step,
)
from sluiceway.engine._tee import Outlet, Tee

from sluiceway.testing import check_delivery, check_invariants

N = 10_000
PER_EVENT = 0.01  # the slow handler's seconds per event


def pieces(n: int = N) -> list[str]:
    return [f"{i % 10}" for i in range(n)]


def ev(cls=Delta, seq=1, **fields):
    if cls in (Delta, ThinkingDelta):
        fields.setdefault("content", "x")
    return cls(run_id="r", step="s", seq=seq, **fields)


@pytest.mark.parametrize("buffer_size", [0, 8])
async def test_slow_block_handler_stalls_the_provider(autojump_clock, buffer_size):
    slow = Recorder(delay=PER_EVENT)
    progress: list[tuple[int, int, float]] = []

    def on_chunk(n: int) -> None:
        recorded = sum(1 for e in slow.events if isinstance(e, Delta)) if n % 97 == 0 or n < 50 else None
        if recorded is not None:
            progress.append((n, recorded, trio.current_time()))

    provider = ScriptedProvider([call_script([("text", pieces())])], on_chunk=on_chunk)
    start = trio.current_time()
    response = await stream_step(
        run=RunContext(run_id="r", origin=start),
        path="s",
        provider=provider,
        request=request(),
        consumers=[HandlerConsumer(slow, "slow", "block", buffer_size)],
    )
    assert response.text == "".join(pieces())
    # before handing over chunk n, the provider had sent n-1 deltas: at most buffer+1 not yet at the handler
    assert len(progress) > 100
    for n, recorded, _ in progress:
        assert (n - 1) - recorded <= buffer_size + 1, (n, recorded)
    # so the provider advanced at the handler's pace (a batch is recorded at once, then worked off)
    for n, _, at in progress:
        assert at - start >= (n - 2 * buffer_size - 5) * PER_EVENT - 1e-6
    assert trio.current_time() - start == pytest.approx((N + 3) * PER_EVENT, abs=PER_EVENT * (buffer_size + 3))
    assert response.metrics.backpressure_wait > 0.9 * (N - buffer_size - 3) * PER_EVENT
    assert response.metrics.queue_high_water == max(buffer_size, 1)
    assert [type(e) for e in slow.events].count(Delta) == N
    check_invariants(slow.events)


async def test_coalesce_gets_fewer_deltas_with_identical_text_and_never_stalls(autojump_clock):
    slow = Recorder(delay=PER_EVENT, policy="coalesce")
    block = Recorder()
    produced_at: list[float] = []
    provider = ScriptedProvider(
        [call_script([("text", pieces())], delay=0.0001)], on_chunk=lambda n: produced_at.append(trio.current_time())
    )
    start = trio.current_time()
    sent_send, sent_recv = trio.open_memory_channel(N + 10)
    response = await stream_step(
        run=RunContext(run_id="r", origin=start, events=sent_send),
        path="s",
        provider=provider,
        request=request(),
        consumers=[HandlerConsumer(slow, "slow", "coalesce", 4), HandlerConsumer(block, "fast", "block", 4)],
    )
    sent_send.close()
    sent = [e async for e in sent_recv]
    # the provider ran at its own pace: never held back by the slow handler
    assert produced_at[-1] - start == pytest.approx(N * 0.0001)
    deltas = [e for e in slow.events if isinstance(e, Delta)]
    assert 1 < len(deltas) < N / 10
    assert "".join(d.content for d in deltas) == response.text == "".join(pieces())
    assert [type(e).__name__ for e in slow.events][-2:] == ["Message", "Done"]
    check_delivery(sent, slow.events, policy="coalesce")
    check_delivery(sent, block.events, policy="block")
    check_invariants(slow.events)
    # only the Message waited (behind the pending merged delta): never the deltas
    assert 0 < response.metrics.backpressure_wait <= 5 * PER_EVENT


async def test_run_event_stream_is_a_block_consumer(autojump_clock):
    send, recv = trio.open_memory_channel(2)
    got: list[tuple[int, float]] = []
    provider = ScriptedProvider(
        [call_script([("text", pieces(200))])], on_chunk=lambda n: got.append((n, len(seen)))
    )
    seen: list = []

    async def reader():
        async for event in recv:
            seen.append(event)
            await trio.sleep(0.5)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        with send:
            await stream_step(
                run=RunContext(run_id="r", origin=trio.current_time(), events=send),
                path="s",
                provider=provider,
                request=request(),
                consumers=[],
            )
    # the step waited on the reader: chunk n only after the reader took n-1 deltas (+StepStarted) minus buffer+1
    for n, taken in got:
        assert n - taken <= 2 + 1, (n, taken)
    assert isinstance(seen[-1], Done)


# --------------------------------------------------------------------------- the tee


async def test_tee_block_blocks_and_measures_wait(autojump_clock):
    send, recv = trio.open_memory_channel(1)
    tee = Tee([Outlet(send, buffer_size=1)])
    await tee.send(ev(seq=1))
    assert tee.backpressure_wait == 0.0

    async def drain_later():
        await trio.sleep(3)
        assert recv.receive_nowait().seq == 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain_later)
        await tee.send(ev(seq=2))  # blocks 3 s
    assert tee.backpressure_wait == pytest.approx(3.0)
    assert recv.receive_nowait().seq == 2
    assert tee.queue_high_water == 1


async def test_tee_coalesce_merges_only_consecutive_matching_deltas(autojump_clock):
    send, recv = trio.open_memory_channel(1)
    outlet = Outlet(send, coalesce=True, buffer_size=1)
    tee = Tee([outlet])
    await tee.send(ev(seq=1, content="a"))  # into the channel
    for seq, content in [(2, "b"), (3, "c"), (4, "d")]:
        await tee.send(ev(seq=seq, content=content))  # channel full: merged into the pending delta
    assert outlet.pending is not None and outlet.pending.seq == 2
    assert tee.backpressure_wait == 0.0
    assert recv.receive_nowait().content == "a"
    merged = outlet.take_pending()
    assert (merged.seq, merged.content) == (2, "bcd") and outlet.pending is None
    # a different block index does not merge: a second delta waits for the first to go in
    await tee.send(ev(seq=5, content="e", index=0))
    await tee.send(ev(seq=6, content="f", index=0))
    assert outlet.pending.seq == 6

    async def reader(out):
        async for event in recv:
            out.append(event)

    out: list = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, out)
        await tee.send(ev(seq=7, content="g", index=1))  # not mergeable: pending goes first
        await tee.send(ev(ThinkingDelta, seq=8, content="t"))
        await tee.send(ev(ToolInputDelta, seq=9, tool_use_id="a", partial_json="{"))
        await tee.send(ev(Message, seq=10, role="assistant"))
        await trio.testing.wait_all_tasks_blocked()
        send.close()
    assert [(e.seq, type(e).__name__) for e in out] == [
        (5, "Delta"), (6, "Delta"), (7, "Delta"), (8, "ThinkingDelta"), (9, "ToolInputDelta"), (10, "Message"),
    ]
    assert [e.content for e in out[:4]] == ["e", "f", "g", "t"]


async def test_tee_coalesce_keeps_tool_ids_apart_and_never_merges_others(autojump_clock):
    send, recv = trio.open_memory_channel(0)
    outlet = Outlet(send, coalesce=True, buffer_size=0)
    tee = Tee([outlet])
    await tee.send(ev(ToolInputDelta, seq=1, tool_use_id="a", partial_json='{"x"'))
    await tee.send(ev(ToolInputDelta, seq=2, tool_use_id="a", partial_json=": 1}"))
    assert outlet.take_pending().partial_json == '{"x": 1}'
    await tee.send(ev(ToolInputDelta, seq=3, tool_use_id="a", partial_json="1"))
    with trio.move_on_after(1) as scope:  # different tool id: must wait for the reader
        await tee.send(ev(ToolInputDelta, seq=4, tool_use_id="b", partial_json="2"))
    assert scope.cancelled_caught
    # a non-delta (Done) never merges or parks: it waits
    outlet2 = Outlet(trio.open_memory_channel(0)[0], coalesce=True, buffer_size=0)
    with trio.move_on_after(1) as scope:
        await Tee([outlet2]).send(ev(Done, seq=1, response=Response()))
    assert scope.cancelled_caught and outlet2.pending is None
    del recv


async def test_tee_skips_consumers_that_hung_up():
    send_a, recv_a = trio.open_memory_channel(0)
    send_b, recv_b = trio.open_memory_channel(5)
    outlets = [Outlet(send_a), Outlet(send_b, coalesce=True)]
    tee = Tee(outlets)
    recv_a.close()
    for seq in range(1, 4):
        await tee.send(ev(seq=seq))
    assert outlets[0].gone and not outlets[1].gone
    assert [recv_b.receive_nowait().seq for _ in range(3)] == [1, 2, 3]


async def test_offer_delivers_to_the_outlets_with_room_and_names_the_first_without():
    from sluiceway.engine._channel import open_event_channel
    from sluiceway.engine._events import new_delta

    sends, receives = zip(*(open_event_channel(size) for size in (4, 1, 4)), strict=True)
    tee = Tee([Outlet(s, name=f"o{i}") for i, s in enumerate(sends)])
    first, second = (new_delta("r", "p", 1, seq, 0.0, f"t{seq}", 0) for seq in (1, 2))
    assert tee.offer(first) == -1  # room everywhere: delivered to all three, no coroutine
    assert [r.receive_nowait() for r in receives] == [first] * 3
    sends[1].send_nowait(first)  # the middle outlet is full now
    assert tee.offer(second) == 1  # the first outlet has it; the middle one cannot take it
    assert receives[0].receive_nowait() is second
    with pytest.raises(trio.WouldBlock):
        receives[2].receive_nowait()  # not past the full outlet: order per outlet is kept by send_from
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tee.send_from, second, 1)
        await trio.testing.wait_all_tasks_blocked()
        assert receives[1].receive_nowait() is first  # room again: send_from delivers the rest
    assert receives[1].receive_nowait() is second and receives[2].receive_nowait() is second


def test_outlet_defaults():
    send, _ = trio.open_memory_channel(1)
    outlet = Outlet(send)
    assert (outlet.name, outlet.actor, outlet.gone, outlet.pending) == ("", False, False, None)
    assert outlet.high_water == 0 and Tee([outlet]).queue_high_water == 0
    assert Outlet(send, name="c").name == "c"


async def test_tee_marks_a_hung_up_consumer_gone_on_every_path(autojump_clock):
    from sluiceway.engine._tee import _try_nowait

    send, recv = trio.open_memory_channel(1)
    recv.close()
    outlet = Outlet(send)
    assert _try_nowait(outlet, ev()) is True and outlet.gone  # hung up: counts as taken
    for coalesce in (False, True):  # _put's first try, for a block and a coalesce outlet
        send, recv = trio.open_memory_channel(1)
        recv.close()
        outlet = Outlet(send, coalesce=coalesce)
        await Tee([outlet])._put(outlet, ev())
        assert outlet.gone
    # the reader hangs up while the tee waits on a full channel
    send, recv = trio.open_memory_channel(0)
    outlet = Outlet(send, buffer_size=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Tee([outlet]).send, ev())
        await trio.sleep(1)
        recv.close()
    assert outlet.gone
    # a coalesce reader takes the pending delta, then hangs up before the next event goes in
    send, recv = trio.open_memory_channel(1)
    outlet = Outlet(send, coalesce=True, buffer_size=1)
    tee = Tee([outlet])
    await tee.send(ev(seq=1, content="a"))
    await tee.send(ev(seq=2, content="b"))  # parked
    got = []

    async def take_then_hang_up():
        got.append(recv.receive_nowait())  # the tee's put goes in; it runs again only after the close
        recv.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tee.send, ev(Done, seq=3, response=Response()))
        await trio.sleep(1)  # the tee waits to put the pending delta in
        nursery.start_soon(take_then_hang_up)
    assert [e.content for e in got] == ["a"] and outlet.gone


async def test_tee_puts_the_pending_delta_in_before_what_follows(autojump_clock):
    send, recv = trio.open_memory_channel(2)
    outlet = Outlet(send, coalesce=True, buffer_size=2)
    tee = Tee([outlet])
    for seq, content in enumerate("abcd", 1):
        await tee.send(ev(seq=seq, content=content))  # a, b in; c, d merged
    assert [recv.receive_nowait().content for _ in range(2)] == ["a", "b"]
    done = ev(Done, seq=5, response=Response())
    await tee.send_each(done, set())  # room for both: the merged delta still goes first
    assert [recv.receive_nowait() for _ in range(2)] == [ev(seq=3, content="cd"), done]


async def test_tee_send_from_gives_a_later_coalesce_outlet_the_delta_when_it_has_room(autojump_clock):
    send_a, recv_a = trio.open_memory_channel(0)
    send_b, recv_b = trio.open_memory_channel(4)
    b = Outlet(send_b, coalesce=True, buffer_size=4)
    tee = Tee([Outlet(send_a, buffer_size=0), b])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tee.send, ev(seq=1, content="a"))
        await trio.sleep(1)  # no reader on a yet: the tee waits on it, then serves b
        assert (await recv_a.receive()).content == "a"
    assert b.pending is None and recv_b.receive_nowait().content == "a"
