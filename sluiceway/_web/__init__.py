"""The live web view: a run's events as server-sent events, and one static page that shows them.

Needs the ``sluiceway[web]`` extra (hypercorn, Starlette, sse-starlette, all
under trio). ``sluiceway run --web`` serves the run as it goes;
``sluiceway serve RUN_DIR...`` serves finished runs from their folders. See
docs/observability.md.
"""

from ._log import RunLog as RunLog
from ._log import frames as frames
from ._log import log_actor as log_actor

__all__ = ("RunLog", "frames", "log_actor")
