"""sluiceway.testing: a kit to test handlers and pipelines.

Strategies for valid event streams (``event_streams``, ``chunkings``), the
invariant checks of DESIGN.md (``check_invariants``, ``check_delivery``), a
recording handler (``StreamingRecorder``), a property-based handler checker
(``check_handler``), and whole runs on virtual time (``run_virtual``).
Offline live mode: a fake Messages API server (``FakeAPI``; the ``fake_api``
pytest fixture), and recorded cassettes (``load_cassette``).
Needs hypothesis: install the ``sluiceway[testing]`` extra.
"""

from sluiceway.providers._replay import Cassette as Cassette
from sluiceway.providers._replay import load_cassette as load_cassette

from ._check import HandlerCheckError as HandlerCheckError
from ._check import assert_handler_conforms as assert_handler_conforms
from ._check import check_handler as check_handler
from ._invariants import InvariantError as InvariantError
from ._invariants import check_delivery as check_delivery
from ._invariants import check_invariants as check_invariants
from ._invariants import describe_event as describe_event
from ._recorder import AttemptRecord as AttemptRecord
from ._recorder import StreamingRecorder as StreamingRecorder
from ._strategies import chunkings as chunkings
from ._strategies import event_streams as event_streams
from ._virtual import VirtualRunner as VirtualRunner
from ._virtual import arun_virtual as arun_virtual
from ._virtual import run_virtual as run_virtual
from .fake_api import FakeAPI as FakeAPI
