"""Provider implementations: anthropic (the real SDK), mock (embedded), replay."""

from typing import Any

from ._mock import MockProvider as MockProvider
from ._replay import Cassette as Cassette
from ._replay import RecordingProvider as RecordingProvider
from ._replay import ReplayProvider as ReplayProvider
from ._replay import load_cassette as load_cassette


def __getattr__(name: str) -> Any:
    # the anthropic SDK takes seconds to import: only when live mode asks for it
    if name == "AnthropicProvider":
        from ._anthropic import AnthropicProvider

        return AnthropicProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
