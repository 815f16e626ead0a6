"""The built-in tools' names and the Messages API definitions offered to the model.

Each tool's description and input JSON Schema live here, apart from the code that
runs the tool, so the definitions sent with a request and the validation of the
model's input come from one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import jsonschema

__all__ = ("ALL_TOOLS", "DEFAULT_TOOLS", "TOOL_SCHEMAS", "VALIDATORS")

#: Tools offered when ``allowed_tools`` is not set. ``Bash`` is never a default.
DEFAULT_TOOLS: Final = ("Read", "Write", "Edit", "Glob", "Grep", "LS")


def _schema(properties: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STR: Final = {"type": "string"}

#: Name -> (description, JSON Schema of the input), in the order offered.
TOOL_SCHEMAS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "Read": (
        "Read a text file in the workspace. Returns numbered lines (`N\\tline`). "
        "`offset` is the 1-based first line, `limit` the number of lines.",
        _schema(
            {
                "file_path": {**_STR, "description": "The file, relative to the workspace."},
                "offset": {"type": "integer", "minimum": 1, "description": "First line (1-based)."},
                "limit": {"type": "integer", "minimum": 1, "description": "Lines to read."},
            },
            ["file_path"],
        ),
    ),
    "Write": (
        "Write a file in the workspace, replacing it if it exists. Parent folders are created.",
        _schema(
            {
                "file_path": {**_STR, "description": "The file, relative to the workspace."},
                "content": {**_STR, "description": "The whole new content."},
            },
            ["file_path", "content"],
        ),
    ),
    "Edit": (
        "Replace `old_string` with `new_string` in a file. `old_string` must occur exactly "
        "once unless `replace_all` is true.",
        _schema(
            {
                "file_path": {**_STR, "description": "The file, relative to the workspace."},
                "old_string": {**_STR, "description": "The exact text to replace."},
                "new_string": {**_STR, "description": "The replacement."},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence."},
            },
            ["file_path", "old_string", "new_string"],
        ),
    ),
    "Glob": (
        "List files matching a glob pattern (`**` matches folders recursively), "
        "relative to the workspace, sorted.",
        _schema(
            {
                "pattern": {**_STR, "description": "The pattern, e.g. `**/*.py`."},
                "path": {**_STR, "description": "The folder to search in (default: the workspace)."},
            },
            ["pattern"],
        ),
    ),
    "Grep": (
        "Search file contents with a regular expression (Python syntax). "
        "Returns `file:line:text` lines.",
        _schema(
            {
                "pattern": {**_STR, "description": "The regular expression."},
                "path": {**_STR, "description": "A file or folder to search (default: the workspace)."},
                "glob": {**_STR, "description": "Only files whose name matches, e.g. `*.py`."},
            },
            ["pattern"],
        ),
    ),
    "LS": (
        "List a folder of the workspace. Folders end in `/`, symlinks in `@`.",
        _schema(
            {"path": {**_STR, "description": "The folder (default: the workspace)."}},
            [],
        ),
    ),
    "Bash": (
        "Run a shell command in the workspace (no stdin). Returns stdout and stderr combined; "
        "a non-zero exit status or a timeout is an error.",
        _schema(
            {
                "command": {**_STR, "description": "The command."},
                "timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": "Seconds before the command is killed.",
                },
            },
            ["command"],
        ),
    ),
}

#: Every built-in tool name.
ALL_TOOLS: Final = tuple(TOOL_SCHEMAS)

#: Name -> the validator of the tool's input.
VALIDATORS: Final = {
    name: jsonschema.Draft202012Validator(schema) for name, (_, schema) in TOOL_SCHEMAS.items()
}
