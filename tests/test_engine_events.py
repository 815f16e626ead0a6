"""The hot-path event builders build exactly what the events' own ``__init__`` builds."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sluiceway.engine._events import (
    Delta,
    ThinkingDelta,
    ToolInputDelta,
    _builder,
    new_delta,
    new_thinking_delta,
    new_tool_input_delta,
)

_text = st.text(max_size=20)
_envelope = {
    "run_id": _text,
    "step": _text,
    "attempt": st.integers(1, 10),
    "seq": st.integers(0, 10**9),
    "at": st.floats(0, 1e6),
    "index": st.integers(0, 100),
}
_BUILDERS = {
    Delta: (new_delta, {**_envelope, "content": _text}),
    ThinkingDelta: (new_thinking_delta, {**_envelope, "content": _text}),
    ToolInputDelta: (new_tool_input_delta, {**_envelope, "tool_use_id": _text, "partial_json": _text}),
}


@pytest.mark.parametrize("cls", list(_BUILDERS), ids=lambda c: c.__name__)
@given(data=st.data())
def test_a_builder_builds_the_same_frozen_value_as_init(cls, data):
    build, fields = _BUILDERS[cls]
    values = data.draw(st.fixed_dictionaries(fields))
    order = build.__code__.co_varnames[: build.__code__.co_argcount]
    built = build(*(values[name] for name in order))
    expected = cls(**values)
    assert type(built) is cls
    assert built == expected and hash(built) == hash(expected) and repr(built) == repr(expected)
    assert attrs.asdict(built) == attrs.asdict(expected)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.seq = 0  # type: ignore[misc]


def test_a_builder_must_name_every_field():
    with pytest.raises(TypeError, match="Delta has fields"):
        _builder(Delta, ("run_id", "step", "content"))
