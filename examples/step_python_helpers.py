"""Functions for examples/step_python.yaml (loaded from the spec's folder)."""

from __future__ import annotations

from typing import Any


async def count_deltas(ctx: Any) -> dict[str, int]:
    """Count the text deltas of the input stream while it streams."""
    deltas = 0
    characters = 0
    async for event in ctx.events:
        if type(event).__name__ == "Delta":
            deltas += 1
            characters += len(event.content)
    return {"deltas": deltas, "characters": characters}


def count_words(ctx: Any) -> dict[str, Any]:
    """Count the words of the draft, and the long ones (``args.min_length``)."""
    words = ctx.steps["draft"].text.split()
    long_words = [w.strip(".,") for w in words if len(w.strip(".,")) >= ctx.args["min_length"]]
    return {"topic": ctx.vars["topic"], "words": len(words), "long_words": long_words}
