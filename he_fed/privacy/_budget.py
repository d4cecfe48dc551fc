"""The key holder's privacy budget: it charges every release and refuses past the target.

A :class:`PrivacyBudget` is policy, like the minimum cohort: the key holder gets
it from its own configuration, keeps it in its state, and consults it before it
signs a ticket and again before it decrypts. A release that would take the
accountant's ``epsilon`` past the target is refused with
:class:`~he_fed.exceptions.PolicyViolation` before anything is decrypted, so an
aggregator that asks for more rounds gets nothing more.

Every decryption is charged, including one whose sum is then refused (the key
holder saw it). The released mean is the noisy sum divided by ``normaliser``, a
public count fixed before the run (the declared number of training records at
``record`` level, of clients at ``client`` level): dividing by the encrypted total
weight would make the release depend on a record through ``W``. Under Poisson
sampling of records (``mechanism.sampling_rate = q < 1``) the public count is the
expected batch ``q · N`` (:attr:`divisor`), and releases are charged with the
sampled accountant (:mod:`he_fed.privacy._sampled`) at the recorded ``round_delta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from he_fed._validation import check_float, check_int
from he_fed.crypto import wire
from he_fed.exceptions import ConfigurationError, MalformedMessage, PolicyViolation
from he_fed.privacy._accountant import ACCOUNTANT, check_target, epsilon_after
from he_fed.privacy._mechanism import DPMechanism
from he_fed.privacy._sampled import SAMPLED_ACCOUNTANT, sampled_epsilon_after

__all__ = ["PrivacyBudget"]


@dataclass
class PrivacyBudget:
    """A target ``(epsilon, delta)``, the mechanism it is spent on, and what was spent.

    Parameters
    ----------
    mechanism : DPMechanism
        The noise every client adds (public).
    target_epsilon : float
        The most ``epsilon`` the key holder lets releases spend.
    delta : float
        The run's ``delta``.
    normaliser : int
        Public count the noisy sum is divided by before release.
    released : int, default=0
        Releases charged so far.
    round_delta : float, default=0.0
        ``delta0`` of each sampled release before amplification (chosen before
        the run, :func:`~he_fed.privacy._sampled.best_round_delta`); needed, and
        only allowed, when the mechanism samples records.
    """

    mechanism: DPMechanism
    target_epsilon: float
    delta: float
    normaliser: int
    released: int = 0
    round_delta: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.mechanism, DPMechanism):
            raise ConfigurationError("a privacy budget needs a DPMechanism")
        self.target_epsilon, self.delta = check_target(self.target_epsilon, self.delta)
        check_int("normaliser", self.normaliser, low=1)
        check_int("released", self.released, low=0)
        if self.sampled:
            check_float("round_delta", self.round_delta, low=0, high=1, strict_low=True)
        elif self.round_delta != 0.0:
            raise ConfigurationError("round_delta is for a mechanism that samples records")

    @property
    def sampled(self) -> bool:
        """Whether releases are Poisson-sampled (``q < 1``)."""
        return self.mechanism.sampling_rate < 1

    @property
    def divisor(self) -> int | Fraction:
        """What the noisy sum is divided by: ``normaliser``, times ``q`` (exactly) if sampled."""
        if not self.sampled:
            return self.normaliser
        return Fraction(self.mechanism.sampling_rate) * self.normaliser

    def epsilon_after(self, releases: int) -> float:
        """The accountant's ``epsilon`` at :attr:`delta` after ``releases`` releases."""
        if self.sampled:
            m = self.mechanism
            return sampled_epsilon_after(
                m.rho, m.sampling_rate, releases, self.delta, self.round_delta
            )
        return epsilon_after(self.mechanism.rho, releases, self.delta)

    @property
    def epsilon(self) -> float:
        """``epsilon`` spent so far."""
        return self.epsilon_after(self.released)

    @property
    def exhausted(self) -> bool:
        """Whether one more release would pass the target."""
        return self.epsilon_after(self.released + 1) > self.target_epsilon

    def refusal(self) -> str:
        """The one-line reason the next release is refused."""
        return (
            f"privacy budget spent: {self.released} release(s) used epsilon "
            f"{self.epsilon:.3g} of {self.target_epsilon:g} (delta {self.delta:g}); "
            f"one more would reach {self.epsilon_after(self.released + 1):.3g}"
        )

    def charge(self) -> None:
        """Charge one release, or refuse it.

        Raises
        ------
        PolicyViolation
            If the release would pass the target (nothing is charged).
        """
        if self.exhausted:
            raise PolicyViolation(self.refusal())
        self.released += 1

    def summary(self) -> dict[str, Any]:
        """The JSON's ``privacy`` object."""
        m = self.mechanism
        return {
            "epsilon": self.epsilon,
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "level": m.level,
            "noise_multiplier": m.noise_multiplier,
            "clip": m.clip,
            "accountant": SAMPLED_ACCOUNTANT if self.sampled else ACCOUNTANT,
            "rounds_released": self.released,
            "sampling_rate": m.sampling_rate,
            "round_delta": self.round_delta,
            "min_cohort": m.min_cohort,
            "noise_std": m.sum_std,
            "normaliser": self.normaliser,
        }

    def write_to(self, w: wire.Writer) -> None:
        """Append the budget's bytes; :meth:`read_from` reads them."""
        self.mechanism.write_to(w)
        w.float64(self.target_epsilon)
        w.float64(self.delta)
        w.uint(self.normaliser)
        w.uint(self.released)
        w.float64(self.round_delta)

    @classmethod
    def read_from(cls, r: wire.Reader, what: str, *, sampled: bool = True) -> PrivacyBudget:
        """Read what :meth:`write_to` wrote (``sampled=False``: bytes from before sampling).

        Raises
        ------
        MalformedMessage
            If the bytes are not a valid budget.
        """
        mechanism = DPMechanism.read_from(r, what, sampled=sampled)
        target, delta = r.float64(), r.float64()
        normaliser, released = r.uint(), r.uint()
        round_delta = r.float64() if sampled else 0.0
        try:
            return cls(mechanism, target, delta, normaliser, released, round_delta)
        except ConfigurationError as exc:
            raise MalformedMessage(f"{what}: {exc}") from None
