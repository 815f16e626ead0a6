"""The kit's feeder drives handlers through the engine like stream_step: merging, backpressure, cancel."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from sluiceway.engine import Cancelled, Delta, Done, Response, StepStarted

from sluiceway.testing import InvariantError, StreamingRecorder, check_delivery, check_invariants
from sluiceway.testing._check import feed_handler

BASE = {"run_id": "r", "step": "draft"}


def _stream(n: int, gap: float = 0.0) -> list:
    events = [StepStarted(**BASE, seq=1, provider="p")]
    events += [Delta(**BASE, seq=2 + i, at=gap * i, content=f"w{i} ") for i in range(n)]
    text = "".join(e.content for e in events[1:])
    events.append(Done(**BASE, seq=n + 2, at=gap * n, response=Response(text=text)))
    return events


class SlowRecorder(StreamingRecorder):
    """Takes 1 virtual second per call, like a slow terminal."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[float, int]] = []

    async def handle_batch(self, events) -> None:
        self.calls.append((trio.current_time(), len(events)))
        await trio.sleep(1)
        await super().handle_batch(events)


def _run(fn):
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_coalesce_merges_deltas_for_a_slow_handler_and_keeps_the_text():
    events = _stream(50)
    handler = SlowRecorder()

    async def main():
        return await feed_handler(events, handler, policy="coalesce", buffer_size=2)

    sent = _run(main)
    got = handler.events()
    assert sent == events
    assert len(got) < len(events)  # merged
    check_delivery(events, got, policy="coalesce")
    check_invariants(got)
    assert handler.text() == events[-1].response.text
    with pytest.raises(InvariantError, match="invariant 4 broken"):
        check_delivery(events, got, policy="block")
    assert handler.close_count == 1


def test_block_policy_delivers_every_event_and_backpressure_paces_the_producer():
    events = _stream(20)
    handler = SlowRecorder()

    async def main():
        start = trio.current_time()
        await feed_handler(events, handler, policy="block", buffer_size=0)
        return trio.current_time() - start

    elapsed = _run(main)
    assert handler.events() == events
    # one second per call, and with buffer 0 at most one event waits: ~one call per event
    assert elapsed >= len(events) / 2
    assert max(n for _, n in handler.calls) <= 2


@pytest.mark.parametrize("cancel_at", [0, 1, 5, 21])
def test_cancellation_delivers_the_cancelled_terminal_and_closes(cancel_at):
    events = _stream(20, gap=1.0)
    handler = StreamingRecorder()

    async def main():
        return await feed_handler(events, handler, policy="block", buffer_size=4, cancel_at=cancel_at)

    sent = _run(main)
    assert handler.close_count == 1
    got = handler.events()
    check_delivery(sent, got, policy="block", complete=False)
    if cancel_at == 0:
        assert got == [] and sent == []
        return
    assert isinstance(got[-1], Cancelled)
    assert got[-1].seq == sent[cancel_at - 1].seq + 1
    assert sent[:cancel_at] == events[:cancel_at]
    check_invariants(got)
