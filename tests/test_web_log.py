"""The web view's log: coalesced frames, and resuming after any id with no gap and no duplicate."""

from __future__ import annotations

import json

import trio
from sluiceway.engine import Delta, Done, Response, StepStarted

from sluiceway._web._app import _stream
from sluiceway._web._log import RunLog, frames


def _events() -> list:
    out = [StepStarted(run_id="r", step="a", seq=0, provider="mock")]
    out += [Delta(run_id="r", step="a", seq=i + 1, content=f"{i},") for i in range(30)]
    out.append(Done(run_id="r", step="a", seq=31, response=Response(text="".join(f"{i}," for i in range(30)))))
    return out


def test_frames_merge_consecutive_deltas_and_carry_the_last_id() -> None:
    events = _events()
    out = frames(events, 100)
    assert [i for i, _ in out] == [100, 130, 131]
    assert out[1][1]["content"] == "".join(f"{i}," for i in range(30))


async def test_resuming_after_any_id_gives_the_rest_exactly_once() -> None:
    events = _events()
    log = RunLog("r")
    log.extend(events)
    log.finish()
    expected = "".join(f"{i}," for i in range(30))
    for after in range(-1, len(events)):
        text, ids, ended = "", [], False
        async for message in _stream(log, after):
            if message["event"] == "end":
                ended = True
                continue
            ids.append(int(message["id"]))
            data = json.loads(message["data"])
            if data["type"] == "Delta":
                text += data["content"]
        assert ended
        assert ids == sorted(set(ids)) and (not ids or ids[0] > after) and (not ids or ids[-1] == len(events) - 1)
        already = "".join(e.content for e in events[: after + 1] if isinstance(e, Delta))
        assert already + text == expected


async def test_a_client_follows_a_live_log_at_its_own_pace(autojump_clock) -> None:
    log = RunLog("r")
    got: list[int] = []

    async def client() -> None:
        async for message in _stream(log, -1):
            if message["event"] == "event":
                got.append(int(message["id"]))
                await trio.sleep(1)  # a slow reader

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        for event in _events():
            log.append(event)  # never waits for the client
            await trio.sleep(0.01)
        log.finish()
    assert got[0] == 0 and got[-1] == len(_events()) - 1 and got == sorted(set(got))
    assert len(got) < len(_events())  # it fell behind, so deltas were merged
