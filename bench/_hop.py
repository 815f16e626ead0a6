"""5. Hop cost: one event from a step's tee to N handler actors, in µs per event.

The handlers are wired as a step wires them, by the engine's own
``wire_consumers`` (so this measures the channels and outlets a step really
uses); the bench then drives the tee as the step delivers a delta
(``Tee.offer``, awaiting ``Tee.send_from`` only when an outlet is full). Each N
runs with no-op handlers, and again, alternating, with handlers that also have
a no-op ``handle_nowait`` (taken in the sender's task while the actor is parked).
"""

from __future__ import annotations

import gc
import statistics
import time
from functools import partial
from typing import Any

import trio
from sluiceway.engine import Delta, HandlerConsumer, RunContext
from sluiceway.engine._actors import handler_actor
from sluiceway.engine._tee import Tee
from sluiceway.engine._wiring import wire_consumers

from ._common import NoOpDirectHandler, NoOpHandler
from ._settings import Sizes

#: The numbers of handlers measured.
FAN_OUTS = (1, 2, 4)


def _fail(error: Any) -> None:
    raise error


async def hop(n_handlers: int, events: int, direct: bool = False) -> float:
    """µs per event through the tee to *n_handlers* no-op handlers (with ``handle_nowait`` if *direct*)."""
    handler = NoOpDirectHandler if direct else NoOpHandler
    consumers = [HandlerConsumer(handler(), name="noop") for _ in range(n_handlers)]
    wiring = await wire_consumers(consumers, RunContext.start("bench"))
    assert not wiring.given and wiring.run_outlet is None  # handlers only: every outlet is an actor's
    tee = Tee(wiring.outlets)
    batch = [
        Delta(run_id="bench", step="bench", attempt=1, seq=i, at=0.0, content="tok ", index=0) for i in range(1000)
    ]
    async with trio.open_nursery() as nursery:
        for actor in wiring.actors:
            nursery.start_soon(
                partial(handler_actor, actor.receive, actor.handler, actor.outlet, name=actor.name, fail=_fail)
            )
        offer, send_from = tee.offer, tee.send_from
        start = time.perf_counter()
        for i in range(events):  # as the step delivers a delta: offer, awaiting only when an outlet is full
            event = batch[i % 1000]
            rest = offer(event)
            if rest >= 0:
                await send_from(event, rest)
        wiring.close()
    return (time.perf_counter() - start) / events * 1e6


def measure(sizes: Sizes) -> dict[str, Any]:
    """``results["hop"]``: the median µs per event of each N, both kinds of handler."""
    runs: dict[bool, dict[int, list[float]]] = {False: {n: [] for n in FAN_OUTS}, True: {n: [] for n in FAN_OUTS}}
    for _ in range(max(sizes.reps, 5) if sizes.reps > 1 else 1):
        for direct, by_n in runs.items():  # alternating: both kinds see the same machine
            for n in by_n:
                gc.collect()
                by_n[n].append(trio.run(hop, n, sizes.hop_events, direct))
    return {
        "events": sizes.hop_events,
        "us_per_event": {str(n): statistics.median(v) for n, v in runs[False].items()},
        "all": {str(n): v for n, v in runs[False].items()},
        "us_per_event_direct": {str(n): statistics.median(v) for n, v in runs[True].items()},
        "all_direct": {str(n): v for n, v in runs[True].items()},
    }
