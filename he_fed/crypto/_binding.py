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

The generators are public constants, so the powers of ``h`` and of the first
:data:`TABLED_GENERATORS` generators go through fixed-base tables
(:class:`~he_fed.crypto._djn.PayingTable`, each built once per process when its
powers have paid for it, about 0.2 MiB each): in a long run a small update's
commitment is then a few dozen multiplications instead of a multi-exponentiation.
Longer vectors, slots wider than :data:`TABLE_SLOT_BITS`, and powers asked for
before a table paid, take Pippenger's buckets (:mod:`he_fed.crypto._multiexp`),
which pay per base about as little. Either way
the commitment is the same residue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import gmpy2

from he_fed.crypto._djn import PayingTable
from he_fed.crypto._exact_cache import exact_cache
from he_fed.crypto._multiexp import product_of_powers

__all__ = ["P", "Q", "RHO_BITS", "WIDTH", "check", "commit", "drop_tables", "product"]

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

#: Generators whose powers go through a fixed-base table; the tables of all of them
#: hold about 6 MiB. Beyond, buckets cost about as little per base.
TABLED_GENERATORS = 32
#: Widest slot integer the generators' tables serve (packed slots fit; wider slots
#: take the buckets).
TABLE_SLOT_BITS = 64
#: Widest blinding sum ``h``'s table serves: the sum of up to 2^32 blindings.
TABLE_RHO_BITS = RHO_BITS + 32
#: Digit width of the tables: ``ceil(bits / 6) · 62`` multiplications to build each
#: and ``ceil(bits / 6)`` per power, cheapest over a few hundred commitments.
TABLE_WINDOW = 6

_DOMAIN = b"he-fed/paillier-binding/v1"
_MOD = gmpy2.mpz(P)


@lru_cache(maxsize=1)
def _h() -> Any:
    return _hashed(b"h")


def _hashed(label: bytes) -> Any:
    digest = hashlib.shake_256(_DOMAIN + label).digest(WIDTH + 16)
    value = gmpy2.mpz(int.from_bytes(digest, "big")) % _MOD
    return value * value % _MOD  # a square: in the order-Q subgroup


@exact_cache(maxsize=4)
def _generators(count: int) -> tuple[Any, ...]:
    return tuple(_hashed(b"g" + i.to_bytes(8, "big")) for i in range(count))


@lru_cache(maxsize=1)
def _h_table() -> PayingTable:
    return PayingTable(int(_h()), P, TABLE_RHO_BITS, TABLE_WINDOW)


@exact_cache(maxsize=TABLED_GENERATORS)
def _generator_table(index: int) -> PayingTable:
    return PayingTable(int(_generators(index + 1)[index]), P, TABLE_SLOT_BITS, TABLE_WINDOW)


def drop_tables() -> None:
    """Forget the fixed-base tables, so that the next commitment builds them afresh.

    For benchmarks that charge a run with the tables a fresh process would build.
    """
    _h_table.cache_clear()
    _generator_table.cache_clear()


def _product(pairs: list[tuple[int, int]], generators: Sequence[Any]) -> Any:
    """``prod g_i^(e_i) mod P`` over ``(i, e_i)`` with positive ``e_i``."""
    acc = gmpy2.mpz(1)
    rest = []
    for i, e in pairs:
        table = (
            _generator_table(i).table_for(e.bit_length())
            if i < TABLED_GENERATORS and e.bit_length() <= TABLE_SLOT_BITS
            else None
        )
        if table is None:
            rest.append((generators[i], e))
        else:
            acc = acc * table.pow(e) % _MOD
    return acc * product_of_powers(rest, _MOD) % _MOD if rest else acc


def commit(integers: Sequence[int], rho: int) -> bytes:
    """The commitment to ``integers`` (signed allowed) with blinding ``rho``."""
    generators = _generators(len(integers))
    values = [int(v) for v in integers]
    if len(values) > TABLED_GENERATORS:
        # Buckets throughout: they share their squarings over every base.
        positive = [(g, v) for g, v in zip(generators, values, strict=True) if v > 0]
        negative = [(g, -v) for g, v in zip(generators, values, strict=True) if v < 0]
        acc = product_of_powers(positive, _MOD)
        below = product_of_powers(negative, _MOD) if negative else None
    else:
        acc = _product([(i, v) for i, v in enumerate(values) if v > 0], generators)
        negative_pairs = [(i, -v) for i, v in enumerate(values) if v < 0]
        below = _product(negative_pairs, generators) if negative_pairs else None
    if rho >= 0 and rho.bit_length() <= TABLE_RHO_BITS:
        acc = acc * _h_table().pow(rho) % _MOD
    else:
        acc = acc * gmpy2.powmod(_h(), rho, _MOD) % _MOD
    if below is not None:
        acc = acc * gmpy2.invert(below, _MOD) % _MOD
    return int(acc).to_bytes(WIDTH, "big")


def product(commitments: Sequence[bytes], parts: int = 1) -> bytes | None:
    """The product of commitments, or None if one is malformed (size, range, subgroup).

    With ``parts``, each commitment is that many group elements side by side (a
    binding commitment and its weight commitment, :mod:`he_fed.crypto._weight_range`),
    multiplied part by part.
    """
    accs = [gmpy2.mpz(1)] * parts
    for blob in commitments:
        if len(blob) != parts * WIDTH:
            return None
        for i in range(parts):
            value = gmpy2.mpz(int.from_bytes(blob[i * WIDTH : (i + 1) * WIDTH], "big"))
            # In a safe-prime group the order-Q subgroup is the quadratic residues, so
            # Legendre's symbol decides membership (Euler's criterion: value^Q =
            # (value | P)) at a tiny fraction of an exponentiation's cost.
            if not 1 < value < _MOD - 1 or gmpy2.legendre(value, _MOD) != 1:
                return None
            accs[i] = accs[i] * value % _MOD
    return b"".join(int(acc).to_bytes(WIDTH, "big") for acc in accs)


def check(integers: Sequence[int], rho: int, expected: bytes) -> bool:
    """Whether slot sums ``integers`` and blinding sum ``rho`` open ``expected``."""
    return commit(integers, rho) == expected
