"""Hypothesis: DESIGN.md invariants 1, 2, 4, 5, 6 over generated streams, buffers, handlers, cancels."""

from __future__ import annotations

import json
import warnings
from unittest import mock

import trio
import trio.testing
from engine_helpers import Recorder, ScriptedProvider, _Stream, call_script, request, split_json
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sluiceway.engine import (
    Cancelled,
    ChannelConsumer,
    Delta,
    Done,
    Failed,
    HandlerConsumer,
    HandlerWarning,
    Message,
    Response,
    Retrying,
    RunContext,
    StepStarted,
    ThinkingDelta,
    ToolInputDelta,
    ToolResult,
    ToolUse,
    _group,
    _step,
    stream_group,
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
    # call K fails after N chunks in attempt 1 (calls before K complete their tool turns); attempt 2
    # repeats call K alone and goes on (a retry resumes, issue 14)
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


async def send_interrupted(tee, event, done, cancel):
    """*cancel*, then *event* to the first outlet only, then a checkpoint: a cancellation that
    lands mid-delivery of a terminal event, whatever room the channels have."""
    cancel()
    rest = set(range(1, len(tee.outlets))) - done
    done |= rest
    try:
        await Tee.send_each(tee, event, done)
    finally:
        done -= rest
    await trio.lowlevel.checkpoint()


class RecordingTee(Tee):
    """Records what the step sends, and checks the in-flight bound before each send."""

    instances: list[RecordingTee] = []
    checks: list = []  # callables run before each send, with the number of events sent so far
    on_done = None  # cancels as a Done starts out (to cancel during terminal delivery)

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
                await send_interrupted(self, event, done, RecordingTee.on_done)
        await super().send_each(event, done)

    async def send_each_apart(self, event, done):  # the terminal after a cancellation
        if not self.sent or self.sent[-1] is not event:
            self.sent.append(event)
        await super().send_each_apart(event, done)


def count_tasks(task) -> int:
    return 1 + sum(count_tasks(t) for n in task.child_nurseries for t in n.child_tasks)


def scripts_for(calls, delays, fail_first):
    """The calls' scripts; with *fail_first* ``(k, n)``, call *k* first fails after *n* chunks (the
    calls before it complete their tool turns), then is played again, and the rest follow: a retry
    repeats the failed call alone (issue 14; the retry used to replay calls ``0..k-1`` too)."""
    complete = [call_script(c, delay=d) for c, d in zip(calls, delays, strict=True)]
    if fail_first is None:
        return complete
    k, n = fail_first
    failing = complete[k]
    chunks = [i for i, item in enumerate(failing) if isinstance(item, TextChunk | ThinkingChunk | InputJsonChunk)]
    cut = chunks[min(n, len(chunks) - 1)] if n < len(chunks) else len(failing) - 1
    return [*complete[:k], [*failing[:cut], OverloadedError("busy")], *complete[k:]]


def kept(events):
    """What a response keeps of *events*: a Retrying supersedes the events since the step's last
    Message or ToolResult (the failed call's); the finished calls stay, whichever attempt made them."""
    out, call = [], []
    for e in events:
        if isinstance(e, Retrying):
            call = []
        elif isinstance(e, Message | ToolResult):
            out, call = out + call + [e], []
        else:
            call.append(e)
    return out + call


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
@example(  # a tool turn completes, the next call fails, the retry repeats it; cancelled as Done goes out
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
        assert {e.tool_use_id: e.input for e in kept(sent) if isinstance(e, ToolUse)} == expected_tools
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
        assert "".join(e.content for e in kept(sent) if isinstance(e, Delta)) == outcome["response"].text
        # invariant 3: nothing of the failed call stays in the response; every finished call does,
        # and no tool call ran twice (issue 14: the retry resumes; it used to restart the tool loop)
        response = outcome["response"]
        assert [m for m in response.messages if m.role == "assistant"] == [e for e in sent if isinstance(e, Message)]
        assert response.metrics.delta_count == sum(
            1 for e in kept(sent) if isinstance(e, Delta | ThinkingDelta | ToolInputDelta)
        )
        results = [e.tool_use_id for e in sent if isinstance(e, ToolResult)]
        assert sorted(results) == sorted(set(results)) == sorted(expected_tools)
    retrying = [e for e in sent if isinstance(e, Retrying)]
    if fail_first is not None and (retrying or not cancelled):
        # only the failed call's output is superseded: it started when a chunk came before the error
        # (completed tool turns before it are kept, so they no longer count)
        assert retrying[0].output_may_have_started == (fail_first[1] > 0)


# -- the same for a composite step: sub-steps fan in to one set of handlers ------------------------


@st.composite
def group_scenarios(draw):
    subs = []
    for _ in range(draw(st.integers(1, 3))):
        n_calls = draw(st.integers(1, 2))
        calls = [draw(blocks(tools=i < n_calls - 1, call_no=i)) for i in range(n_calls)]
        delays = [draw(st.sampled_from([0.0, 0.01, 0.1])) for _ in calls]
        fail_first = draw(st.none() | st.tuples(st.integers(0, n_calls - 1), st.integers(0, 4)))
        subs.append((calls, delays, fail_first))
    handlers = draw(
        st.lists(
            st.tuples(st.sampled_from(["block", "coalesce"]), st.integers(1, 4), st.sampled_from([0.0, 0.05, 0.3]),
                      st.booleans()),
            min_size=1,
            max_size=2,
        )
    )
    # a time, or "terminal": cancelled as the composite step starts delivering its Done
    cancel_at = draw(st.none() | st.floats(0.0, 1.0) | st.just("terminal"))
    return subs, handlers, cancel_at


class GroupTee(Tee):
    """Cancels (``on_done``) as the composite step's own Done starts out."""

    on_done = None

    async def send_each(self, event, done):
        if not done and isinstance(event, Done) and event.step == "g" and GroupTee.on_done is not None:
            await send_interrupted(self, event, done, GroupTee.on_done)
        await super().send_each(event, done)


class ByStep(ScriptedProvider):
    """Scripted per sub-step: ``g[i]`` plays ``scripts[i]`` in order."""

    def __init__(self, scripts):
        super().__init__([])
        self.by_step = [iter(s) for s in scripts]

    def stream(self, req):
        self.requests.append(req)
        return _Stream(self, next(self.by_step[int(req.step[2:-1])]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group_scenarios())
@example(  # sub-steps that retry after a tool turn; cancelled as the group's Done goes out to a slow handler
    scenario=(
        [
            ([[("text", ["a"]), ("tool", "tu_0_0", "Read", ["{}"])], [("text", ["b"])]], [0.0, 0.01], (1, 0)),
            ([[("text", ["c", "d"])]], [0.01], None),
        ],
        [("block", 1, 0.3, False), ("coalesce", 1, 0.0, True)],
        "terminal",
    ),
)
def test_group_stream_invariants(scenario):
    subs, handler_specs, cancel_at = scenario
    recorders = [(Recorder(delay=d, batch=b, policy=p), p, size) for p, size, d, b in handler_specs]
    provider = ByStep([scripts_for(*sub) for sub in subs])

    class Retry:
        def decide(self, error, attempt):
            return 0.25 if attempt == 1 else None

    outcome = {}

    async def main():
        root = trio.lowlevel.current_root_task()
        before = count_tasks(root)
        run_send, run_recv = trio.open_memory_channel(10_000)
        run = RunContext(run_id="r", origin=trio.current_time(), events=run_send)

        async def body(sub):
            async def one(i):
                await stream_step(
                    run=run, path=f"g[{i}]", provider=provider, request=request(step=f"g[{i}]"), consumers=[sub()],
                    tool_runner=Tools(), max_turns=10, retry=Retry(),
                )

            async with trio.open_nursery() as nursery:
                for i in range(len(subs)):
                    nursery.start_soon(one, i)
            return Response(text="")

        with trio.move_on_after(cancel_at if isinstance(cancel_at, float) else 1e9) as scope:
            GroupTee.on_done = scope.cancel if cancel_at == "terminal" else None
            with mock.patch.object(_group, "Tee", GroupTee):
                await stream_group(
                    run=run, path="g", consumers=[HandlerConsumer(r, f"h{i}", p, s) for i, (r, p, s) in enumerate(recorders)],
                    body=body, step_type="parallel_claude", buffer_size=2, concurrency=len(subs),
                )
        run_send.close()
        outcome["run"] = [e async for e in run_recv]
        outcome["cancelled"] = scope.cancelled_caught
        outcome["tasks_left"] = count_tasks(root) - before

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    on_run, cancelled = outcome["run"], outcome["cancelled"]
    assert outcome["tasks_left"] == 0 and provider.open_streams == 0
    check_invariants(on_run)
    terminal = on_run[-1]
    assert terminal.step == "g" and isinstance(terminal, Done | Cancelled)
    assert isinstance(terminal, Done) or cancelled
    steps = {e.step for e in on_run}
    for rec, policy, _ in recorders:
        events = rec.events
        assert rec.close_count == 1 and not rec.after_close
        # the composite step's own two events: StepStarted first, its one terminal last
        assert [type(e) for e in events if e.step == "g"][0] is StepStarted
        assert events[-1] in (terminal, terminal.as_cancelled() if isinstance(terminal, Done) else terminal)
        assert sum(1 for e in events if e.step == "g" and isinstance(e, Done | Failed | Cancelled)) == 1
        if cancelled:  # events in flight were dropped (a Retrying too): per step, one terminal, last, seq rising
            for step in {e.step for e in events}:
                mine = [e for e in events if e.step == step]
                assert [e.seq for e in mine] == sorted({e.seq for e in mine})
                ends = [k for k, e in enumerate(mine) if isinstance(e, Done | Failed | Cancelled)]
                assert ends in ([], [len(mine) - 1]), step
        else:
            check_invariants(events)
        for step in steps:  # each sub-step's events, in order (merged deltas aside), nothing lost unless cancelled
            mine = [e for e in events if e.step == step]
            check_delivery([e for e in on_run if e.step == step], mine, policy=policy, complete=not cancelled)
    if not cancelled:
        for (calls, _, _), i in zip(subs, range(len(subs)), strict=True):
            (done,) = [e for e in on_run if e.step == f"g[{i}]" and isinstance(e, Done)]
            assert done.response.text == "".join("".join(b[1]) for c in calls for b in c if b[0] == "text")
            # every finished call is kept, whichever attempt made it (a retry resumes, issue 14)
            assert [m for m in done.response.messages if m.role == "assistant"] == [
                e for e in on_run if e.step == f"g[{i}]" and isinstance(e, Message)
            ]
