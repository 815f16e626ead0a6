"""Extraction: JSON paths and regexes for previous_response, formats for claude_extract."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sluiceway.tools._extract import (
    ExtractError,
    extract_output,
    extract_value,
    find_json,
    parse_path,
)

from sluiceway._errors import SluicewayError

DOC = {"a": {"b": [10, {"c": "deep"}], "n": None, "t": True}, "key with space": "sp", "s": "plain"}


# ---------------------------------------------------------------- finding JSON


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(DOC),
        "  \n" + json.dumps(DOC, indent=2) + "\n",
        "Here you go:\n```json\n" + json.dumps(DOC, indent=2) + "\n```\nAnything else?",
        "Here:\n```\n" + json.dumps(DOC) + "\n```\n",
        "Sure! The result is " + json.dumps(DOC) + " as requested.",
        "Sure [not json] {nor this} and then " + json.dumps(DOC) + ". Done.",
    ],
    ids=["whole", "whole-indented", "json-fence", "bare-fence", "in-prose", "after-junk"],
)
def test_find_json_forms(text: str) -> None:
    assert find_json(text) == DOC


def test_find_json_prefers_json_fence_over_earlier_span() -> None:
    text = 'Note {"x": 1} then:\n```json\n{"y": 2}\n```'
    assert find_json(text) == {"y": 2}


def test_fenced_json_may_hold_backticks() -> None:
    value = {"code": "```py\nx = 1\n```", "n": [1]}
    text = "Here:\n```json\n" + json.dumps(value, indent=2) + "\n```\nDone."
    assert find_json(text) == value
    bare = "Here:\n```\n" + json.dumps(value) + "\n```\n"
    assert find_json(bare) == value
    # a bare fence around non-JSON is skipped; a later span is found
    assert find_json("```\nnot json\n```\nthen [1, 2] ok") == [1, 2]


def test_find_json_errors_quote_the_text() -> None:
    with pytest.raises(ExtractError) as info:
        find_json("no json here at all")
    assert str(info.value) == "no JSON found in the text; text: 'no json here at all'"
    assert isinstance(info.value, ValueError) and isinstance(info.value, SluicewayError)
    assert info.value.text == "no json here at all"
    with pytest.raises(ExtractError, match="the text is empty"):
        find_json("   ")
    with pytest.raises(ExtractError, match=r"the ```json block is not valid JSON"):
        find_json('x\n```json\n{"a": \n```\n')


def test_long_text_is_quoted_truncated() -> None:
    text = "start " + "x" * 5000 + " end"
    with pytest.raises(ExtractError) as info:
        find_json(text)
    message = str(info.value)
    assert len(message) < 400
    assert "'start " in message and " end'" in message and "[4810 characters]" in message


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("expr", "segments"),
    [
        ("$", ()),
        ("", ()),
        ("$.a.b[0]", ("a", "b", 0)),
        ("a.b[0]", ("a", "b", 0)),
        ("a.b[-1].c", ("a", "b", -1, "c")),
        ("$['key with space']", ("key with space",)),
        ('$["q\\"uote"][2]', ('q"uote', 2)),
        ("$.a[ 1 ]", ("a", 1)),
    ],
)
def test_parse_path(expr: str, segments: tuple[Any, ...]) -> None:
    assert parse_path(expr) == segments


@pytest.mark.parametrize("expr", ["$.a[", "$.a[x]", "$..a", "a[0]]"])
def test_parse_path_rejects(expr: str) -> None:
    with pytest.raises(ValueError, match="invalid JSON path"):
        parse_path(expr)


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("$.a.b[0]", "10"),
        ("a.b[1].c", "deep"),
        ("a.b[-1]", '{"c": "deep"}'),
        ("a.n", "null"),
        ("a.t", "true"),
        ("s", "plain"),
        ("$['key with space']", "sp"),
        ("$", json.dumps(DOC)),
    ],
)
def test_extract_value_json(expr: str, value: str) -> None:
    assert extract_value("Result: " + json.dumps(DOC) + " bye", expr) == value


def test_extract_value_json_errors() -> None:
    text = json.dumps(DOC)
    with pytest.raises(ExtractError, match=r"no key 'zz' at \$\.a \(keys: 'b', 'n', 't'\)"):
        extract_value(text, "a.zz")
    with pytest.raises(ExtractError, match=r"\$\.a\.b\[5\] is out of range \(length 2\)"):
        extract_value(text, "a.b[5]")
    with pytest.raises(ExtractError, match=r"\$\.s is a string, not an object"):
        extract_value(text, "s.x")
    with pytest.raises(ExtractError, match=r"\$\.a is an object, not an array"):
        extract_value(text, "a[0]")
    with pytest.raises(ExtractError, match="invalid JSON path"):
        extract_value(text, "$.a[")
    with pytest.raises(ExtractError, match="no JSON found"):
        extract_value("plain words", "$.a")


def test_extract_value_regex() -> None:
    text = "Score: 42/100\nVerdict: pass"
    assert extract_value(text, r"re:Score: (\d+)") == "42"
    assert extract_value(text, r"re:Verdict: \w+") == "Verdict: pass"
    assert extract_value(text, r"re:(?P<v>\d+)/(\d+)") == "42"
    assert extract_value(text, r"re:Score(x)?") == ""
    with pytest.raises(ExtractError) as info:
        extract_value(text, r"re:Grade: (\w)")
    assert str(info.value) == (
        "no match for 'Grade: (\\\\w)'; text: 'Score: 42/100\\nVerdict: pass'"
    )
    with pytest.raises(ExtractError, match="invalid regular expression"):
        extract_value(text, "re:(")


# ---------------------------------------------------------------- claude_extract

SCHEMA = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "n": {"type": "integer"}}, "required": ["name"]}}},
    "required": ["items"],
}


def test_extract_output_json_with_schema() -> None:
    good = 'Here:\n```json\n{"items": [{"name": "a", "n": 1}]}\n```'
    assert extract_output(good, "json", SCHEMA) == {"items": [{"name": "a", "n": 1}]}
    bad = 'Result {"items": [{"name": "a"}, {"name": "b", "n": "two"}]} ok'
    with pytest.raises(ExtractError) as info:
        extract_output(bad, "json", SCHEMA)
    assert str(info.value) == (
        "the JSON does not match the schema at $.items[1].n: 'two' is not of type 'integer'; "
        f"text: {bad!r}"
    )
    with pytest.raises(ExtractError, match=r"at \$: 'items' is a required property"):
        extract_output('{"other": 1}', "json", SCHEMA)
    with pytest.raises(ExtractError, match="the extraction schema is invalid"):
        extract_output('{"a": 1}', "json", {"type": "nonsense"})
    assert extract_output("[1, 2]", "json") == [1, 2]


def test_extract_output_text_markdown_summary() -> None:
    assert extract_output("  hello\n\n", "text") == "hello"
    assert extract_output("\n# Title\n\nBody\n", "markdown") == "# Title\n\nBody"
    assert extract_output("```markdown\n# Title\n\n- a\n```", "markdown") == "# Title\n\n- a"
    assert extract_output("```\n# T\n```", "markdown") == "# T"
    assert extract_output("Sure:\n```md\n# T\nx\n```\nThanks", "markdown") == "# T\nx"
    assert extract_output("```python\nx = 1\n```", "markdown") == "```python\nx = 1\n```"

    text = (
        "# Summary\n\nThe code is sound. It has two bugs!\n"
        "Fix them? Then ship it. Really.\n\nSecond paragraph."
    )
    assert extract_output(text, "summary") == "The code is sound. It has two bugs! Fix them?"
    assert extract_output("One line only", "summary") == "One line only"
    assert extract_output('He said "go." She went. (Fast.) Later.', "summary") == (
        'He said "go." She went. (Fast.)'
    )
    with pytest.raises(ExtractError, match="nothing to summarize"):
        extract_output("  \n ", "summary")
    with pytest.raises(ExtractError, match="unknown format 'yaml'; expected one of json, markdown"):
        extract_output("x", "yaml")


# ---------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text() | st.text(alphabet="`{}[]\n\"\\ ab", max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
containers = st.one_of(
    st.lists(json_values, max_size=4),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
# prose that holds no brackets or backticks (the finder's markers)
prose = st.text(
    alphabet=st.characters(blacklist_characters="{}[]`", blacklist_categories=("Cs",)), max_size=40
)


@settings(max_examples=150, deadline=None)
@given(value=json_values, before=prose, after=prose, indent=st.sampled_from([None, 2]))
def test_any_json_value_round_trips_whole_and_fenced(
    value: Any, before: str, after: str, indent: int | None
) -> None:
    dumped = json.dumps(value, indent=indent)
    assert extract_output(dumped, "json") == value
    fenced = f"{before}\n```json\n{dumped}\n```\n{after}"
    assert extract_output(fenced, "json") == value


@settings(max_examples=150, deadline=None)
@given(value=containers, before=prose, after=prose, ensure_ascii=st.booleans())
def test_any_object_or_array_round_trips_inside_prose(
    value: Any, before: str, after: str, ensure_ascii: bool
) -> None:
    text = f"{before} {json.dumps(value, ensure_ascii=ensure_ascii)} {after}"
    assert extract_output(text, "json") == value
    assert json.loads(extract_value(text, "$")) == value


@settings(max_examples=100, deadline=None)
@given(value=st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=4))
def test_every_key_reachable_by_a_path(value: dict[str, Any]) -> None:
    text = "out: " + json.dumps(value)
    for key, inner in value.items():
        got = extract_value(text, "$[" + json.dumps(key) + "]")
        assert got == (inner if isinstance(inner, str) else json.dumps(inner, ensure_ascii=False))
