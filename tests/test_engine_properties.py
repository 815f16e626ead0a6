"""Hypothesis: DESIGN.md invariants 1, 2, 4, 5, 6 over generated streams, buffers, handlers, cancels."""

from __future__ import annotations

import json
import warnings
from unittest import mock

import trio
import trio.testing
from engine_helpers import Recorder, ScriptedProvider, call_script, request, split_json
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sluiceway.engine import (
    Cancelled,
    ChannelConsumer,
    Delta,
    Done,
    HandlerConsumer,
    HandlerWarning,
    Retrying,
    RunContext,
    ThinkingDelta,
    ToolInputDelta,
    ToolUse,
    _step,
    stream_step,
)
from sluiceway.engine._provider_events import InputJsonChunk, TextChunk, ThinkingChunk
from sluiceway.engine._tee import Tee

from sluiceway._errors import OverloadedError
from sluiceway.testing import check_delivery, check_invariants

PIECE = st.text(alphabet="ab \n{}\"é", min_size=1, max_size=4)
JSON_VALUE = st.dictionaries(
    st.text(alphabet="kxy", min_size=1, max_size=3),
    st.one_of(st.integers(-5, 5), st.text(alphabet="a\"\\ ", max_size=4), st.booleans()),
    max_size=3,
)


@st.composite
def blocks(draw, *, tools: bool, call_no: int):
    out = []
    if draw(st.booleans()):
        out.append(("thinking", draw(st.lists(PIECE, min_size=1, max_size=4))))
    out.append(("text", draw(st.lists(PIECE, min_size=1, max_size=8))))
    if tools:
        for i in range(draw(st.integers(1, 2))):
            value = draw(JSON_VALUE)
            cuts = draw(st.lists(st.integers(0, 200), max_size=6))
            out.append(("tool", f"tu_{call_no}_{i}", "Read", split_json(value, cuts)))
    return out


@st.composite
def scenarios(draw):
    n_calls = draw(st.integers(1, 3))
    calls = [draw(blocks(tools=i < n_calls - 1, call_no=i)) for i in range(n_calls)]
    delays = [draw(st.sampled_from([0.0, 0.01, 0.1])) for _ in calls]
    # an attempt that fails in call K after N chunks (calls before K complete their tool turns), retried
    fail_first = draw(st.none() | st.tuples(st.integers(0, n_calls - 1), st.integers(0, 6)))
    handlers = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["block", "coalesce"]),
                st.integers(0, 8),
                st.sampled_from([0.0, 0.005, 0.05]),
                st.booleans(),
                st.none() | st.integers(0, 3),  # handle_nowait: none, or declining every Nth call (0: never)
            ),
            min_size=1,
            max_size=3,
        )
    )
    # one extra handler failing at its Nth event (isolated), in handle or in handle_nowait
    failing = draw(st.none() | st.tuples(st.integers(0, 12), st.none() | st.integers(0, 3)))
    # a time, or "terminal": cancelled as the step starts delivering Done
    cancel_at = draw(st.none() | st.floats(0.0, 1.5) | st.just("terminal"))
    # a passthrough channel the caller reads (policy, buffer, reader's seconds per event)
    channel = draw(
        st.none()
        | st.tuples(st.sampled_from(["block", "coalesce"]), st.integers(0, 8), st.sampled_from([0.0, 0.005, 0.05]))
    )
    return calls, delays, fail_first, handlers, failing, cancel_at, channel


class Tools:
    def definitions(self):
        return ({"name": "Read", "input_schema": {"type": "object"}},)

    async def run(self, name, input):
        await trio.sleep(0.01)
        return json.dumps(input), False


