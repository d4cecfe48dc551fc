"""The distributed discrete Gaussian on the schemes' integer grid.

Every contributing client adds to its integer update ``u_k = round(x_k / step)``
an independent share ``N_Z(0, sigma_u^2)`` per value, drawn exactly
(:mod:`he_fed.privacy._discrete_gaussian`). The key holder decrypts only sums of at
least ``min_cohort`` contributions, so every released sum carries at least
``min_cohort`` shares: the mechanism is planned for that smallest cohort, never
for the whole federation, and dropouts down to it leave the guarantee intact
(a larger cohort only adds noise).

**Sensitivity, in grid units.** One record (``record`` level) or one client's
whole update (``client`` level) moves the real sum by a vector of L2 norm at most
``clip``; rounding to the grid moves each value by less than one unit more, so
the integer sum moves by at most ``Delta = clip / step + sqrt(d)`` in L2 (``d``
values). Nothing else depends on the data: with the weight fixed to 1 (the
encrypted total weight is the contributor count), no record changes ``W``.

**Theorem** (Kairouz, Liu and Steinke, "The Distributed Discrete Gaussian
Mechanism for Federated Learning with Secure Aggregation", ICML 2021, Theorem 2 of
arXiv:2102.06387). For ``n`` independent ``N_Z(0, sigma^2)`` shares per value
(``sigma >= 1/2``) and a sensitivity vector ``Delta``, the sum satisfies, for every
Rényi order, ``D_alpha <= alpha · eps^2 / 2`` with
``eps^2 <= ||Delta||_2^2 / (n sigma^2) + tau · d / 2`` and
``tau = 10 · sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 · k / (k + 1))``: that is
``rho``-zCDP with ``rho = Delta^2 / (2 n sigma^2) + tau · d / 4``. The slack ``tau``,
the price of a sum of discrete Gaussians not being one, is kept in ``rho`` (it
underflows to 0.0 for the shares used here, of thousands of units and more).

**Noise multiplier.** ``sigma_u^2 = (z · Delta)^2 / min_cohort``, so the released
sum's noise has standard deviation ``z · Delta`` units, ``z · (clip + step · sqrt(d))``
in the values' own units, and ``rho = 1 / (2 z^2) + tau · d / 4``: the continuous
Gaussian's, plus the slack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from he_fed._validation import check_float, check_int
from he_fed.crypto import wire
from he_fed.exceptions import ConfigurationError, EncodingOverflowError, MalformedMessage
from he_fed.privacy._discrete_gaussian import sample_discrete_gaussian
from he_fed.privacy._sampled import check_sampling_rate, poisson_coin

__all__ = ["LEVELS", "DPMechanism"]

#: The two neighbouring relations, as users name them.
LEVELS = ("record", "client")

#: Largest grid integer a contribution may reach: floats hold every integer below 2**53.
_MAX_UNITS = 2**52


@dataclass(frozen=True)
class DPMechanism:
    """The public description of the noise every client adds, and what it guarantees.

    Parameters
    ----------
    level : {"record", "client"}
        ``record``: one gradient step per round, each record's gradient clipped
        to ``clip``; ``client``: each client's whole update clipped to ``clip``.
    clip : float
        L2 bound ``C`` on one record's gradient or one client's update.
    noise_multiplier : float
        ``z``: the released sum's noise has standard deviation ``z · C`` (plus the
        grid's rounding term, see the module docstring).
    min_cohort : int
        The smallest cohort the key holder decrypts; the shares are planned for it.
    size : int
        Values per update ``d``.
    step : float
        The scheme's grid step.
    sampling_rate : float, default=1.0
        ``q``: at ``record`` level, each client includes each record independently
        with this probability per round (:meth:`sample`); 1.0 includes every record.
    """

    level: str
    clip: float
    noise_multiplier: float
    min_cohort: int
    size: int
    step: float
    sampling_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigurationError(f"dp_level must be one of {LEVELS}, not {self.level!r}")
        check_float("dp_clip", self.clip, low=0, strict_low=True)
        check_float("noise_multiplier", self.noise_multiplier, low=0, strict_low=True)
        check_int("min_cohort", self.min_cohort, low=1)
        check_int("size", self.size, low=1)
        check_float("step", self.step, low=0, strict_low=True)
        check_sampling_rate(self.sampling_rate)
        if self.sampling_rate < 1 and self.level != "record":
            raise ConfigurationError(
                "dp_sampling_rate samples records: it needs dp_level='record', not 'client'"
            )
        if self.share_sigma_units < 0.5:
            raise ConfigurationError(
                "the noise share is below half a grid step; use a finer grid (more precision bits)"
            )
        if self.clip / self.step + 12 * self.share_sigma_units > _MAX_UNITS:
            raise ConfigurationError("the grid is too fine for exact noise; fewer precision bits")

    @property
    def sensitivity_units(self) -> float:
        """``Delta = clip / step + sqrt(d)``: the L2 sensitivity of the integer sum."""
        return self.clip / self.step + math.sqrt(self.size)

    @property
    def share_variance_units(self) -> float:
        """``sigma_u^2``: each client's per-value share variance, in grid units squared."""
        return (self.noise_multiplier * self.sensitivity_units) ** 2 / self.min_cohort

    @property
    def share_sigma_units(self) -> float:
        """Each client's per-value share standard deviation, in grid units."""
        return math.sqrt(self.share_variance_units)

    @property
    def share_std(self) -> float:
        """Each client's per-value share standard deviation, in the values' units."""
        return self.share_sigma_units * self.step

    @property
    def sum_std(self) -> float:
        """Standard deviation of the noise in a released sum of ``min_cohort`` shares."""
        return self.noise_multiplier * self.sensitivity_units * self.step

    @property
    def slack(self) -> float:
        """``tau`` of the theorem for ``min_cohort`` shares."""
        s2 = self.share_variance_units
        return 10 * sum(
            math.exp(-2 * math.pi**2 * s2 * k / (k + 1)) for k in range(1, self.min_cohort)
        )

    @property
    def rho(self) -> float:
        """zCDP parameter of one release: ``1 / (2 z^2) + tau · d / 4``."""
        return 1 / (2 * self.noise_multiplier**2) + self.slack * self.size / 4

    def noisy(self, values: np.ndarray) -> np.ndarray:
        """``values`` rounded to the grid plus this client's noise share, on the grid.

        Parameters
        ----------
        values : ndarray of shape (size,)
            The clipped update (in the values' units).

        Returns
        -------
        ndarray of shape (size,)
            ``step · (round(values / step) + share)``: floats that are exact
            multiples of ``step``, so the scheme's quantizer recovers the integers.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.size,):
            raise ConfigurationError(f"an update of {values.size} values, expected {self.size}")
        units = np.rint(values / self.step).astype(np.int64).astype(object)
        units = units + sample_discrete_gaussian(self.share_variance_units, self.size)
        if max(abs(int(u)) for u in units) > _MAX_UNITS:
            raise EncodingOverflowError("a noisy value lies beyond the grid's exact range")
        return np.array([int(u) * self.step for u in units], dtype=np.float64)

    def sample(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This round's Poisson sample of ``(X, y)``: each row kept with probability ``q``.

        The coins come from :mod:`secrets` (the OS CSPRNG), never from the run's
        seed: the aggregator and other clients cannot predict who takes part. The
        sample may be empty (the client then contributes its noise share alone).
        """
        if self.sampling_rate >= 1:
            return X, y
        keep = np.array([poisson_coin(self.sampling_rate) for _ in range(len(X))], dtype=bool)
        return X[keep], y[keep]

    def write_to(self, w: wire.Writer) -> None:
        """Append the mechanism's bytes; :meth:`read_from` reads them."""
        w.text(self.level, length_bytes=1)
        for value in (self.clip, self.noise_multiplier, self.step):
            w.float64(value)
        w.uint(self.min_cohort)
        w.uint(self.size)
        w.float64(self.sampling_rate)

    @classmethod
    def read_from(cls, r: wire.Reader, what: str, *, sampled: bool = True) -> DPMechanism:
        """Read what :meth:`write_to` wrote (``sampled=False``: bytes from before ``q``).

        Raises
        ------
        MalformedMessage
            If the bytes are not a valid mechanism.
        """
        level = r.text(length_bytes=1)
        clip, z, step = r.float64(), r.float64(), r.float64()
        min_cohort, size = r.uint(), r.uint()
        q = r.float64() if sampled else 1.0
        try:
            return cls(level, clip, z, min_cohort, size, step, q)
        except ConfigurationError as exc:
            raise MalformedMessage(f"{what}: {exc}") from None
