"""Read YAML text into plain data plus a map of where every value came from.

We compose PyYAML's node tree (which keeps line/column marks) and build the
plain data from it ourselves, so every field path has a position for errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import attrs
import yaml

from .._errors import SpecError, SpecIssue

__all__ = (
    "MAX_SPEC_BYTES",
    "Located",
    "Locator",
    "Path",
    "format_path",
    "parse_yaml",
    "read_spec_bytes",
)

#: Specs larger than this are refused: a pipeline spec is a page, not a data set.
MAX_SPEC_BYTES: Final = 5 * 1024 * 1024
#: Most values a spec may hold, or expand to through YAML aliases ("billion laughs").
MAX_SPEC_VALUES: Final = 200_000
#: Deepest nesting of mappings and lists: a real spec nests a few levels; PyYAML's
#: composer recurses per level, so a deep file would otherwise end in RecursionError.
MAX_SPEC_DEPTH: Final = 64

Path = tuple[str | int, ...]


def format_path(path: Iterable[str | int]) -> str:
    """``("steps", 2, "stream_handler_opts", "max_size")`` -> ``steps[2].stream_handler_opts.max_size``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@attrs.frozen
class Located:
    """Where one value (and its key, for mapping entries) starts; 1-based."""

    line: int
    column: int
    key_line: int | None = None
    key_column: int | None = None


@attrs.define
class Locator:
    """Field path -> position; moves along with legacy keys that normalization lifts."""

    file: str
    marks: dict[Path, Located] = attrs.field(factory=dict)

    def position(self, path: Path, *, key: bool = False) -> tuple[int | None, int | None]:
        """The line/column of *path* (its key when *key*), or of its nearest located parent."""
        probe = tuple(path)
        while True:
            located = self.marks.get(probe)
            if located is not None:
                if key and probe == tuple(path) and located.key_line is not None:
                    return located.key_line, located.key_column
                return located.line, located.column
            if not probe:
                return None, None
            probe = probe[:-1]

    def issue(self, path: Path, message: str, *, key: bool = False) -> SpecIssue:
        """A SpecIssue at *path*."""
        line, column = self.position(path, key=key)
        return SpecIssue(self.file, line, column, format_path(path), message)

    def move(self, old: Path, new: Path) -> None:
        """Re-key every mark under *old* to live under *new*."""
        n = len(old)
        for path in [p for p in self.marks if p[:n] == old]:
            self.marks[new + path[n:]] = self.marks.pop(path)

    def rebase(self, prefix: Path) -> None:
        """Drop *prefix* (e.g. ``("workflow",)``) from every path below it."""
        n = len(prefix)
        self.marks = {p[n:]: m for p, m in self.marks.items() if p[:n] == prefix}


