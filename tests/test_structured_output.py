"""Typed output: a forced output tool whose input streams as ``PartialOutput`` events, then validated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import quote

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.engine import PartialOutput, ToolResult, ToolUse
from sluiceway.specs import loads
from sluiceway.tools import OutputValidationError, PartialJson

import sluiceway


def extends(old: Any, new: Any) -> bool:
    """True when *new* is *old* grown: longer strings, more keys or items, equal scalars."""
    if isinstance(old, dict):
        return (
            isinstance(new, dict) and list(old) == list(new)[: len(old)]
            and all(extends(v, new[k]) for k, v in old.items())
        )
    if isinstance(old, list):
        return isinstance(new, list) and len(old) <= len(new) and all(map(extends, old, new))
    if isinstance(old, str):
        return isinstance(new, str) and new.startswith(old)
    return type(old) is type(new) and old == new


_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)
_DOCUMENTS = st.dictionaries(st.text(max_size=6), _VALUES, max_size=5)


@settings(max_examples=300, deadline=None)
@given(_DOCUMENTS, st.booleans(), st.sampled_from([None, 1, 2]), st.data())
def test_partial_values_grow_monotonically_and_end_at_the_document(
    document: dict[str, Any], ascii_only: bool, indent: int | None, data: st.DataObject
) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only, indent=indent)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=40)))
    bounds = [0, *(c for c in cuts if c < len(text)), len(text)]
    parser = PartialJson()
    last: Any = None
    for a, b in zip(bounds, bounds[1:], strict=False):
        value = parser.feed(text[a:b])
        if value is None:
            continue
        assert last is None or extends(last, value), (last, value, text[:b])
        last = value
    assert last == json.loads(text)


class Chapter(TypedDict):
    title: str
    body: str


@attrs.frozen
class Book:
    title: str
    chapters: list[Chapter]
    pages: int


def _book(chapters: int) -> dict[str, Any]:
    return {
        "title": "A long story",
        "chapters": [{"title": f"Chapter {i}", "body": f"It was night number {i}. " * 8} for i in range(chapters)],
        "pages": 321,
    }


async def test_a_2000_token_output_streams_growing_partial_values_to_the_validated_output() -> None:
    events: list[Any] = []
    seen: list[bool] = []

    def check(value: Any, *, partial: bool) -> Any:
        seen.append(partial)
        if not partial and value.pages < 1:
            raise ValueError("a book has pages")
        return value

    book = _book(40)
    raw = json.dumps(book)
    response = await sluiceway.invoke(
        "write a book", output_type=Book, output_validators=[check], on_event=events.append,
        mock={"tool_calls": [{"name": "final_output", "input": book}], "chunk_size": 4},
    )
    assert len(raw) // 4 >= 2000  # about as many input pieces (tokens) as asked
    partials = [e for e in events if isinstance(e, PartialOutput)]
    assert len(partials) > 1000 and partials[-1].complete is True
    assert all(p.complete is False for p in partials[:-1])
    calls = [e.tool_use_id for e in events if isinstance(e, ToolUse)]
    assert len(calls) == 1 and calls[0] and {p.tool_use_id for p in partials} == {calls[0]}  # every partial names its call
    for old, new in zip(partials[:-2], partials[1:-1], strict=True):
        assert extends(old.value, new.value)
    assert partials[-2].value == book  # the last partial value is the whole input
    assert response.output == partials[-1].value == Book("A long story", book["chapters"], 321)
    assert seen[-1] is False and all(seen[:-1]) and len(seen) == len(partials)
    assert ToolResult not in {type(e) for e in events}  # the output tool ends the loop


async def test_debounce_limits_the_partial_events(autojump_clock: Any) -> None:
    events: list[Any] = []
    book = _book(3)
    response = await sluiceway.invoke(
        "b", output_type=Book, output_debounce=0.5, on_event=events.append,
        mock={"tool_calls": [{"name": "final_output", "input": book}], "chunk_size": 4, "delay_ms": 125},
    )
    partials = [e for e in events if isinstance(e, PartialOutput)]
    assert 3 <= len(partials) <= len(json.dumps(book)) // 4 * 125 // 500 + 2
    gaps = [b.at - a.at for a, b in zip(partials[:-2], partials[1:-1], strict=True)]
    # pieces every 0.125 s (exact in binary): a changed value exactly 0.5 s after the last partial is sent
    assert all(g >= 0.5 for g in gaps) and min(gaps) == 0.5, gaps
    assert response.output.pages == 321 and partials[-1].complete


async def test_an_invalid_final_value_fails_unless_the_step_allows_a_retry() -> None:
    bad = {"title": "x", "chapters": [], "pages": "many"}
    with pytest.raises(OutputValidationError, match=r"expected an integer.*pages"):
        await sluiceway.invoke(
            "b", output_type=Book, mock={"tool_calls": [{"name": "final_output", "input": bad}]}
        )
    events: list[Any] = []
    good = {**bad, "pages": 3}
    response = await sluiceway.invoke(
        "b", output_type=Book, output_retries=1, on_event=events.append,
        mock={"turns": [
            {"tool_calls": [{"name": "final_output", "input": bad}]},
            {"tool_calls": [{"name": "final_output", "input": good}]},
        ]},
    )
    assert response.output == Book("x", [], 3)
    sent_back = [e for e in events if isinstance(e, ToolResult)]
    assert len(sent_back) == 1 and sent_back[0].is_error and "pages" in sent_back[0].content


async def test_a_json_schema_output_type() -> None:
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    response = await sluiceway.invoke(
        "n?", output_type=schema, mock={"tool_calls": [{"name": "final_output", "input": {"n": 3}}]}
    )
    assert response.output == {"n": 3}
    with pytest.raises(OutputValidationError, match="'x' is not of type 'integer'"):
        await sluiceway.invoke(
            "n?", output_type=schema, mock={"tool_calls": [{"name": "final_output", "input": {"n": "x"}}]}
        )


EXTRACT = """
name: ex
steps:
  - name: data
    type: claude_extract
    prompt: give json
    extraction_config:
      format: json
      schema: {type: object, required: [n], properties: {n: {type: integer}}}
    claude_options: {model: MODEL}
    MOCK
