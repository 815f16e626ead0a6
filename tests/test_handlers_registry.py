"""Building handlers by name and dotted path through the registry."""

from __future__ import annotations

import pytest
from handler_helpers import KwargsHandler, make_context
from sluiceway.handlers import (
    BufferHandler,
    CallbackHandler,
    ConsoleHandler,
    DebugHandler,
    FileHandler,
    OtelHandler,
    SimpleHandler,
)

from sluiceway._registry import (
    BUILTIN_HANDLERS,
    BUILTIN_PROVIDERS,
    RegistryError,
    build_handlers,
    resolve_handler,
    resolve_provider,
)


def context_for(ref):
    return make_context(name=ref)


def test_every_builtin_name_resolves_to_its_class():
    assert {name: resolve_handler(name) for name in BUILTIN_HANDLERS} == {
        "simple": SimpleHandler,
        "console": ConsoleHandler,
        "debug": DebugHandler,
        "file": FileHandler,
        "buffer": BufferHandler,
        "callback": CallbackHandler,
        "otel": OtelHandler,
    }
    assert {name: cls.policy for name, cls in zip(BUILTIN_HANDLERS, map(resolve_handler, BUILTIN_HANDLERS), strict=True)} == {
        "simple": "coalesce",
        "console": "coalesce",
        "debug": "block",
        "file": "block",
        "buffer": "block",
        "callback": "block",
        "otel": "block",
    }


def test_every_builtin_provider_name_resolves_to_its_class():
    # the registry names its built-ins by import path (lazy imports): a renamed class fails here
    from sluiceway import providers

    assert {name: resolve_provider(name) for name in BUILTIN_PROVIDERS} == {
        "mock": providers.MockProvider,
        "claude": providers.AnthropicProvider,
        "anthropic": providers.AnthropicProvider,
        "replay": providers.ReplayProvider,
    }


def test_options_are_shared_out_by_declaration(tmp_path):
    simple, buffer = build_handlers(
        ["simple", "buffer"], {"show_timestamps": False, "max_size": 3}, context_for
    )
    assert simple.options == SimpleHandler.Options(show_timestamps=False)
    assert buffer.options == BufferHandler.Options(max_size=3)
    assert simple.context.name == "simple" and buffer.context.name == "buffer"


def test_unknown_option_is_rejected_naming_the_known_ones():
    with pytest.raises(RegistryError) as info:
        build_handlers(["simple"], {"bogus": 1}, context_for)
    assert str(info.value) == (
        "unknown stream_handler_opts 'bogus' for simple; "
        "known: show_timestamps, show_tool_results, show_tool_use"
    )


def test_custom_class_by_dotted_path_gets_keyword_options():
    (handler,) = build_handlers(["handler_helpers.KwargsHandler"], {"channel": "#ops"}, context_for)
    assert isinstance(handler, KwargsHandler)
    assert handler.opts == {"channel": "#ops"}


def test_fresh_instances_every_build():
    first = build_handlers(["buffer"], {}, context_for)[0]
    second = build_handlers(["buffer"], {}, context_for)[0]
    assert first is not second


def test_unknown_name_is_an_error():
    with pytest.raises(RegistryError, match="unknown stream handler 'fancy'"):
        build_handlers(["fancy"], {}, context_for)
