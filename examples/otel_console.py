"""Trace a pipeline run with OpenTelemetry and print the spans and metrics on the console.

    pip install 'sluiceway[otel]' opentelemetry-sdk
    python examples/otel_console.py [PIPELINE.yaml]     # default: examples/step_robust.yaml

The run sits under this script's own span (``example``): a caller's current span
becomes the run's parent. Mock mode: no API key needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from sluiceway.handlers import OtelHandler

import sluiceway


async def main(spec: str) -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=3_600_000)
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer = tracer_provider.get_tracer("example")
    with tracer.start_as_current_span("example"):
        otel = OtelHandler.for_run(tracer_provider=tracer_provider, meter_provider=meter_provider)
        async with sluiceway.open_run(spec, handlers=()) as run:
            async for event in run.events:
                await otel.handle(event)
            result = await run.result()
        await otel.aclose()
    print(f"run {result.status}: {result.run_dir}", file=sys.stderr)
    meter_provider.shutdown()  # exports the metrics once, now
    tracer_provider.shutdown()


if __name__ == "__main__":
    default = Path(__file__).parent / "step_robust.yaml"
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else str(default))
