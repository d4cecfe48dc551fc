"""scikit-learn model selection over the federated estimators.

``groups`` reaches ``fit`` through scikit-learn's metadata routing
(``set_fit_request(groups=True)``); without it, ``fit`` either deals the rows to
``n_clients`` clients IID or says how to pass ``groups``. The estimators pass
scikit-learn's own estimator checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from he_fed import FederatedLinearRegression, FederatedLogisticRegression
from he_fed.data import iid_groups
from he_fed.exceptions import ConfigurationError

X, Y = load_breast_cancer(return_X_y=True)
X, Y = X[:240], Y[:240]
#: Six clients of 40 rows; GroupKFold(3) trains on four and scores on the other two.
GROUPS = np.repeat(np.arange(6), 40)


def _estimator(**params) -> FederatedLogisticRegression:
    return FederatedLogisticRegression(scheme="plain", rounds=5, **params)


def _by_hand(params: dict) -> list[float]:
    """The folds' scores, each fold's training rows fitted with their own groups."""
    scores = []
    for train, test in GroupKFold(n_splits=3).split(X, Y, GROUPS):
        est = _estimator(**params).fit(X[train], Y[train], groups=GROUPS[train])
        scores.append(est.score(X[test], Y[test]))
    return scores


def test_cross_val_score_routes_groups_to_fit():
    with sklearn.config_context(enable_metadata_routing=True):
        est = _estimator().set_fit_request(groups=True)
        scores = cross_val_score(est, X, Y, cv=GroupKFold(n_splits=3), params={"groups": GROUPS})
    assert scores.tolist() == _by_hand({})


def test_grid_search_routes_groups_to_fit_and_picks_the_best_federated_score():
    grid = {"learning_rate": [0.02, 0.5]}
    with sklearn.config_context(enable_metadata_routing=True):
        est = _estimator().set_fit_request(groups=True)
        search = GridSearchCV(est, grid, cv=GroupKFold(n_splits=3)).fit(X, Y, groups=GROUPS)
    expected = [np.mean(_by_hand(params)) for params in search.cv_results_["params"]]
    assert search.cv_results_["mean_test_score"].tolist() == expected
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(expected))]
    assert search.best_estimator_.n_clients_ == 6  # refitted on every client


def test_without_routing_fit_gets_no_groups_and_says_how_to_pass_them():
    with pytest.raises(ConfigurationError, match=r"set_fit_request\(groups=True\)"):
        cross_val_score(_estimator(), X, Y, groups=GROUPS, cv=GroupKFold(3), error_score="raise")


def test_n_clients_deals_the_rows_iid_when_fit_gets_no_groups():
    dealt = _estimator(n_clients=4).fit(X, Y)
    groups = iid_groups(len(X), 4, random_state=0)
    assert np.bincount(groups).tolist() == [60, 60, 60, 60]
    explicit = _estimator().fit(X, Y, groups=groups)
    assert dealt.n_clients_ == 4
    np.testing.assert_array_equal(dealt.coef_, explicit.coef_)
    np.testing.assert_array_equal(dealt.intercept_, explicit.intercept_)
    with pytest.raises(
        ConfigurationError, match="fit needs groups= .* or the estimator's n_clients="
    ):
        _estimator().fit(X, Y)


@pytest.mark.slow
@parametrize_with_checks(
    [
        FederatedLogisticRegression(scheme="plain", n_clients=2),
        FederatedLinearRegression(scheme="plain", n_clients=2),
    ]
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
