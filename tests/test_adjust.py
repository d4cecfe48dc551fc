"""Model adjustment from the federated validation loss: early stopping and selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_wine

from he_fed import FederatedLinearRegression, FederatedLogisticRegression
from he_fed._adjust import EarlyStopping, candidates
from he_fed.exceptions import ConfigurationError

X, Y = load_wine(return_X_y=True)
GROUPS = np.arange(len(Y)) % 3
WINE = dict(scheme="plain", validation_split=0.2, server_optimizer="avgm", server_lr=0.5)


def test_early_stopping_counts_rounds_without_a_lower_loss_and_skips_missing_figures():
    stop = EarlyStopping(2)
    model = (np.zeros(1), 0.0)
    losses = [0.5, 0.4, math.nan, 0.45, 0.4, 0.41]
    decisions = [stop.update(i + 1, loss, model) for i, loss in enumerate(losses)]
    assert decisions == [False, False, False, False, True, True]
    assert (stop.best_round, stop.best_loss) == (2, 0.4)  # a tie is no improvement


def test_candidates_are_a_sequence_s_items_and_refuse_empties_and_repeats():
    assert candidates("lr", 0.1) == [0.1]
    assert candidates("lr", None) == [None]
    assert candidates("lr", (0.1, 0.3)) == [0.1, 0.3]
    with pytest.raises(ConfigurationError, match="no candidate"):
        candidates("lr", [])
    with pytest.raises(ConfigurationError, match="twice"):
        candidates("lr", [0.1, 0.1])


def test_early_stopping_keeps_the_best_round_s_model():
    est = FederatedLogisticRegression(early_stopping=3, rounds=30, learning_rate=0.5, **WINE)
    est.fit(X, Y, groups=GROUPS)
    losses = [r.validation_loss for r in est.history_]
    best = est.setup_["best_round"]
    assert len(losses) == 7 and best == 4  # three rounds after the best, then stop
    assert losses[best - 1] == min(losses)
    assert all(loss >= losses[best - 1] for loss in losses[best:])
    # The model kept is round 4's: its score on the eval data is the one recorded then.
    assert est.score(X, Y) == est.history_[best - 1].metric
    assert all(0.0 <= r.validation_metric <= 1.0 for r in est.history_)


def test_the_learning_rate_with_the_lowest_validation_loss_is_chosen_and_reported():
    est = FederatedLogisticRegression(rounds=4, learning_rate=[0.01, 0.5], **WINE)
    est.fit(X, Y, groups=GROUPS)
    selection = est.setup_["selection"]
    assert [s["learning_rate"] for s in selection] == [0.01, 0.5]
    losses = [s["validation_loss"] for s in selection]
    assert est.learning_rate_ == 0.5 and losses[1] < losses[0]
    assert est.alpha_ == 1e-4
    assert min(r.validation_loss for r in est.history_) == losses[1]


def test_every_k_rounds_and_the_last_are_scored_and_the_rest_are_nan():
    est = FederatedLogisticRegression(rounds=7, validation_every=3, **WINE)
    est.fit(X, Y, groups=GROUPS)
    scored = [r.round for r in est.history_ if not math.isnan(r.validation_loss)]
    assert scored == [3, 6, 7]
    uploads = [r.validation_bytes_up > 0 for r in est.history_]
    assert uploads == [r in (3, 6, 7) for r in range(1, 8)]


def test_regression_releases_r2_and_mse_in_the_target_s_units():
    X_d, y_d = load_diabetes(return_X_y=True)
    est = FederatedLinearRegression(scheme="plain", validation_split=0.2, rounds=3)
    est.fit(X_d, y_d, groups=np.arange(len(y_d)) % 3)
    last = est.history_[-1]
    assert 0.2 < last.validation_metric < 0.6  # diabetes' R² is near 0.5
    assert 2000 < last.validation_loss < 5000  # an MSE in squared target units


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"early_stopping": 3}, "set validation_split"),
        ({"learning_rate": [0.1, 0.5]}, "set validation_split"),
        ({"validation_every": 7}, "set validation_split"),  # it was ignored (stop 42 audit)
        ({"early_stopping": 0, "validation_split": 0.2}, "early_stopping"),
        ({"validation_split": 0.95}, "validation_split"),
        ({"validation_split": 0.2, "validation_every": 0}, "validation_every"),
        ({"server_optimizer": "sgd"}, "unknown server optimizer"),
    ],
)
def test_bad_adjustment_settings_are_one_clear_error(params, message):
    est = FederatedLogisticRegression(scheme="plain", rounds=1, **params)
    with pytest.raises(ConfigurationError, match=message):
        est.fit(X, Y, groups=GROUPS)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"standardize": "no"}, "standardize must be true or false"),  # "no" standardised
        ({"allow_insecure": "yes"}, "allow_insecure must be true or false"),
        ({"dropout": "0"}, "dropout must be a number"),  # a TypeError in the federation
        ({"random_state": -1}, "random_state must be an integer in"),  # numpy's ValueError
        ({"random_state": 2**40}, "random_state must be an integer in"),
        ({"executor": None}, "executor must be a name"),  # an AttributeError
        ({"workers": -1}, "workers must be an integer >= 1"),  # taken, unused in process
    ],
)
def test_settings_of_the_wrong_type_are_refused_before_the_fit(params, message):
    """Each reached numpy, the executors or a truth test instead (an audit, stop 43)."""
    est = FederatedLogisticRegression(scheme="plain", rounds=1, **params)
    with pytest.raises(ConfigurationError, match=message):
        est.fit(X, Y, groups=GROUPS)
