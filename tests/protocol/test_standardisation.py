"""Standardisation survives real columns: no client is left out, nothing is clipped.

Columns that are zero at some clients, span 1e-6 to 1e6 across clients, are a 0/1
flag set at one client only, or small mostly-zero counts: the federated fit equals
the fit on centrally standardised data (``StandardScaler`` on the pooled rows),
in the clear and under encryption, over ten seeds.
"""

from __future__ import annotations

import click
import numpy as np
import pytest
from he_fed.cli._errors import friendly_errors
from sklearn.preprocessing import StandardScaler

from he_fed import FederatedLinearRegression
from he_fed.data import DatasetWarning
from he_fed.exceptions import PolicyViolation
from he_fed.models import LinearRegressionGD
from he_fed.protocol import tasks
from he_fed.protocol.messages import Task
from he_fed.runtime.federation import Federation
from tests.conftest import FAST_SCHEMES, keys_for

CLIENTS, ROWS, ROUNDS = 5, 30, 3
COLUMNS = ("zero_at_k_clients", "spans_1e-6_to_1e6", "flag_at_one_client", "sparse_counts")
SEEDS = range(10)


def federation_data(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three Gaussian columns and one of ``kind``, over five clients of 30 rows."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(CLIENTS), ROWS)
    X = rng.normal(size=(CLIENTS * ROWS, 4))
    if kind == "zero_at_k_clients":  # all zero at k of the five clients, k = 1..4
        X[groups < 1 + seed % (CLIENTS - 1), 3] *= 0.0
    elif kind == "spans_1e-6_to_1e6":  # each client a scale of its own, 1e-6 to 1e6
        X[:, 3] *= 10.0 ** np.linspace(-6, 6, CLIENTS)[groups]
    elif kind == "flag_at_one_client":  # 0/1, set only at one client
        X[:, 3] = (groups == seed % CLIENTS) & (rng.random(len(groups)) < 0.5)
    else:  # counts 0, 1, 2... mostly zero
        X[:, 3] = rng.poisson(0.15, size=len(groups))
    signal = X[:, :3] @ np.array([1.0, -0.5, 0.25]) + StandardScaler().fit_transform(X)[:, 3]
    return X, signal + 0.1 * rng.normal(size=len(groups)), groups


def fitted(scheme: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray, **kw):
    return FederatedLinearRegression(
        scheme=FAST_SCHEMES[scheme], rounds=ROUNDS, allow_insecure=True, **kw
    ).fit(X, y, groups=groups)


def central_fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, float]:
    """The same training on centrally standardised features and target, mapped back."""
    features = StandardScaler().fit(X)
    y_mean, y_std = y.mean(), y.std()
    est = fitted("plain", features.transform(X), (y - y_mean) / y_std, groups, standardize=False)
    coef = y_std * est.coef_ / features.scale_
    return coef, float(y_mean + y_std * est.intercept_ - coef @ features.mean_)


#: Largest coefficient gap against the largest coefficient, measured over the four
#: kinds and ten seeds (3 rounds): plain 1.2e-15 from the central fit; per-value
#: Paillier 4.7e-14; CKKS 8.7e-5 and packed Paillier 5.0e-4, the training grid's
#: rounding (their statistics are exact to 2**-44).
TOLERANCE = {"plain": 1e-12, "paillier": 1e-12, "ckks": 2e-4, "paillier-packed": 1e-3}


def _weights(est) -> np.ndarray:
    return np.append(est.coef_, est.intercept_)


def _check(kind: str, seed: int, schemes: tuple[str, ...]) -> None:
    X, y, groups = federation_data(kind, seed)
    coef, intercept = central_fit(X, y, groups)
    central = np.append(coef, intercept)
    reference = None
    for scheme in ("plain", *schemes):
        est = fitted(scheme, X, y, groups)
        for record in est.setup_["statistics"]:  # every client counted, nothing clipped
            assert (record.contributors, record.dropped, record.clipped) == (CLIENTS, (), 0)
        largest = np.max(np.abs(central))
        np.testing.assert_allclose(_weights(est), central, rtol=0, atol=TOLERANCE[scheme] * largest)
        if reference is None:
            reference = _weights(est)
        else:
            np.testing.assert_allclose(
                _weights(est), reference, rtol=0, atol=TOLERANCE[scheme] * largest
            )


@pytest.mark.parametrize("kind", COLUMNS)
def test_plain_equals_the_centrally_standardised_fit_over_ten_seeds(kind):
    for seed in SEEDS:
        _check(kind, seed, ())


