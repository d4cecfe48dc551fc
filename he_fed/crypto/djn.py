"""Paillier arithmetic on gmpy2: key generation, DJN encryption and CRT decryption.

The ciphertexts are standard Paillier ciphertexts ``g^m · r^n mod n²`` with
``g = n + 1``, so any Paillier implementation holding ``p`` and ``q`` (phe's
``PaillierPrivateKey`` among them) decrypts them. What is fast is how ``r^n`` is
made, after Damgård, Jurik and Nielsen (PKC 2010, §4.2; also SecretFlow HEU):

* Keys use primes ``p ≡ q ≡ 3 (mod 4)``, so ``h = -x² mod n`` generates the
  subgroup of ``Z*_n`` elements with Jacobi symbol +1.
* The public key carries ``hs = h^n mod n²``. A random ``r^n`` is then
  ``hs^a = (h^a)^n`` for a random exponent ``a``, and a fixed-base table for ``hs``
  (built once per key) turns that exponentiation into about ``|a| / 8`` modular
  multiplications.
* ``g^m = 1 + m·n (mod n²)`` costs one multiplication.

The exponent ``a`` has ``n/2`` bits by default, as in HEU; then ``h^a`` is
statistically close to uniform in ``<h>`` and the scheme is as secure as Paillier
under DCR. A short exponent of twice the security level is offered only on request:
it additionally assumes that short-exponent discrete logarithms in ``<h>`` are hard
(DJN's "small exponent" assumption).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import gmpy2

__all__ = [
    "CRTDecryptor",
    "FixedBase",
    "djn_generator",
    "fixed_base",
    "generate_primes",
    "security_bits",
]

#: Window of the fixed-base table: 8 bits gives ``|a| / 8`` multiplications per
#: encryption and a table of ``|a| / 8 × 256`` residues (16 MiB for 1024-bit ``a``
#: under a 2048-bit key).
WINDOW_BITS = 8


def security_bits(key_bits: int) -> int:
    """Symmetric-equivalent security of a factoring-based modulus (NIST SP 800-57 Table 2)."""
    for bits, level in ((15360, 256), (7680, 192), (3072, 128), (2048, 112), (1024, 80)):
        if key_bits >= bits:
            return level
    return 64


def _prime_3_mod_4(bits: int) -> Any:
    """A random prime of exactly ``bits`` bits, congruent to 3 mod 4, top two bits set."""
    while True:
        candidate = gmpy2.mpz(secrets.randbits(bits) | (3 << (bits - 2)) | 3)
        p = gmpy2.next_prime(candidate)
        while p % 4 != 3:
            p = gmpy2.next_prime(p)
        if p.bit_length() == bits:
            return p


def generate_primes(key_bits: int) -> tuple[int, int]:
    """Two distinct primes ``p ≡ q ≡ 3 (mod 4)`` whose product has exactly ``key_bits`` bits."""
    half = key_bits // 2
    while True:
        p, q = _prime_3_mod_4(half), _prime_3_mod_4(key_bits - half)
        if p != q and (p * q).bit_length() == key_bits:
            return int(p), int(q)


def djn_generator(n: int) -> int:
    """``hs = (-x²)^n mod n²`` for a random unit ``x``: the DJN public extra."""
    n_ = gmpy2.mpz(n)
    while True:
        x = gmpy2.mpz(secrets.randbelow(n - 2) + 2)
        if gmpy2.gcd(x, n_) == 1:
            break
    h = (-x * x) % n_
    return int(gmpy2.powmod(h, n_, n_ * n_))


class FixedBase:
    """``base^e mod modulus`` by table lookup, for exponents of up to ``exponent_bits`` bits.

    Row ``i`` holds ``base^(j · 2^(wi))`` for ``j < 2^w``, so ``base^e`` is the product
    of one entry per ``w``-bit digit of ``e``.

    Parameters
    ----------
    base, modulus : int
        The fixed base and the modulus.
    exponent_bits : int
        Largest exponent size the table serves.
    window : int, default=WINDOW_BITS
        Digit size ``w``.
    """

    def __init__(
        self, base: int, modulus: int, exponent_bits: int, window: int = WINDOW_BITS
    ) -> None:
        self.modulus = gmpy2.mpz(modulus)
        self.exponent_bits = exponent_bits
        self.window = window
        size = 1 << window
        rows = -(-exponent_bits // window)
        g = gmpy2.mpz(base) % self.modulus
        table = []
        for _ in range(rows):
            row = [gmpy2.mpz(1), g]
            for _ in range(size - 2):
                row.append(row[-1] * g % self.modulus)
            table.append(row)
            g = row[-1] * g % self.modulus  # base^(2^(8(i+1)))
        self._table = table

    def pow(self, exponent: int) -> Any:
        """``base^exponent mod modulus`` (``0 <= exponent < 2**exponent_bits``)."""
        if not 0 <= exponent < 1 << self.exponent_bits:
            raise ValueError("exponent out of the table's range")
        mod = self.modulus
        acc = gmpy2.mpz(1)
        window = self.window
        mask = (1 << window) - 1
        for row in self._table:
            if not exponent:
                break
            digit = exponent & mask
            if digit:
                acc = acc * row[digit] % mod
            exponent >>= window
        return acc


@lru_cache(maxsize=4)
def fixed_base(base: int, modulus: int, exponent_bits: int) -> FixedBase:
    """A shared table per (base, modulus, exponent size).

    Every key object loaded from the same bytes shares one table, so a simulation
    of many clients in one process builds it once (16 MiB at 2048 bits), as each
    real client would once on its own machine.
    """
    return FixedBase(base, modulus, exponent_bits)


@dataclass(frozen=True)
class CRTDecryptor:
    """Paillier decryption by the Chinese remainder theorem (two half-size exponentiations).

    Parameters
    ----------
    p, q : int
        The secret primes.
    """

    p: int
    q: int
    _pre: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        p, q = gmpy2.mpz(self.p), gmpy2.mpz(self.q)
        n = p * q
        psq, qsq = p * p, q * q
        # h_p = L_p(g^(p-1) mod p²)^-1 mod p with g = n + 1, likewise for q.
        hp = gmpy2.invert((gmpy2.powmod(n + 1, p - 1, psq) - 1) // p, p)
        hq = gmpy2.invert((gmpy2.powmod(n + 1, q - 1, qsq) - 1) // q, q)
        object.__setattr__(self, "_pre", (p, q, psq, qsq, hp, hq, gmpy2.invert(p, q)))

    def decrypt(self, ciphertext: Any) -> int:
        """The plaintext ``m`` in ``[0, n)`` of one ciphertext."""
        p, q, psq, qsq, hp, hq, p_inv = self._pre
        mp = (gmpy2.powmod(ciphertext, p - 1, psq) - 1) // p * hp % p
        mq = (gmpy2.powmod(ciphertext, q - 1, qsq) - 1) // q * hq % q
        return int(mp + (mq - mp) * p_inv % q * p)
