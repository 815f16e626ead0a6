"""The facade's public names: importable from ``sluiceway``, each documented."""

from __future__ import annotations

import inspect

import pytest

import sluiceway

FACADE_NAMES = (
    "run",
    "run_sync",
    "open_run",
    "invoke",
    "RunHandle",
    "RunResult",
    "StepResult",
    "StepContext",
    "ModeUnavailableError",
    "load",
    "loads",
)


@pytest.mark.parametrize("name", FACADE_NAMES)
def test_public_name_is_exported_and_documented(name: str) -> None:
    obj = getattr(sluiceway, name)
    doc = inspect.getdoc(obj)
    assert doc and len(doc.splitlines()[0]) > 10, f"sluiceway.{name} needs a docstring"


@pytest.mark.parametrize("name", ["run", "open_run", "invoke"])
def test_async_entry_points_say_what_they_close_and_how_cancellation_behaves(name: str) -> None:
    doc = inspect.getdoc(getattr(sluiceway, name)) or ""
    assert "close" in doc.lower()
    assert "cancel" in doc.lower()


def test_run_sync_is_sync_and_the_others_async() -> None:
    assert not inspect.iscoroutinefunction(sluiceway.run_sync)
    assert inspect.iscoroutinefunction(sluiceway.run)
    assert inspect.iscoroutinefunction(sluiceway.invoke)