"""


async def test_claude_extract_with_a_schema_uses_the_output_tool_in_mock_mode(tmp_path: Path) -> None:
    spec = EXTRACT.replace("MODEL", "m").replace(
        "MOCK", 'mock: {tool_calls: [{name: final_output, input: {n: 41}}], chunk_size: 2}'
    )
    events: list[Any] = []
    result = await sluiceway.run(loads(spec), output_dir=tmp_path, handlers=[], on_event=events.append)
    assert result.status == "ok", result.error
    assert result.steps["data"].output == {"n": 41}
    partials = [e.value for e in events if isinstance(e, PartialOutput)]
    assert partials[-1] == {"n": 41} and partials[0] != partials[-1]


async def test_claude_extract_with_a_schema_in_live_mode(
    tmp_path: Path, fake_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.reset()  # requests_seen: this test's requests only
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    model = "fake:tool_loop?pieces=6&input=" + quote(json.dumps({"n": 12345}))
    events: list[Any] = []
    result = await sluiceway.run(
        loads(EXTRACT.replace("MODEL", f'"{model}"').replace("MOCK", "")), mode="live", output_dir=tmp_path,
        handlers=[], on_event=events.append,
    )
    assert result.status == "ok", result.error
    assert result.steps["data"].output == {"n": 12345}
    body = fake_api.requests_seen[0]["body"]
    assert body["tool_choice"] == {"type": "tool", "name": "final_output"}
    assert [e.complete for e in events if isinstance(e, PartialOutput)][-1] is True
    bad = "fake:tool_loop?input=" + quote(json.dumps({"n": "many"}))
    result = await sluiceway.run(
        loads(EXTRACT.replace("MODEL", f'"{bad}"').replace("MOCK", "")), mode="live", output_dir=tmp_path,
        handlers=[],
    )
    assert result.status == "failed" and "'many' is not of type 'integer'" in str(result.error)


async def test_output_stream_sends_each_new_value_once_the_debounce_has_passed(autojump_clock: Any) -> None:
    """``OutputStream`` directly: each changed value as ``PartialOutput(complete=False)`` naming its
    call, and with a debounce, a value exactly ``debounce`` seconds after the last sent one is sent."""
    import trio
    from sluiceway.engine._output import OutputStream
    from sluiceway.tools._output import OutputSpec

    sent: list[Any] = []

    async def emit(cls: Any, **fields: Any) -> None:  # as the step does, without the envelope's counters
        sent.append(cls(run_id="r", step="s", **fields))

    stream = OutputStream(OutputSpec.of({"type": "object"}, debounce=0.5), emit)
    await stream.feed("tu_1", '{"a": "x')
    await trio.sleep(0.25)
    await stream.feed("tu_1", "y")  # within the debounce: not sent
    await trio.sleep(0.25)
    await stream.feed("tu_1", 'z"}')  # 0.5 s after the last one sent
    assert sent == [
        PartialOutput(run_id="r", step="s", value={"a": "x"}, complete=False, tool_use_id="tu_1"),
        PartialOutput(run_id="r", step="s", value={"a": "xyz"}, complete=False, tool_use_id="tu_1"),
    ]
    assert all(event.complete is False for event in sent)
