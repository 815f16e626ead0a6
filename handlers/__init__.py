"""Handler implementations: simple, console, debug, file, buffer, callback, otel.

Each built-in handler has a nested attrs ``Options`` class (its
``stream_handler_opts``) and is built as ``Handler(options, context)`` by
``sluiceway._registry.build_handlers``. Handlers import ``sluiceway.engine``
event types only, never providers or each other.
"""

from typing import TYPE_CHECKING, Any

from ._base import HandlerConfigError as HandlerConfigError
from ._buffer import BufferHandler as BufferHandler
from ._callback import CallbackHandler as CallbackHandler
from ._console import ConsoleHandler as ConsoleHandler
from ._debug import DebugHandler as DebugHandler
from ._debug import describe_event as describe_event
from ._file import FileHandler as FileHandler
from ._file import event_from_dict as event_from_dict
from ._file import event_to_dict as event_to_dict
from ._file import render_file_path as render_file_path
from ._simple import SimpleHandler as SimpleHandler

__all__ = (
    "BufferHandler",
    "CallbackHandler",
    "ConsoleHandler",
    "DebugHandler",
    "FileHandler",
    "HandlerConfigError",
    "OtelHandler",
    "SimpleHandler",
    "describe_event",
    "event_from_dict",
    "event_to_dict",
    "render_file_path",
)

if TYPE_CHECKING:
    from ._otel import OtelHandler as OtelHandler


def __getattr__(name: str) -> Any:
    # OpenTelemetry is an optional extra (sluiceway[otel]): imported only when asked for
    if name == "OtelHandler":
        from ._otel import OtelHandler

        return OtelHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
