"""The accountant of a Poisson-sampled run: one hand-written step between two library calls.

``dp-accounting`` 0.6.0 cannot amplify a ``ZCDpEvent`` by Poisson sampling (its
accountants refuse a ``PoissonSampledDpEvent`` around one). This route does it
with a single published formula and leaves the rest to the library:

1. one release, ``rho``-zCDP, is ``(eps0, delta0)``-DP with ``eps0`` the library's
   RDP accountant's ``get_epsilon(delta0)`` for one ``ZCDpEvent(rho)``;
2. **hand-written**: including each record independently with probability ``q``
   makes the round ``(log(1 + q (e^eps0 - 1)), q · delta0)``-DP under add/remove
   of one record (Balle, Barthe and Gaboardi, "Privacy Amplification by
   Subsampling: Tight Analyses via Couplings and Divergences", NeurIPS 2018,
   Theorem 8 with Table 1's Poisson row, ``eps' = log(1 + q (e^eps - 1))``,
   ``delta' = q · delta``, for the remove/add relation);
3. releases compose in the library's PLD accountant: the PLD of an
   ``(eps, delta)``-DP mechanism (``from_privacy_parameters``) holds ``delta`` as
   mass at infinity, so ``k`` releases' ``epsilon`` at the run's ``delta`` is finite
   only while ``1 - (1 - q delta0)^k < delta``; the library adds the deltas.

``delta0`` is free: :func:`best_round_delta` picks the one that minimises the
final ``epsilon`` for the planned releases, and the budget records it so that the
key holder's accountant is reproducible from its state.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from fractions import Fraction

from he_fed._validation import check_float, check_int
from he_fed.exceptions import ConfigurationError

__all__ = [
    "SAMPLED_ACCOUNTANT",
    "amplified",
    "best_round_delta",
    "best_sampled_epsilon",
    "calibrate_sampled",
    "check_sampling_rate",
    "poisson_coin",
    "round_epsilon",
    "sampled_epsilon_after",
]

#: What the JSON's ``privacy.accountant`` says for a sampled run.
SAMPLED_ACCOUNTANT = "dp-accounting PLD (poisson-amplified zCDP)"

#: The widest noise multiplier calibration searches (as the unsampled accountant).
_MAX_NOISE_MULTIPLIER = 1e6

#: ``delta0`` candidates, as fractions of the largest useful one (log-spaced).
_FRACTIONS = tuple(10 ** (-4 + i / 3) * 0.999 for i in range(13))


#: The least sampling rate: below it the amplified epsilon of a round underflows.
MIN_SAMPLING_RATE = 1e-6


def check_sampling_rate(q: float | None) -> float:
    """``q`` as a float in ``[1e-6, 1]``; ``None`` is 1.0 (every record, every round).

    Raises
    ------
    ConfigurationError
        If ``q`` is not a number in ``[1e-6, 1]``.
    """
    if q is None:
        return 1.0
    return check_float("dp_sampling_rate", q, low=MIN_SAMPLING_RATE, high=1)


def poisson_coin(q: float) -> bool:
    """``True`` with probability exactly ``q`` (the float's rational value), from :mod:`secrets`."""
    p = Fraction(q)
    return secrets.randbelow(p.denominator) < p.numerator


def round_epsilon(rho: float, round_delta: float) -> float:
    """``eps0``: one ``rho``-zCDP release as ``(eps0, round_delta)``-DP (the library's RDP)."""
    import dp_accounting  # where used, as in _accountant: most of a second to import

    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.ZCDpEvent(rho))
    return float(accountant.get_epsilon(round_delta))


def amplified(eps0: float, delta0: float, q: float) -> tuple[float, float]:
    """Balle, Barthe and Gaboardi's Poisson amplification: ``(log(1 + q (e^eps0 - 1)), q delta0)``.

    Written as ``eps0 + log(q + (1 - q) e^-eps0)``, the same number without overflow.
    """
    return eps0 + math.log(q + (1 - q) * math.exp(-eps0)), q * delta0


def sampled_epsilon_after(
    rho: float, q: float, releases: int, delta: float, round_delta: float
) -> float:
    """``epsilon`` at ``delta`` after ``releases`` Poisson-sampled releases of ``rho``-zCDP.

    Parameters
    ----------
    rho : float
        zCDP parameter of one unsampled release.
    q : float
        Each record's inclusion probability per round.
    releases : int
        How many releases.
    delta : float
        The run's ``delta``.
    round_delta : float
        ``delta0`` of each release before amplification.

    Returns
    -------
    float
        0.0 before any release; ``inf`` once the releases' deltas alone reach ``delta``.
    """
    if releases == 0:
        return 0.0
    if -math.expm1(releases * math.log1p(-q * round_delta)) > delta:
        return math.inf  # the releases' deltas alone, 1 - (1 - q delta0)^k, spend delta
    from dp_accounting.pld import common, privacy_loss_distribution

    eps, d = amplified(round_epsilon(rho, round_delta), round_delta, q)
    event = privacy_loss_distribution.from_privacy_parameters(
        common.DifferentialPrivacyParameters(eps, d)
    )
    return float(event.self_compose(releases).get_epsilon_for_delta(delta))


def best_round_delta(rho: float, q: float, releases: int, delta: float) -> float:
    """The ``delta0`` (of a log-spaced grid) that minimises ``epsilon`` after ``releases``.

    Candidates lie below ``delta / (q · releases)``, where the releases' deltas alone
    would spend ``delta``.
    """
    check_float("dp_sampling_rate", q, low=0, high=1, strict_low=True)
    releases = check_int("rounds", releases, low=1)
    top = min(delta / (q * releases), 1.0)
    best = min(_FRACTIONS, key=lambda f: sampled_epsilon_after(rho, q, releases, delta, f * top))
    if not math.isfinite(sampled_epsilon_after(rho, q, releases, delta, best * top)):
        raise ConfigurationError(f"no round delta gives a finite epsilon at delta {delta:g}")
    return best * top


def best_sampled_epsilon(rho: float, q: float, releases: int, delta: float) -> float:
    """``epsilon`` after ``releases`` at the best ``delta0`` (:func:`best_round_delta`)."""
    return sampled_epsilon_after(rho, q, releases, delta, best_round_delta(rho, q, releases, delta))


def calibrate_sampled(
    target_epsilon: float, delta: float, rounds: int, q: float, rho_of: Callable[[float], float]
) -> float:
    """The smallest noise multiplier (to a relative 1e-3) whose sampled rounds stay in target.

    A bisection on ``z`` with the same accountant, each step at its best ``delta0``.

    Raises
    ------
    ConfigurationError
        If no noise multiplier up to 1e6 meets the target.
    """

    def fits(z: float) -> bool:
        try:
            return best_sampled_epsilon(rho_of(z), q, rounds, delta) <= target_epsilon
        except ConfigurationError:
            return False

    if not fits(_MAX_NOISE_MULTIPLIER):
        raise ConfigurationError(
            f"no noise multiplier up to {_MAX_NOISE_MULTIPLIER:g} gives epsilon "
            f"{target_epsilon:g} at delta {delta:g} over {rounds} sampled rounds; raise dp_epsilon"
        )
    low, high = 1e-3, 1.0
    while not fits(high):
        low, high = high, high * 2
    while high - low > 1e-3 * high:
        mid = (low + high) / 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    return high
