"""The bench's sizes, and the settings a child process runs with (sent as one JSON document).

A child gets one argument, ``--child <json>``: the settings' fields plus ``kind``
(which benchmark). ``child_json`` writes it, ``from_child_json`` reads it back
into the same frozen class, so a field added on one side and not the other
fails at once instead of shifting a positional argument.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final, Literal

import attrs


@attrs.frozen
class Sizes:
    """How much each benchmark runs (``results.json`` keeps them as ``sizes``)."""

    reps: int
    """Repetitions of the throughput variants (each repetition runs them all, in turn)."""
    conc_reps: int
    """Runs of the documented 1,000-stream set-up (the variants run once each)."""
    deltas: int
    """Deltas in the throughput stream."""
    ttft_reps: int
    """Small calls per variant for time to first token and CPU per call."""
    streams: int
    """Concurrent streams in the concurrency runs."""
    rate: int
    """Deltas per second per stream, paced by the server."""
    seconds: float
    """How long each stream runs (``rate * seconds`` deltas)."""
    ramp: float
    """The streams start at uniformly random times within this many seconds."""
    bp_deltas: int
    """Deltas in each backpressure run."""
    hop_events: int
    """Events through the tee per hop measurement."""

    def as_dict(self) -> dict[str, Any]:
        """The sizes as ``results.json`` keeps them."""
        return attrs.asdict(self)


#: Everything, as the README's table reports it (~3 minutes on 2 cores).
FULL: Final = Sizes(
    reps=7,
    conc_reps=5,
    deltas=20_000,
    ttft_reps=40,
    streams=1000,
    rate=20,
    seconds=15.0,
    ramp=1.0,
    bp_deltas=1_000_000,
    hop_events=100_000,
)
#: Tiny sizes: a smoke run (tests/test_bench_smoke.py); its figures mean nothing.
QUICK: Final = Sizes(
    reps=1,
    conc_reps=1,
    deltas=300,
    ttft_reps=3,
    streams=10,
    rate=20,
    seconds=0.3,
    ramp=0.05,
    bp_deltas=3_000,
    hop_events=2_000,
)


@attrs.frozen
class ConcurrencySettings:
    """One concurrency run: *streams* steps at *rate* deltas/s for *seconds*, arriving over *ramp* s."""

    kind: ClassVar[str] = "concurrency"
    url: str
    """The fake server's base URL."""
    streams: int
    rate: int
    seconds: float
    ramp: float = 1.0
    gc_mode: Literal["tuned", "default"] = "tuned"
    """``tuned``: ``sluiceway.tune_gc()`` after the warm-up stream, as docs/python_api.md
    recommends; ``default``: CPython's settings."""
    max_starting: int | None | Literal["default"] = "default"
    """The provider's ``max_starting`` (``None``: no limit; ``"default"``: its default)."""
    handler: Literal["direct", "actor"] = "direct"
    """``direct``: the lag recorder has ``handle_nowait`` (deltas reach it in the step's task);
    ``actor``: it has not (every delta wakes its actor)."""
    shape: Literal["steps", "group"] = "steps"
    """``steps``: independent ``stream_step``s, a recorder each; ``group``: the sub-steps of one
    ``stream_group`` (as ``parallel_claude`` runs them), whose one handler hands each event to
    its stream's recorder."""


@attrs.frozen
class BackpressureSettings:
    """One backpressure run: *deltas* text deltas into a handler 100x slower, under *policy*."""

    kind: ClassVar[str] = "backpressure"
    policy: Literal["block", "coalesce"]
    deltas: int


ChildSettings = ConcurrencySettings | BackpressureSettings

_KINDS: Final[dict[str, type[ConcurrencySettings] | type[BackpressureSettings]]] = {
    cls.kind: cls for cls in (ConcurrencySettings, BackpressureSettings)
}


def child_json(settings: ChildSettings) -> str:
    """*settings* as the one JSON argument of a child process."""
    return json.dumps({"kind": settings.kind, **attrs.asdict(settings)})


def from_child_json(text: str) -> ChildSettings:
    """The settings a child was started with (unknown kinds and fields raise)."""
    data: dict[str, Any] = json.loads(text)
    kind = data.pop("kind")
    try:
        cls = _KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown bench child {kind!r}") from None
    return cls(**data)
