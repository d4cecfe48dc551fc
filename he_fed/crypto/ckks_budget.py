"""The error budget of a CKKS sum: how far a decrypted aggregate can be from the exact one.

CKKS decrypts ``sum_k weight_k * x_k`` plus a small error. This module predicts
that error from the parameters and the encoding plan alone, before any key exists,
so a plan can be judged (and refused) when it is built.

The model
---------
A client encodes ``Delta * z`` (``Delta = 2**scale_bits``) into a polynomial of
degree ``N`` and encrypts it with SEAL's public-key encryption: an encryption of
zero at the key level (data primes and special prime ``P``), divided and rounded
by ``P``, plus the plaintext. Per coefficient, the decryption error is then

* the encoder's rounding to integers (variance 1/12);
* the rounding of the division by ``P``: ``r0 + r1 * s`` with ``r0, r1`` uniform
  in [-1/2, 1/2] and ``s`` the ternary secret key (variance 1/12 each);
* ``(u * e + e1 + e2 * s) / P``, the encryption noise shrunk by the special prime
  (``u`` ternary, ``e, e1, e2`` Gaussian with standard deviation 3.2).

Decoding evaluates the error polynomial at the slots' roots of unity ``zeta_k``;
he-fed packs two values per slot, as its real and imaginary parts, which have the
same variance by symmetry (``tests/crypto/test_ckks.py`` measures both). The term
``r1 * s`` becomes ``r1(zeta_k) * s(zeta_k)``:
its size depends on the key through ``|s(zeta_k)|**2``, which averages ``2N/3``
over keys but varies from slot to slot (roughly exponentially distributed, so a
few slots of every key are several times noisier than average). Averaged over
keys and slots, the variance of one
contribution's error on one value is::

    V = N/12 + N**2/36 + (4N/3 + 1) * N * 3.2**2 / (2 * P**2)

in units of ``Delta**-2``. The errors of independent contributions add, so a sum
of ``K`` contributions has root-mean-square error ``sqrt(K * V) / Delta`` per
value, whatever the weights (they multiply the values before encoding, not the
error). :meth:`ErrorBudget.rms` returns it; ``tests/crypto/test_ckks.py`` checks
it within 15 % for every preset.

For a *bound*, every term is sub-Gaussian (uniform, ternary and clipped-Gaussian
variables are, with their variance as proxy). With probability at least
``1 - failure_probability / 2`` over the key, ``|s(zeta_k)|**2 <= S2`` at every
slot, where ``S2 = (2N/3) * ln(8N / failure_probability) / cos(pi/8)**2`` (a
Hoeffding bound in four directions of the complex plane, union over the slots).
Given that, each value's error is sub-Gaussian with variance proxy ``K * Vmax``
(``V`` with ``S2`` in place of its average), and a union bound over ``size``
values gives :meth:`ErrorBudget.bound`. Two modelling assumptions remain, stated
plainly: the encoder's rounding behaves like uniform noise (true for generic
inputs; a chosen input could push it up to ``N/2`` coefficient units), and
double-precision encoding and decoding err by at most ``2**-44`` of the largest
magnitude (a generous allowance: doubles carry 53 bits). The bound is
conservative: ``tests/crypto/test_ckks.py`` checks, for every preset, that it holds
and that it is within a factor of 20 of the largest error measured.

Noise flooding
--------------
A decrypted CKKS result is ``sum + error``, and the error is a function of the
secret key. Li and Micciancio (EUROCRYPT 2021) showed that whoever sees decrypted
results of ciphertexts whose exact plaintexts it knows can recover the key. In
he-fed the key holder releases each round's weighted mean to the aggregator (and,
through the model, to every client), so contributors who pooled their exact
updates would hold such pairs. The optional countermeasure is *noise flooding*:
the key holder adds fresh Gaussian noise to every released value, with standard
deviation ``2**flood_bits`` times the expected L2 norm of one ciphertext's
decryption error (``N`` values, two per slot). By Pinsker's inequality the statistical
distance between what is released and what would be released without the
ciphertext's own error is then at most about ``2**-(flood_bits + 1)`` per
ciphertext decrypted. It is a heuristic safeguard, not a proof of IND-CPA-D
security, and it costs accuracy (see the README's CKKS section).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from he_fed.exceptions import ConfigurationError

__all__ = ["DEFAULT_FAILURE_PROBABILITY", "ErrorBudget"]

#: Failure probability of :meth:`ErrorBudget.bound` unless given.
DEFAULT_FAILURE_PROBABILITY = 2.0**-32

_ROUNDING = 1 / 12  # variance of a value uniform in [-1/2, 1/2]
_TERNARY = 2 / 3  # variance of SEAL's ternary secret and encryption randomness
_SEAL_SIGMA2 = 3.2**2  # SEAL's error distribution (seal::util::global_variables)
_FLOAT_RELATIVE = 2.0**-44  # double-precision encode/decode error, generously
_NET = math.cos(math.pi / 8) ** 2  # four directions cover the plane within pi/8


@dataclass(frozen=True)
class ErrorBudget:
    """What a plan's decrypted CKKS sums can be trusted to.

    Build it with :attr:`he_fed.crypto.CKKS.error_budget`. Errors are absolute, on
    the decrypted ``sum_k weight_k * x_k``; divide by the total weight for the
    error of the mean.

    Attributes
    ----------
    poly_modulus_degree : int
        Ring dimension ``N``.
    scale_bits : int
        The encoding scale ``Delta = 2**scale_bits`` the plan uses.
    special_prime : int
        The special prime ``P``, which divides the encryption noise.
    largest_sum : float
        Largest magnitude a decrypted value can take before it wraps around the
        data modulus: ``(q // 2) / Delta``.
    plan_bound : float
        Largest magnitude the plan allows a sum to reach, value or total weight
        (``max(clip, 1) * max_clients * max_weight``); at most half of
        ``largest_sum``, or the plan is refused.
    contribution_bound : float
        Largest magnitude of one contribution (``max(clip, 1) * max_weight``).
    flood_bits : int
        Noise flooding at decryption: 0 (off), or the ``2**flood_bits`` factor.

    Examples
    --------
    >>> from he_fed.crypto import CKKS
    >>> budget = CKKS(clip=1.0, max_clients=100).error_budget
    >>> budget.scale_bits, f"{budget.rms(100):.1e}", budget.bound(100, 2048) < 1e-6
    (40, '6.2e-09', True)
    """

    poly_modulus_degree: int
    scale_bits: int
    special_prime: int
    largest_sum: float
    plan_bound: float
    contribution_bound: float
    flood_bits: int = 0

    @property
    def values_per_ciphertext(self) -> int:
        """Values per ciphertext, ``N``: two per complex slot."""
        return self.poly_modulus_degree

    def _variance(self, key_spread: float) -> float:
        """Per-value error variance of one contribution, in coefficient units.

        ``key_spread`` is ``|s(zeta)|**2`` (and ``|u(zeta)|**2``) at the slot.
        """
        n = self.poly_modulus_degree
        encoding = n / 2 * (2 * _ROUNDING)  # encoder and r0 roundings
        division = key_spread * n / 2 * _ROUNDING  # r1 * s
        encryption = (2 * key_spread + 1) * n * _SEAL_SIGMA2 / (2 * self.special_prime**2)
        return encoding + division + encryption

    def rms(self, count: int = 1) -> float:
        """Root-mean-square error per value of a sum of ``count`` contributions.

        This is the expected size of the error (over keys, encryptions and
        values), before any noise flooding.
        """
        _check_count(count)
        mean_spread = self.poly_modulus_degree * _TERNARY
        return math.sqrt(count * self._variance(mean_spread)) / 2.0**self.scale_bits

    def flood_std(self, count: int = 1, flood_bits: int | None = None) -> float:
        """Standard deviation of the flooding noise added to each released value.

        ``2**flood_bits * sqrt(N) * rms(count)``; 0 when flooding is off.
        ``flood_bits`` defaults to the budget's own.
        """
        bits = self.flood_bits if flood_bits is None else flood_bits
        if not bits:
            return 0.0
        return 2.0**bits * math.sqrt(self.values_per_ciphertext) * self.rms(count)

    def released_rms(self, count: int = 1) -> float:
        """Root-mean-square error per released value, flooding included."""
        return math.hypot(self.rms(count), self.flood_std(count))

    def bound(
        self,
        count: int = 1,
        size: int = 1,
        failure_probability: float = DEFAULT_FAILURE_PROBABILITY,
    ) -> float:
        """Largest error over ``size`` released values, except with ``failure_probability``.

        The probability is over the key, the encryptions and the flooding noise
        (see the module docstring for the argument and its two assumptions).

        Parameters
        ----------
        count : int, default=1
            Contributions summed.
        size : int, default=1
            Values the bound must hold for at once.
        failure_probability : float, default=2**-32
            Chance that some value's error exceeds the bound.
        """
        _check_count(count)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"size must be a positive integer, got {size!r}")
        if not 0 < failure_probability < 1:
            raise ConfigurationError("failure_probability must lie in (0, 1)")
        n = self.poly_modulus_degree
        key_spread = n * _TERNARY * math.log(8 * n / failure_probability) / _NET
        proxy = count * self._variance(key_spread) / 4.0**self.scale_bits
        proxy += self.flood_std(count) ** 2
        tail = math.sqrt(2 * proxy * math.log(4 * size / failure_probability))
        return tail + _FLOAT_RELATIVE * count * self.contribution_bound


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigurationError(f"count must be a positive integer, got {count!r}")
