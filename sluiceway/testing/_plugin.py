"""pytest plugin (entry point ``pytest11``): fixtures for testing pipelines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from . import StreamingRecorder, VirtualRunner
    from .fake_api import FakeAPI


@pytest.fixture(scope="session")
def fake_api() -> Iterator[FakeAPI]:
    """A fake Messages API server on 127.0.0.1 for the whole session (sync fixture).

    Point a provider at ``fake_api.url`` with any key; choose the scenario per
    request (``model="fake:text?deltas=100"`` or the ``x-fake-scenario`` header).
    Counters accumulate across tests: call ``fake_api.reset()`` or compare deltas.
    """
    from .fake_api import FakeAPI

    api = FakeAPI()
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def recorder() -> StreamingRecorder:
    """A fresh ``StreamingRecorder`` (policy ``block``) for this test.

    ``virtual_run`` feeds it every event of its runs; it can also be attached to
    engine calls directly as a handler.
    """
    from . import StreamingRecorder

    return StreamingRecorder()


@pytest.fixture
def virtual_run(recorder: StreamingRecorder, tmp_path: Path) -> VirtualRunner:
    """Run pipelines on a virtual clock: ``virtual_run(spec)`` (sync tests) or
    ``await virtual_run.arun(spec)`` (async tests, pytest-trio ``trio_mode``).

    Defaults: ``output_dir=tmp_path``, ``recorder=`` the ``recorder`` fixture.
    """
    from . import VirtualRunner

    return VirtualRunner(output_dir=tmp_path, recorder=recorder)