class RecordingTee(Tee):
    """Records what the step sends, and checks the in-flight bound before each send."""

    instances: list[RecordingTee] = []
    checks: list = []  # callables run before each send, with the number of events sent so far
    on_done = None  # called as a Done starts out (to cancel during terminal delivery)

    def __init__(self, outlets):
        super().__init__(outlets)
        self.sent = []
        RecordingTee.instances.append(self)

    def offer(self, event):  # every delivery starts here (``send`` is ``offer`` + ``send_from``)
        for check in self.checks:
            check(len(self.sent))
        self.sent.append(event)
        return super().offer(event)

    async def send_each(self, event, done):
        if not self.sent or self.sent[-1] is not event:
            self.sent.append(event)
            if isinstance(event, Done) and RecordingTee.on_done is not None:
                RecordingTee.on_done()
        await super().send_each(event, done)


def count_tasks(task) -> int:
    return 1 + sum(count_tasks(t) for n in task.child_nurseries for t in n.child_tasks)


def scripts_for(calls, delays, fail_first):
    """The calls' scripts; with *fail_first* ``(k, n)``, preceded by a first attempt that plays calls
    ``0..k-1`` (their tool turns complete) and fails in call *k* after *n* chunks."""
    complete = [call_script(c, delay=d) for c, d in zip(calls, delays, strict=True)]
    if fail_first is None:
        return complete
    k, n = fail_first
    failing = complete[k]
    chunks = [i for i, item in enumerate(failing) if isinstance(item, TextChunk | ThinkingChunk | InputJsonChunk)]
    cut = chunks[min(n, len(chunks) - 1)] if n < len(chunks) else len(failing) - 1
    return [*complete[:k], [*failing[:cut], OverloadedError("busy")], *complete]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
