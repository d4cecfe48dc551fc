"""Making DJN randomisers ``hs^a mod n²`` on several cores.

The expensive part of an encryption does not depend on the message, so worker
processes compute randomisers and the caller multiplies them in. Pools use the
*spawn* start method (forking a process that has started TenSEAL's threads can
deadlock), are kept per public key, and each worker builds its own fixed-base
table once. Only integers cross the process boundary, as bytes.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import gmpy2

from he_fed.crypto._djn import FixedBase
from he_fed.crypto._exact_cache import exact_int

__all__ = ["available", "randomisers"]

log = logging.getLogger("he_fed")

_POOLS: dict[tuple[int, int, int, int], ProcessPoolExecutor] = {}
#: Cleared when worker processes cannot start here (e.g. a script read from stdin,
#: which spawned workers cannot re-import); encryption then stays in this process.
_ENABLED = [True]


def available() -> bool:
    """Whether worker processes can be used in this process."""
    return _ENABLED[0]


_WORKER_TABLE: FixedBase | None = None
_WORKER_EXPONENT_BITS = 0


def _init_worker(hs: bytes, nsquare: bytes, exponent_bits: int) -> None:
    global _WORKER_TABLE, _WORKER_EXPONENT_BITS
    _WORKER_TABLE = FixedBase(
        int.from_bytes(hs, "big"), int.from_bytes(nsquare, "big"), exponent_bits
    )
    _WORKER_EXPONENT_BITS = exponent_bits


def _worker_randomisers(exponents: list[bytes]) -> list[bytes]:
    assert _WORKER_TABLE is not None
    width = (int(_WORKER_TABLE.modulus).bit_length() + 7) // 8
    return [
        int(_WORKER_TABLE.pow(int.from_bytes(a, "big"))).to_bytes(width, "big") for a in exponents
    ]


def _pool(hs: int, nsquare: int, exponent_bits: int, workers: int) -> ProcessPoolExecutor:
    # Keyed and built from the exact integers (red team 15 keyed a pool under an
    # honest key with an int whose bytes were 1: every randomiser it made was 1).
    hs, nsquare = exact_int(hs), exact_int(nsquare)
    exponent_bits, workers = exact_int(exponent_bits), exact_int(workers)
    key = (hs, nsquare, exponent_bits, workers)
    pool = _POOLS.get(key)
    if pool is None:
        width = (nsquare.bit_length() + 7) // 8
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(hs.to_bytes(width, "big"), nsquare.to_bytes(width, "big"), exponent_bits),
        )
        _POOLS[key] = pool
    return pool


def randomisers(
    hs: int, nsquare: int, exponent_bits: int, exponents: list[int], workers: int
) -> list[Any] | None:
    """The randomisers ``hs^a mod n²`` for the caller's exponents, from ``workers`` processes.

    The caller draws the exponents, because it needs them again to prove it knows
    them (:mod:`he_fed.crypto._commitment_proof`). Returns None (and disables
    workers for this process) when they cannot start.
    """
    pool = _pool(hs, nsquare, exponent_bits, workers)
    size = (exponent_bits + 7) // 8
    encoded = [a.to_bytes(size, "big") for a in exponents]
    share = -(-len(encoded) // workers)
    batches = [encoded[i : i + share] for i in range(0, len(encoded), share)]
    out: list[Any] = []
    try:
        for batch in pool.map(_worker_randomisers, batches):
            out.extend(gmpy2.mpz(int.from_bytes(b, "big")) for b in batch)
    except (BrokenProcessPool, OSError) as exc:
        log.warning("encryption workers unavailable (%s); encrypting in this process", exc)
        _ENABLED[0] = False
        _POOLS.pop((hs, nsquare, exponent_bits, workers), None)
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    return out


@atexit.register
def _shutdown() -> None:
    for pool in _POOLS.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()
