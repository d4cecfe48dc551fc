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

One slot holds integers up to a bound the plan sets (every sum of them, times the
scale, stays below ``min(q/4, 2**52)``), which caps the grid for wide plans. Plans
that need a finer grid split each grid integer into ``digits`` digits of base
``2**digit_bits``, one slot each (:class:`GridQuantizer`); every digit slot is an
integer sum like any other, so everything below applies to it unchanged, and the
key holder recombines the rounded digit totals exactly, in Python integers.

The checks run in a fixed order, and only the first can depend on the secret key
(``DESIGN.md``, "CKKS releases", has the argument):

1. every decoded value (each digit of each value, the weight, the unused slots)
   lies within ``tau`` of an integer, and below ``largest``, the magnitude the
   plan keeps every honest value under (``min(q/4, 2**52)`` over the scale;
   else :class:`AggregateRejected` with ``off_grid=True``: the outcome depends on
   the decryption error, so it tells whoever shifted the ciphertext at most one
   bit about it, and the key holder counts these refusals). The magnitude bound
   keeps every coefficient of the decrypted polynomial far from ``q/2``, so that
   whether one of them wrapped around modulo ``q`` (which the error could decide,
   for an offset chosen to sit there) never reaches the checks below;
2. every value beyond the vector's (the unused slots of the last ciphertext and
   the padding half of its last slot) rounds to exactly 0;
3. the total weight is an integer in ``[count, count * max_weight]``;
4. every digit total lies within ``weight`` times its digit's bound, and every
   (recombined) total within ``weight * reach`` of zero (:attr:`GridQuantizer.reach`:
   ``levels`` for one digit, at most a few percent more for several, which is what
   digits proven one by one can reach), so the released weighted mean lies within
   the clip, or just beyond it for plans of several digits.

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

__all__ = [
    "MAX_DIGITS",
    "MAX_GRID_BITS",
    "MIN_GRID_BITS",
    "GridQuantizer",
    "digits_for",
    "finest_grid",
    "on_grid",
]

#: A grid resolves at least ``2**MIN_GRID_BITS`` levels up to the clip bound, and a
#: digit at least as many on either side of zero.
MIN_GRID_BITS = 4
#: Finest grid a plan may ask for: far beyond a double's 53 bits, for any clip.
MAX_GRID_BITS = 96
#: Most slots one value may take.
MAX_DIGITS = 16


