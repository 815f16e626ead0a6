"""This process's CPU and memory, and the percentiles the tables report (Linux)."""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence


def cpu_seconds() -> float:
    """This process's CPU so far: user + system seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss() -> int:
    """This process's peak RSS over its life (``ru_maxrss``), in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def reset_peak() -> None:
    """Reset this process's peak RSS (Linux: VmHWM), so imports' transient peak is not counted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def hwm() -> int | None:
    """This process's peak RSS since the last ``reset_peak`` (Linux VmHWM), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_now() -> int:
    """This process's resident set now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def raise_open_files(at_least: int) -> None:
    """Raise ``RLIMIT_NOFILE`` to *at_least* (within the hard limit): a socket per stream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, at_least)), hard))


def pct(ordered: Sequence[float], q: float) -> float | None:
    """The *q* quantile of the sorted *ordered* (nearest rank below), or ``None`` when empty."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float | None) -> float | None:
    """*seconds* in milliseconds (``None`` stays ``None``)."""
    return None if seconds is None else seconds * 1e3


def ms_percentiles(ordered: Sequence[float], suffix: str = "") -> dict[str, float | None]:
    """``p50`` and ``p99`` of the sorted *ordered* seconds, in ms (keys ``p50<suffix>``, ``p99<suffix>``)."""
    return {"p50" + suffix: ms(pct(ordered, 0.50)), "p99" + suffix: ms(pct(ordered, 0.99))}
