"""sluiceway.testing: a kit to test handlers and pipelines.

Strategies for valid event streams (``event_streams``, ``chunkings``), the
invariant checks of DESIGN.md (``check_invariants``, ``check_delivery``), a
recording handler (``StreamingRecorder``), a property-based handler checker
(``check_handler``), and whole runs on virtual time (``run_virtual``).
Offline live mode: a fake Messages API server (``FakeAPI``; the ``fake_api``
pytest fixture), and recorded cassettes (``load_cassette``).
The strategies and ``check_handler`` need hypothesis (the ``sluiceway[testing]``
extra); they are imported on first use, so the fake server
(``python -m sluiceway.testing.fake_api``), the recorder and ``run_virtual``
work without it, and the pytest plugin never breaks a test session that lacks it.
"""

from typing import TYPE_CHECKING, Any

from sluiceway.providers._replay import Cassette as Cassette
from sluiceway.providers._replay import load_cassette as load_cassette

from ._invariants import InvariantError as InvariantError
from ._invariants import check_delivery as check_delivery
from ._invariants import check_invariants as check_invariants
from ._invariants import describe_event as describe_event
from ._recorder import AttemptRecord as AttemptRecord
from ._recorder import StreamingRecorder as StreamingRecorder
from ._virtual import VirtualRunner as VirtualRunner
from ._virtual import arun_virtual as arun_virtual
from ._virtual import run_virtual as run_virtual

if TYPE_CHECKING:
    from ._check import HandlerCheckError as HandlerCheckError
    from ._check import assert_handler_conforms as assert_handler_conforms
    from ._check import check_handler as check_handler
    from ._strategies import chunkings as chunkings
    from ._strategies import event_streams as event_streams
    from .fake_api import FakeAPI as FakeAPI

# Loaded on first access: _check and _strategies import hypothesis; fake_api is also a
# `python -m` entry point, which warns when its package already imported it.
_LAZY = {
    "FakeAPI": ".fake_api",
    "HandlerCheckError": "._check",
    "assert_handler_conforms": "._check",
    "check_handler": "._check",
    "chunkings": "._strategies",
    "event_streams": "._strategies",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(module_name, __name__)
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis":
            raise
        raise ImportError(
            f"sluiceway.testing.{name} needs hypothesis: pip install 'sluiceway[testing]'"
        ) from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
