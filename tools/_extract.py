"""Pull structured values out of model text: sans-IO and pure.

Two users:

- ``extract_value(text, expr)`` for a ``previous_response`` prompt part's
  ``extract``: a JSON path (``$.a.b[0]``, ``a.b[0]``, ``$``) into JSON found in
  the text, or ``re:PATTERN``.
- ``extract_output(text, format, schema)`` for ``claude_extract``: ``json``
  (validated against a JSON Schema when given), ``markdown``, ``summary`` or
  ``text``.

JSON is found in the text in this order: the whole text; the first fenced
```` ```json ```` block (or a bare ```` ``` ```` block that parses); the first
``{...}`` or ``[...]`` span that parses. Failures raise ``ExtractError``, which
quotes (a truncated piece of) the offending text.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, Literal

import jsonschema

from sluiceway._errors import SluicewayError

__all__ = ("FORMATS", "ExtractError", "extract_output", "extract_value", "find_json", "parse_path")

#: Characters of the offending text an error message quotes.
QUOTE_CHARS: Final = 200
#: Sentences a ``summary`` keeps at most.
SUMMARY_SENTENCES: Final = 3
#: The ``claude_extract`` formats.
FORMATS: Final = ("json", "markdown", "summary", "text")

Format = Literal["json", "markdown", "summary", "text"]

_FENCE_RE: Final = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:\n)?```", re.DOTALL)
_FENCE_OPEN_RE: Final = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n`]*\n", re.MULTILINE)
_SEGMENT_RE: Final = re.compile(
    r"""\.(?P<dot>[^.\[\]]+)        # .key
      | \[\s*(?P<index>-?\d+)\s*\]  # [0]
      | \[\s*(?P<quoted>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*\]  # ['key'] or ["key"]
    """,
    re.VERBOSE,
)
_SENTENCE_END_RE: Final = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")

_MISSING: Final = object()


class ExtractError(SluicewayError, ValueError):
    """A value could not be extracted, or failed validation.

    Attributes:
        text: The (whole) text it was extracted from.
    """

    def __init__(self, message: str, text: str) -> None:
        self.text = text
        self.message = message
        super().__init__(f"{message}; text: {quote(text)}")


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """Return *text* as a repr, truncated in the middle to about *limit* characters."""
    if len(text) <= limit:
        return repr(text)
    half = limit // 2
    return f"{text[:half]!r} ... [{len(text) - 2 * half} characters] ... {text[-half:]!r}"


# --------------------------------------------------------------------------- finding JSON


def find_json(text: str) -> Any:
    """Return the first JSON value found in *text* (see the module docstring).

    Raises:
        ExtractError: no JSON value is found.
    """
    stripped = text.strip()
    if not stripped:
        raise ExtractError("no JSON found: the text is empty", text)
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    # decode from the fence's first line rather than cutting at the next ``` (a JSON
    # string may hold backticks); a bare fence counts only when ``` follows the value
    openings = list(_FENCE_OPEN_RE.finditer(text))
    for fence in openings:
        if fence.group(1).lower() == "json":
            try:
                value, _end = decoder.raw_decode(text, _skip_space(text, fence.end()))
            except ValueError as exc:
                raise ExtractError(f"the ```json block is not valid JSON ({exc})", text) from None
            return value
    for fence in openings:
        if fence.group(1) == "":
            try:
                value, end = decoder.raw_decode(text, _skip_space(text, fence.end()))
            except ValueError:
                continue
            if text[end:].lstrip().startswith("```"):
                return value
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _end = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        return value
    raise ExtractError("no JSON found in the text", text)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# --------------------------------------------------------------------------- JSON paths


def parse_path(expr: str) -> tuple[str | int, ...]:
    """Split a JSON path into keys and indexes: ``$.a["b c"][0]`` -> ``("a", "b c", 0)``.

    ``$`` is optional, and so is the dot before a leading key (``a.b[0]``).

    Raises:
        ValueError: the path is malformed.
    """
    rest = expr.strip()
    if rest.startswith("$"):
        rest = rest[1:]
    elif rest and rest[0] not in ".[":
        rest = "." + rest
    segments: list[str | int] = []
    pos = 0
    while pos < len(rest):
        m = _SEGMENT_RE.match(rest, pos)
        if m is None:
            raise ValueError(f"invalid JSON path {expr!r} at {rest[pos:]!r}")
        if m.group("dot") is not None:
            segments.append(m.group("dot").strip())
        elif m.group("index") is not None:
            segments.append(int(m.group("index")))
        else:
            segments.append(json.loads(_to_double_quoted(m.group("quoted"))))
        pos = m.end()
    return tuple(segments)


def _to_double_quoted(literal: str) -> str:
    if literal.startswith('"'):
        return literal
    body = literal[1:-1].replace("\\'", "'").replace('"', '\\"')
    return f'"{body}"'


def _format_path(segments: tuple[str | int, ...]) -> str:
    out = "$"
    for seg in segments:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif re.fullmatch(r"[A-Za-z_][\w-]*", seg):
            out += f".{seg}"
        else:
            out += f"[{json.dumps(seg)}]"
    return out


def _walk(value: Any, segments: tuple[str | int, ...], text: str) -> Any:
    for depth, seg in enumerate(segments):
        here = _format_path(segments[:depth])
        if isinstance(seg, int):
            if not isinstance(value, list):
                raise ExtractError(f"{here} is {_kind(value)}, not an array: cannot take [{seg}]", text)
            if not -len(value) <= seg < len(value):
                raise ExtractError(f"{here}[{seg}] is out of range (length {len(value)})", text)
            value = value[seg]
        else:
            if not isinstance(value, dict):
                raise ExtractError(f"{here} is {_kind(value)}, not an object: cannot take {seg!r}", text)
            found = value.get(seg, _MISSING)
            if found is _MISSING:
                keys = ", ".join(repr(k) for k in list(value)[:10]) or "none"
                raise ExtractError(f"no key {seg!r} at {here} (keys: {keys})", text)
            value = found
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def extract_value(text: str, expr: str) -> str:
    """Extract one value from *text* for a ``previous_response`` part's ``extract``.

    Args:
        text: The earlier step's output.
        expr: A JSON path (``$.a.b[0]``, ``a.b[0]``, ``$``) into the JSON found in
            *text*, or ``re:PATTERN`` (the first group, or the whole match when
            the pattern has no group).

    Returns:
        The value: strings as they are, anything else as compact JSON.

    Raises:
        ExtractError: no JSON, no such key/index, no regex match, or a bad expression.
    """
    if expr.startswith("re:"):
        try:
            pattern = re.compile(expr[3:])
        except re.error as exc:
            raise ExtractError(f"invalid regular expression {expr[3:]!r}: {exc}", text) from None
        m = pattern.search(text)
        if m is None:
            raise ExtractError(f"no match for {expr[3:]!r}", text)
        if pattern.groups:
            group = m.group(1)
            return "" if group is None else group
        return m.group(0)
    try:
        segments = parse_path(expr)
    except ValueError as exc:
        raise ExtractError(str(exc), text) from None
    return _as_text(_walk(find_json(text), segments, text))


# --------------------------------------------------------------------------- claude_extract


def extract_output(text: str, format: str, schema: dict[str, Any] | None = None) -> Any:
    """Extract ``claude_extract`` output from the streamed *text*.

    Args:
        text: The step's whole text.
        format: ``json`` (the parsed value), ``markdown`` (stripped; a fenced
            markdown block unwrapped), ``summary`` (the first paragraph, at most
            three sentences) or ``text`` (stripped).
        schema: For ``json``: a JSON Schema (Draft 2020-12) the value must satisfy.

    Returns:
        The parsed JSON value for ``json``; a string otherwise.

    Raises:
        ExtractError: no JSON, a schema violation (with its path), an invalid
            schema, an empty summary, or an unknown format.
    """
    if format == "json":
        value = find_json(text)
        if schema is not None:
            _validate(value, schema, text)
        return value
    if format == "markdown":
        return _markdown(text)
    if format == "summary":
        return _summary(text)
    if format == "text":
        return text.strip()
    raise ExtractError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}", text)


def _validate(value: Any, schema: dict[str, Any], text: str) -> None:
    try:
        validator = jsonschema.Draft202012Validator(schema)
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ExtractError(f"the extraction schema is invalid: {exc.message}", text) from None
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = _format_path(tuple(error.absolute_path))
        raise ExtractError(f"the JSON does not match the schema at {where}: {error.message}", text)


def _markdown(text: str) -> str:
    stripped = text.strip()
    whole = _FENCE_RE.fullmatch(stripped)
    if whole is not None and whole.group(1).lower() in {"", "markdown", "md"}:
        return whole.group(2).strip()
    for fence in _FENCE_RE.finditer(stripped):
        if fence.group(1).lower() in {"markdown", "md"}:
            return fence.group(2).strip()
    return stripped


def _summary(text: str) -> str:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", _markdown(text)) if p.strip()]
    # a heading alone ("# Summary") is not the summary
    body = [p for p in paragraphs if not re.fullmatch(r"#+\s.*", p)]
    if not body:
        raise ExtractError("nothing to summarize: the text is empty", text)
    paragraph = " ".join(line.strip() for line in body[0].splitlines())
    for count, end in enumerate(_SENTENCE_END_RE.finditer(paragraph), start=1):
        if count == SUMMARY_SENTENCES:
            return paragraph[: end.end()]
    return paragraph
