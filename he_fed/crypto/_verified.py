"""Verdicts on contribution proofs, remembered per process.

A contribution's proofs (its weight's link, its values' range proof, its opening)
are checked by the aggregator when it arrives and again by the key holder, from its
receipt, before decryption. Where both roles share one process (the ``inprocess``
and ``processes`` executors, a council in process) the second check repeats the
first on the same bytes, and the values' range proof makes it the costliest step of
a small model's round. A verdict is a deterministic function of what was checked
(the batching weights are fresh, but a proof that fails one draw fails every draw
except with probability about ``2^-128``), so this module remembers it, keyed by a
SHA-256 digest of everything the check reads: the key's fingerprint and plan, the
commitment, the binding, the proof, the vector's size and the context. Any other
byte anywhere makes another key, and is checked in full.

Remembering adds no trust: roles in one process already share its memory, and roles
in separate processes (Flower nodes, the file-based commands) share nothing here.
At most :data:`REMEMBERED` verdicts are kept (32 bytes and a bool each).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["REMEMBERED", "forget", "remembered"]

#: Verdicts kept, least recently used dropped first.
REMEMBERED = 65_536

_DOMAIN = b"he-fed/verified/v1"
_verdicts: OrderedDict[bytes, bool] = OrderedDict()
_lock = threading.Lock()


def _digest(parts: tuple[bytes, ...]) -> bytes:
    h = hashlib.sha256(_DOMAIN)
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def remembered(parts: tuple[bytes, ...], check: Callable[[], bool]) -> bool:
    """``check()``, or the verdict it gave for the same ``parts`` before in this process."""
    key = _digest(parts)
    with _lock:
        verdict = _verdicts.get(key)
        if verdict is not None:
            _verdicts.move_to_end(key)
            return verdict
    verdict = bool(check())
    with _lock:
        _verdicts[key] = verdict
        while len(_verdicts) > REMEMBERED:
            _verdicts.popitem(last=False)
    return verdict


def forget() -> None:
    """Drop every remembered verdict (benchmarks that time the checks themselves)."""
    with _lock:
        _verdicts.clear()
