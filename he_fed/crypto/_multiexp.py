"""Products of many powers, ``prod g_i^(e_i) mod m``, by Pippenger's bucket method.

Binding commitments (one power per value slot) and commitment proofs (one power
per ciphertext) both need such products. Computed one ``powmod`` at a time, each
base pays its own squarings; here one squaring per exponent bit is shared by every
base, and each base costs one multiplication per ``c``-bit digit of its exponent.
The result is the same residue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gmpy2

__all__ = ["bucket_window", "product_of_powers"]

#: Bases from which buckets beat one ``powmod`` per base: combining the buckets
#: costs about ``2^(c+1)`` multiplications in Python whatever the count, which a
#: few bases do not win back.
BUCKETS_FROM = 5


def bucket_window(count: int, bits: int) -> int:
    """The digit width that makes :func:`product_of_powers` cheapest.

    Each ``c``-bit digit position costs ``count`` multiplications into buckets and
    about ``2^(c+1)`` to combine them, so ``ceil(bits / c) · (count + 2^(c+1))``:
    7 bits for 2,001 exponents of 25 bits (about 9,000 multiplications where 2,001
    ``powmod`` calls take about 75,000), 4 bits for 40 of 128 bits.
    """
    return min(range(1, 17), key=lambda c: (-(-bits // c) * (count + (2 << c)), c))


def product_of_powers(pairs: Sequence[tuple[Any, int]], modulus: Any) -> Any:
    """``prod g^e mod modulus`` over ``(g, e)`` pairs with non-negative exponents.

    Fewer than :data:`BUCKETS_FROM` bases take one ``powmod`` each.
    """
    mod = gmpy2.mpz(modulus)
    pairs = [(g, int(e)) for g, e in pairs if e]
    if not pairs:
        return gmpy2.mpz(1) % mod
    if len(pairs) < BUCKETS_FROM:
        acc = gmpy2.mpz(1)
        for g, e in pairs:
            acc = acc * gmpy2.powmod(g, e, mod) % mod
        return acc
    bits = max(e.bit_length() for _, e in pairs)
    window = bucket_window(len(pairs), bits)
    mask = (1 << window) - 1
    acc = gmpy2.mpz(1)
    for shift in range(-(-bits // window) * window - window, -1, -window):
        if acc != 1:
            for _ in range(window):
                acc = acc * acc % mod
        buckets: list[Any] = [None] * (mask + 1)
        for g, e in pairs:
            digit = (e >> shift) & mask
            if digit:
                held = buckets[digit]
                buckets[digit] = g % mod if held is None else held * g % mod
        # prod_d bucket[d]^d as running products, from the highest digit down.
        running = total = gmpy2.mpz(1)
        for digit in range(mask, 0, -1):
            if buckets[digit] is not None:
                running = running * buckets[digit] % mod
            if running != 1:
                total = total * running % mod
        acc = acc * total % mod
    return acc
