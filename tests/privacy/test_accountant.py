"""The accountant against an independent computation, and the calibration."""

from __future__ import annotations

import math

import dp_accounting
import pytest
from scipy.stats import norm

from he_fed.exceptions import ConfigurationError
from he_fed.privacy import calibrate_noise_multiplier, epsilon_after
from he_fed.privacy._plan import calibrate


def analytic_gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """Balle and Wang (ICML 2018), Theorem 8: the exact epsilon of one Gaussian release.

    With sensitivity 1 and standard deviation ``s``, the Gaussian mechanism is
    ``(eps, delta)``-DP exactly when
    ``Phi(1/(2s) - eps·s) - e^eps · Phi(-1/(2s) - eps·s) <= delta``; the left side
    decreases in ``eps``, so bisection finds the smallest such ``eps``.
    """
    s = noise_multiplier

    def delta_of(eps: float) -> float:
        return norm.cdf(0.5 / s - eps * s) - math.exp(eps) * norm.cdf(-0.5 / s - eps * s)

    low, high = 0.0, 100.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (low, mid) if delta_of(mid) <= delta else (mid, high)
    return high


@pytest.mark.parametrize("z", [0.8, 2.0, 5.0])
def test_the_library_matches_the_analytic_gaussian_mechanism_for_one_round(z):
    pld = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    pld.compose(dp_accounting.GaussianDpEvent(z))
    exact = analytic_gaussian_epsilon(z, 1e-5)
    assert pld.get_epsilon(1e-5) == pytest.approx(exact, rel=1e-6)  # measured: 2.3e-8


@pytest.mark.parametrize("z", [0.8, 2.0, 5.0])
def test_the_runs_accountant_bounds_the_analytic_gaussian_from_above(z):
    """A run is charged rho = 1 / (2 z^2) per release (zCDP, sound for the discrete
    Gaussian sum); its epsilon is an upper bound on the exact Gaussian's, looser by
    the zCDP-to-(eps, delta) conversion: measured 7.8 % to 9.5 % here."""
    exact = analytic_gaussian_epsilon(z, 1e-5)
    charged = epsilon_after(1 / (2 * z * z), 1, 1e-5)
    assert exact <= charged <= 1.10 * exact


def test_epsilon_grows_with_releases_and_is_zero_before_the_first():
    rho = 1 / (2 * 10.0**2)
    spent = [epsilon_after(rho, k, 1e-5) for k in range(5)]
    assert spent[0] == 0.0 and spent == sorted(spent) and len(set(spent)) == 5


@pytest.mark.parametrize(("epsilon", "rounds"), [(0.5, 10), (1.0, 20), (8.0, 50)])
def test_calibration_meets_the_target_tightly(epsilon, rounds):
    z = calibrate(epsilon, 1e-5, rounds)
    spent = epsilon_after(1 / (2 * z * z), rounds, 1e-5)
    assert epsilon * (1 - 1e-3) <= spent <= epsilon


def test_an_unreachable_target_and_bad_parameters_are_refused():
    with pytest.raises(ConfigurationError, match="dp_epsilon"):
        calibrate(0.0, 1e-5, 10)
    with pytest.raises(ConfigurationError, match="dp_delta"):
        calibrate(1.0, 1.0, 10)
    with pytest.raises(ConfigurationError, match="raise dp_epsilon"):
        calibrate_noise_multiplier(1.0, 1e-5, 10, lambda z: 1.0)


def test_the_library_has_no_poisson_subsampling_of_a_zcdp_release():
    """Why sampled runs use the hand-composed route of ``he_fed.privacy._sampled``
    (``DESIGN.md``, "Poisson sampling"): dp-accounting 0.6.0 amplifies only Gaussian
    (RDP, PLD) and Laplace (PLD) releases by Poisson sampling, and a run's release
    is a zCDP event. When this fails, the library has gained the analysis: use it
    instead of the hand-written amplification step."""
    sampled = dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.ZCDpEvent(0.01))
    assert not dp_accounting.rdp.RdpAccountant().supports(sampled)
    assert not dp_accounting.pld.PLDAccountant().supports(sampled)
    gaussian = dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(5.0))
    assert dp_accounting.rdp.RdpAccountant().supports(gaussian)
