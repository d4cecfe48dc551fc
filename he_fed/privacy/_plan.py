"""Planning a private run before it starts: the noise multiplier and the scheme's range.

Given a target ``(epsilon, delta)`` and the number of rounds, the noise multiplier
is calibrated with the accountant, for ``rho = 1 / (2 z^2)`` per round; the
mechanism's slack (``tau`` in :mod:`he_fed.privacy._mechanism`) is then checked
to keep the planned rounds within the target. Contributions carry weight 1 and
must fit the scheme's clip bound together with their noise share, so the plan's
value range is the largest clipped contribution (``max_rows · clip`` at record
level, a sum of that many clipped gradients; ``clip`` at client level) plus
twelve share standard deviations: a share beyond it has a chance below 1e-32.

On CKKS the grid is a power of two, ``2**-grid_bits``, fixed here rather than the
finest the plan fits: the largest power of two at most Paillier's step on the same
range, ``range / (2**31 - 1)``, so both schemes round alike and every noisy grid
integer stays far below ``2**52``. Values above a slot's capacity take digits
(:mod:`he_fed.crypto._ckks_grid`); every digit total is an exact integer sum.
"""

from __future__ import annotations

import math

from he_fed._validation import check_int
from he_fed.crypto import Scheme, make_scheme
from he_fed.exceptions import ConfigurationError
from he_fed.privacy._accountant import (
    calibrate_noise_multiplier,
    check_noise,
    check_target,
    epsilon_after,
)
from he_fed.privacy._budget import PrivacyBudget
from he_fed.privacy._mechanism import LEVELS, DPMechanism
from he_fed.privacy._sampled import (
    best_round_delta,
    calibrate_sampled,
    check_sampling_rate,
    sampled_epsilon_after,
)

__all__ = [
    "DP_PRECISION_BITS",
    "GRID_SCHEMES",
    "calibrate",
    "ckks_grid_bits",
    "plan_mechanism",
    "privacy_estimate",
    "private_setup",
    "value_range",
]

#: Schemes whose released sums are exact integers on a grid, where the discrete noise
#: is analysed exactly. CKKS qualifies since the key holder rounds every decrypted
#: value onto its grid (exact except with probability ``2**-40`` per release, when
#: it refuses or errs: ``DESIGN.md``, "Differential privacy"). Plain has no grid and
#: no secure aggregation (any noise would be added in the clear): it is refused.
GRID_SCHEMES = ("paillier-packed", "paillier", "ckks")

#: Precision of a private run's grid: fine enough that rounding adds under a
#: thousandth to the sensitivity, coarse enough that every noisy integer is exact
#: in a float (``DPMechanism`` checks both).
DP_PRECISION_BITS = 32

#: Share standard deviations the value range leaves room for.
_TAIL = 12


def calibrate(
    target_epsilon: float, delta: float, rounds: int, sampling_rate: float = 1.0
) -> float:
    """The noise multiplier ``z`` for ``rounds`` releases within ``(epsilon, delta)``.

    With ``sampling_rate < 1``, the sampled accountant's (:mod:`he_fed.privacy._sampled`).
    """
    if sampling_rate < 1:
        target_epsilon, delta = check_target(target_epsilon, delta)
        rounds = check_int("rounds", rounds, low=1)
        return calibrate_sampled(
            target_epsilon, delta, rounds, sampling_rate, lambda z: 1 / (2 * z * z)
        )
    return calibrate_noise_multiplier(target_epsilon, delta, rounds, lambda z: 1 / (2 * z * z))


def _check_sampling(level: str, sampling_rate: float | None) -> float:
    q = check_sampling_rate(sampling_rate)
    if q < 1 and level != "record":
        raise ConfigurationError(
            "dp_sampling_rate samples records: it needs dp_level='record', not 'client'"
        )
    return q


