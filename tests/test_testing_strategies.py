"""The kit's strategies draw valid streams, and check_invariants catches broken ones."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sluiceway.engine import (
    TERMINAL_EVENTS,
    Cancelled,
    Delta,
    Done,
    Failed,
    Message,
    Retrying,
    StepStarted,
    ThinkingDelta,
    ToolInputDelta,
    ToolResult,
    ToolUse,
)

from sluiceway.testing import (
    InvariantError,
    check_delivery,
    check_invariants,
    chunkings,
    event_streams,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data(), st.text(min_size=0, max_size=30))
def test_chunkings_join_back_without_empty_pieces(data, text):
    pieces = data.draw(chunkings(text))
    assert "".join(pieces) == text
    assert all(pieces)
    assert len(pieces) <= len(text)


@SETTINGS
@given(event_streams())
def test_event_streams_are_valid(events):
    check_invariants(events)
    steps = {e.step for e in events}
    assert 1 <= len(steps) <= 3
    for step in steps:
        mine = [e for e in events if e.step == step]
        assert isinstance(mine[0], StepStarted)
        assert isinstance(mine[-1], TERMINAL_EVENTS)
        assert sum(isinstance(e, TERMINAL_EVENTS) for e in mine) == 1
        seqs = [e.seq for e in mine]
        assert seqs == sorted(set(seqs))
        if isinstance(mine[-1], Done):
            # a retry resumes (issue 14): the Done text is every finished call's deltas, whichever
            # attempt made them, and none of a failed call's (those before its Retrying)
            kept, call = [], []
            for e in mine:
                if isinstance(e, Delta):
                    call.append(e.content)
                elif isinstance(e, Message | ToolResult):
                    kept, call = kept + call, []
                elif isinstance(e, Retrying):
                    call = []
            assert mine[-1].response.text == "".join(kept + call)
            assert mine[-1].response.messages == tuple(e for e in mine if isinstance(e, Message))
    ats = [e.at for e in events]
    assert ats == sorted(ats)
    for use in (e for e in events if isinstance(e, ToolUse)):
        pieces = [
            e.partial_json
            for e in events
            if isinstance(e, ToolInputDelta) and e.tool_use_id == use.tool_use_id
        ]
        assert json.loads("".join(pieces)) == use.input


@SETTINGS
@given(event_streams(steps=1, kinds=["text"], allow_retries=False, allow_failures=False, allow_cancel=False))
def test_restricted_kinds_only_text_and_done(events):
    kinds = {type(e).__name__ for e in events}
    assert kinds <= {"StepStarted", "Delta", "Message", "Done"}
    assert isinstance(events[-1], Done)
    assert not any(isinstance(e, (Retrying, Failed, Cancelled, ThinkingDelta, ToolInputDelta)) for e in events)


def test_every_kind_and_ending_is_drawn():
    seen = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(event_streams())
    def collect(events):
        seen.update(type(e).__name__ for e in events)
        seen.add(len({e.step for e in events}))

    collect()
    assert {"Delta", "ThinkingDelta", "ToolInputDelta", "ToolUse", "ToolResult", "Message"} <= seen
    assert {"Retrying", "Done", "Failed", "Cancelled"} <= seen
    assert {1, 2, 3} <= seen


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown event kind 'audio'"):
        event_streams(kinds=["audio"])


def _done_stream():
    return event_streams(steps=1, allow_failures=False, allow_cancel=False)


@SETTINGS
@given(_done_stream())
def test_dropping_the_terminal_is_caught(events):
    with pytest.raises(InvariantError, match="invariant 1 broken: step 'draft' has no terminal event"):
        check_invariants(events[:-1])


@SETTINGS
@given(_done_stream(), st.data())
def test_a_repeated_seq_is_caught(events, data):
    i = data.draw(st.integers(1, len(events) - 1))
    broken = [*events[:i], attrs.evolve(events[i], seq=events[i - 1].seq), *events[i + 1 :]]
    with pytest.raises(InvariantError, match=rf"seq {events[i - 1].seq} does not increase"):
        check_invariants(broken)


@SETTINGS
@given(event_streams(steps=1, kinds="text", allow_retries=False, allow_failures=False, allow_cancel=False))
def test_a_lost_delta_breaks_the_done_text(events):
    i = next(i for i, e in enumerate(events) if isinstance(e, Delta))
    with pytest.raises(InvariantError, match="invariant 2 broken: in step 'draft', the Delta text"):
        check_invariants(events[:i] + events[i + 1 :])


def test_superseded_output_after_the_retry_is_caught():
    base = {"run_id": "r", "step": "s"}
    events = [
        StepStarted(**base, seq=1, provider="p"),
        Delta(**base, seq=2, content="old"),
        Retrying(**base, seq=3, reason="x", delay=0.0, output_may_have_started=True, next_attempt=2),
        Delta(**base, seq=4, attempt=2, content="new"),
        Delta(**base, seq=5, attempt=1, content="stale"),
    ]
    with pytest.raises(InvariantError, match="invariant 3 broken: in step 's', attempt 1 comes after attempt 2"):
        check_invariants(events)
    unannounced = [events[0], events[1], events[3]]
    with pytest.raises(InvariantError, match="attempt 2 starts without a Retrying"):
        check_invariants(unannounced)
    # cancellation drops the events in flight, never the terminal: the Retrying may be lost, and
    # the Cancelled names attempt 2 (a cancelled retry seen by a slow handler); still one terminal, last
    lost_retrying = [events[0], events[1], Cancelled(**base, seq=6, attempt=2)]
    check_invariants(lost_retrying)
    with pytest.raises(InvariantError, match="step 's' starts at attempt 2 without a Retrying"):
        check_invariants([Delta(**base, seq=1, attempt=2, content="x"), Cancelled(**base, seq=2, attempt=2)])
    with pytest.raises(InvariantError, match="has an event after its terminal Cancelled"):
        check_invariants([*lost_retrying, Delta(**base, seq=7, attempt=2, content="late")])


def test_a_retry_keeps_the_finished_calls_and_supersedes_the_failed_one():
    """Issue 14: a retry resumes. The tool turn of attempt 1 stays in the Done text; the failed
    call's delta does not; a tool call whose ToolResult comes twice was redone."""
    base = {"run_id": "r", "step": "s"}
    kept_turn = [
        StepStarted(**base, seq=1, provider="p"),
        Delta(**base, seq=2, content="Reading."),
        ToolUse(**base, seq=3, tool_use_id="t1", name="Write", input={}),
        Message(**base, seq=4, role="assistant", content=(), stop_reason="tool_use"),
        ToolResult(**base, seq=5, tool_use_id="t1", name="Write", content="ok"),
        Delta(**base, seq=6, content="partial"),
        Retrying(**base, seq=7, reason="x", delay=0.0, output_may_have_started=True, next_attempt=2),
        Delta(**base, seq=8, attempt=2, content="new"),
        Message(**base, seq=9, attempt=2, role="assistant", content=(), stop_reason="end_turn"),
    ]

    def done(text, seq=10):
        from sluiceway.engine import Response

        return Done(**base, seq=seq, attempt=2, response=Response(text=text))

    check_invariants([*kept_turn, done("Reading.new")])
    with pytest.raises(InvariantError, match="the Delta text kept up to attempt 2 is 'Reading.new'"):
        check_invariants([*kept_turn, done("new")])  # the old whole-attempt restart's text
    with pytest.raises(InvariantError, match="is 'Reading.new', but Done.response.text is 'Reading.partialnew'"):
        check_invariants([*kept_turn, done("Reading.partialnew")])  # superseded output kept
    redone = [
        *kept_turn[:8],
        ToolUse(**base, seq=9, attempt=2, tool_use_id="t1", name="Write", input={}),
        Message(**base, seq=10, attempt=2, role="assistant", content=(), stop_reason="tool_use"),
        ToolResult(**base, seq=11, attempt=2, tool_use_id="t1", name="Write", content="ok"),
    ]
    with pytest.raises(InvariantError, match="invariant 3 broken: in step 's', tool call 't1' ran twice"):
        check_invariants(redone)


