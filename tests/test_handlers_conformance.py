"""Every built-in handler passes the testing kit's protocol check on generated streams.

``check_handler`` feeds each handler through the engine's tee and handler actor
with drawn policies, buffer sizes, consumer speeds and cancellation points, in
virtual time, and checks ``aclose`` exactly once, order, no escaping errors and
no blocking; for the buffer handler also that it holds exactly the final text.
"""

from __future__ import annotations

import io

import pytest
from handler_helpers import make_context
from sluiceway.handlers import (
    BufferHandler,
    CallbackHandler,
    ConsoleHandler,
    DebugHandler,
    FileHandler,
    SimpleHandler,
)

from sluiceway.testing._check import assert_handler_conforms

EXAMPLES = 40


def _otel_handler(**options):
    pytest.importorskip("opentelemetry.sdk", reason="the otel handler's check needs opentelemetry-sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from sluiceway.handlers import OtelHandler

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return OtelHandler(OtelHandler.Options(**options), make_context(), tracer_provider=provider)


class TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda tmp: SimpleHandler(SimpleHandler.Options(), make_context()), id="simple"),
        pytest.param(
            lambda tmp: ConsoleHandler(ConsoleHandler.Options(show_thinking=True), make_context(TTY())),
            id="console-tty",
        ),
        pytest.param(lambda tmp: DebugHandler(DebugHandler.Options(), make_context()), id="debug"),
        pytest.param(
            lambda tmp: FileHandler(
                FileHandler.Options(append=True), make_context(output_dir=str(tmp))
            ),
            id="file-text",
        ),
        pytest.param(
            lambda tmp: FileHandler(
                FileHandler.Options(format="jsonl", append=True), make_context(output_dir=str(tmp))
            ),
            id="file-jsonl",
        ),
        pytest.param(
            lambda tmp: CallbackHandler.for_callable(lambda event: None, make_context()),
            id="callback",
        ),
        pytest.param(lambda tmp: _otel_handler(capture_content=True), id="otel"),
    ],
)
def test_handler_conforms(make, tmp_path):
    assert_handler_conforms(lambda: make(tmp_path), max_examples=EXAMPLES)


def test_buffer_holds_exactly_the_final_text():
    assert_handler_conforms(
        lambda: BufferHandler(BufferHandler.Options(max_size=100_000), make_context()),
        text_of=lambda handler: handler.text(),
        expect_text="final",
        max_examples=EXAMPLES * 2,
    )
