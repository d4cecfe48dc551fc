"""The discrete Gaussian sampler and the mechanism on the grid."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy.stats import chi2

from he_fed.crypto import CKKS, PackedPaillier, Scheme, wire
from he_fed.exceptions import ConfigurationError, MalformedMessage
from he_fed.privacy import DPMechanism, PrivacyBudget, sample_discrete_gaussian
from he_fed.privacy._plan import DP_PRECISION_BITS, ckks_grid_bits
from he_fed.protocol.release import checked_mean


def test_the_discrete_gaussian_has_its_exact_probabilities():
    """Frequencies of -3..3 for sigma^2 = 1 against the normalised exp(-x^2 / 2)."""
    n = 6000
    draws = sample_discrete_gaussian(1.0, n).astype(np.int64)
    support = np.arange(-40, 41)
    pmf = np.exp(-(support**2) / 2.0)
    pmf /= pmf.sum()
    for x in range(-3, 4):
        p = pmf[x + 40]
        count = int(np.count_nonzero(draws == x))
        assert abs(count - n * p) < 6 * math.sqrt(n * p * (1 - p)), x


def test_the_sampler_ignores_every_seed():
    """Noise comes from the OS CSPRNG: seeding numpy or random changes nothing."""
    np.random.seed(0)
    random.seed(0)
    first = sample_discrete_gaussian(1e6, 8)
    np.random.seed(0)
    random.seed(0)
    assert not np.array_equal(first, sample_discrete_gaussian(1e6, 8))


def _mechanism(**changes) -> DPMechanism:
    scheme = PackedPaillier(
        key_bits=1024, allow_insecure=True, clip=64.0, max_weight=1, precision_bits=32
    )
    options = dict(
        level="record",
        clip=1.0,
        noise_multiplier=3.0,
        min_cohort=3,
        size=16,
        step=scheme.quantizer.step,
    )
    options.update(changes)
    return DPMechanism(**options)  # type: ignore[arg-type]


def test_noisy_values_are_exact_grid_points_the_quantizer_recovers():
    scheme = PackedPaillier(
        key_bits=1024, allow_insecure=True, clip=64.0, max_weight=1, precision_bits=32
    )
    mechanism = _mechanism()
    values = np.linspace(-10, 10, 16)
    noisy = mechanism.noisy(values)
    units = scheme.quantizer.quantize(noisy)
    np.testing.assert_array_equal(units.astype(np.float64) * scheme.quantizer.step, noisy)


def test_the_mechanism_s_numbers():
    m = _mechanism()
    assert m.sensitivity_units == 1.0 / m.step + 4.0  # clip / step + sqrt(16)
    assert m.share_variance_units == pytest.approx((3.0 * m.sensitivity_units) ** 2 / 3)
    assert m.slack == 0.0  # shares of millions of units: exp(-pi^2 sigma^2) underflows
    assert m.rho == 1 / 18
    assert m.sum_std == pytest.approx(3.0 * (1.0 + 4.0 * m.step))
    assert DP_PRECISION_BITS == 32


def test_a_bad_mechanism_is_refused_and_malformed_bytes_too():
    with pytest.raises(ConfigurationError, match="dp_level"):
        _mechanism(level="row")
    with pytest.raises(ConfigurationError, match="half a grid step"):
        _mechanism(step=100.0, noise_multiplier=0.01, size=1)
    budget = PrivacyBudget(_mechanism(), 1.0, 1e-5, 100, released=2)
    w = wire.Writer()
    budget.write_to(w)
    r = wire.Reader(w.getvalue(), "budget")
    assert PrivacyBudget.read_from(r, "budget") == budget
    broken = w.getvalue().replace(b"record", b"cohort")
    with pytest.raises(MalformedMessage, match="dp_level"):
        PrivacyBudget.read_from(wire.Reader(broken, "budget"), "budget")


def _grid_scheme(name: str, max_clients: int = 3) -> Scheme:
    """A private plan's scheme on the range 64, as :func:`private_setup` builds it."""
    if name == "ckks":
        bits = ckks_grid_bits(64.0)
        return CKKS(
            clip=64.0, max_clients=max_clients, max_weight=1, precision_bits=bits, grid_bits=bits
        )
    return PackedPaillier(
        key_bits=1024, allow_insecure=True, clip=64.0, max_weight=1, precision_bits=32
    )


@pytest.mark.parametrize(("max_clients", "digits"), [(3, 1), (8, 2)])
def test_a_ckks_sum_of_noisy_values_is_the_exact_integer_sum(max_clients, digits):
    """CKKS on a private plan's grid: each noisy value is a grid point (in one slot, or
    in two digits when the plan's sums leave a slot too little room), and the key
    holder's rounding releases exactly the sum of the clients' grid integers, noise
    included, as Python integers."""
    scheme = _grid_scheme("ckks", max_clients)
    assert (scheme.grid_bits, scheme.digits) == (25, digits)
    assert scheme.quantizer.step == 2.0**-25  # Paillier's on 64: 64 / (2**31 - 1)
    mechanism = _mechanism(size=32, step=scheme.quantizer.step)
    keys = scheme.keygen()
    noisy = [mechanism.noisy(np.linspace(-k, 2 * k, 32)) for k in (1, 2, 3)]
    units = [[int(v) for v in np.rint(x * 2.0**25)] for x in noisy]
    assert all(np.array_equal(np.array(u) * 2.0**-25, x) for u, x in zip(units, noisy, strict=True))
    result = keys.secret.decrypt_weighted(sum(keys.public.encrypt(x) for x in noisy))
    assert (result.count, result.weight) == (3, 3)
    assert [int(t) for t in result.units] == [sum(column) for column in zip(*units, strict=True)]


@pytest.mark.parametrize("name", ["paillier-packed", "ckks"])
def test_released_sums_have_the_planned_variance(name):
    """Three clients encrypt fixed updates plus their shares, many rounds over; the key
    holder's release path (``checked_mean`` with a public normaliser of 1) gives
    sums whose deviations from the exact sum have variance ``(z · Delta · step)^2``,
    within the chi-square bounds of 1e-6 and 1 - 1e-6."""
    scheme = _grid_scheme(name)
    keys = scheme.keygen()
    mechanism = _mechanism(size=32, step=scheme.quantizer.step)
    updates = [np.linspace(-k, 2 * k, 32) for k in (1, 2, 3)]
    exact = sum(np.rint(u / mechanism.step) for u in updates) * mechanism.step
    misses = []
    rounds = 60
    for _ in range(rounds):
        total = sum(keys.public.encrypt(mechanism.noisy(u)) for u in updates)
        mean, _ = checked_mean(keys.secret, total, scheme, normaliser=1)
        misses.append(mean - exact)
    misses = np.concatenate(misses)
    n = misses.size
    statistic = float(misses @ misses) / mechanism.sum_std**2
    low, high = chi2.ppf([1e-6, 1 - 1e-6], df=n)
    assert low < statistic < high, statistic / n
    assert abs(misses.mean()) < 5 * mechanism.sum_std / math.sqrt(n)
