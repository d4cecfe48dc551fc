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

A public key read from bytes is checked by :func:`check_public_key` for everything
that can be checked without the factorisation (whether ``hs`` is an ``n``-th power
is exactly what DCR says cannot be), and the fixed-base table never exceeds
:data:`TABLE_BUDGET_BYTES`, whatever the key: its window shrinks as keys grow.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import gmpy2

from he_fed.crypto._comb import CombTable, comb_shape
from he_fed.crypto._exact_cache import Sealed, exact_cache, exact_int
from he_fed.exceptions import ConfigurationError, MalformedMessage

__all__ = [
    "TABLE_BUDGET_BYTES",
    "CRTDecryptor",
    "FixedBase",
    "PayingTable",
    "check_public_key",
    "djn_generator",
    "fixed_base",
    "generate_primes",
    "plan_uses",
    "security_bits",
    "table_bytes",
    "table_window",
    "window_for_uses",
]

#: Largest window of the fixed-base table: 8 bits gives ``|a| / 8`` multiplications
#: per encryption and a table of ``|a| / 8 × 256`` residues (16 MiB for 1024-bit
#: ``a`` under a 2048-bit key).
WINDOW_BITS = 8
#: Most bytes of residues one fixed-base table may hold. Keys up to 4096 bits keep
#: the 8-bit window (64 MiB at 4096); larger keys get a narrower one (5 bits and
#: 54 MiB at 8192, where an 8-bit window would take 256 MiB).
TABLE_BUDGET_BYTES = 64 << 20
#: Trial division bound: a modulus with a prime factor below it is refused.
SMALL_PRIME_BOUND = 1 << 16
#: ``hs`` must not have an order dividing ``lcm(1..ORDER_BOUND)`` modulo any prime
#: factor of ``n`` (a randomiser ``hs^a`` of small order would take few values).
ORDER_BOUND = 256


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


@lru_cache(maxsize=1)
def _small_primes_product() -> Any:
    return gmpy2.primorial(SMALL_PRIME_BOUND - 1)


@lru_cache(maxsize=1)
def _small_orders() -> int:
    return math.lcm(*range(1, ORDER_BOUND + 1))


def check_public_key(n: int, hs: int) -> None:
    """Refuse a DJN public key ``(n, hs)`` that no :func:`generate_primes` key can be.

    What is checked without the factorisation, in a few milliseconds at 2048 bits
    (under 0.1 s at 8192): ``n`` is odd, has no prime factor below
    :data:`SMALL_PRIME_BOUND`, is not a perfect power and is not prime (it need not
    be ``≡ 1 mod 4``: keys from python-paillier have primes of either residue);
    ``hs`` is a unit modulo ``n²`` other than 1, its residue modulo ``n`` has the
    Jacobi symbol of ``-1`` (``hs = (-x²)^n`` with ``n`` odd), and its order
    modulo each prime factor of
    ``n`` does not divide ``lcm(1..ORDER_BOUND)``. Whether ``hs`` is an ``n``-th
    power modulo ``n²`` is the decisional composite residuosity problem, so it is
    not checked. The caller checks the bit length of ``n`` against the scheme.

    A key that passed is remembered by value (the last :data:`_CHECKED_KEYS`), since
    the verdict depends on ``(n, hs)`` alone: the clients simulated in one process
    read the same key, and a Flower node rebuilds its client from the key's bytes
    every round, so without it each paid the checks, mostly the primality test,
    once per client and round. A key that fails is checked again each time.

    Raises
    ------
    MalformedMessage
        Naming the first check that fails.
    """
    _passed(exact_int(n), exact_int(hs))


#: Public keys whose passing checks :func:`check_public_key` remembers.
_CHECKED_KEYS = 8


@exact_cache(maxsize=_CHECKED_KEYS)
def _passed(n: int, hs: int) -> bool:
    """:func:`check_public_key`'s checks; True, or the exception (never cached)."""
    n_ = gmpy2.mpz(n)
    if gmpy2.gcd(n_, _small_primes_product()) != 1:
        raise MalformedMessage(
            f"paillier modulus has a prime factor below {SMALL_PRIME_BOUND}: not an RSA modulus"
        )
    if gmpy2.is_power(n_):
        raise MalformedMessage("paillier modulus is a perfect power: not an RSA modulus")
    if gmpy2.is_bpsw_prp(n_):
        raise MalformedMessage("paillier modulus is prime: anyone could decrypt")
    hs_ = gmpy2.mpz(hs)
    if not 1 < hs_ < n_ * n_ or gmpy2.gcd(hs_, n_) != 1:
        raise MalformedMessage(
            "paillier key's DJN generator is not a unit of Z*_(n^2) other than 1"
        )
    if gmpy2.jacobi(hs_ % n_, n_) != gmpy2.jacobi(n_ - 1, n_):
        # (-x^2)^n has the Jacobi symbol of -1 (n is odd): +1 for DJN primes.
        raise MalformedMessage(
            "paillier key's DJN generator is not (-x^2)^n: its Jacobi symbol is not (-1 | n)"
        )
    if gmpy2.gcd(gmpy2.powmod(hs_, _small_orders(), n_) - 1, n_) != 1:
        raise MalformedMessage(
            "paillier key's DJN generator has a small order modulo a factor of n: "
            "its randomisers would take few values"
        )
    return True


