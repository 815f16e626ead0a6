"""The condition language: parse errors, truth table, no eval."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway._conditions import ConditionError, parse_condition, referenced_steps

VALUES = {
    "steps": {
        "draft": {"text": "The plan is APPROVED by review", "output": {"score": 7, "tags": ["a", "b"]}},
        "empty": {"text": "", "output": None},
    },
    "vars": {"flag": True, "off": False, "mode": "fast", "count": 3, "no": "false"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("steps.draft.text contains 'APPROVED'", True),
        ("steps.draft.text contains 'rejected'", False),
        ('steps.draft.text contains "plan is"', True),
        ("steps.draft.text not contains 'rejected'", True),
        ("vars.flag", True),
        ("vars.off", False),
        ("not vars.off", True),
        ("not not vars.flag", True),
        ("vars.missing", False),
        ("not vars.missing", True),
        ("vars.mode == 'fast'", True),
        ("vars.mode != 'fast'", False),
        ("vars.count == 3", True),
        ("vars.count == 3.0", True),
        ("vars.count != 4", True),
        ("vars.no", False),  # the string "false" from --set is false
        ("steps.empty.text", False),
        ("steps.skipped.text", False),
        ("steps.skipped.text contains 'x'", False),
        ("steps.draft.output.score == 7", True),
        ("steps.draft.output.tags contains 'b'", True),
        ("steps.draft.output.tags.1 == 'b'", True),
        ("vars.flag and vars.off", False),
        ("vars.flag or vars.off", True),
        ("vars.off or vars.missing or vars.mode == 'fast'", True),
        ("not (vars.flag and vars.off)", True),
        ("vars.missing == null", True),
        ("vars.flag == true", True),
        ("vars.off == false", True),
        ("steps.draft.text contains 'it\\'s'", False),
    ],
)
def test_truth_table(source: str, expected: bool) -> None:
    assert parse_condition(source).evaluate(VALUES) is expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "empty condition"),
        ("vars.flag ==", "unexpected end"),
        ("__import__('os').system('x')", "cannot read"),
        ("os.system", "unknown name 'os'"),
        ("APPROVED", "unknown name 'APPROVED'"),
        ("(vars.flag", "unexpected end"),
        ("vars.flag vars.off", "unexpected 'vars.off'"),
        ("vars.a == 'x' extra", "unexpected 'extra'"),
        ("steps.a.text contains", "unexpected end"),
    ],
)
def test_malformed_conditions_are_spec_errors(source: str, message: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition(source)
    assert message in str(info.value)
    assert repr(source) in str(info.value)


def test_referenced_steps() -> None:
    assert referenced_steps("steps.a.text contains 'x' and not steps.b-2.output") == ["a", "b-2"]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30), st.text(max_size=8))
def test_contains_matches_python_substring(text: str, needle: str) -> None:
    escaped = needle.replace("\\", "\\\\").replace("'", "\\'")
    condition = parse_condition(f"steps.s.text contains '{escaped}'")
    assert condition.evaluate({"steps": {"s": {"text": text}}, "vars": {}}) is (needle in text)
