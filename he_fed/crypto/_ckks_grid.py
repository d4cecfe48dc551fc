"""The CKKS integer grid: what clients encode, and what the key holder may release.

A decrypted CKKS value is the plaintext plus an error that depends on the secret
key. Released as it is, one ciphertext's decryption gives the key away (Li and
Micciancio, EUROCRYPT 2021: ``s = (Delta * release - c0) / c1`` in ``R_q``). So
clients encode integers only, as packed Paillier does: each value ``x`` becomes
``round(x * 2**bits)``, multiplied by the contribution's integer weight, and the
weight itself rides as the last value. The key holder decodes every value of
every ciphertext, rounds each to the nearest integer and releases only those
integers (times the grid step): the exact sum of what the clients encoded, a
function of the plaintext alone. The scale is chosen so that an honest sum's error
stays below ``RESIDUAL_THRESHOLD`` (``tau``) except with probability ``2**-40``
per release (:mod:`he_fed.crypto.ckks_budget`); a value further from an integer
means the ciphertext is not an honest sum, and the key holder refuses it.

The checks run in a fixed order, and only the first can depend on the secret key
(``DESIGN.md``, "CKKS releases", has the argument):

1. every decoded value lies within ``tau`` of an integer, and below ``largest``,
   the magnitude the plan keeps every honest value under (``min(q/4, 2**52)``
   over the scale; else :class:`AggregateRejected` with ``off_grid=True``: the
   outcome depends on the decryption error, so it tells whoever shifted the
   ciphertext at most one bit about it, and the key holder counts these
   refusals). The magnitude bound keeps every coefficient of the decrypted
   polynomial far from ``q/2``, so that whether one of them wrapped around modulo
   ``q`` (which the error could decide, for an offset chosen to sit there) never
   reaches the checks below;
2. every value beyond the vector's (the unused slots of the last ciphertext and
   the padding half of its last slot) rounds to exactly 0;
3. the total weight is an integer in ``[count, count * max_weight]``;
4. every total lies within ``weight * levels`` of zero, so the released weighted
   mean lies in ``[-clip, clip]``.

Once the first check passes, every rounded integer is determined by the plaintext
and by any offset an attacker added, so the others depend on no secret. No
refusal message holds a decrypted value or says which value failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from he_fed.crypto.base import WeightedSum
from he_fed.crypto.ckks_budget import RESIDUAL_THRESHOLD
from he_fed.exceptions import AggregateRejected

__all__ = ["GridQuantizer"]


@dataclass(frozen=True)
class GridQuantizer:
    """Map reals in ``[-clip, clip]`` to integers on the grid of step ``2**-bits``.

    It mirrors :class:`he_fed.crypto.packing.Quantizer`, with a power-of-two step
    so that released totals (integers times the step) are exact doubles.

    Parameters
    ----------
    bits : int
        The grid step is ``2**-bits``.
    clip : float
        Largest magnitude of a value.
    """

    bits: int
    clip: float

    @cached_property
    def levels(self) -> int:
        """Largest quantized magnitude, ``floor(clip * 2**bits)``."""
        return math.floor(self.clip * 2.0**self.bits)  # scaling by 2**bits is exact

    @property
    def step(self) -> float:
        """Real value of one grid step, ``2**-bits``."""
        return 2.0**-self.bits

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Round values already known to lie in ``[-clip, clip]`` to grid integers.

        Values beyond ``levels`` steps (only possible within a step of the clip
        bound) round down to ``levels``, so that every sum stays in the plan's range.

        Returns
        -------
        ndarray of shape (n,), dtype int64
        """
        scaled = np.rint(np.asarray(x, dtype=np.float64) * 2.0**self.bits)
        return np.clip(scaled, -self.levels, self.levels).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Map (sums of) grid integers back to reals, exactly."""
        return np.asarray(q, dtype=np.float64) * self.step

    def release(
        self, decoded: np.ndarray, size: int, count: int, max_weight: int, largest: float
    ) -> WeightedSum:
        """Round a decrypted aggregate onto the grid, or refuse it.

        Parameters
        ----------
        decoded : ndarray of shape (chunks * N,)
            Every decoded value of every ciphertext, unrounded, in grid units. It is
            overwritten (with the residuals), so that a long vector costs no more
            memory than its decoding and its rounding.
        size : int
            The vector's number of values (the total weight follows them).
        count : int
            Contributions summed.
        max_weight : int
            Largest weight of one contribution.
        largest : float
            No honest value reaches this magnitude (grid units): ``min(q/4, 2**52)``
            over the scale.

        Raises
        ------
        AggregateRejected
            As the module docstring lists; ``off_grid`` is true for the first check.
        """
        in_range = -largest < decoded.min() and decoded.max() < largest  # a NaN fails too
        nearest = np.rint(decoded)
        residuals = np.abs(np.subtract(decoded, nearest, out=decoded), out=decoded)
        if not (in_range and residuals.max() <= RESIDUAL_THRESHOLD):
            raise AggregateRejected(
                "the decrypted aggregate is off the encoding grid: a contribution was not "
                "encoded on this plan's grid, or the ciphertext was altered after encryption",
                off_grid=True,
            )
        if np.any(nearest[size + 1 :]):
            raise AggregateRejected(
                "the decrypted aggregate has values beyond the vector's length: a "
                "contribution was longer than the vector, or the ciphertext was altered"
            )
        weight = nearest[size]
        if not count <= weight <= count * max_weight:
            raise AggregateRejected(
                f"the decrypted total weight of {count} contribution(s) lies outside "
                f"[{count}, {count * max_weight}]: the plan's max_weight was exceeded, or "
                "the ciphertext was altered"
            )
        totals = nearest[:size]
        if not -weight * self.levels <= totals.min() <= totals.max() <= weight * self.levels:
            raise AggregateRejected(
                "a decrypted total lies outside the total weight times the clip bound: a "
                "contribution exceeded the plan's clip, or the ciphertext was altered"
            )
        return WeightedSum(self.dequantize(totals), int(weight), count)