def table_window(modulus_bits: int, exponent_bits: int) -> int:
    """Widest window, up to :data:`WINDOW_BITS`, whose table fits :data:`TABLE_BUDGET_BYTES`.

    A table has ``ceil(exponent_bits / w)`` rows of ``2**w`` residues of
    ``modulus_bits`` bits; both sizes come from the key itself.

    Raises
    ------
    MalformedMessage
        If even a 1-bit window would exceed the budget (no supported key does).
    """
    for window in range(WINDOW_BITS, 0, -1):
        if table_bytes(modulus_bits, exponent_bits, window) <= TABLE_BUDGET_BYTES:
            return window
    raise MalformedMessage(
        f"a fixed-base table for a {modulus_bits}-bit modulus would exceed "
        f"{TABLE_BUDGET_BYTES >> 20} MiB"
    )


def table_bytes(modulus_bits: int, exponent_bits: int, window: int) -> int:
    """Bytes of residues in a fixed-base table (Python's object overhead aside)."""
    rows = -(-exponent_bits // window)
    return rows * (1 << window) * ((modulus_bits + 7) // 8)


class FixedBase(Sealed):
    """``base^e mod modulus`` by table lookup, for exponents of up to ``exponent_bits`` bits.

    Row ``i`` holds ``base^(j · 2^(wi))`` for ``j < 2^w``, so ``base^e`` is the product
    of one entry per ``w``-bit digit of ``e``.

    Parameters
    ----------
    base, modulus : int
        The fixed base and the modulus.
    exponent_bits : int
        Largest exponent size the table serves (a small key's proof nonces are longer
        than its modulus).
    window : int, optional
        Digit size ``w``. By default :func:`table_window`: 8 bits unless the table
        would exceed :data:`TABLE_BUDGET_BYTES`.
    """

    def __init__(
        self, base: int, modulus: int, exponent_bits: int, window: int | None = None
    ) -> None:
        self.modulus = gmpy2.mpz(modulus)
        modulus_bits = int(self.modulus.bit_length())
        if exponent_bits < 1:  # longer than the modulus is fine: table_window bounds the rows
            raise ConfigurationError("exponent_bits must be positive")
        if window is None:
            window = table_window(modulus_bits, exponent_bits)
        self.exponent_bits = exponent_bits
        self.window = window
        #: Bytes of residues the table holds.
        self.nbytes = table_bytes(modulus_bits, exponent_bits, window)
        size = 1 << window
        rows = -(-exponent_bits // window)
        g = gmpy2.mpz(base) % self.modulus
        table = []
        for _ in range(rows):
            row = [gmpy2.mpz(1), g]
            for _ in range(size - 2):
                row.append(row[-1] * g % self.modulus)
            table.append(tuple(row))
            g = row[-1] * g % self.modulus  # base^(2^(w(i+1)))
        self._table = tuple(table)
        self._seal()  # shared by every key object of a process (red team 15)

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


class PayingTable(Sealed):
    """A :class:`FixedBase` built only once the powers asked of it have paid for it.

    A table of ``r`` rows of ``2^w`` powers costs about ``r · 2^w`` multiplications
    to build and saves most of an exponentiation's ``|e|`` squarings at each use: it
    pays in a long run and is wasted in a short one. A command that proves one
    update built 68 tables of the commitments and their proofs, most of them used
    once or a few times, in 0.5 s of its 0.57. So each power asked for is charged
    its exponent's bits, and computed another way (``powmod``, or the caller's
    buckets) until the charges reach the table's price; then the table is built.
    Whatever the run's length, that costs at most about twice the cheaper of
    building at once and never building (the ski-rental bound).

    Parameters
    ----------
    base, modulus, exponent_bits, window : int
        As :class:`FixedBase`.
    """

    def __init__(self, base: int, modulus: int, exponent_bits: int, window: int) -> None:
        self.modulus = gmpy2.mpz(modulus)
        if exponent_bits < 1 or window < 1:
            raise ConfigurationError("exponent_bits and window must be positive")
        self.base = gmpy2.mpz(base) % self.modulus
        self.exponent_bits = exponent_bits
        self.window = window
        #: What building the table costs, in multiplications (one per entry).
        self.price = -(-exponent_bits // window) * ((1 << window) - 1)
        # Bits charged so far, then the table: one list each, so the object stays
        # sealed (red team 15) while it counts. Two threads may both build; either
        # table computes the same powers.
        self._charged = [0]
        self._built: list[FixedBase] = []
        self._seal()

    def table_for(self, exponent_bits: int) -> FixedBase | None:
        """The table, if the powers asked for so far (this one included) paid for it.

        ``None`` means: compute this power another way. ``exponent_bits`` is its
        exponent's size, charged against the table's price.
        """
        if self._built:
            return self._built[0]
        self._charged[0] += exponent_bits
        if self._charged[0] < self.price:
            return None
        self._built.append(FixedBase(self.base, self.modulus, self.exponent_bits, self.window))
        return self._built[0]

    def pow(self, exponent: int) -> Any:
        """``base^exponent mod modulus`` (``0 <= exponent < 2**exponent_bits``)."""
        if not 0 <= exponent < 1 << self.exponent_bits:
            raise ValueError("exponent out of the table's range")
        table = self.table_for(exponent.bit_length())
        if table is None:
            return gmpy2.powmod(self.base, exponent, self.modulus)
        return table.pow(exponent)


def window_for_uses(modulus_bits: int, exponent_bits: int, uses: int | None) -> int:
    """The window that makes ``uses`` exponentiations cheapest, table included.

    A table of window ``w`` costs ``ceil(b / w) · 2^w`` multiplications to build and
    ``ceil(b / w)`` per exponentiation (``b = exponent_bits``), so ``uses`` of them
    cost ``ceil(b / w) · (2^w + uses)``. For a 1024-bit exponent modulo a 4096-bit
    ``n²`` the 8-bit window (16 MiB) pays from 735 uses; 150 are cheapest with a
    6-bit one (5.3 MiB). ``None`` (nothing planned) gives :func:`table_window`, the
    widest within :data:`TABLE_BUDGET_BYTES`.
    """
    widest = table_window(modulus_bits, exponent_bits)
    if uses is None:
        return widest
    return min(
        range(1, widest + 1),
        key=lambda w: (-(-exponent_bits // w) * ((1 << w) + max(uses, 0)), -w),
    )


#: Exponentiations announced with :func:`plan_uses` for tables not built yet.
_PLANNED: dict[tuple[int, int, int], int] = {}
_PLANNED_KEYS = 16


def plan_uses(base: int, modulus: int, exponent_bits: int, uses: int) -> None:
    """Announce ``uses`` more exponentiations through the table of ``fixed_base``.

    Announcements add up (each client of a simulation announces its own) until the
    table is built, on its first use, with :func:`window_for_uses` for their total.
    A table already built is kept. Without an announcement a table gets the widest
    window, which pays for long runs.
    """
    key = (exact_int(base), exact_int(modulus), exact_int(exponent_bits))
    if len(_PLANNED) >= _PLANNED_KEYS and key not in _PLANNED:
        _PLANNED.pop(next(iter(_PLANNED)))
    _PLANNED[key] = _PLANNED.get(key, 0) + max(exact_int(uses), 0)


def fixed_base(base: int, modulus: int, exponent_bits: int) -> FixedBase | CombTable:
    """A shared table per (base, modulus, exponent size).

    Every key object loaded from the same bytes shares one table, so a simulation
    of many clients in one process builds it once (16 MiB at 2048 bits, never more
    than :data:`TABLE_BUDGET_BYTES`), as each real client would once on its own
    machine. If uses were announced with :func:`plan_uses` before it is built, it
    is a Lim-Lee comb (:class:`~he_fed.crypto._comb.CombTable`) shaped for their
    total, in no more memory than the unannounced table; otherwise rows of ``2^w``
    powers (:class:`FixedBase`), whose window pays for long runs.
    """
    return _fixed_base(exact_int(base), exact_int(modulus), exact_int(exponent_bits))


@exact_cache(maxsize=4)
def _fixed_base(base: int, modulus: int, exponent_bits: int) -> FixedBase | CombTable:
    uses = _PLANNED.pop((base, modulus, exponent_bits), None)
    window = window_for_uses(modulus.bit_length(), exponent_bits, uses)
    if uses is None:
        return FixedBase(base, modulus, exponent_bits, window)
    # A known workload: Lim-Lee's comb, which costs far less to build than rows of
    # 2^w powers, in no more memory than the unplanned table would take.
    widest = table_bytes(
        modulus.bit_length(), exponent_bits, table_window(modulus.bit_length(), exponent_bits)
    )
    teeth, blocks = comb_shape(modulus.bit_length(), exponent_bits, uses, widest)
    return CombTable(base, modulus, exponent_bits, teeth, blocks)


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