@dataclass(frozen=True)
class GridQuantizer:
    """Map reals in ``[-clip, clip]`` to integers on the grid of step ``2**-bits``, in digits.

    It mirrors :class:`he_fed.crypto._packing.Quantizer`, with a power-of-two step
    so that released totals (integers times the step) are exact doubles.

    With ``digits`` above 1, each grid integer ``q`` is written in base
    ``B = 2**digit_bits`` as ``q = sum_i d_i * B**i``, least significant first,
    with balanced lower digits (``|d_i| <= B/2``) and whatever is left in the top
    one (``|d_top| <= levels // B**(digits - 1) + 1``, :attr:`digit_bounds`). Each
    digit takes a slot of its own, so a vector of ``n`` values becomes
    ``digits * n`` integers, a value's digits side by side. Sums of digits are sums
    of integers like any other slot's; the key holder recombines the rounded digit
    totals in Python integers, which is exact however many bits ``q`` has.

    Parameters
    ----------
    bits : int
        The grid step is ``2**-bits``.
    clip : float
        Largest magnitude of a value.
    digits : int, default=1
        Slots per value; 1 is the one-slot encoding, ``q`` itself in its slot.
    digit_bits : int, default=0
        The digit base is ``2**digit_bits`` (at least 2 when ``digits > 1``).
    """

    bits: int
    clip: float
    digits: int = 1
    digit_bits: int = 0

    @cached_property
    def levels(self) -> int:
        """Largest quantized magnitude, ``floor(clip * 2**bits)``."""
        return math.floor(self.clip * 2.0**self.bits)  # scaling by 2**bits is exact

    @property
    def step(self) -> float:
        """Real value of one grid step, ``2**-bits``."""
        return 2.0**-self.bits

    @cached_property
    def digit_bounds(self) -> tuple[int, ...]:
        """Largest magnitude of each digit of one value, least significant first.

        One digit: ``levels``. More: ``B/2`` for the balanced lower digits; the top
        digit is what remains after ``digits - 1`` divisions by ``B``, each rounded
        to the nearest integer, so it errs from ``q / B**(digits - 1)`` by less than
        ``1/2 + 1/(2B) + ... < 1``, and ``levels // B**(digits - 1) + 1`` bounds it.
        """
        if self.digits == 1:
            return (self.levels,)
        base = 1 << self.digit_bits
        top = self.levels // base ** (self.digits - 1) + 1
        return (base // 2,) * (self.digits - 1) + (top,)

    @cached_property
    def reach(self) -> int:
        """Largest magnitude the digit bounds let one value's digits recombine to.

        ``levels`` for one digit; with more, a little above it (the top digit's bound
        rounds up, and the lower digits reach ``B/2`` each). Every digit of every
        contribution is range-proven against its bound (:mod:`_value_range`), so the
        key holder checks recombined totals against ``weight · reach``: a check at
        ``weight · levels`` could fail for proven contributions, depending on what the
        honest ones hold (red team 9), and so answer a question about them.
        """
        if self.digits == 1:
            return self.levels
        base = 1 << self.digit_bits
        return sum(b * base**i for i, b in enumerate(self.digit_bounds))

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Round values already known to lie in ``[-clip, clip]`` to grid integers.

        Values beyond ``levels`` steps (only possible within a step of the clip
        bound) round down to ``levels``, so that every sum stays in the plan's range.

        Returns
        -------
        ndarray of shape (n,)
            ``int64`` while ``levels < 2**63``; otherwise Python integers (``object``).
        """
        scaled = self._scaled(x)
        if self.levels < 2**63:
            return scaled.astype(np.int64)
        return np.array([int(v) for v in scaled], dtype=object)  # exact: integral doubles

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        """``round(x * 2**bits)``, clipped to ``levels``, as integral doubles (all exact).

        Scaling by a power of two is exact, so is rounding a double to an integer,
        and ``levels`` is the floor of a double, itself a double.
        """
        scaled = np.rint(np.asarray(x, dtype=np.float64) * 2.0**self.bits)
        return np.clip(scaled, -float(self.levels), float(self.levels))

    def encode(self, x: np.ndarray, weight: int) -> np.ndarray:
        """``weight`` times the digits of every value's grid integer, as doubles.

        Returns
        -------
        ndarray of shape (digits * n,)
            ``[d_0(x_0), ..., d_top(x_0), d_0(x_1), ...]`` times ``weight``. Every
            entry is an integer below ``2**52`` when the plan admits ``weight``
            (``max_weight`` times a digit bound is), so the doubles are exact.

        Notes
        -----
        The split runs on doubles, exactly: ``q / B`` is exact (a power of two),
        ``rint`` of it too, and ``q - B * rint(q / B)``, an integer of magnitude at
        most ``B/2``, is representable, so IEEE subtraction returns it exactly.
        """
        q = self._scaled(x)
        if self.digits == 1:
            return weight * q
        base = float(1 << self.digit_bits)
        out = np.empty((q.size, self.digits))
        for i in range(self.digits - 1):
            upper = np.rint(q / base)
            out[:, i] = q - upper * base
            q = upper
        out[:, -1] = q
        return weight * out.ravel()

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Map (sums of) grid integers back to reals: one rounding to a double at most.

        ``int64`` integers below ``2**53`` and the step's power of two give exact
        doubles; larger (Python) integers are rounded once, correctly, by ``float``.
        """
        return np.asarray(q, dtype=np.float64) * self.step

    def release(
        self, decoded: np.ndarray, size: int, count: int, max_weight: int, largest: float
    ) -> WeightedSum:
        """Round a decrypted aggregate onto the grid, or refuse it.

        Parameters
        ----------
        decoded : ndarray of shape (chunks * N,)
            Every decoded value of every ciphertext, unrounded, in grid units: the
            ``digits * size`` digit totals, then the total weight, then the unused
            slots. It is overwritten (with the residuals), so that a long vector
            costs no more memory than its decoding and its rounding.
        size : int
            The vector's number of values (the total weight follows their digits).
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
            raise _off_grid()
        used = self.digits * size
        if np.any(nearest[used + 1 :]):
            raise AggregateRejected(
                "the decrypted aggregate has values beyond the vector's length: a "
                "contribution was longer than the vector, or the ciphertext was altered"
            )
        weight = nearest[used]
        if not count <= weight <= count * max_weight:
            raise AggregateRejected(
                f"the decrypted total weight of {count} contribution(s) lies outside "
                f"[{count}, {count * max_weight}]: the plan's max_weight was exceeded, or "
                "the ciphertext was altered"
            )
        beyond = AggregateRejected(
            "a decrypted total lies outside the total weight times the clip bound: a "
            "contribution exceeded the plan's clip, or the ciphertext was altered"
        )
        digits = nearest[:used].reshape(size, self.digits)
        if self.digits == 1:
            totals = digits[:, 0]
            if not -weight * self.levels <= totals.min() <= totals.max() <= weight * self.levels:
                raise beyond
            units = totals.astype(np.int64)  # exact: integral doubles below 2**52
            return WeightedSum(self.dequantize(totals), int(weight), count, units, self.step)
        for column, bound in zip(digits.T, self.digit_bounds, strict=True):
            if not -weight * bound <= column.min() <= column.max() <= weight * bound:
                raise AggregateRejected(
                    "a decrypted digit total lies outside the total weight times its digit's "
                    "bound: a contribution was not split as the plan splits values, or the "
                    "ciphertext was altered"
                )
        exact = self.recombine(digits)
        limit = int(weight) * self.reach
        if not all(-limit <= total <= limit for total in exact):
            raise beyond
        return WeightedSum(self.dequantize(exact), int(weight), count, exact, self.step)

    def recombine(self, digits: np.ndarray) -> np.ndarray:
        """``sum_i digits[:, i] * B**i`` in Python integers, exactly.

        Parameters
        ----------
        digits : ndarray of shape (n, digits)
            Integral doubles below ``2**52`` (rounded digit totals).

        Returns
        -------
        ndarray of shape (n,), dtype object
            Python integers (Horner's rule from the top digit down).
        """
        base = 1 << self.digit_bits
        columns = digits.astype(np.int64).astype(object)  # exact: |digits| < 2**52
        totals = columns[:, -1]
        for i in range(self.digits - 2, -1, -1):
            totals = totals * base + columns[:, i]
        return totals


def _off_grid() -> AggregateRejected:
    return AggregateRejected(
        "the decrypted aggregate is off the encoding grid: a contribution was not "
        "encoded on this plan's grid, or the ciphertext was altered after encryption",
        off_grid=True,
    )


def on_grid(decoded: np.ndarray, largest: float) -> np.ndarray:
    """The rounded values, after the first check of :meth:`GridQuantizer.release`.

    For slots that :meth:`GridQuantizer.release` does not see (the binding
    commitments' blinding, :mod:`he_fed.crypto._ckks_binding`), with the same
    refusal; ``decoded`` is left as it is.

    Raises
    ------
    AggregateRejected
        With ``off_grid=True``, if a value is not below ``largest`` in magnitude
        and within ``tau`` of an integer.
    """
    nearest = np.rint(decoded)
    in_range = decoded.size == 0 or (-largest < decoded.min() and decoded.max() < largest)
    if not (in_range and np.all(np.abs(decoded - nearest) <= RESIDUAL_THRESHOLD)):
        raise _off_grid()
    return nearest


def finest_grid(clip: float, capacity: int, digits: int = 1, digit_bits: int = 0) -> int:
    """The finest grid on which every digit of a value stays within ``capacity``.

    ``capacity`` is the largest magnitude one contribution may put in a slot (the
    scheme derives it from the modulus, the scale and the plan). Returns -1 when
    no grid fits, or when the finest that does resolves fewer than
    ``2**MIN_GRID_BITS`` levels up to the clip bound.
    """
    for bits in range(MAX_GRID_BITS, -1, -1):
        quantizer = GridQuantizer(bits, clip, digits, digit_bits)
        if max(quantizer.digit_bounds) <= capacity:
            return bits if quantizer.levels >= 2**MIN_GRID_BITS else -1
    return -1


def digits_for(clip: float, capacity: int, precision_bits: int) -> int:
    """Slots per value for a grid at least ``precision_bits`` fine; 0 if out of reach.

    One, when ``precision_bits`` is 0 or one slot's finest grid reaches it (today's
    encoding, and every training plan's). Otherwise the fewest digits of
    ``capacity.bit_length()`` bits (the largest base whose balanced digits, at most
    ``B/2``, stay within ``capacity``) whose finest grid reaches it: each digit
    beyond the first adds ``digit_bits - 1`` bits. Out of reach when a digit would
    carry fewer than ``MIN_GRID_BITS + 1`` bits, or more than ``MAX_DIGITS``
    digits would be needed.
    """
    if not precision_bits or finest_grid(clip, capacity) >= precision_bits:
        return 1
    digit_bits = capacity.bit_length()
    if digit_bits - 1 < MIN_GRID_BITS:
        return 0
    for digits in range(2, MAX_DIGITS + 1):
        if finest_grid(clip, capacity, digits, digit_bits) >= precision_bits:
            return digits
    return 0
