"""Whether a data set of a given size fits in memory, checked before it is made.

A run holds several copies of its data at its peak: the generated array, the
train/test split, the clients' partitions and their standardised copies.
``he-fed run --scheme plain --rounds 1`` on ``synthetic_classification`` with
20 features peaked 582 MiB higher at 1,600,000 rows than at 400,000 (maximum
resident set size): 3.1 copies of the 8-byte values. :data:`COPIES_AT_PEAK`
rounds that up.
"""

from __future__ import annotations

import os
from pathlib import Path

from he_fed.exceptions import DatasetError

__all__ = ["COPIES_AT_PEAK", "available_memory", "check_fits_in_memory"]

#: Copies of the float64 data a run holds at its peak (3.1 measured, and a margin).
COPIES_AT_PEAK = 4
_GIB = 2**30


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):  # absent, "max", or unreadable
        return None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes this process can still allocate, or None if the system does not say.

    The machine's available memory (``MemAvailable``), or less if this process's
    control group (a container's memory limit, v2 or v1) leaves less.
    """
    candidates = [_meminfo_available()]
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None:
            candidates.append(max(0, cap - used))
    known = [c for c in candidates if c is not None]
    return min(known) if known else None


def check_fits_in_memory(samples: int, features: int) -> None:
    """Refuse a data set of ``samples`` x ``features`` that a run could not hold.

    Raises
    ------
    DatasetError
        If :data:`COPIES_AT_PEAK` copies of its 8-byte values exceed
        :func:`available_memory` (unchecked if the system does not say).
    """
    needed = samples * features * 8 * COPIES_AT_PEAK
    available = available_memory()
    if available is not None and needed > available:
        raise DatasetError(
            f"--samples {samples:,} x --features {features:,} needs about "
            f"{needed / _GIB:,.1f} GiB at the run's peak ({COPIES_AT_PEAK} copies of 8-byte "
            f"values), and {available / _GIB:,.1f} GiB are available; lower --samples or "
            "--features"
        )
