"""The machine an experiment ran on: versions, CPU model and thread settings.

Written into every result (``he-fed run --json``, ``he-fed bench``) so that a
figure can be read against the machine that produced it.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from typing import Any

__all__ = ["environment"]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Versions, CPU model, core count and thread settings of this machine."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "packages": {
            p: _version(p)
            for p in (
                "he-fed",
                "numpy",
                "scikit-learn",
                "phe",
                "gmpy2",
                "tenseal",
                "click",
                "flwr",
                "ray",
            )
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
