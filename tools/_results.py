"""What every tool returns: error results and the cap on what the model sees.

A tool never raises for something the model got wrong: it raises ``ToolFailure``,
which ``Toolbox.run`` turns into an error result ``(message, True)``.
"""

from __future__ import annotations

from typing import Final

__all__ = ("MAX_OUTPUT_CHARS", "ToolFailure", "cap")

#: Characters of tool output the model sees at most; the rest is cut with a note.
MAX_OUTPUT_CHARS: Final = 30_000


class ToolFailure(Exception):
    """An error result for the model (internal: ``Toolbox.run`` turns it into ``(msg, True)``)."""


def cap(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Cut *text* to *limit* characters, with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [output truncated: {len(text) - limit} more characters]"
