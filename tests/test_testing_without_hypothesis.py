"""Without hypothesis (no `sluiceway[testing]` extra), the plugin, recorder and fake server still import."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
sys.modules["hypothesis"] = None  # as if it were not installed
import sluiceway.testing as t
import sluiceway.testing._plugin
from sluiceway.testing import FakeAPI, StreamingRecorder, run_virtual
try:
    t.check_handler
except ImportError as exc:
    print("ImportError:", exc)
"""


def test_kit_imports_without_hypothesis_and_names_the_extra() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", PROBE], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "ImportError: sluiceway.testing.check_handler needs hypothesis: "
        "pip install 'sluiceway[testing]'"
    )
