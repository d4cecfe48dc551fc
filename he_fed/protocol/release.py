"""What a key holder may release: a sum that honest contributions under the plan can produce.

Without zero-knowledge range proofs nobody can check one encrypted update, so the
key holder checks the decrypted sum instead: the total weight must lie in
``[count, count · max_weight]`` and every weighted sum within ``± weight · clip``
(the schemes check the same exactly, in integers, while decoding). Anything else
is a malicious client or a tampered ciphertext, and is refused with
:class:`~he_fed.exceptions.AggregateRejected`, whose text never carries a
decrypted value.

The exact mean would give the total weight away. Clients encode integers on a grid
of step ``step`` (:class:`~he_fed.crypto.WeightedSum` carries it), so a decrypted
total is ``t · step`` for an integer ``t``, and the mean ``t · step / W`` is a
fraction whose denominator divides the total weight ``W``: the smallest ``W``
that makes every ``mean · W / step`` whole is the cohort's sample count, and two
cohorts that differ by one client give that client's. So the key holder releases
the mean rounded to the clients' own grid, exactly, in integers:

    mean = step · round(t / W)        (halves up)

where ``W`` is the total weight of the first release of its kind, which every later
release divides by too (:mod:`he_fed.protocol.normalisers`): a client colluding with
the aggregator can read ``W`` through a known addend that dwarfs the honest values,
so only one total weight may ever enter the releases.

For any total weight ``W'`` the rounding cell of a released integer ``k``,
``[W'(k - 1/2), W'(k + 1/2))``, holds exactly ``W'`` integer totals (and exactly
``W'/g`` multiples of ``g`` for any ``g`` that divides ``W'``, should every weight
share it). So every ``W'`` the plan allows is consistent with every released
value, in every round; and the chance of each released value, the sum over its
cell of the chances of the totals in it, is the same under every ``W'`` up to how
much the data's density varies within one grid step: a likelihood over many values
and rounds gains nothing either. (The two cells at the clip bound, half as wide,
hold ``⌊W'/2⌋ + 1`` totals, a difference of at most ``2/W'`` in the chance of a
mean within half a step of the clip bound.) Finer grids keep the first property and lose the
second. On the grid ``step / count``, the finest that keeps every ``W' ≥ count``
consistent, a cell holds ``⌊W'/count⌋`` or ``⌈W'/count⌉`` totals in a pattern that
depends on ``W'``, and a likelihood over 20,000 released values picks the total
weight of four clients of 3, 5, 2 and 4 samples, or ``W/10`` for clients of 30,
50, 20 and 40 (``tests/protocol/test_weight_leak.py``). The rounding costs at most
``step / 2`` per value, the bound of the clients' own quantization.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Protocol

import numpy as np

from he_fed.crypto import EncryptedVector, Scheme, WeightedSum
from he_fed.exceptions import AggregateRejected, HEFedError, InvalidPartialDecryption

__all__ = ["WeightedDecryption", "checked_mean", "normalised_sum", "rounded_mean"]


class WeightedDecryption(Protocol):
    """What decrypts an aggregate: a :class:`~he_fed.crypto.SecretKey`, or a share
    holder's verified partial decryptions (:mod:`he_fed.protocol.decryptor`)."""

    def decrypt_weighted(self, vector: EncryptedVector, *, binding: bytes = b"") -> WeightedSum:
        """The checked weighted sum (see :meth:`SecretKey.decrypt_weighted`)."""
        ...


def checked_mean(
    secret: WeightedDecryption,
    vector: EncryptedVector,
    plan: Scheme,
    *,
    binding: bytes = b"",
    normaliser: int | Fraction | None = None,
    divisor: int | None = None,
) -> tuple[np.ndarray, int]:
    """Decrypt ``vector``; return its mean and total weight, if honest contributions can sum to it.

    With ``normaliser`` (a differentially private run, whose contributions carry
    weight 1 and noise on the grid) the release is the noisy sum divided by that
    public count instead, exactly: it depends on no total weight
    (:mod:`he_fed.privacy`). With ``divisor`` (the total weight a federation's
    first release pinned, :mod:`he_fed.protocol.normalisers`) it is the sum
    divided by that and rounded to the grid; without either, by its own total weight.
    The total weight returned is for the key holder to pin, never to release.

    Raises
    ------
    AggregateRejected
        If the sum lies outside what the plan lets honest contributions reach.
    InvalidPartialDecryption
        If ``secret`` combines partial decryptions and fewer than ``t`` are valid.
    """
    try:
        result = secret.decrypt_weighted(vector, binding=binding)
    except (AggregateRejected, InvalidPartialDecryption):
        # Too few valid partials is no refusal of the plaintext: nothing was decrypted.
        raise
    except (HEFedError, ArithmeticError, ValueError):
        # The schemes' own range checks (or anything a tampered plaintext trips
        # over while being decoded): one refusal, whatever failed, so that which
        # check failed cannot serve as an oracle; its text may describe the plaintext.
        raise AggregateRejected(
            "the decrypted aggregate lies outside what the plan can represent"
        ) from None
    count, weight = result.count, result.weight
    if not count <= weight <= count * plan.max_weight:
        raise AggregateRejected(
            f"the total weight is not one {count} contributions of weight 1 to "
            f"{plan.max_weight} can have"
        )
    # What proven contributions can reach (the clip, or a CKKS plan's digits' reach):
    # a tighter check could fail for them, depending on what the honest ones hold.
    limit = weight * plan.reach * (1 + 1e-9)
    if not np.all(np.abs(result.total) <= limit):
        raise AggregateRejected(
            "a weighted sum exceeds what contributions within the clip bound can reach"
        )
    if result.units is None or result.step is None:
        # Plain hides nothing anyway, but divides by the same divisor as the schemes.
        return np.asarray(result.total / (divisor or weight), dtype=np.float64), weight
    if normaliser is not None:
        return normalised_sum(result.units, normaliser, result.step), weight
    return rounded_mean(result.units, divisor or weight, result.step), weight


def normalised_sum(units: np.ndarray, normaliser: int | Fraction, step: float) -> np.ndarray:
    """``step · units / normaliser``, each value one correctly rounded division of integers.

    ``normaliser`` may be a fraction (a sampled run's expected batch ``q · N``).
    """
    p, q = step.as_integer_ratio()
    a, b = Fraction(normaliser).as_integer_ratio()
    return np.array([int(t) * p * b / (q * a) for t in units.tolist()], dtype=np.float64)


def rounded_mean(units: np.ndarray, weight: int, step: float) -> np.ndarray:
    """``step · round(units / weight)``, halves up, computed exactly.

    Parameters
    ----------
    units : ndarray of shape (n,)
        The decrypted totals in grid steps: integers (``int64`` or Python ints).
    weight : int
        The total weight, at least 1.
    step : float
        The grid step of one unit.

    Returns
    -------
    ndarray of shape (n,)
        The weighted mean rounded to the grid, which says nothing about ``weight``
        (see the module docstring).
    """
    weight = int(weight)
    p, q = step.as_integer_ratio()
    # floor((2t + W) / (2W)) is t / W rounded half up, in integers; the value, that
    # integer times p / q, is one correctly rounded division.
    return np.array(
        [(2 * int(t) + weight) // (2 * weight) * p / q for t in units.tolist()],
        dtype=np.float64,
    )
