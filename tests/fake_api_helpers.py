"""Helpers for tests that drive the live provider against the fake Messages API."""

from __future__ import annotations

from typing import Any

from sluiceway.engine._protocols import ModelRequest
from sluiceway.engine._provider_events import ProviderEvent, TextChunk
from sluiceway.providers._anthropic import AnthropicProvider

from sluiceway.testing.fake_api import FakeAPI


def request(model: str, *, step: str = "draft", **kw: Any) -> ModelRequest:
    """A one-message request for *model* (a ``fake:`` scenario)."""
    return ModelRequest(step=step, model=model, messages=({"role": "user", "content": "hi"},), **kw)


def provider(api: FakeAPI, **kw: Any) -> AnthropicProvider:
    """A live provider pointed at *api* with a dummy key."""
    return AnthropicProvider(api_key="sk-fake", base_url=api.url, **kw)


async def collect(api: FakeAPI, model: str, **kw: Any) -> list[ProviderEvent]:
    """Stream one call and return every event; closes the provider."""
    p = provider(api)
    try:
        async with p.stream(request(model, **kw)) as events:
            return [event async for event in events]
    finally:
        await p.aclose()


def text_of(events: list[ProviderEvent]) -> str:
    """Concatenate the text deltas."""
    return "".join(e.text for e in events if isinstance(e, TextChunk))
