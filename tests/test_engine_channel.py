"""The tee -> actor channel (``open_event_channel``) behaves as a trio memory channel of the same size."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.engine._channel import open_event_channel

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send_nowait"), st.integers(0, 99)),
        st.tuples(st.just("receive_nowait")),
        st.tuples(st.just("close_send")),
        st.tuples(st.just("close_receive")),
    ),
    max_size=30,
)


def _apply(send: Any, receive: Any, ops: list[tuple[Any, ...]]) -> list[Any]:
    out: list[Any] = []
    for op in ops:
        try:
            if op[0] == "send_nowait":
                out.append(("sent", send.send_nowait(op[1])))
            elif op[0] == "receive_nowait":
                out.append(("got", receive.receive_nowait()))
            elif op[0] == "close_send":
                out.append(("closed", send.close()))
            else:
                out.append(("closed", receive.close()))
        except Exception as exc:
            out.append(("raised", type(exc).__name__))
    return out


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 4), ops=_OPS)
def test_sync_operations_match_trio(size: int, ops: list[tuple[Any, ...]]) -> None:
    async def main() -> None:
        ours = _apply(*open_event_channel(size), ops)
        theirs = _apply(*trio.open_memory_channel[int](size), ops)
        assert ours == theirs

    trio.run(main)


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(0, 4),
    n=st.integers(0, 60),
    sender_pauses=st.lists(st.sampled_from([0.0, 0.001, 0.003]), min_size=1, max_size=5),
    receiver_pauses=st.lists(st.sampled_from([0.0, 0.001, 0.004]), min_size=1, max_size=5),
)
def test_every_value_arrives_in_order_in_batches_of_what_waits(
    size: int, n: int, sender_pauses: list[float], receiver_pauses: list[float]
) -> None:
    async def main() -> list[list[int]]:
        send, receive = open_event_channel(size)
        batches: list[list[int]] = []

        async def sender() -> None:
            with send:
                for i in range(n):
                    await send.send(i)
                    await trio.sleep(sender_pauses[i % len(sender_pauses)])

        async def receiver() -> None:
            with receive:
                while True:
                    try:
                        batch = await receive.receive_batch()
                    except trio.EndOfChannel:
                        return
                    batches.append(batch)
                    await trio.sleep(receiver_pauses[len(batches) % len(receiver_pauses)])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            nursery.start_soon(sender)
        return batches

    batches = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [v for batch in batches for v in batch] == list(range(n))
    assert all(batches)  # never an empty batch
    # a batch is the buffer, a value handed to the parked receiver, and the one parked sender's
    assert max((len(b) for b in batches), default=0) <= size + 2


async def test_a_parked_receiver_is_handed_one_value_beyond_the_buffer_as_in_trio() -> None:
    for opener in (open_event_channel, trio.open_memory_channel):
        send, receive = opener(1)
        got: list[Any] = []

        async def take(receive: Any = receive, got: list[Any] = got) -> None:
            got.append(await receive.receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take)
            await trio.testing.wait_all_tasks_blocked()
            send.send_nowait("a")  # to the parked receiver
            send.send_nowait("b")  # the buffer
            with pytest.raises(trio.WouldBlock):
                send.send_nowait("c")
        assert got == ["a"]
        assert receive.receive_nowait() == "b"


async def test_cancelled_send_sends_nothing() -> None:
    send, receive = open_event_channel(0)
    with trio.move_on_after(0.01) as scope:
        await send.send("lost")  # nobody receives: parks, then is cancelled
    assert scope.cancelled_caught
    send.close()
    with pytest.raises(trio.EndOfChannel):
        receive.receive_nowait()


async def test_cancelled_receive_takes_nothing() -> None:
    send, receive = open_event_channel(2)
    with trio.move_on_after(0.01) as scope:
        await receive.receive_batch()
    assert scope.cancelled_caught
    send.send_nowait("x")
    assert await receive.receive_batch() == ["x"]


async def test_receiver_close_breaks_parked_and_later_senders() -> None:
    send, receive = open_event_channel(0)
    raised: list[type[BaseException]] = []

    async def sender() -> None:
        try:
            await send.send("x")
        except trio.BrokenResourceError as exc:
            raised.append(type(exc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        receive.close()
    assert raised == [trio.BrokenResourceError]
    with pytest.raises(trio.BrokenResourceError):
        send.send_nowait("y")
    with pytest.raises(trio.ClosedResourceError):
        await receive.receive_batch()


async def test_sender_close_wakes_a_parked_receiver_with_end_of_channel() -> None:
    send, receive = open_event_channel(4)
    send.send_nowait("last")
    outcomes: list[Any] = []

    async def receiver() -> None:
        outcomes.append(await receive.receive_batch())
        try:
            await receive.receive_batch()
        except trio.EndOfChannel:
            outcomes.append("end")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes == [["last"]]  # took the buffer, then parked
        await send.aclose()
    assert outcomes == [["last"], "end"]
    assert [v async for v in receive] == []
    with pytest.raises(trio.ClosedResourceError):
        send.send_nowait("late")


async def test_parked_senders_values_come_after_the_buffer_in_order() -> None:
    send, receive = open_event_channel(2)
    send.send_nowait(0)
    send.send_nowait(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send.send, 2)
        await trio.testing.wait_all_tasks_blocked()
        assert receive.waiting()
        assert await receive.receive_batch() == [0, 1, 2]
    assert not receive.waiting()


async def test_two_receivers_at_once_is_an_error() -> None:
    _, receive = open_event_channel(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive.receive_batch)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await receive.receive_batch()
        nursery.cancel_scope.cancel()


def test_negative_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="max_buffer_size"):
        open_event_channel(-1)


def test_error_messages_name_the_problem():
    from sluiceway.engine._channel import DirectError

    with pytest.raises(ValueError, match="^max_buffer_size must be >= 0$"):
        open_event_channel(-1)
    cause = KeyError("k")
    error = DirectError(cause)
    assert error.error is cause and str(error) == "direct hand-off raised KeyError: 'k'"


async def test_a_second_receiver_is_busy_and_a_cancelled_receive_leaves_the_channel_usable(autojump_clock):
    send, receive = open_event_channel(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive.receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError, match="^another task is already receiving from this channel$"):
            await receive.receive()
        nursery.cancel_scope.cancel()  # the waiting receive is aborted
    send.send_nowait(1)
    assert await receive.receive() == 1


async def test_a_parked_sender_with_no_buffer_counts_as_waiting(autojump_clock) -> None:
    send, receive = open_event_channel(0)
    assert not receive.waiting()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send.send, "x")
        await trio.sleep(1)  # the sender is parked: nothing in the buffer
        assert receive.waiting()
        assert receive.receive_nowait() == "x"
    assert not receive.waiting()


async def test_direct_hand_off_runs_in_the_senders_call_until_declined(autojump_clock) -> None:
    from sluiceway.engine._channel import DirectError

    send, receive = open_event_channel(4)
    handed: list[Any] = []

    def direct(value: Any) -> None:
        if value == "decline":
            raise trio.WouldBlock
        if value == "fail":
            raise ValueError("no")
        handed.append(value)

    batches: list[Any] = []

    async def receiver() -> None:
        batches.append(await receive.receive_batch(direct))
        try:
            await receive.receive_batch(direct)
        except DirectError as exc:
            batches.append(exc.error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.sleep(1)
        send.send_nowait("a")
        send.send_nowait("b")
        assert handed == ["a", "b"] and batches == [] and not receive.waiting()  # handed over, not woken
        send.send_nowait("decline")  # the receiver takes this one itself
        await trio.sleep(1)
        assert batches == [["decline"]]
        send.send_nowait("fail")  # the hand-off raised: the receiver raises it; the value counts as sent
    assert handed == ["a", "b"]
    assert isinstance(batches[1], ValueError) and str(batches[1]) == "no"
    assert not receive.waiting()
