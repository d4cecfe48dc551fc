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

__all__ = ["Quantizer"]

#: Largest precision that still fits numpy's int64 once signed.
_INT64_BITS = 62


@dataclass(frozen=True)
class Quantizer:
    """Map reals in ``[-clip, clip]`` to signed integers of ``precision_bits`` bits.

    The integers are ``round(x / step)`` with ``step = clip / levels`` and
    ``levels = 2**(precision_bits - 1) - 1``, so that ``0.0`` and ``±clip`` are
    exactly representable and the quantization error is at most ``step / 2``.

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
            Python integers.
        """
        scaled = np.rint(np.asarray(x, dtype=np.float64) * (self.levels / self.clip))
        # Float rounding can land one level past the edge when levels > 2**52.
        scaled = np.clip(scaled, -float(self.levels), float(self.levels))
        if self.precision_bits <= _INT64_BITS:
            return scaled.astype(np.int64)
        out = np.array([int(v) for v in scaled], dtype=object)
        return np.clip(out, -self.levels, self.levels)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Map (sums of) quantized integers back to reals."""
        if q.dtype == object:
            q = np.array([float(v) for v in q], dtype=np.float64)
        return q.astype(np.float64) * self.step