def ckks_grid_bits(span: float) -> int:
    """A private CKKS plan's grid bits for a value range ``span`` (a power of two).

    ``2**-bits = span / 2**(DP_PRECISION_BITS - 1)``: the largest power of two at
    most Paillier's step on that range, ``span / (2**(DP_PRECISION_BITS - 1) - 1)``.

    Raises
    ------
    ConfigurationError
        If the range is too wide for a grid of at least one bit.
    """
    bits = DP_PRECISION_BITS - 1 - round(math.log2(span))
    if bits < 1:
        raise ConfigurationError(
            f"a value range of {span:g} is too wide for a private CKKS grid; lower dp_clip "
            "or the records per client"
        )
    return bits


def value_range(
    level: str, clip: float, noise_multiplier: float, min_cohort: int, max_rows: int
) -> float:
    """The scheme's clip bound for a private run: a power of two (see the module docstring)."""
    if level not in LEVELS:
        raise ConfigurationError(f"dp_level must be one of {LEVELS}, not {level!r}")
    check_int("max_rows", max_rows, low=1)
    signal = clip * (max_rows if level == "record" else 1)
    share = 1.01 * noise_multiplier * clip / math.sqrt(min_cohort)
    return float(2.0 ** math.ceil(math.log2(signal + _TAIL * share)))


def plan_mechanism(
    *,
    level: str,
    clip: float,
    noise_multiplier: float,
    min_cohort: int,
    size: int,
    step: float,
    target_epsilon: float,
    delta: float,
    rounds: int,
    sampling_rate: float = 1.0,
    round_delta: float = 0.0,
) -> DPMechanism:
    """The mechanism on the scheme's grid, checked to fit ``rounds`` within the target.

    A sampled mechanism (``sampling_rate < 1``) is checked at ``round_delta``.

    Raises
    ------
    ConfigurationError
        If the slack of the distributed discrete Gaussian takes the planned rounds
        past the target (a grid too coarse for the noise).
    """
    mechanism = DPMechanism(level, clip, noise_multiplier, min_cohort, size, step, sampling_rate)
    if sampling_rate < 1:
        spent = sampled_epsilon_after(mechanism.rho, sampling_rate, rounds, delta, round_delta)
    else:
        spent = epsilon_after(mechanism.rho, rounds, delta)  # rounds=0 checks nothing
    if spent > target_epsilon * (1 + 1e-6):
        raise ConfigurationError(
            f"{rounds} rounds of this mechanism reach epsilon {spent:.4g}, past the target "
            f"{target_epsilon:g}: its grid is too coarse for the noise"
        )
    return mechanism


def private_setup(
    scheme: str,
    *,
    key_bits: int,
    allow_insecure: bool,
    n_clients: int,
    max_rows: int,
    size: int,
    target_epsilon: float,
    delta: float,
    rounds: int,
    level: str,
    clip: float,
    min_cohort: int,
    normaliser: int,
    noise_multiplier: float | None = None,
    ckks_preset: str = "aggregation-fast",
    sampling_rate: float | None = None,
) -> tuple[Scheme, PrivacyBudget]:
    """The scheme and the key holder's budget of a private run, planned before it starts.

    Parameters
    ----------
    scheme : {"paillier-packed", "paillier", "ckks"}
        The scheme's name.
    key_bits, allow_insecure
        Paillier key options.
    n_clients : int
        Clients (the plan's ``max_clients``).
    max_rows : int
        Largest client's record count (a public bound in a deployment).
    size : int
        Values per update.
    target_epsilon, delta, rounds
        The target and the rounds it must last.
    level : {"record", "client"}
        What one unit of privacy protects.
    clip : float
        The L2 clip bound ``C``.
    min_cohort : int
        The smallest cohort the key holder decrypts.
    normaliser : int
        Public count the released sum is divided by.
    noise_multiplier : float, optional
        A fixed noise multiplier instead of the calibrated one: the key holder
        then stops the run once the target is spent, whatever ``rounds`` says.
    ckks_preset : str, default="aggregation-fast"
        CKKS parameters (``scheme="ckks"`` only).
    sampling_rate : float, optional
        ``q``: Poisson sampling of records per round (``record`` level only);
        ``None`` or 1.0 samples nothing. The budget records the ``delta0`` that
        minimises ``epsilon`` after ``rounds`` (:func:`~he_fed.privacy._sampled.best_round_delta`).

    Raises
    ------
    ConfigurationError
        If the scheme has no integer grid, the target cannot be met, or the
        sampling rate is bad or at ``client`` level.
    """
    q = _check_sampling(level, sampling_rate)
    check_noise(clip, noise_multiplier)
    if scheme not in GRID_SCHEMES:
        raise ConfigurationError(
            f"differential privacy needs an integer-grid scheme ({', '.join(GRID_SCHEMES)}); "
            f"{scheme} is refused"
        )
    z = noise_multiplier
    if z is None:
        z = calibrate(target_epsilon, delta, rounds, q)
    span = value_range(level, clip, z, min_cohort, max_rows)
    options: dict[str, object] = {"clip": span, "max_clients": n_clients, "max_weight": 1}
    if scheme == "ckks":
        bits = ckks_grid_bits(span)
        options.update(preset=ckks_preset, precision_bits=bits, grid_bits=bits)
    else:
        options.update(
            key_bits=key_bits, allow_insecure=allow_insecure, precision_bits=DP_PRECISION_BITS
        )
    built = make_scheme(scheme, **options)
    step = built.quantizer.step  # type: ignore[attr-defined]
    round_delta = 0.0
    if q < 1:
        rho = DPMechanism(level, clip, z, min_cohort, size, step, q).rho
        round_delta = best_round_delta(rho, q, check_int("rounds", rounds, low=1), delta)
    mechanism = plan_mechanism(
        level=level,
        clip=clip,
        noise_multiplier=z,
        min_cohort=min_cohort,
        size=size,
        step=step,
        target_epsilon=target_epsilon,
        delta=delta,
        rounds=rounds if noise_multiplier is None else 0,
        sampling_rate=q,
        round_delta=round_delta,
    )
    return built, PrivacyBudget(mechanism, target_epsilon, delta, normaliser, 0, round_delta)


