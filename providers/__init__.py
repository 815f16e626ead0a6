"""Provider implementations: anthropic (the real SDK), mock (embedded), replay."""

from typing import TYPE_CHECKING, Any

from ._mock import MockProvider as MockProvider
from ._replay import Cassette as Cassette
from ._replay import RecordingProvider as RecordingProvider
from ._replay import ReplayProvider as ReplayProvider
from ._replay import load_cassette as load_cassette

if TYPE_CHECKING:
    from ._anthropic import AnthropicProvider as AnthropicProvider
    from ._anthropic import AnthropicStatistics as AnthropicStatistics
    from ._fastbody import FastPathWarning as FastPathWarning

# Loaded on first access: the anthropic SDK takes seconds to import, only live mode needs it;
# the fast path's module imports the HTTP stack.
_LAZY = {
    "AnthropicProvider": "._anthropic",
    "AnthropicStatistics": "._anthropic",
    "FastPathWarning": "._fastbody",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
