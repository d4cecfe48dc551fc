"""The Poisson-sampled accountant: the one hand-written formula, checked by hand and
against the library, and the records each client samples from the CSPRNG."""

from __future__ import annotations

import dataclasses
import math
import random
import re
from fractions import Fraction

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import common, privacy_loss_distribution

from he_fed.exceptions import ConfigurationError, PolicyViolation
from he_fed.privacy import DPMechanism, PrivacyBudget, epsilon_after, privacy_estimate
from he_fed.privacy._plan import calibrate
from he_fed.privacy._sampled import (
    amplified,
    best_round_delta,
    best_sampled_epsilon,
    round_epsilon,
    sampled_epsilon_after,
)

Z = 18.09  # breast_cancer's calibrated multiplier at epsilon 1, 20 rounds, unsampled
RHO = 1 / (2 * Z * Z)


def test_one_round_is_the_amplification_formula_computed_by_hand():
    """eps0 from the library's RDP accountant, then log(1 + q (e^eps0 - 1)) by hand."""
    q, delta0 = 0.1, 1e-6
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.ZCDpEvent(RHO))
    eps0 = accountant.get_epsilon(delta0)
    assert round_epsilon(RHO, delta0) == eps0
    by_hand = math.log(1 + q * (math.exp(eps0) - 1))
    eps, delta = amplified(eps0, delta0, q)
    assert eps == pytest.approx(by_hand, rel=1e-14) and delta == q * delta0
    assert round(by_hand, 6) == 0.026302
    # One release read at a delta just above q · delta0: the PLD's eps, rounded up
    # to its 1e-4 grid (pessimistic), never below the formula.
    one = sampled_epsilon_after(RHO, q, 1, q * delta0 * (1 + 1e-9), delta0)
    assert by_hand <= one <= by_hand + 1e-4


def test_rounds_compose_as_the_library_composes_them_one_by_one():
    q, delta0, rounds = 0.1, 1e-6, 20
    eps, delta = amplified(round_epsilon(RHO, delta0), delta0, q)
    one = privacy_loss_distribution.from_privacy_parameters(
        common.DifferentialPrivacyParameters(eps, delta)
    )
    composed = one
    for _ in range(rounds - 1):
        composed = composed.compose(one)
    expected = composed.get_epsilon_for_delta(1e-5)
    assert sampled_epsilon_after(RHO, q, rounds, 1e-5, delta0) == pytest.approx(expected, abs=1e-9)
    assert round(expected, 4) == 0.3954


def test_the_rounds_deltas_add_up_in_the_pld():
    """Each release's q · delta0 is mass at infinity: k releases leave 1 - (1 - q delta0)^k,
    and epsilon is finite only at a larger delta."""
    q, delta0, rounds = 0.1, 1e-6, 20
    spent = -math.expm1(rounds * math.log1p(-q * delta0))
    assert sampled_epsilon_after(RHO, q, rounds, spent, delta0) == math.inf
    assert math.isfinite(sampled_epsilon_after(RHO, q, rounds, spent * 1.01, delta0))
    assert sampled_epsilon_after(RHO, q, 0, 1e-5, delta0) == 0.0


@pytest.mark.parametrize(
    ("z", "rounds", "q", "expected", "unsampled"),
    [(18.09, 20, 0.01, 0.026, 1.000), (18.09, 20, 0.1, 0.378, 1.000), (3, 100, 0.01, 1.251, 20.39)],
)
def test_sampling_spends_less_than_every_record_at_the_same_noise(
    z, rounds, q, expected, unsampled
):
    rho = 1 / (2 * z * z)
    assert round(best_sampled_epsilon(rho, q, rounds, 1e-5), 3) == expected
    assert round(epsilon_after(rho, rounds, 1e-5), 2) == round(unsampled, 2)


def test_the_round_delta_minimises_epsilon_and_stays_below_the_delta_it_may_use():
    q, rounds = 0.1, 20
    best = best_round_delta(RHO, q, rounds, 1e-5)
    assert 0 < best < 1e-5 / (q * rounds)
    chosen = sampled_epsilon_after(RHO, q, rounds, 1e-5, best)
    for other in (best / 3, best * 2):
        assert chosen <= sampled_epsilon_after(RHO, q, rounds, 1e-5, other)


def test_calibration_finds_the_smallest_noise_for_the_target_with_the_same_accountant():
    z = calibrate(1.0, 1e-5, 20, 0.1)
    assert best_sampled_epsilon(1 / (2 * z * z), 0.1, 20, 1e-5) <= 1.0
    smaller = z * (1 - 2e-3)
    assert best_sampled_epsilon(1 / (2 * smaller**2), 0.1, 20, 1e-5) > 1.0
    assert round(z, 2) == 8.35


