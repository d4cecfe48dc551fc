"""Every attribute of two role objects, compared deeply: what a rebuild kept and what it lost.

A deployed node rebuilds its role object from saved state for every message, so an
attribute that the save or the restore forgets is a defence that holds in process
and not on a node (red team 55: a share holder's pinned cohort). Comparing bytes
re-exported from the rebuilt object misses an attribute that neither side writes;
comparing ``vars()`` does not.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import gmpy2
import numpy as np

_SCALARS = (int, float, str, bytes, bool, type(None), enum.Enum, type(gmpy2.mpz(0)))


def _fields(obj: Any) -> dict[str, Any]:
    fields = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                fields.setdefault(name, getattr(obj, name))
    return fields


def _raw_key(obj: Any) -> bytes | None:
    """A pyca key's raw bytes (its objects compare by identity)."""
    for method in ("private_bytes_raw", "public_bytes_raw"):
        if callable(getattr(obj, method, None)):
            return getattr(obj, method)()
    return None


def differences(a: Any, b: Any, path: str = "", _seen: set | None = None) -> list[str]:
    """Where ``a`` and ``b`` differ, attribute by attribute (empty: nothing differs)."""
    seen = set() if _seen is None else _seen
    if (id(a), id(b)) in seen:  # a cycle, compared where it started
        return []
    seen.add((id(a), id(b)))
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} against {type(b).__name__}"]
    if isinstance(a, np.ndarray):
        same = a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        return [] if same else [f"{path}: arrays differ"]
    if isinstance(a, float) and a != a:
        return [] if b != b else [f"{path}: nan against {b!r}"]
    if isinstance(a, _SCALARS):
        return [] if a == b else [f"{path}: {a!r:.60} against {b!r:.60}"]
    if isinstance(a, (set, frozenset)):
        return [] if a == b else [f"{path}: sets differ"]
    if isinstance(a, dict):
        out = [f"{path}[{k!r}]: on one side only" for k in a.keys() ^ b.keys()]
        for k in a.keys() & b.keys():
            out += differences(a[k], b[k], f"{path}[{k!r}]", seen)
        return out
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items against {len(b)}"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{path}[{i}]", seen)]
    if (key := _raw_key(a)) is not None:
        return [] if key == _raw_key(b) else [f"{path}: keys differ"]
    fa, fb = _fields(a), _fields(b)
    if not fa and not fb:
        if callable(a) or dataclasses.is_dataclass(a):
            return []
        return [] if a == b else [f"{path}: {type(a).__name__} values differ"]
    out = [f"{path}.{k}: on one side only" for k in fa.keys() ^ fb.keys()]
    for k in fa.keys() & fb.keys():
        out += differences(fa[k], fb[k], f"{path}.{k}", seen)
    return out