@pytest.mark.parametrize("kind", COLUMNS)
def test_every_scheme_equals_plain_and_the_central_fit(kind):
    _check(kind, 0, ("paillier", "paillier-packed", "ckks"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", COLUMNS)
def test_encrypted_fits_equal_plain_and_the_central_fit_over_ten_seeds(kind):
    """Seeds 1 to 9, each under one encrypted scheme in turn (seed 0 is in the fast test)."""
    schemes = ("paillier-packed", "ckks", "paillier")
    for seed in SEEDS[1:]:
        _check(kind, seed, (schemes[seed % 3],))


def test_no_honest_client_can_exceed_the_moments_bound():
    """The worst case: one row holds a column's whole magnitude among the plan's most rows.

    Its second moment, pre-scaled, reaches a quarter of ``W**2`` (``W = 2 * 4``, the
    plan's largest total weight; a quarter for the power-of-two rounding and the
    slack), and never exceeds ``W**2``, the moments plan's clip bound.
    """
    key = FAST_SCHEMES["plain"].with_plan(max_clients=2, max_weight=4).keygen().public
    assert tasks.moments_clip(key) == 64.0
    for value in (1e-30, 3e-7, 1.0, 7.5e5, 1e14):  # 1e-30: below the window, no bound
        lone = np.array([[value]])
        crowd = np.zeros((7, 1))
        values = [tasks.magnitude(rows)[0] for rows in (lone, crowd)]
        mean = (values[0] * 1 + values[1] * 7) / 8  # the weighted mean, as released
        scale = tasks.prescale(mean)
        second = tasks.moments(lone, scale)[1]
        assert second <= 64.0 and (second >= 16.0 or value < 1e-20)


def test_a_failed_statistics_round_says_why_clients_were_left_out():
    X, y, groups = federation_data("sparse_counts", 0)
    partitions = [(X[groups == g], y[groups == g]) for g in range(CLIENTS)]
    federation = Federation.create(
        partitions, scheme=FAST_SCHEMES["plain"], model=LinearRegressionGD()
    )
    for client in federation.clients[:3]:
        client.mark_answered(-1, phase=1)  # as if they had answered a magnitude round
    with pytest.raises(click.ClickException) as shown, friendly_errors():  # as the CLI shows it
        federation.standardize()
    assert isinstance(shown.value.__context__, PolicyViolation)
    assert shown.value.message == (
        "PolicyViolation: standardisation failed in the magnitude round: only 2 "
        "contribution(s); the key holder requires 3; left out: client-0, client-1, client-2 "
        "(the client answers the magnitude statistics once, and no statistics after "
        "training started)"
    )


def test_the_statistics_plans():
    """Magnitudes: clip 1, 92 bits. Moments: clip W**2 (W = 64 * 128 here), a step of
    at most 2**-44: 71 bits up to the clip for Paillier, 44 grid bits for CKKS."""
    for name in ("paillier-packed", "paillier", "ckks"):
        public = keys_for(name).public
        magnitude = tasks.plan_for(public, Task.MAGNITUDE).scheme
        moments = tasks.plan_for(public, Task.MOMENTS).scheme
        assert (magnitude.clip, magnitude.precision_bits) == (1.0, 92)
        assert moments.clip == float(2**26) == tasks.moments_clip(public)
        assert moments.precision_bits == (44 if name == "ckks" else 71)


def test_a_column_whose_spread_the_grid_cannot_resolve_is_standardised_as_constant():
    """``1e8 + N(0, 1)``: its variance, ``m2 - m1**2`` of moments on a ``2**-44`` grid,
    was noise (a standard deviation of 21 against 0.95), and the fit's R² was 0.03
    (an audit). The column now gets scale 1, as a constant one, and a warning names
    it; an all-zero column is constant and named by nobody."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = 3 * X[:, 0] + 0.5 * X[:, 1] + 0.1 * rng.normal(size=120)
    X[:, 0] += 1e8
    X[:, 2] = 0.0
    with pytest.warns(DatasetWarning, match=r"column\(s\) \[0\] are constant or vary less"):
        est = fitted("paillier-packed", X, y, np.arange(120) % 3, learning_rate=0.5)
    assert [record.clipped for record in est.setup_["statistics"]] == [0, 0]
    r2 = 1 - np.mean((est.predict(X) - y) ** 2) / np.var(y)
    assert r2 > 0.99, r2
    moments = np.array([1.0, 0.0, 1.0, 0.0])  # m1 = 1, m2 = 1: constant at the pre-scale
    with pytest.warns(DatasetWarning, match=r"column\(s\) \[0\]"):
        center, std = tasks.standardization(moments, np.array([4.0, 2.0]))
    assert center.tolist() == [4.0, 0.0] and std.tolist() == [1.0, 1.0]
    resolved = np.array([0.5, 0.25 + 2.0**-30])  # a variance of 2**-30, well resolved
    center, std = tasks.standardization(resolved, np.array([8.0]))
    assert std.tolist() == [8.0 * 2.0**-15]