@example(  # the coalesce relay, cancelled while its reader's full channel held back Done, lost Done
    scenario=(
        [[("thinking", ["a"]), ("text", ["a"] * 7)]],
        [0.0],
        (0, 2),
        [("block", 0, 0.0, False, None), ("coalesce", 0, 0.05, False, None)],
        None,
        0.75,
        ("coalesce", 2, 0.05),
    ),
).via("discovered failure")
@example(  # a tool turn completes, the next call fails, the retry starts over; cancelled as Done goes out
    scenario=(
        [[("text", ["a", "b"]), ("tool", "tu_0_0", "Read", ['{"k"', ": 1}"])], [("text", ["c"])]],
        [0.0, 0.01],
        (1, 0),
        [("block", 0, 0.05, False, None), ("coalesce", 1, 0.0, True, None)],
        None,
        "terminal",
        ("block", 1, 0.005),
    ),
)
def test_stream_invariants(scenario):
    calls, delays, fail_first, handler_specs, failing, cancel_at, channel = scenario
    expected_text = "".join("".join(b[1]) for c in calls for b in c if b[0] == "text")
    expected_tools = {b[1]: json.loads("".join(b[3])) for c in calls for b in c if b[0] == "tool"}
    recorders = [
        (Recorder(delay=delay, batch=batch, policy=policy, direct=direct), policy, size)
        for policy, size, delay, batch, direct in handler_specs
    ]
    consumers = [HandlerConsumer(r, f"h{i}", p, s) for i, (r, p, s) in enumerate(recorders)]
    bad = None
    if failing is not None:
        bad = Recorder(fail_at=failing[0], direct=failing[1])
        consumers.append(HandlerConsumer(bad, "bad", "block", 1))
    provider = ScriptedProvider(scripts_for(calls, delays, fail_first))
    chan_events: list = []
    chan_send = chan_recv = None
    if channel is not None:
        chan_send, chan_recv = trio.open_memory_channel(channel[1])
        consumers.append(ChannelConsumer(chan_send, channel[0], channel[1]))

    class Retry:
        def decide(self, error, attempt):
            return 0.25 if attempt == 1 else None

    outcome = {}

    async def main():
        root = trio.lowlevel.current_root_task()
        before = count_tasks(root)
        RecordingTee.instances.clear()

        def in_flight_check(n_sent):
            for rec, policy, size in recorders:
                if policy == "block" and hasattr(rec, "handle_batch"):
                    # invariant 5: what was sent and is not yet at the handler fits the buffer (+1 handoff)
                    assert n_sent - len(rec.events) <= size + 1, (n_sent, len(rec.events), size)
            if channel is not None and channel[0] == "block":
                assert n_sent - len(chan_events) <= channel[1] + 1, (n_sent, len(chan_events), channel)

        async def reader():
            async for event in chan_recv:
                chan_events.append(event)
                if channel[2]:
                    await trio.sleep(channel[2])

        async with trio.open_nursery() as nursery:
            if channel is not None:
                nursery.start_soon(reader)  # outside the cancelled scope: it reads to the end
            with trio.move_on_after(cancel_at if isinstance(cancel_at, float) else 1e9) as scope:
                RecordingTee.checks = [in_flight_check]
                RecordingTee.on_done = scope.cancel if cancel_at == "terminal" else None
                with mock.patch.object(_step, "Tee", RecordingTee):
                    outcome["response"] = await stream_step(
                        run=RunContext(run_id="r", origin=trio.current_time()),
                        path="p",
                        provider=provider,
                        request=request(),
                        consumers=consumers,
                        tool_runner=Tools(),
                        max_turns=10,
                        retry=Retry(),
                    )
        outcome["cancelled"] = scope.cancelled_caught
        outcome["tasks_left"] = count_tasks(root) - before

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    (tee,) = RecordingTee.instances
    sent = tee.sent
    cancelled = outcome["cancelled"]

    # invariant 6: nothing outlives the step; every handler closed once; the provider's streams closed
    assert outcome["tasks_left"] == 0
    assert provider.open_streams == 0
    for rec, _, _ in recorders:
        assert rec.close_count == 1 and not rec.after_close
    # invariants 1 and 2 on what was sent, and on what each handler saw
    check_invariants(sent)
    terminal = sent[-1]
    if cancelled:
        assert isinstance(terminal, Cancelled | Done)
    else:
        assert isinstance(terminal, Done)
        assert terminal.response == outcome["response"]
        assert terminal.response.text == expected_text
        assert {e.tool_use_id: e.input for e in sent if isinstance(e, ToolUse) and e.attempt == terminal.attempt} == (
            expected_tools
        )
    if channel is not None:  # the passthrough reader: same rules, and EndOfChannel after the terminal
        recorders.append((type("ChannelView", (), {"events": chan_events})(), channel[0], channel[1]))
    for rec, policy, _ in recorders:
        check_invariants(rec.events)
        last = rec.events[-1]
        if last != terminal:  # cancelled while it held events: a Done reads as Cancelled to it
            assert cancelled and isinstance(terminal, Done) and isinstance(last, Cancelled)
            assert (last.seq, last.partial) == (terminal.seq, terminal.response)
        # invariant 4: in order, nothing lost (unless cancelled), only deltas merged (coalesce)
        check_delivery(sent, rec.events, policy=policy, complete=not cancelled)
        if policy == "block" and not cancelled:
            assert rec.events == sent
    if bad is not None:
        assert bad.close_count == 1
        check_delivery(sent, bad.events, complete=False)
        if not cancelled:
            assert bad.events == sent[: len(bad.events)]
        warned = [w for w in caught if issubclass(w.category, HandlerWarning)]
        if len(bad.events) < len(sent) and not cancelled:
            assert len(warned) == 1
        assert len(warned) <= 1
    assert not [w for w in caught if not issubclass(w.category, HandlerWarning)]
    if not cancelled:
        assert "".join(e.content for e in sent if isinstance(e, Delta) and e.attempt == terminal.attempt) == (
            outcome["response"].text
        )
        # invariant 3: nothing of a superseded attempt (its tool turns included) stays in the response
        response = outcome["response"]
        assert {m.attempt for m in response.messages} == {terminal.attempt}
        assert response.metrics.delta_count == sum(
            1 for e in sent if isinstance(e, Delta | ThinkingDelta | ToolInputDelta) and e.attempt == terminal.attempt
        )
    retrying = [e for e in sent if isinstance(e, Retrying)]
    if fail_first is not None and fail_first[0] > 0 and (retrying or not cancelled):
        assert retrying[0].output_may_have_started  # it failed after completed tool turns
