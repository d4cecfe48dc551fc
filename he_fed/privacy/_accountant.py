"""The privacy accountant: Google's ``dp-accounting`` (Rényi DP), never a hand-written one.

Every release of a differentially private run is one zero-concentrated DP event
(:class:`dp_accounting.ZCDpEvent`): the distributed discrete Gaussian satisfies
``rho``-zCDP per release (see :mod:`he_fed.privacy._mechanism`), releases compose
by adding their ``rho``, and the library's RDP accountant turns the total into the
smallest ``epsilon`` it can prove at the run's ``delta``. Calibration searches the
noise multiplier with the library's own :func:`dp_accounting.calibrate_dp_mechanism`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from he_fed._validation import check_float, check_int
from he_fed.exceptions import ConfigurationError

if TYPE_CHECKING:
    import dp_accounting

__all__ = [
    "ACCOUNTANT",
    "calibrate_noise_multiplier",
    "check_noise",
    "check_target",
    "epsilon_after",
]

#: What the JSON's ``privacy.accountant`` says.
ACCOUNTANT = "dp-accounting RDP (zCDP events)"

#: The widest noise multiplier calibration searches: beyond it a run is pointless.
_MAX_NOISE_MULTIPLIER = 1e6
#: The least it searches from.
_MIN_NOISE_MULTIPLIER = 1e-3


def check_noise(clip: float, noise_multiplier: float | None) -> None:
    """Refuse a clip bound or a fixed noise multiplier that is not finite and positive.

    A clip of 0 or below, or a multiplier of NaN or inf, planned noise of 0, a
    negative standard deviation or an unbounded number of releases.
    """
    check_float("dp_clip", clip, low=0, strict_low=True)
    if noise_multiplier is not None:
        check_float(
            "dp_noise_multiplier", noise_multiplier, low=0, high=_MAX_NOISE_MULTIPLIER,
            strict_low=True,
        )  # fmt: skip


def check_target(epsilon: float, delta: float) -> tuple[float, float]:
    """``(epsilon, delta)`` if ``epsilon > 0`` is finite and ``0 < delta < 1``."""
    epsilon = check_float("dp_epsilon", epsilon, low=0, strict_low=True)
    delta = check_float("dp_delta", delta, low=0, high=1, strict_low=True)
    if delta >= 1:
        raise ConfigurationError("dp_delta must be below 1 (typically below 1 / records)")
    return epsilon, delta


def _accountant(rho: float, releases: int) -> dp_accounting.rdp.RdpAccountant:
    # Imported where used: dp-accounting imports scipy.signal and scipy.stats, most
    # of a second, which a key holder's process without a budget never needs.
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant()
    if releases:
        accountant.compose(dp_accounting.ZCDpEvent(rho), releases)
    return accountant


def epsilon_after(rho: float, releases: int, delta: float) -> float:
    """The ``epsilon`` at ``delta`` of ``releases`` releases of ``rho``-zCDP each.

    Parameters
    ----------
    rho : float
        zCDP parameter of one release.
    releases : int
        How many releases.
    delta : float
        The run's ``delta``.

    Returns
    -------
    float
        0.0 before any release.
    """
    if releases == 0:
        return 0.0
    return float(_accountant(rho, releases).get_epsilon(delta))


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    rounds: int,
    rho_of: Callable[[float], float],
) -> float:
    """The smallest noise multiplier whose ``rounds`` releases stay within the target.

    Parameters
    ----------
    target_epsilon, delta : float
        The target.
    rounds : int
        Releases planned.
    rho_of : callable
        zCDP parameter of one release for a noise multiplier (the mechanism's,
        slack included).

    Raises
    ------
    ConfigurationError
        If no noise multiplier up to 1e6 meets the target.
    """
    import dp_accounting  # see _accountant

    target_epsilon, delta = check_target(target_epsilon, delta)
    rounds = check_int("rounds", rounds, low=1)

    def event(z: float) -> dp_accounting.DpEvent:
        return dp_accounting.SelfComposedDpEvent(dp_accounting.ZCDpEvent(rho_of(z)), rounds)

    if epsilon_after(rho_of(_MAX_NOISE_MULTIPLIER), rounds, delta) > target_epsilon:
        raise ConfigurationError(
            f"no noise multiplier up to {_MAX_NOISE_MULTIPLIER:g} gives epsilon "
            f"{target_epsilon:g} at delta {delta:g} over {rounds} rounds; raise dp_epsilon"
        )
    try:
        with np.errstate(over="ignore"):  # its bracket search at an epsilon past any noise
            z = dp_accounting.calibrate_dp_mechanism(
                dp_accounting.rdp.RdpAccountant,
                event,
                target_epsilon,
                delta,
                dp_accounting.LowerEndpointAndGuess(_MIN_NOISE_MULTIPLIER, 1.0),
                tol=1e-4,
            )
    except dp_accounting.mechanism_calibration.NoBracketIntervalFoundError:
        raise ConfigurationError(
            f"epsilon {target_epsilon:g} at delta {delta:g} over {rounds} rounds needs less "
            f"noise than a multiplier of {_MIN_NOISE_MULTIPLIER:g}, the least calibrated; "
            "lower dp_epsilon, or fix the noise with dp_noise_multiplier"
        ) from None
    return float(z)
