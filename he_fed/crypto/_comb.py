"""Fixed-base exponentiation by Lim and Lee's comb, for tables sized from a known workload.

``base^e`` for exponents of up to ``b`` bits, after Lim and Lee ("More flexible
exponentiation with precomputation", CRYPTO '94; Menezes, van Oorschot and
Vanstone, *Handbook of Applied Cryptography*, algorithm 14.117). The exponent is
cut into ``h`` rows of ``a`` bits; each column of ``h`` bits indexes a table of the
``2^h`` products of ``base^(2^(k·a))``, and the columns are split into ``v``
blocks of ``a / v``, each with a table of its own, so that an exponentiation
costs ``a / v - 1`` squarings and about ``a`` multiplications.

Against :class:`~he_fed.crypto._djn.FixedBase` (one row of ``2^w`` powers per
``w``-bit digit), the comb pays a little more per exponentiation and much less to
build, so it wins when the table serves few exponentiations: python-paillier's
federated example encrypts 150 times and checks 450 proof exponentiations under a
key it generated a moment earlier. :func:`comb_shape` chooses ``h`` and ``v`` for
the announced uses (``he_fed.crypto._djn.plan_uses``); the result is the same
residue as ``powmod``.
"""

from __future__ import annotations

from typing import Any

import gmpy2
import numpy as np

from he_fed.crypto._exact_cache import Sealed

__all__ = ["CombTable", "comb_cost", "comb_shape"]

#: Widest comb (``2^h`` entries per block) considered.
MAX_TEETH = 14


def _column(exponent_bits: int, teeth: int, blocks: int) -> tuple[int, int]:
    """``(a, a / v)``: the padded column length and the block length."""
    rows = -(-exponent_bits // teeth)
    block = -(-rows // blocks)
    return block * blocks, block


def comb_cost(exponent_bits: int, teeth: int, blocks: int, uses: int) -> int:
    """Modular multiplications (squarings included) to build and use a comb ``uses`` times.

    Building takes ``h · a`` squarings and ``v · (2^h - 1 - h)`` multiplications;
    each exponentiation ``a / v - 1`` squarings and ``a`` multiplications at most.
    """
    column, block = _column(exponent_bits, teeth, blocks)
    build = teeth * column + blocks * ((1 << teeth) - 1 - teeth)
    return build + max(uses, 0) * (block - 1 + column)


def comb_shape(
    modulus_bits: int, exponent_bits: int, uses: int, budget_bytes: int
) -> tuple[int, int]:
    """The cheapest ``(h, v)`` for ``uses`` exponentiations whose table fits ``budget_bytes``.

    For a 2048-bit key's randomisers (1,024-bit exponents modulo a 4,096-bit
    ``n²``) and 150 encryptions: ``(9, 6)``, 3,072 residues (1.5 MiB) and 23,838
    multiplications, where the cheapest row table (6-bit window, 5.3 MiB) takes
    36,594.
    """
    width = (modulus_bits + 7) // 8
    best: tuple[int, int, int, int] | None = None
    for teeth in range(1, MAX_TEETH + 1):
        rows = -(-exponent_bits // teeth)
        for blocks in range(1, rows + 1):
            size = blocks * (1 << teeth) * width
            if size > budget_bytes:
                break
            cost = comb_cost(exponent_bits, teeth, blocks, uses)
            if best is None or (cost, size) < (best[0], best[1]):
                best = (cost, size, teeth, blocks)
    if best is None:  # even one block of two entries is over the budget
        return 1, 1
    return best[2], best[3]


class CombTable(Sealed):
    """``base^e mod modulus`` through a Lim–Lee comb, for ``0 <= e < 2**exponent_bits``.

    Parameters
    ----------
    base, modulus : int
        The fixed base and the modulus.
    exponent_bits : int
        Largest exponent size the table serves.
    teeth, blocks : int
        ``h`` (bits per column, ``2^h`` entries per block) and ``v`` (blocks).
    """

    def __init__(
        self, base: int, modulus: int, exponent_bits: int, teeth: int, blocks: int
    ) -> None:
        if exponent_bits <= 0 or teeth <= 0 or blocks <= 0:
            raise ValueError("exponent_bits, teeth and blocks must be positive")
        self.modulus = gmpy2.mpz(modulus)
        self.exponent_bits = exponent_bits
        self.teeth, self.blocks = teeth, blocks
        self._column, self._block = _column(exponent_bits, teeth, blocks)
        mod = self.modulus
        #: Bytes of residues the table holds.
        self.nbytes = blocks * (1 << teeth) * ((int(mod.bit_length()) + 7) // 8)
        # base^(2^s) for every s = k·a + j·(a / v), by repeated squaring.
        wanted = {
            k * self._column + j * self._block: None for k in range(teeth) for j in range(blocks)
        }
        g = gmpy2.mpz(base) % mod
        for s in range(teeth * self._column):
            if s in wanted:
                wanted[s] = g
            g = g * g % mod
        tables = []
        for j in range(blocks):
            powers = [wanted[k * self._column + j * self._block] for k in range(teeth)]
            entries: list[Any] = [gmpy2.mpz(1)] * (1 << teeth)
            for index in range(1, 1 << teeth):
                low = index & -index
                rest = index ^ low
                power = powers[low.bit_length() - 1]
                entries[index] = power if not rest else entries[rest] * power % mod
            tables.append(tuple(entries))
        self._tables = tuple(tables)
        weights = np.left_shift(1, np.arange(teeth, dtype=np.int64))[:, None]
        weights.flags.writeable = False
        self._weights = weights
        self._seal()  # shared by every key object of a process (red team 15)

    def _columns(self, exponent: int) -> list[int]:
        """Column ``p``'s index: bit ``p`` of every ``a``-bit row, row ``k`` as bit ``k``."""
        total = self.teeth * self._column
        raw = np.frombuffer(exponent.to_bytes((total + 7) // 8, "little"), dtype=np.uint8)
        bits = np.unpackbits(raw, bitorder="little")[:total].astype(np.int64)
        columns: list[int] = (
            (bits.reshape(self.teeth, self._column) * self._weights).sum(axis=0).tolist()
        )
        return columns

    def pow(self, exponent: int) -> Any:
        """``base^exponent mod modulus`` (``0 <= exponent < 2**exponent_bits``)."""
        if not 0 <= exponent < 1 << self.exponent_bits:
            raise ValueError("exponent out of the table's range")
        columns = self._columns(exponent)
        mod, block, tables = self.modulus, self._block, self._tables
        acc = gmpy2.mpz(1)
        for t in range(block - 1, -1, -1):
            if acc != 1:
                acc = acc * acc % mod
            for j, entries in enumerate(tables):
                index = columns[j * block + t]
                if index:
                    acc = acc * entries[index] % mod
        return acc