def read_spec_bytes(data: bytes, file: str) -> str:
    """Decode a spec file's bytes, refusing huge, non-UTF-8 and empty files."""
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(
            [
                SpecIssue(
                    file,
                    1,
                    1,
                    "",
                    f"file is {len(data)} bytes; the limit is {MAX_SPEC_BYTES} (5 MiB)",
                )
            ]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(
            [
                SpecIssue(
                    file,
                    line,
                    column,
                    "",
                    f"file is not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded",
                )
            ]
        ) from None
    return text.removeprefix("\ufeff")


def _too_big(file: str, mark: Any, depth: int, nodes: int) -> SpecError | None:
    if depth > MAX_SPEC_DEPTH:
        message = f"nested more than {MAX_SPEC_DEPTH} levels deep"
    elif nodes > MAX_SPEC_VALUES:
        message = f"the spec has more than {MAX_SPEC_VALUES} values; a spec is a page, not a data set"
    else:
        return None
    return SpecError([SpecIssue(file, mark.line + 1, mark.column + 1, "", message)])


def _check_size_fast(text: str, file: str) -> None:
    """Refuse a too deep or too large document from libyaml's events, before composing it.

    PyYAML's pure-Python composer (which keeps the marks we need) is slow on a
    huge file; libyaml's parser walks it many times faster. Syntax errors are
    left to the composer, which reports them with their context.
    """
    if not getattr(yaml, "__with_libyaml__", False):
        return  # _BoundedLoader checks the same while composing
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                nodes += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                nodes += 1
            else:
                continue
            if (error := _too_big(file, event.start_mark, depth, nodes)) is not None:
                raise error
    except yaml.YAMLError:
        return


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing too deep or too many nodes while it composes them."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.nodes += 1
        self.depth += 1
        try:
            mark = self.peek_event().start_mark
            if (error := _too_big(self.file, mark, self.depth, self.nodes)) is not None:
                raise error
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _reader_issue(exc: yaml.reader.ReaderError, text: str, file: str) -> SpecIssue:
    """A character YAML cannot read (NUL, other control characters), at its line and column."""
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return SpecIssue(file, line, column, "", f"character U+{ord(char):04X} is not allowed in YAML")


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, file: str) -> None:
        self.loader_cls = yaml.SafeLoader
        self.locator = Locator(file)
        self.issues: list[SpecIssue] = []
        self.count = 0
        self.active: set[int] = set()

    def fatal(self, node: yaml.Node, path: Path, message: str) -> SpecError:
        """An error that stops the build, located at *node*."""
        line, col = _mark(node)
        return SpecError([SpecIssue(self.locator.file, line, col, format_path(path), message)])

    def build(self, node: yaml.Node, path: Path, constructor: yaml.SafeLoader) -> Any:
        self.count += 1
        if self.count > MAX_SPEC_VALUES:  # only aliases get here: the loader counted the nodes
            raise self.fatal(
                node, path, f"the spec expands to more than {MAX_SPEC_VALUES} values through YAML aliases"
            )
        if id(node) in self.active:
            raise self.fatal(node, path, "a YAML alias refers to itself")
        if not isinstance(node, yaml.ScalarNode):
            self.active.add(id(node))
            try:
                return self.build_collection(node, path, constructor)
            finally:
                self.active.discard(id(node))
        try:
            return constructor.construct_object(node, deep=True)
        except ValueError:  # an integer of more digits than int() takes
            digits = len(node.value)
            raise self.fatal(
                node, path, f"a number of {digits} digits is too long; quote it if it is text"
            ) from None

    def build_collection(self, node: yaml.Node, path: Path, constructor: yaml.SafeLoader) -> Any:
        if isinstance(node, yaml.MappingNode):
            constructor.flatten_mapping(node)  # resolve `<<` merge keys
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    line, col = _mark(key_node)
                    self.issues.append(
                        SpecIssue(
                            self.locator.file,
                            line,
                            col,
                            format_path(path),
                            "a mapping key must be a scalar",
                        )
                    )
                    continue
                child = (*path, key if isinstance(key, str) else str(key))
                if key in result:
                    line, col = _mark(key_node)
                    first = self.locator.marks.get(child)
                    where = f" (first at line {first.key_line})" if first and first.key_line else ""
                    self.issues.append(
                        SpecIssue(
                            self.locator.file,
                            line,
                            col,
                            format_path(child),
                            f"duplicate key {key!r}{where}",
                        )
                    )
                    continue
                kline, kcol = _mark(key_node)
                vline, vcol = _mark(value_node)
                self.locator.marks[child] = Located(vline, vcol, kline, kcol)
                result[key] = self.build(value_node, child, constructor)
            return result
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                line, col = _mark(item)
                self.locator.marks[(*path, index)] = Located(line, col)
                items.append(self.build(item, (*path, index), constructor))
            return items
        return constructor.construct_object(node, deep=True)  # pragma: no cover - only two kinds


def parse_yaml(text: str, file: str) -> tuple[Any, Locator]:
    """Parse one YAML document into plain data and a Locator.

    Raises:
        SpecError: syntax errors (with line and column), several documents, an empty file.
    """
    _check_size_fast(text, file)
    try:
        loader = _BoundedLoader(text, file)
    except yaml.reader.ReaderError as exc:
        raise SpecError([_reader_issue(exc, text, file)]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(
                [
                    SpecIssue(
                        file, 1, 1, "", "file is empty; expected a pipeline with `name` and `steps`"
                    )
                ]
            )
        builder = _Builder(file)
        line, col = _mark(node)
        builder.locator.marks[()] = Located(line, col)
        data = builder.build(node, (), loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where: tuple[int | None, int | None] = (mark.line + 1, mark.column + 1) if mark else (None, None)
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        raise SpecError([SpecIssue(file, *where, "", f"YAML syntax error: {what}")]) from None
    except yaml.reader.ReaderError as exc:
        raise SpecError([_reader_issue(exc, text, file)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(file, None, None, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if builder.issues:
        raise SpecError(builder.issues)
    return data, builder.locator
