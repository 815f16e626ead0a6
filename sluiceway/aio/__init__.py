"""sluiceway for asyncio callers: ``run``, ``open_run`` and ``invoke``, as in ``sluiceway``.

The engine stays trio-native. Each asyncio event loop hosts one trio run in
trio's guest mode (``trio.lowlevel.start_guest_run``): it starts on the first
call from that loop, runs in the loop's thread, and closes with the loop
(``asyncio.run`` and ``asyncio.Runner`` close it at shutdown; ``aclose()``
closes it by hand). Cancellation and backpressure cross the bridge; errors
keep their types. This package is the one place in sluiceway that imports asyncio.
"""

from ._api import EventStream as EventStream
from ._api import RunHandle as RunHandle
from ._api import TextStream as TextStream
from ._api import invoke as invoke
from ._api import open_run as open_run
from ._api import run as run
from ._guest import aclose as aclose

__all__ = ("EventStream", "RunHandle", "TextStream", "aclose", "invoke", "open_run", "run")
