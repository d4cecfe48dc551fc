"""Trustworthy measurement: perf_counter timings, medians with spread, peak memory."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["PeakMemory", "median_spread", "process_memory_mib", "reset_peak_memory", "timed"]

_T = TypeVar("_T")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def timed(fn: Callable[[], _T]) -> tuple[float, _T]:
    """Seconds ``fn()`` took (``time.perf_counter``), and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_spread(samples: list[float]) -> tuple[float, float]:
    """Median and spread (max − min) of repeated measurements."""
    if not samples:
        raise ValueError("no samples")
    return statistics.median(samples), max(samples) - min(samples)


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def process_memory_mib(field: str) -> float | None:
    """A memory field of this process's ``/proc/self/status`` in MiB.

    Parameters
    ----------
    field : str
        ``"VmRSS"`` (resident now), ``"VmHWM"`` (resident high-water mark), or any
        other field the kernel reports in kB.

    Returns
    -------
    float or None
        None where there is no such file (not Linux) or field.
    """
    kib = _status_kib(field)
    return None if kib is None else kib / 1024


def reset_peak_memory() -> bool:
    """Reset this process's resident high-water mark (``VmHWM``) to its current size.

    Returns False where the kernel offers no reset (``/proc/self/clear_refs``).
    """
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak resident memory added while the block runs, in MiB.

    On Linux the kernel's high-water mark is reset on entry (``/proc/self/clear_refs``)
    and read on exit, so allocations made by gmpy2 and TenSEAL, which ``tracemalloc``
    cannot see, are counted. Elsewhere it falls back to ``tracemalloc`` (Python
    allocations only) and says so in :attr:`method`.
    """

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self.method = "rss"
        self._base = 0

    def __enter__(self) -> PeakMemory:
        base = _status_kib("VmRSS") if reset_peak_memory() else None
        if base is None:
            self.method = "tracemalloc"
            tracemalloc.start()
        else:
            self._base = base
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.method == "tracemalloc":
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            self.peak_mib = peak / 2**20
        else:
            peak = _status_kib("VmHWM") or self._base
            self.peak_mib = max(0, peak - self._base) / 1024