def test_bad_tool_json_is_caught():
    base = {"run_id": "r", "step": "s"}
    events = [
        ToolInputDelta(**base, seq=1, tool_use_id="t", partial_json='{"a": '),
        ToolInputDelta(**base, seq=2, tool_use_id="t", partial_json="1}"),
        ToolUse(**base, seq=3, tool_use_id="t", name="Read", input={"a": 2}),
    ]
    with pytest.raises(InvariantError, match=r"parse to \{'a': 1\}, but ToolUse.input is \{'a': 2\}"):
        check_invariants(events)


@SETTINGS
@given(event_streams(), st.data())
def test_check_delivery_accepts_merged_deltas_and_refuses_drops(events, data):
    # Merge random runs of consecutive same-key deltas, as a coalesce consumer may.
    merged = []
    for event in events:
        prev = merged[-1] if merged else None
        if (
            isinstance(event, Delta)
            and isinstance(prev, Delta)
            and (prev.step, prev.attempt, prev.index) == (event.step, event.attempt, event.index)
            and data.draw(st.booleans())
        ):
            merged[-1] = attrs.evolve(prev, content=prev.content + event.content)
        else:
            merged.append(event)
    check_delivery(events, merged, policy="coalesce")
    check_invariants(merged)
    if len(merged) < len(events):
        with pytest.raises(InvariantError, match="invariant 4 broken"):
            check_delivery(events, merged, policy="block")
    i = data.draw(st.integers(0, len(merged) - 1))
    with pytest.raises(InvariantError, match="invariant 4 broken"):
        check_delivery(events, merged[:i] + merged[i + 1 :], policy="coalesce")
