"""Python's cyclic garbage collector, set for many concurrent streams (an application's choice).

CPython 3.11's collector stops the process for a full (generation 2)
collection, and its cost grows with every container object alive. With the
``anthropic`` SDK imported, a process holds ~190,000 of them before any stream
exists (pydantic models and their schemas), and a full collection of those
alone takes ~80-100 ms on the 2-core bench machine; with 1,000 open streams
(~180 objects each) it takes ~200 ms, and under that load one came every ~3 s,
each a 200 ms stop of every stream. ``tune_gc`` is the usual remedy for such
services: move what start-up made into the permanent generation (``gc.freeze``,
never scanned again; still freed by reference counting) and collect the young
generation less often, so that fewer short-lived objects are promoted, and full
collections become rare.

The library never calls this itself: the garbage collector is process-wide, so
the application decides. ``sluiceway run`` (an application) does, once the
pipeline is loaded.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ("YOUNG_THRESHOLD", "tune_gc")

#: The young generation's threshold ``tune_gc`` sets (CPython's default: 700).
YOUNG_THRESHOLD: Final = 10_000


def tune_gc(*, young_threshold: int = YOUNG_THRESHOLD, freeze: bool = True) -> None:
    """Set Python's garbage collector for many concurrent streams; call once, after start-up.

    Collects, then freezes every object alive (``gc.freeze()``: start-up's
    modules, classes and SDK schemas are not scanned again), and raises the
    young generation's threshold to *young_threshold* (never lowers it). The
    older generations' thresholds are kept.

    Measured on the 2-core bench machine, 1,000 streams at 20 deltas/s: with
    the defaults, full collections of ~200 ms every ~3 s; after ``tune_gc()``,
    none in the 15 s run. See ``bench/README.md``.

    Args:
        young_threshold: Allocations (net of deallocations) between young
            collections. Larger: fewer collections and promotions, each young
            collection a little longer (10,000 young objects: ~1-2 ms here).
        freeze: Freeze what is alive now. Objects frozen are never collected
            as cyclic garbage, so call it after start-up, not in a loop.

    Raises:
        ValueError: *young_threshold* is below 1.
    """
    if young_threshold < 1:
        raise ValueError("young_threshold must be at least 1")
    if freeze:
        gc.collect()
        gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, young_threshold), middle, old)
