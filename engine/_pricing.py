"""What a call cost: Claude prices per million tokens, and ``cost_usd``.

Prices are Anthropic's list prices in USD per million tokens (MTok), standard
context, 5-minute cache writes. A model id matches a table entry when it is
the entry itself, or the entry followed by a date (``-20250929``,
``@20250929``) or ``-latest``; anything else is unknown: ``cost_usd`` returns
``None`` and logs a warning once per model name, and never guesses from a
near name. Override or extend the table with ``overrides`` (the spec's
``defaults.pricing``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import attrs

from ._events import Usage

__all__ = ("PRICES", "Pricing", "add_cost", "cost_usd", "find_pricing")

_log = logging.getLogger("sluiceway.pricing")


@attrs.frozen
class Pricing:
    """USD per million tokens for one model."""

    input: float
    """Uncached prompt tokens."""
    output: float
    """Generated tokens (thinking included)."""
    cache_write: float
    """Prompt tokens written to the cache (5-minute TTL)."""
    cache_read: float
    """Prompt tokens read from the cache."""

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> Pricing:
        """Build from ``{input, output, cache_write, cache_read}``; cache prices
        default to 1.25x and 0.1x the input price, Anthropic's multipliers."""
        inp = float(value["input"])
        return cls(
            input=inp,
            output=float(value["output"]),
            cache_write=float(value.get("cache_write", inp * 1.25)),
            cache_read=float(value.get("cache_read", inp * 0.1)),
        )


def _p(inp: float, out: float, write: float, read: float) -> Pricing:
    return Pricing(input=inp, output=out, cache_write=write, cache_read=read)


_OPUS_4_5 = _p(5.0, 25.0, 6.25, 0.50)
_OPUS = _p(15.0, 75.0, 18.75, 1.50)
_SONNET = _p(3.0, 15.0, 3.75, 0.30)
_HAIKU_4_5 = _p(1.0, 5.0, 1.25, 0.10)
_HAIKU_3_5 = _p(0.80, 4.0, 1.0, 0.08)
_HAIKU_3 = _p(0.25, 1.25, 0.30, 0.03)

#: Model id (without date) -> list price.
PRICES: Mapping[str, Pricing] = {
    "claude-opus-4-5": _OPUS_4_5,
    "claude-opus-4-1": _OPUS,
    "claude-opus-4-0": _OPUS,
    "claude-opus-4": _OPUS,
    "claude-sonnet-4-5": _SONNET,
    "claude-sonnet-4-0": _SONNET,
    "claude-sonnet-4": _SONNET,
    "claude-haiku-4-5": _HAIKU_4_5,
    "claude-3-7-sonnet": _SONNET,
    "claude-3-5-sonnet": _SONNET,
    "claude-3-5-haiku": _HAIKU_3_5,
    "claude-3-opus": _OPUS,
    "claude-3-sonnet": _SONNET,
    "claude-3-haiku": _HAIKU_3,
}


#: The embedded mock provider's models (providers/_mock.py): they cost nothing and never warn.
#: Not in ``PRICES``: ``find_pricing`` says they have no list price.
FREE_MODELS: frozenset[str] = frozenset({"claude-mock-1"})

# model names already warned about: warn once per process, not once per call
_warned: set[str] = set()


def find_pricing(model: str, overrides: Mapping[str, Any] | None = None) -> Pricing | None:
    """Return the price of *model* (overrides first, exact id or id + date), or ``None``.

    An override is a ``Pricing``, a mapping with its fields, or any object with
    ``input``, ``output``, ``cache_write`` and ``cache_read`` attributes.
    """
    for table in (overrides or {}), PRICES:
        for key in (model, _strip_suffix(model)):
            if key is not None and key in table:
                return _coerce(table[key])
    return None


def _coerce(value: Any) -> Pricing:
    # our Pricing, a mapping, or any object with the four fields (the spec's Pricing)
    if isinstance(value, Pricing):
        return value
    if isinstance(value, Mapping):
        return Pricing.from_mapping(value)
    return Pricing(
        input=float(value.input),
        output=float(value.output),
        cache_write=float(value.cache_write),
        cache_read=float(value.cache_read),
    )


def _strip_suffix(model: str) -> str | None:
    match = re.search(r"(?:[-@]\d{8}|-latest)$", model)
    return model[: match.start()] if match else None


def cost_usd(
    model: str | None,
    usage: Usage,
    overrides: Mapping[str, Any] | None = None,
) -> float | None:
    """Return what *usage* of *model* cost in USD, or ``None`` for an unknown model.

    An unknown model is logged once (logger ``sluiceway.pricing``, level WARNING).
    The mock models (``FREE_MODELS``) cost 0.0 unless *overrides* price them.
    """
    pricing = find_pricing(model, overrides) if model else None
    if pricing is None and model in FREE_MODELS:
        return 0.0
    if pricing is None:
        name = model or "<none>"
        if name not in _warned:
            _warned.add(name)
            _log.warning("no price known for model %r: cost_usd is null", name)
        return None
    return (
        usage.input_tokens * pricing.input
        + usage.output_tokens * pricing.output
        + usage.cache_creation_input_tokens * pricing.cache_write
        + usage.cache_read_input_tokens * pricing.cache_read
    ) / 1_000_000


def add_cost(total: float | None, more: float | None) -> float | None:
    """*total* + *more*, where ``None`` (a price unknown) makes the sum ``None``."""
    return None if total is None or more is None else total + more
