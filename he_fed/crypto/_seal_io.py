"""SEAL objects to bytes, in memory.

``tenseal.sealapi`` saves SEAL objects only to a file path. This writes to an
anonymous in-memory file (Linux ``memfd``), or to a private temporary file
elsewhere, and returns the bytes. Only ciphertexts pass through here: they are
public, and no secret material is ever written.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

__all__ = ["save"]


def save(obj: Any) -> bytes:
    """``obj.save(path)`` (a SEAL ciphertext), returned as bytes."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("he-fed-seal", os.MFD_CLOEXEC)
        try:
            obj.save(f"/proc/self/fd/{fd}")
            return os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)
    with tempfile.TemporaryDirectory(prefix="he-fed-") as folder:  # pragma: no cover
        path = os.path.join(folder, "ciphertext")
        obj.save(path)
        with open(path, "rb") as handle:
            return handle.read()
