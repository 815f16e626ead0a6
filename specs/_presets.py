"""``claude_smart`` presets: named, documented option sets that explicit options override.

=============  =========  ==================================  ===========  ==========  ============
preset         max_turns  allowed_tools                       temperature  max_tokens  timeout_ms
=============  =========  ==================================  ===========  ==========  ============
development    10         Read, Write, Edit, Glob, Grep, LS   0.2          8192        600000
production     5          Read, Glob, Grep, LS (read-only)    0.0          4096        300000
analysis       8          Read, Glob, Grep, LS (read-only)    0.0          8192        600000
chat           1          none                                0.7          4096        120000
=============  =========  ==================================  ===========  ==========  ============

Presets set no ``disallowed_tools``, so an explicit ``allowed_tools`` replaces
the preset's list as a whole. No preset offers ``Bash``, sets a model or a
system prompt: those come from the step or the pipeline's defaults.
"""

from __future__ import annotations

from typing import Final

import attrs

from sluiceway._errors import SpecError

from ._model import ClaudeOptions

__all__ = ("PRESETS", "apply_preset", "merge_options")

_READ_ONLY: Final = ("Read", "Glob", "Grep", "LS")

#: The ``claude_smart`` presets, by name.
PRESETS: Final[dict[str, ClaudeOptions]] = {
    # Building in a workspace: edits files, a moderate loop, a little creativity.
    "development": ClaudeOptions(
        max_turns=10,
        allowed_tools=("Read", "Write", "Edit", "Glob", "Grep", "LS"),
        temperature=0.2,
        max_tokens=8192,
        timeout_ms=600_000,
    ),
    # Unattended runs: read-only tools, a short loop, deterministic, a firm time limit.
    "production": ClaudeOptions(
        max_turns=5,
        allowed_tools=_READ_ONLY,
        temperature=0.0,
        max_tokens=4096,
        timeout_ms=300_000,
    ),
    # Reading and reporting on code or documents: read-only, room for long answers.
    "analysis": ClaudeOptions(
        max_turns=8,
        allowed_tools=_READ_ONLY,
        temperature=0.0,
        max_tokens=8192,
        timeout_ms=600_000,
    ),
    # Conversation: one call, no tools, a livelier temperature.
    "chat": ClaudeOptions(
        max_turns=1,
        allowed_tools=(),
        temperature=0.7,
        max_tokens=4096,
        timeout_ms=120_000,
    ),
}


def merge_options(base: ClaudeOptions, override: ClaudeOptions) -> ClaudeOptions:
    """Return *base* with every field that *override* sets (not ``None``) replaced."""
    changes = {
        field.name: value
        for field in attrs.fields(ClaudeOptions)
        if (value := getattr(override, field.name)) is not None
    }
    return attrs.evolve(base, **changes)


def apply_preset(preset: str, explicit: ClaudeOptions) -> ClaudeOptions:
    """Return preset *preset*'s options with *explicit*'s set fields overriding them.

    Raises:
        SpecError: *preset* is not one of ``PRESETS``.
    """
    try:
        base = PRESETS[preset]
    except KeyError:
        raise SpecError(
            f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}"
        ) from None
    return merge_options(base, explicit)