def test_a_rate_of_one_is_todays_accountant_exactly():
    mechanism = DPMechanism("record", 1.0, Z, 5, 31, 2.0**-23)
    assert DPMechanism("record", 1.0, Z, 5, 31, 2.0**-23, 1.0) == mechanism
    budget = PrivacyBudget(mechanism, 1.0, 1e-5, 426)
    assert not budget.sampled and budget.divisor == 426
    assert budget.epsilon_after(20) == epsilon_after(mechanism.rho, 20, 1e-5)
    assert budget.summary()["accountant"] == "dp-accounting RDP (zCDP events)"
    assert calibrate(1.0, 1e-5, 20, 1.0) == calibrate(1.0, 1e-5, 20)
    kept = privacy_estimate(
        target_epsilon=1, delta=1e-5, rounds=20, level="record", clip=1.0, normaliser=426
    )
    assert kept == privacy_estimate(
        target_epsilon=1,
        delta=1e-5,
        rounds=20,
        level="record",
        clip=1.0,
        normaliser=426,
        sampling_rate=1.0,
    )
    assert "round_delta" not in kept and kept["sampling_rate"] == 1.0


def test_a_sampled_budget_charges_with_the_sampled_accountant_and_refuses_past_the_target():
    mechanism = DPMechanism("record", 1.0, Z, 5, 31, 2.0**-23, 0.1)
    delta0 = best_round_delta(mechanism.rho, 0.1, 20, 1e-5)
    budget = PrivacyBudget(mechanism, 0.4, 1e-5, 426, 0, delta0)
    assert budget.divisor == Fraction(0.1) * 426  # q · N, q's exact binary value
    half = PrivacyBudget(dataclasses.replace(mechanism, sampling_rate=0.5), 1.0, 1e-5, 426, 0, 1e-7)
    assert half.divisor == 213
    assert budget.epsilon_after(20) == sampled_epsilon_after(mechanism.rho, 0.1, 20, 1e-5, delta0)
    for _ in range(22):
        budget.charge()
    assert budget.released == 22 and round(budget.epsilon, 4) == 0.3937
    with pytest.raises(PolicyViolation, match=r"privacy budget spent: 22 release\(s\)"):
        budget.charge()
    summary = budget.summary()
    assert summary["sampling_rate"] == 0.1 and summary["round_delta"] == delta0
    assert summary["accountant"] == "dp-accounting PLD (poisson-amplified zCDP)"


@pytest.mark.parametrize(
    ("q", "message"),
    [
        (0, "dp_sampling_rate must be a finite number in [1e-06, 1], got 0"),
        (1e-300, "dp_sampling_rate must be"),  # amplified epsilon underflowed (an audit)
        (1.5, "dp_sampling_rate must be"),
        (float("nan"), "dp_sampling_rate must be"),
        (-0.1, "dp_sampling_rate must be"),
        ("0.5", "dp_sampling_rate must be"),
    ],
)
def test_bad_sampling_rates_are_refused(q, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        DPMechanism("record", 1.0, Z, 5, 31, 2.0**-23, q)


def test_sampling_is_refused_at_client_level_and_round_delta_needs_sampling():
    with pytest.raises(ConfigurationError, match="needs dp_level='record', not 'client'"):
        DPMechanism("client", 1.0, Z, 5, 31, 2.0**-23, 0.5)
    with pytest.raises(ConfigurationError, match="needs dp_level='record'"):
        privacy_estimate(
            target_epsilon=1,
            delta=1e-5,
            rounds=20,
            level="client",
            clip=1.0,
            normaliser=5,
            sampling_rate=0.5,
        )
    with pytest.raises(ConfigurationError, match="round_delta is for a mechanism that samples"):
        PrivacyBudget(DPMechanism("record", 1.0, Z, 5, 31, 2.0**-23), 1.0, 1e-5, 426, 0, 1e-7)


def test_records_are_sampled_from_the_csprng_not_from_the_seed():
    mechanism = DPMechanism("record", 1.0, Z, 5, 31, 2.0**-23, 0.5)
    X, y = np.arange(400.0).reshape(200, 2), np.arange(200)
    kept = []
    for _ in range(2):
        np.random.seed(0)
        random.seed(0)
        Xs, ys = mechanism.sample(X, y)
        assert np.array_equal(Xs[:, 0] // 2, ys)  # rows stay whole
        kept.append(tuple(ys))
    assert kept[0] != kept[1]  # equal with probability 2**-200
    everyone = DPMechanism("record", 1.0, Z, 5, 31, 2.0**-23)
    assert everyone.sample(X, y)[0] is X


def test_each_record_is_kept_with_probability_q():
    """10,000 coins at q = 0.3: the count lies within the binomial's 1e-9 tails."""
    scipy_stats = pytest.importorskip("scipy.stats")
    mechanism = DPMechanism("record", 1.0, Z, 5, 31, 2.0**-23, 0.3)
    _, kept = mechanism.sample(np.zeros((10_000, 1)), np.arange(10_000))
    low, high = scipy_stats.binom.ppf([1e-9, 1 - 1e-9], 10_000, 0.3)
    assert low <= len(kept) <= high
