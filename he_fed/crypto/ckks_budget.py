"""The error budget of a CKKS sum: the scale that lets the key holder round, and what is left.

Clients put integers on a grid into CKKS (see :mod:`he_fed.crypto._ckks_grid`), and
the key holder rounds every decrypted value to the nearest integer, refusing the
aggregate if one lies further than ``RESIDUAL_THRESHOLD`` (``tau``, 1/4) from it.
For that the CKKS decryption error must stay below ``tau`` on every value of every
honest sum. This module predicts that error from the parameters and the plan alone,
before any key exists, and picks the smallest scale ``Delta`` for which it holds
with the probability we promise; what the key holder releases then errs only by
the clients' own rounding onto the grid.

The model
---------
A client encodes ``Delta * z`` (``z`` the grid integers) into a polynomial of degree
``N`` and encrypts it with SEAL's public-key encryption: an encryption of zero at
the key level (data primes and special prime ``P``), divided and rounded by ``P``,
plus the plaintext. Per coefficient, the decryption error is then

* the encoder's rounding to integers (variance 1/12);
* the rounding of the division by ``P``: ``r0 + r1 * s`` with ``r0, r1`` uniform
  in [-1/2, 1/2] and ``s`` the ternary secret key (variance 1/12 each);
* ``(u * e + e1 + e2 * s) / P``, the encryption noise shrunk by the special prime
  (``u`` ternary, ``e, e1, e2`` Gaussian with standard deviation 3.2).

Decoding evaluates the error polynomial at the slots' roots of unity ``zeta_k``;
he-fed packs two values per slot, as its real and imaginary parts, which have the
same variance by symmetry (``tests/crypto/test_ckks.py`` measures both). The term
``r1 * s`` becomes ``r1(zeta_k) * s(zeta_k)``: its size depends on the key through
``|s(zeta_k)|**2``, which averages ``2N/3`` over keys but varies from slot to slot
(roughly exponentially distributed, so a few slots of every key are several times
noisier than average). Averaged over keys and slots, the variance of one
contribution's error on one value is::

    V = N/12 + N**2/36 + (4N/3 + 1) * N * 3.2**2 / (2 * P**2)

in units of ``Delta**-2``. The errors of independent contributions add, so a sum
of ``K`` contributions has root-mean-square error ``sqrt(K * V) / Delta`` per value,
in grid units, whatever the weights (they multiply the integers before encoding,
not the error). :meth:`ErrorBudget.decryption_rms` returns it;
``tests/crypto/test_ckks.py`` checks it within 15 % for every preset, on the
unrounded decryption.

The tail, and the scale
-----------------------
Every term is sub-Gaussian (uniform, ternary and clipped-Gaussian variables are,
with their variance as proxy). With probability at least ``1 - p/2`` over the key,
``|s(zeta_k)|**2 <= S2`` at every slot, where ``S2 = (2N/3) * ln(8N / p) / cos(pi/8)**2``
(a Hoeffding bound in four directions of the complex plane, union over the slots).
Given that, each value's error is sub-Gaussian with variance proxy ``K * Vmax``
(``V`` with ``S2`` in place of its average), and a union bound over ``values``
values, each failing with probability ``p / (2 * values)``, gives
:meth:`ErrorBudget.decryption_bound`. Double-precision decoding adds at most
``2**-44`` of the largest magnitude (a generous allowance: doubles carry 53 bits),
and the plan keeps every magnitude times ``Delta`` below ``2**52``, so that term is
at most ``2**8 / Delta``.

The scale is the smallest power of two for which the bound, at the plan's
``max_clients`` contributions, over ``MAX_VALUES`` (``2**32``) decoded values, with
``p = RELEASE_FAILURE_PROBABILITY`` (``2**-40``), stays within ``tau``
(:func:`scale_bits_for`). So, for every honest sum the plan allows, whatever its
length (a vector holds at most ``2**32 - 1`` values, and the bound counts every
value of every ciphertext, the empty slots of the last one included), the
probability over the key and the encryptions that any value errs by ``tau`` or
more is at most ``2**-40`` per release: half of it is the chance that the key has
an unusually noisy slot, which is drawn once per key, the other half the chance
of an unusual encryption noise, drawn afresh for every release. Two modelling
assumptions remain, stated plainly: the encoder's rounding behaves like uniform
noise (true for generic inputs), and SEAL's double-precision encoder and decoder
err by at most the allowance above.

What is released
----------------
Rounding removes the decryption error entirely: the released total is the exact
sum of the clients' grid integers times the grid step ``2**-grid_bits``. What
remains is each client's own rounding onto the grid, at most half a step per value
(a little more at the clip bound when ``clip * 2**grid_bits`` is not an integer),
times its weight: :meth:`ErrorBudget.bound` (a hard bound, no probability) and
:meth:`ErrorBudget.rms` (for generic values, whose rounding errors are independent
and uniform). ``DESIGN.md`` ("CKKS releases") explains why rounding also stops the
Li-Micciancio key-recovery attack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from he_fed._validation import check_int
from he_fed.exceptions import ConfigurationError

__all__ = [
    "EXACT_FLOAT",
    "MAX_VALUES",
    "RELEASE_FAILURE_PROBABILITY",
    "RESIDUAL_THRESHOLD",
    "ErrorBudget",
    "scale_bits_for",
]

#: The key holder refuses a decrypted value further than this from an integer
#: (``tau``). At most 1/4, so that an error below ``tau`` can never carry a shifted
#: value into the acceptance window of another integer (``DESIGN.md``).
RESIDUAL_THRESHOLD = 0.25
#: Chance per release that an honest sum has a value whose error reaches ``tau``.
RELEASE_FAILURE_PROBABILITY = 2.0**-40
#: Decoded values per release that the bound covers: a vector holds fewer.
MAX_VALUES = 2**32
#: Every magnitude times ``Delta`` stays below this, where doubles hold integers exactly.
EXACT_FLOAT = 2**52

_ROUNDING = 1 / 12  # variance of a value uniform in [-1/2, 1/2]
_TERNARY = 2 / 3  # variance of SEAL's ternary secret and encryption randomness
_SEAL_SIGMA2 = 3.2**2  # SEAL's error distribution (seal::util::global_variables)
_FLOAT_RELATIVE = 2.0**-44  # double-precision encode/decode error, generously
_NET = math.cos(math.pi / 8) ** 2  # four directions cover the plane within pi/8


def _variance(poly_modulus_degree: int, special_prime: int, key_spread: float) -> float:
    """Per-value error variance of one contribution, in coefficient units.

    ``key_spread`` is ``|s(zeta)|**2`` (and ``|u(zeta)|**2``) at the slot.
    """
    n = poly_modulus_degree
    encoding = n / 2 * (2 * _ROUNDING)  # encoder and r0 roundings
    division = key_spread * n / 2 * _ROUNDING  # r1 * s
    encryption = (2 * key_spread + 1) * n * _SEAL_SIGMA2 / (2 * special_prime**2)
    return encoding + division + encryption


def _tail(
    poly_modulus_degree: int,
    special_prime: int,
    count: int,
    values: int,
    failure_probability: float,
) -> float:
    """Largest error, in coefficient units, over ``values`` values of a ``count``-sum.

    Exceeded with probability at most ``failure_probability`` over the key and the
    encryptions, before the floating-point allowance (module docstring).
    """
    n = poly_modulus_degree
    key_spread = n * _TERNARY * math.log(8 * n / failure_probability) / _NET
    proxy = count * _variance(n, special_prime, key_spread)
    return math.sqrt(2 * proxy * math.log(4 * values / failure_probability))


def scale_bits_for(poly_modulus_degree: int, special_prime: int, count: int) -> int:
    """The smallest ``b`` for which sums of ``count`` contributions round correctly at ``2**b``.

    That is, :meth:`ErrorBudget.decryption_bound` at ``count``, ``MAX_VALUES`` and
    ``RELEASE_FAILURE_PROBABILITY`` is at most ``RESIDUAL_THRESHOLD``.
    """
    check_int("count", count, low=1)
    tail = _tail(poly_modulus_degree, special_prime, count, MAX_VALUES, RELEASE_FAILURE_PROBABILITY)
    return math.ceil(math.log2((tail + _FLOAT_RELATIVE * EXACT_FLOAT) / RESIDUAL_THRESHOLD))


@dataclass(frozen=True)
class ErrorBudget:
    """What a plan's decrypted CKKS sums can be trusted to.

    Build it with :attr:`he_fed.crypto.CKKS.error_budget`. Two errors: the CKKS
    decryption error, in grid units, which the key holder rounds away (and refuses
    an aggregate when it cannot); and the grid's own rounding, which is all that a
    released total carries, in the values' units.

    Attributes
    ----------
    poly_modulus_degree : int
        Ring dimension ``N``.
    special_prime : int
        The special prime ``P``, which divides the encryption noise.
    scale_bits : int
        The encoding scale ``Delta = 2**scale_bits`` the plan uses.
    grid_bits : int
        Values are quantized to multiples of ``2**-grid_bits``.
    clip : float
        Largest magnitude of a value.

    Examples
    --------
    >>> from he_fed.crypto import CKKS
    >>> budget = CKKS(clip=1.0, max_clients=100).error_budget
    >>> budget.scale_bits, budget.grid_bits, budget.decryption_bound(100) <= 0.25
    (21, 24, True)
    >>> f"{budget.rms(100):.1e}", f"{budget.bound(100):.1e}"
    ('1.7e-07', '3.0e-06')
    """

    poly_modulus_degree: int
    special_prime: int
    scale_bits: int
    grid_bits: int
    clip: float

    @property
    def step(self) -> float:
        """The grid step, ``2**-grid_bits``."""
        return 2.0**-self.grid_bits

    @cached_property
    def levels(self) -> int:
        """Largest grid integer of a value, ``floor(clip * 2**grid_bits)``."""
        return math.floor(self.clip * 2.0**self.grid_bits)

    @property
    def rounding_error(self) -> float:
        """Largest error of one value's rounding onto the grid.

        Half a step, or a little more at the clip bound when ``clip * 2**grid_bits``
        is not an integer (values there round down to ``levels``).
        """
        return self.step * max(0.5, self.clip * 2.0**self.grid_bits - self.levels)

    def decryption_rms(self, count: int = 1) -> float:
        """Root-mean-square CKKS decryption error per value of a ``count``-sum, in grid units.

        Averaged over keys, encryptions and values; the key holder rounds it away.
        """
        check_int("count", count, low=1)
        mean_spread = self.poly_modulus_degree * _TERNARY
        variance = count * _variance(self.poly_modulus_degree, self.special_prime, mean_spread)
        return math.sqrt(variance) / 2.0**self.scale_bits

    def decryption_bound(
        self,
        count: int = 1,
        values: int = MAX_VALUES,
        failure_probability: float = RELEASE_FAILURE_PROBABILITY,
    ) -> float:
        """Largest decryption error, in grid units, over ``values`` values of a ``count``-sum.

        Exceeded with probability at most ``failure_probability`` over the key and
        the encryptions (see the module docstring for the argument and its two
        assumptions). The plan's scale keeps it within ``RESIDUAL_THRESHOLD`` at
        ``max_clients`` contributions and the defaults.

        Parameters
        ----------
        count : int, default=1
            Contributions summed.
        values : int, default=MAX_VALUES
            Decoded values the bound must hold for at once.
        failure_probability : float, default=2**-40
            Chance that some value's error exceeds the bound.
        """
        check_int("count", count, low=1)
        check_int("values", values, low=1)
        if not 0 < failure_probability < 1:
            raise ConfigurationError("failure_probability must lie in (0, 1)")
        tail = _tail(
            self.poly_modulus_degree, self.special_prime, count, values, failure_probability
        )
        return (tail + _FLOAT_RELATIVE * EXACT_FLOAT) / 2.0**self.scale_bits

    def rms(self, count: int = 1) -> float:
        """Root-mean-square error per released value of ``count`` unit-weight contributions.

        ``step * sqrt(count / 12)``, for generic values (whose rounding errors are
        independent and uniform). Weights multiply the rounded values, so a
        weighted sum's is ``step * sqrt(sum_k weight_k**2 / 12)``.
        """
        check_int("count", count, low=1)
        return self.step * math.sqrt(count * _ROUNDING)

    def bound(self, weight: int = 1) -> float:
        """Largest error per released value of a sum whose weights add up to ``weight``.

        ``weight * rounding_error``, with no probability attached: a released
        total errs by at most ``bound(total weight)`` and a released weighted mean
        by at most ``bound(1)``. For unweighted sums ``weight`` is the count.
        """
        check_int("weight", weight, low=1)
        return weight * self.rounding_error
