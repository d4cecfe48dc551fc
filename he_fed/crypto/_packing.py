"""Quantization onto one fixed-point scale shared by every client.

All clients of a federation quantize with the same :class:`Quantizer`, chosen by
the encoding plan before training (DESIGN §4). There is no per-number exponent:
such exponents leak magnitudes in the clear, and adding numbers with different
exponents costs a modular exponentiation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["Quantizer", "SlotLayout"]

#: Largest precision that still fits numpy's int64 once signed.
_INT64_BITS = 62
#: Widest precision quantized in doubles: ``x · (levels / clip)`` stays below ``2**47``,
#: where two roundings move it by less than ``2**-4`` of a level.
_FLOAT_BITS = 48


def _round_ratio(x: float, levels: int, clip: float) -> int:
    """``x · levels / clip`` rounded half to even, in exact integers."""
    num, den = x.as_integer_ratio()
    c_num, c_den = clip.as_integer_ratio()
    q, r = divmod(num * levels * c_den, den * c_num)
    twice, whole = 2 * r, den * c_num
    return q + 1 if twice > whole or (twice == whole and q & 1) else q


@dataclass(frozen=True)
class Quantizer:
    """Map reals in ``[-clip, clip]`` to signed integers of ``precision_bits`` bits.

    The integers are ``round(x / step)`` with ``step = clip / levels`` and
    ``levels = 2**(precision_bits - 1) - 1``, so that ``0.0`` and ``±clip`` are
    exactly representable and the quantization error is at most ``step / 2`` (plus,
    at 48 bits or fewer, a double's rounding: under ``step / 16``).

    Parameters
    ----------
    clip : float
        Largest magnitude representable. Callers check that inputs lie within it.
    precision_bits : int
        Width of the signed integers, sign included (2 to 128).
    """

    clip: float
    precision_bits: int

    def __post_init__(self) -> None:
        if not 2 <= self.precision_bits <= 128:
            raise ValueError("precision_bits must be between 2 and 128")
        if not (np.isfinite(self.clip) and self.clip > 0):
            raise ValueError("clip must be a positive finite number")

    @cached_property
    def levels(self) -> int:
        """Largest quantized magnitude, ``2**(precision_bits - 1) - 1``."""
        return 2 ** (self.precision_bits - 1) - 1

    @cached_property
    def step(self) -> float:
        """Real value of one quantization level."""
        return float(self.clip) / self.levels

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Quantize values already known to lie in ``[-clip, clip]``.

        Parameters
        ----------
        x : ndarray of shape (n,)
            Finite values within the clip bound.

        Returns
        -------
        ndarray of shape (n,)
            ``int64`` when ``precision_bits <= 62``, otherwise an object array of
            Python integers: ``round(x · levels / clip)``, never beyond
            ``±levels``; exactly so above 48 bits (in integers, since a double's
            product is coarser than a level there), and below within a double's
            rounding (under ``2**-4`` of a level).
        """
        values = np.asarray(x, dtype=np.float64)
        if self.precision_bits <= _FLOAT_BITS:
            # float(levels) is exact here, so the clip holds ±levels.
            scaled = np.rint(values * (self.levels / self.clip))
            return np.clip(scaled, -float(self.levels), float(self.levels)).astype(np.int64)
        # Wider grids are finer than a double: round x · levels / clip exactly.
        exact = [_round_ratio(v, self.levels, self.clip) for v in values.tolist()]
        out = [max(-self.levels, min(self.levels, q)) for q in exact]
        return np.array(out, dtype=np.int64 if self.precision_bits <= _INT64_BITS else object)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Map (sums of) quantized integers back to reals."""
        if q.dtype == object:
            q = np.array([float(v) for v in q], dtype=np.float64)
        return q.astype(np.float64) * self.step


@dataclass(frozen=True)
class SlotLayout:
    """Non-negative integers packed side by side into big plaintext integers.

    Value ``i`` of a chunk occupies bits ``[i * slot_bits, (i + 1) * slot_bits)``.
    Packing is exact as long as every (summed) value stays below
    ``2**slot_bits``; the plan that builds the layout guarantees it.

    Parameters
    ----------
    slot_bits : int
        Width of one slot.
    slots : int
        Slots per plaintext.
    """

    slot_bits: int
    slots: int

    def __post_init__(self) -> None:
        if self.slot_bits < 1 or self.slots < 1:
            raise ValueError("a layout needs at least one slot of at least one bit")

    def chunks(self, size: int) -> int:
        """Plaintexts needed for ``size`` values."""
        return -(-size // self.slots)

    def pack(self, values: np.ndarray) -> list[int]:
        """Pack non-negative integers (int64 or Python ints) into plaintext integers."""
        out = []
        for start in range(0, len(values), self.slots):
            chunk = values[start : start + self.slots]
            if self.slot_bits <= _INT64_BITS and chunk.dtype != object:
                out.append(self._pack_vectorised(chunk.astype(np.uint64)))
            else:
                m = 0
                for v in reversed(chunk.tolist()):
                    m = (m << self.slot_bits) | int(v)
                out.append(m)
        return out

    def unpack(self, plaintexts: list[int], size: int) -> np.ndarray:
        """Split plaintext integers back into ``size`` slot values.

        Returns
        -------
        ndarray of shape (size,)
            ``int64`` when slots are at most 62 bits, otherwise Python integers.
        """
        parts = []
        remaining = size
        for m in plaintexts:
            k = min(self.slots, remaining)
            if self.slot_bits <= _INT64_BITS:
                parts.append(self._unpack_vectorised(m, k))
            else:
                mask = (1 << self.slot_bits) - 1
                parts.append(
                    np.array([(m >> (i * self.slot_bits)) & mask for i in range(k)], dtype=object)
                )
            remaining -= k
        return np.concatenate(parts)

    def _pack_vectorised(self, chunk: np.ndarray) -> int:
        shifts = np.arange(self.slot_bits, dtype=np.uint64)
        bits = ((chunk[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        packed = np.packbits(bits.ravel(), bitorder="little")
        return int.from_bytes(packed.tobytes(), "little")

    def _unpack_vectorised(self, m: int, k: int) -> np.ndarray:
        total_bits = k * self.slot_bits
        raw = np.frombuffer(m.to_bytes((total_bits + 7) // 8, "little"), dtype=np.uint8)
        bits = np.unpackbits(raw, bitorder="little")[:total_bits].reshape(k, self.slot_bits)
        weights = np.left_shift(np.uint64(1), np.arange(self.slot_bits, dtype=np.uint64))
        return (bits.astype(np.uint64) * weights).sum(axis=1).astype(np.int64)
