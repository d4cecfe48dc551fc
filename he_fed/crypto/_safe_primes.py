"""Safe primes ``p = 2p' + 1`` (``p'`` prime) for threshold Paillier moduli.

Threshold Paillier after Fouque, Poupard and Stern (2000) needs ``n = pq`` with
``p`` and ``q`` safe primes, so that the squares of ``Z*_n`` form a cyclic group
of order ``m = p'q'`` with no small factor. They are rare (about one in
``(ln 2^b)²`` odd numbers near ``2^b`` up to a constant), so the search sieves
both ``p'`` and ``2p' + 1`` by the small primes at once, runs one Fermat test on
each survivor's ``p'`` and then ``p``, and only then a full Miller-Rabin test.
Every candidate is ``≡ 11 (mod 12)``, which the primes ``2`` and ``3`` require of
a safe prime above 7.

It is slow in Python all the same: seconds for 512-bit primes, tens of seconds to
minutes for 1024-bit ones (``DESIGN.md``, "Threshold decryption"), so a progress
callback reports every block of candidates.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import lru_cache

import gmpy2
import numpy as np

from he_fed.exceptions import ConfigurationError

__all__ = ["Progress", "is_safe_prime", "safe_prime"]

#: Called with the number of candidates tested so far, after every sieved block and
#: once more when the prime is found.
Progress = Callable[[int], None]

_SIEVE_LIMIT = 1 << 14
_BLOCK = 4096
_MIN_BITS = 16


@lru_cache(maxsize=1)
def _small_primes() -> np.ndarray:
    flags = np.ones(_SIEVE_LIMIT, dtype=bool)
    flags[:2] = False
    for i in range(2, int(_SIEVE_LIMIT**0.5) + 1):
        if flags[i]:
            flags[i * i :: i] = False
    primes = np.nonzero(flags)[0]
    return primes[primes > 3].astype(np.int64)


def is_safe_prime(p: int) -> bool:
    """Whether ``p`` and ``(p - 1) / 2`` are both (probable) primes, with ``p > 7``."""
    return p > 7 and p % 2 == 1 and bool(gmpy2.is_prime(p, 40) and gmpy2.is_prime(p // 2, 40))


def safe_prime(bits: int, *, progress: Progress | None = None) -> int:
    """A random safe prime of exactly ``bits`` bits whose two top bits are set.

    The two top bits make the product of two such primes exactly ``2·bits`` bits.

    Parameters
    ----------
    bits : int
        Size of the prime, at least 16.
    progress : callable, optional
        Called with the count of candidates tested so far after each block.

    Returns
    -------
    int
    """
    if bits < _MIN_BITS:
        raise ConfigurationError(f"safe primes need at least {_MIN_BITS} bits")
    primes = _small_primes()
    steps = np.arange(_BLOCK, dtype=np.int64) * 12
    tested = 0
    while True:
        # p = 2q + 1 with top two bits set: q has bits - 1 bits, top two set; q ≡ 5 mod 6.
        q0 = secrets.randbits(bits - 1) | (3 << (bits - 3)) | 1
        q0 += (5 - q0 % 12) % 12
        residues = np.array([q0 % int(r) for r in primes], dtype=np.int64)
        # q + 12k must avoid 0 and (r - 1)/2 modulo every small prime r.
        table = (residues[None, :] + steps[:, None]) % primes[None, :]
        bad = (table == 0) | (table == (primes[None, :] - 1) // 2)
        survivors = np.nonzero(~bad.any(axis=1))[0]
        for k in survivors.tolist():
            q = gmpy2.mpz(q0 + 12 * k)
            if gmpy2.powmod(2, q - 1, q) != 1:
                continue
            p = 2 * q + 1
            if gmpy2.powmod(2, p - 1, p) != 1:
                continue
            if p.bit_length() == bits and gmpy2.is_prime(q, 40) and gmpy2.is_prime(p, 40):
                if progress is not None:
                    progress(tested + k + 1)
                return int(p)
        tested += _BLOCK
        if progress is not None:
            progress(tested)
