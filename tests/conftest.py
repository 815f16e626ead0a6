"""Suite-wide settings: the hypothesis profile of the mutation run.

``HYPOTHESIS_PROFILE=mutation`` (set by ``python -m tests.mutation``) runs every property test
derandomized, without the example database and with at most ``MUTATION_MAX_EXAMPLES`` examples,
also where a test sets its own ``max_examples``: each mutant is judged by the same few examples,
in a few seconds, and the forked workers share no database files. Without the variable the
tests keep their own settings.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

MUTATION_MAX_EXAMPLES = 20
MUTATION_STATEFUL_STEPS = 20

settings.register_profile(
    "mutation",
    max_examples=MUTATION_MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_MUTATION = os.environ.get("HYPOTHESIS_PROFILE") == "mutation"
if _MUTATION:
    settings.load_profile("mutation")


def _capped(current: settings) -> settings:
    return settings(
        current,
        max_examples=min(current.max_examples, MUTATION_MAX_EXAMPLES),
        stateful_step_count=min(current.stateful_step_count, MUTATION_STATEFUL_STEPS),
        derandomize=True,
        database=None,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under the mutation profile, cap the examples of tests that set their own budget."""
    if not _MUTATION:
        return
    for item in items:
        test: Any = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if isinstance(own, settings):
            test._hypothesis_internal_use_settings = _capped(own)
        case: Any = getattr(item, "cls", None)
        if isinstance(getattr(case, "settings", None), settings):
            case.settings = _capped(case.settings)
