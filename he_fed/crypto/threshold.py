"""t-of-n threshold Paillier decryption (Fouque, Poupard and Stern 2000, after Shoup 2000).

No party holds the factorisation of ``n``. A trusted dealer, once, at the key
ceremony (:func:`deal`):

* draws safe primes ``p = 2p' + 1``, ``q = 2q' + 1`` (:mod:`he_fed.crypto._safe_primes`)
  and sets ``n = pq``, ``m = p'q'``;
* picks the decryption exponent ``d`` with ``d ≡ 0 (mod m)`` and ``d ≡ 1 (mod n)``,
  and Shamir-shares it with a random polynomial ``f`` of degree ``t - 1`` over
  ``Z_(nm)``, ``f(0) = d``: holder ``i`` (``1..holders``) gets ``s_i = f(i)``;
* publishes a random square ``v`` of ``Z*_(n²)`` and each holder's verification
  key ``v_i = v^(Δ·s_i)`` with ``Δ = holders!``, and the DJN ``hs`` as a single-key
  Paillier public key has it, so clients, the aggregator and every ciphertext are
  exactly those of :class:`~he_fed.crypto.PackedPaillier` or
  :class:`~he_fed.crypto.Paillier`;
* forgets ``p``, ``q`` and ``d``.

A holder's partial decryption of a ciphertext ``c`` is ``c_i = c^(2Δ·s_i) mod n²``
with a Chaum-Pedersen proof (:mod:`he_fed.crypto._threshold_proof`). Anyone with
the verification keys checks the proofs, names the holders whose partials fail,
and combines any ``t`` valid ones with the integer Lagrange coefficients
``λ_i = Δ·∏_(j≠i) j/(j−i)``: ``∏ c_i^(2λ_i) = c^(4Δ²·d) = 1 + 4Δ²·M·n (mod n²)``,
so ``M = L(·)·(4Δ²)^(-1) mod n``. The plaintexts then go through the same range
and binding checks as a single secret key's
(:func:`he_fed.crypto._paillier_keys.open_plaintexts`).

Formats and loaders: :mod:`he_fed.crypto._threshold_keys` (``to_bytes``) and
:func:`load_verification`, :func:`load_share`, :func:`load_partial`.

Whoever combines learns the plaintext. The protocol therefore lets only a share
holder combine (``he_fed/protocol``; ``DESIGN.md``, "Threshold decryption").
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import gmpy2

from he_fed.crypto import _djn as djn
from he_fed.crypto import _safe_primes
from he_fed.crypto._paillier_keys import PaillierPublicKey
from he_fed.crypto._threshold_files import load_partial, load_share, load_verification
from he_fed.crypto._threshold_keys import (
    MAX_HOLDERS,
    KeyShare,
    PartialDecryption,
    ThresholdDecryption,
    ThresholdKeys,
    VerificationKeys,
    check_counts,
    lagrange_at_zero,
    parse_threshold,
)
from he_fed.crypto.paillier import _PaillierScheme
from he_fed.exceptions import ConfigurationError

__all__ = [
    "MAX_HOLDERS",
    "DealerProgress",
    "KeyShare",
    "PartialDecryption",
    "ThresholdDecryption",
    "ThresholdKeys",
    "VerificationKeys",
    "deal",
    "lagrange_at_zero",
    "load_partial",
    "load_share",
    "load_verification",
    "parse_threshold",
]

#: Progress of the dealer: called with the prime sought (``"p"``, ``"q"``) and the
#: number of candidates tested so far for it.
DealerProgress = Callable[[str, int], None]


def _safe_pair(key_bits: int, progress: DealerProgress | None) -> tuple[int, int]:
    half = key_bits // 2
    while True:
        p = _safe_primes.safe_prime(
            half, progress=None if progress is None else (lambda k: progress("p", k))
        )
        q = _safe_primes.safe_prime(
            key_bits - half, progress=None if progress is None else (lambda k: progress("q", k))
        )
        if p != q and (p * q).bit_length() == key_bits:
            return p, q


def deal(
    scheme: _PaillierScheme,
    *,
    threshold: int,
    holders: int,
    progress: DealerProgress | None = None,
    primes: tuple[int, int] | None = None,
) -> ThresholdKeys:
    """The dealer's ceremony: a Paillier key whose secret exists only as ``holders`` shares.

    Parameters
    ----------
    scheme : Paillier or PackedPaillier
        The scheme and plan; its ``key_bits`` (below 2048 only with ``allow_insecure``).
    threshold, holders : int
        Any ``threshold`` of the ``holders`` shares decrypt; fewer learn nothing.
    progress : callable, optional
        Called as ``progress(prime, candidates_tested)`` while safe primes are sought.
    primes : tuple of int, optional
        Two safe primes to use instead of drawing them: only for test fixtures,
        since whoever supplies them holds the factorisation.

    Returns
    -------
    ThresholdKeys
        Nothing in it holds ``p``, ``q`` or ``d``.

    Raises
    ------
    ConfigurationError
        If the scheme is not Paillier, the counts are out of range, or ``primes``
        are not safe primes of the key's size.
    """
    if not isinstance(scheme, _PaillierScheme):
        raise ConfigurationError(
            "threshold decryption needs a Paillier scheme (paillier or paillier-packed)"
        )
    check_counts(threshold, holders)
    key_bits = scheme.key_bits
    if primes is None:
        p, q = _safe_pair(key_bits, progress)
    else:
        p, q = primes
        if p == q or not all(_safe_primes.is_safe_prime(x) for x in (p, q)):
            raise ConfigurationError("threshold primes must be two distinct safe primes")
        if (p * q).bit_length() != key_bits:
            raise ConfigurationError(f"threshold primes do not make a {key_bits}-bit modulus")
    n = p * q
    m = (p // 2) * (q // 2)
    nm = n * m
    d = m * int(gmpy2.invert(m, n)) % nm
    coefficients = [d] + [secrets.randbelow(nm) for _ in range(threshold - 1)]
    values = [_evaluate(coefficients, i, nm) for i in range(1, holders + 1)]
    del p, q, d, coefficients
    public = PaillierPublicKey(scheme, n, djn.djn_generator(n))
    nsquare = public.nsquare
    v = _random_square(n, nsquare)
    delta = math.factorial(holders)
    keys = tuple(int(gmpy2.powmod(v, delta * s, nsquare)) for s in values)
    verification = VerificationKeys(public, threshold, holders, int(v), keys)
    shares = tuple(KeyShare(i + 1, s, verification) for i, s in enumerate(values))
    return ThresholdKeys(public, verification, shares)


def _evaluate(coefficients: Sequence[int], x: int, modulus: int) -> int:
    acc = 0
    for a in reversed(coefficients):
        acc = (acc * x + a) % modulus
    return acc


def _random_square(n: int, nsquare: Any) -> Any:
    while True:
        r = gmpy2.mpz(secrets.randbelow(int(nsquare) - 2) + 2)
        if gmpy2.gcd(r, n) == 1:
            return r * r % nsquare