def privacy_estimate(
    *,
    target_epsilon: float,
    delta: float,
    rounds: int,
    level: str,
    clip: float,
    normaliser: int,
    noise_multiplier: float | None = None,
    sampling_rate: float | None = None,
) -> dict[str, float | int]:
    """What noise and what ``epsilon`` a private run would have, without running it.

    Parameters
    ----------
    target_epsilon, delta, rounds, level, clip
        As for a run.
    normaliser : int
        The public count releases are divided by (records at ``record`` level,
        clients at ``client`` level).
    noise_multiplier : float, optional
        A fixed multiplier instead of the calibrated one.
    sampling_rate : float, optional
        ``q``, Poisson sampling of records (``record`` level only).

    Returns
    -------
    dict
        ``noise_multiplier``; ``sum_std`` (noise of a released sum) and ``mean_std``
        (of a released value, after the division by the expected batch
        ``q · normaliser``); ``epsilon`` after ``rounds`` releases (before the
        grid's slack, which is 0.0 for shares of thousands of grid units);
        ``rounds_within_target``, how many releases the key holder allows;
        ``sampling_rate`` and, if sampled, ``round_delta``.
    """
    if level not in LEVELS:
        raise ConfigurationError(f"dp_level must be one of {LEVELS}, not {level!r}")
    q = _check_sampling(level, sampling_rate)
    check_noise(clip, noise_multiplier)
    check_int("normaliser", normaliser, low=1)
    z = noise_multiplier
    if z is None:
        z = calibrate(target_epsilon, delta, rounds, q)
    rho = 1 / (2 * z * z)
    round_delta = best_round_delta(rho, q, rounds, delta) if q < 1 else 0.0

    def spent(releases: int) -> float:
        if q < 1:
            return sampled_epsilon_after(rho, q, releases, delta, round_delta)
        return epsilon_after(rho, releases, delta)

    affordable, step = 0, 1 << 20
    while step:  # the largest count of releases within the target, by binary search
        if spent(affordable + step) <= target_epsilon:
            affordable += step
        step >>= 1
    estimate: dict[str, float | int] = {
        "noise_multiplier": z,
        "sum_std": z * clip,
        "mean_std": z * clip / (q * normaliser),
        "epsilon": spent(rounds),
        "rounds_within_target": affordable,
        "sampling_rate": q,
    }
    if q < 1:
        estimate["round_delta"] = round_delta
    return estimate
