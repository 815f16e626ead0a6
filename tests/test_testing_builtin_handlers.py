"""The six built-in handlers pass check_handler (the kit's own dogfood)."""

from __future__ import annotations

import io
import json

import broken_handlers
import pytest
from sluiceway.engine import HandlerContext

from sluiceway._registry import build_handlers
from sluiceway.testing import check_handler, event_streams

EXAMPLES = 60


def _factory(name, opts, tmp_path, outputs=None):
    def context_for(ref):
        stdout, stderr = io.StringIO(), io.StringIO()
        if outputs is not None:
            outputs.append((stdout, stderr))
        return HandlerContext(
            run_id="run-test", step="draft", name=ref, pipeline="kit", output_dir=str(tmp_path),
            stdout=stdout, stderr=stderr, started_wall=1_700_000_000.0,
        )

    def factory():
        (handler,) = build_handlers([name], opts, context_for)
        return handler

    return factory


@pytest.mark.parametrize(
    ("name", "opts"),
    [
        ("simple", {}),
        ("simple", {"show_timestamps": False, "show_tool_use": False}),
        ("console", {"show_thinking": True}),
        ("debug", {"file": "stdout"}),
        ("file", {"format": "text"}),
        ("otel", {"capture_content": True}),
    ],
)
def test_display_and_file_handlers_follow_the_protocol(name, opts, tmp_path):
    outputs = []
    check_handler(_factory(name, opts, tmp_path, outputs), max_examples=EXAMPLES)
    assert len(outputs) >= EXAMPLES
    if name not in ("file", "otel"):
        # They really wrote (examples cancelled before any event write nothing).
        written = sum(bool(out.getvalue() or err.getvalue()) for out, err in outputs)
        assert written >= len(outputs) // 2


def test_file_handler_jsonl_holds_every_delta_after_close(tmp_path):
    def text_of(handler):
        path = handler.path
        if not path.exists():
            return ""
        lines = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
        return "".join(line["content"] for line in lines if line["type"] == "Delta")

    check_handler(_factory("file", {"format": "jsonl"}, tmp_path), max_examples=EXAMPLES, text_of=text_of)


def test_buffer_handler_text_keeping_superseded_output(tmp_path):
    check_handler(
        _factory("buffer", {"keep_superseded": True}, tmp_path),
        max_examples=EXAMPLES,
        text_of=lambda h: h.text(),
        expect_text="all",
    )


def test_buffer_handler_text_drops_superseded_output(tmp_path):
    check_handler(
        _factory("buffer", {}, tmp_path),
        max_examples=EXAMPLES,
        text_of=lambda h: h.text(),
        expect_text="final",
    )


def test_callback_handler_passes_every_delta(tmp_path):
    make = _factory("callback", {"function": "broken_handlers:collect"}, tmp_path)

    def factory():
        broken_handlers.COLLECTED.clear()
        return make()

    def text_of(_handler):
        return "".join(e.content for e in broken_handlers.COLLECTED if type(e).__name__ == "Delta")

    check_handler(factory, max_examples=EXAMPLES, text_of=text_of)


def test_a_built_in_handler_with_a_bug_would_be_caught(tmp_path):
    # Guard against a vacuous pass: the buffer handler is wrong under the wrong text contract.
    from sluiceway.testing import HandlerCheckError

    with pytest.raises(HandlerCheckError, match="removed text it had already shown"):
        check_handler(
            _factory("buffer", {}, tmp_path),
            max_examples=100,
            text_of=lambda h: h.text(),
            expect_text="all",
            streams=event_streams(steps=1, kinds="text", allow_failures=False, allow_cancel=False),
        )
