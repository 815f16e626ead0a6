"""claude_smart presets and how explicit options override them."""

from __future__ import annotations

import typing

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.specs import ClaudeOptions, ClaudeSmartStep
from sluiceway.specs._presets import PRESETS, apply_preset, merge_options
from sluiceway.tools import ALL_TOOLS, Toolbox

from sluiceway._errors import SpecError


def test_every_step_preset_exists() -> None:
    hint = typing.get_type_hints(ClaudeSmartStep)["preset"]
    assert set(typing.get_args(hint)) == set(PRESETS)


def test_documented_values() -> None:
    dev, prod, ana, chat = (PRESETS[n] for n in ("development", "production", "analysis", "chat"))
    assert (dev.max_turns, dev.temperature, dev.allowed_tools) == (
        10, 0.2, ("Read", "Write", "Edit", "Glob", "Grep", "LS"),
    )
    assert (prod.max_turns, prod.temperature, prod.allowed_tools) == (5, 0.0, ("Read", "Glob", "Grep", "LS"))
    assert (ana.max_turns, ana.allowed_tools) == (8, ("Read", "Glob", "Grep", "LS"))
    assert (chat.max_turns, chat.allowed_tools) == (1, ())
    for options in PRESETS.values():
        assert options.model is None and options.system_prompt is None
        assert options.disallowed_tools is None
        assert set(options.allowed_tools or ()) <= set(ALL_TOOLS)


@pytest.mark.parametrize(
    ("preset", "offered"),
    [
        ("development", ("Read", "Write", "Edit", "Glob", "Grep", "LS")),
        ("production", ("Read", "Glob", "Grep", "LS")),
        ("analysis", ("Read", "Glob", "Grep", "LS")),
        ("chat", ()),
    ],
)
def test_presets_offer_the_documented_tools(tmp_path, preset: str, offered: tuple[str, ...]) -> None:
    options = apply_preset(preset, ClaudeOptions())
    box = Toolbox(tmp_path, allowed=options.allowed_tools, disallowed=options.disallowed_tools)
    assert box.tools == offered
    assert "Bash" not in box.tools


def test_explicit_options_override() -> None:
    explicit = ClaudeOptions(max_turns=3, model="claude-haiku-4-5", allowed_tools=("Read",))
    got = apply_preset("development", explicit)
    assert got == attrs.evolve(
        PRESETS["development"], max_turns=3, model="claude-haiku-4-5", allowed_tools=("Read",)
    )
    # an explicit tool list replaces the preset's as a whole
    opts = apply_preset("production", ClaudeOptions(allowed_tools=("Read", "Write")))
    assert Toolbox(".", allowed=opts.allowed_tools, disallowed=opts.disallowed_tools).tools == (
        "Read", "Write",
    )
    # an explicit empty tuple and 0.0 are set values, not "unset"
    assert apply_preset("development", ClaudeOptions(allowed_tools=())).allowed_tools == ()
    assert apply_preset("chat", ClaudeOptions(temperature=0.0)).temperature == 0.0
    # nothing explicit: the preset as is
    assert apply_preset("production", ClaudeOptions()) == PRESETS["production"]


def test_unknown_preset() -> None:
    with pytest.raises(SpecError, match="unknown preset 'turbo'; expected one of development, production"):
        apply_preset("turbo", ClaudeOptions())


option_values = st.fixed_dictionaries(
    {},
    optional={
        "max_turns": st.integers(1, 50),
        "allowed_tools": st.lists(st.sampled_from(ALL_TOOLS), unique=True).map(tuple),
        "disallowed_tools": st.lists(st.sampled_from(ALL_TOOLS), unique=True).map(tuple),
        "model": st.sampled_from(["a", "b"]),
        "temperature": st.floats(0, 1),
        "max_tokens": st.integers(1, 10_000),
        "system_prompt": st.text(max_size=5),
        "timeout_ms": st.integers(1, 10**6),
    },
)


@settings(max_examples=100, deadline=None)
@given(preset=st.sampled_from(sorted(PRESETS)), values=option_values)
def test_merge_is_field_by_field(preset: str, values: dict[str, object]) -> None:
    got = apply_preset(preset, ClaudeOptions(**values))
    for field in attrs.fields(ClaudeOptions):
        expected = values.get(field.name, getattr(PRESETS[preset], field.name))
        assert getattr(got, field.name) == expected
    assert merge_options(got, ClaudeOptions()) == got
