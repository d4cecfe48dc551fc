"""Commitments that bind a Paillier contribution's plaintext, so that a sum cannot be offset.

A Paillier ciphertext can be multiplied by ``1 + x·n`` without changing its
commitment (``c mod n``), so whoever holds an aggregate can add a known ``x`` to
its plaintext and the key holder cannot tell. Each contribution therefore also
carries a Pedersen vector commitment to the exact integers it encodes, one per
value slot (the weight included)::

    B = prod_i g_i^(v_i) · h^rho  (mod p)

in the order-``q`` subgroup of RFC 7919's ``ffdhe2048`` group (``p = 2q + 1``, both
prime, fixed by the standard: nobody knows a relation between generators hashed
into it). ``rho`` travels encrypted with the contribution, in spare bits of its
last ciphertext or in one of its own. The key holder decrypts the slot sums
``S_i`` and ``sum rho`` and checks ``prod_k B_k = prod_i g_i^(S_i) · h^(sum rho)``.

* **Binding.** An offset would need ``prod_i g_i^(x_i) · h^d = 1`` with known
  ``x, d`` not all zero modulo ``q``: a discrete-logarithm relation between the
  generators. A slot sum is far below ``q``, and the key holder refuses any slot
  outside the plan's range, so a change that is zero modulo ``q`` is no change.
* **Hiding.** ``h^rho`` with a uniform ``rho`` of :data:`RHO_BITS` bits hides the
  slots from everyone, the key holder included (it has no trapdoor in this group),
  under the short-exponent discrete-logarithm assumption that Diffie-Hellman over
  the same group relies on (RFC 7919, section 5.2, asks for 225 bits at this size).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import gmpy2

from he_fed.crypto._multiexp import product_of_powers

__all__ = ["P", "Q", "RHO_BITS", "WIDTH", "check", "commit", "product"]

#: RFC 7919 ffdhe2048: a safe prime, ``P = 2Q + 1``.
P = int(
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1"
    "D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF9"
    "7D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD6561"
    "2433F51F5F066ED0856365553DED1AF3B557135E7F57C935"
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE735"
    "30ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FB"
    "B96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB19"
    "0B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD73"
    "3BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA"
    "886B423861285C97FFFFFFFFFFFFFFFF",
    16,
)
Q = (P - 1) // 2
#: Bytes of one commitment.
WIDTH = (P.bit_length() + 7) // 8
#: Bits of a contribution's blinding exponent.
RHO_BITS = 320

_DOMAIN = b"he-fed/paillier-binding/v1"
_MOD = gmpy2.mpz(P)


@lru_cache(maxsize=1)
def _h() -> Any:
    return _hashed(b"h")


def _hashed(label: bytes) -> Any:
    digest = hashlib.shake_256(_DOMAIN + label).digest(WIDTH + 16)
    value = gmpy2.mpz(int.from_bytes(digest, "big")) % _MOD
    return value * value % _MOD  # a square: in the order-Q subgroup


@lru_cache(maxsize=4)
def _generators(count: int) -> tuple[Any, ...]:
    return tuple(_hashed(b"g" + i.to_bytes(8, "big")) for i in range(count))


def commit(integers: Sequence[int], rho: int) -> bytes:
    """The commitment to ``integers`` (signed allowed) with blinding ``rho``."""
    generators = _generators(len(integers))
    positive = [(g, int(v)) for g, v in zip(generators, integers, strict=True) if v > 0]
    negative = [(g, -int(v)) for g, v in zip(generators, integers, strict=True) if v < 0]
    acc = gmpy2.powmod(_h(), rho, _MOD) * product_of_powers(positive, _MOD) % _MOD
    if negative:
        acc = acc * gmpy2.invert(product_of_powers(negative, _MOD), _MOD) % _MOD
    return int(acc).to_bytes(WIDTH, "big")


def product(commitments: Sequence[bytes]) -> bytes | None:
    """The product of commitments, or None if one is malformed (size, range, subgroup)."""
    acc = gmpy2.mpz(1)
    for blob in commitments:
        if len(blob) != WIDTH:
            return None
        value = gmpy2.mpz(int.from_bytes(blob, "big"))
        # In a safe-prime group the order-Q subgroup is the quadratic residues, so
        # Legendre's symbol decides membership (Euler's criterion: value^Q = (value | P))
        # at a tiny fraction of an exponentiation's cost.
        if not 1 < value < _MOD - 1 or gmpy2.legendre(value, _MOD) != 1:
            return None
        acc = acc * value % _MOD
    return int(acc).to_bytes(WIDTH, "big")


def check(integers: Sequence[int], rho: int, expected: bytes) -> bool:
    """Whether slot sums ``integers`` and blinding sum ``rho`` open ``expected``."""
    return commit(integers, rho) == expected
