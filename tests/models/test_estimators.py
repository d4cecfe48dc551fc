"""The estimators are plain scikit-learn estimators, and resume training exactly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, make_regression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from he_fed.exceptions import TrainingDiverged
from he_fed.models import LinearRegressionGD, LogisticRegressionGD


@parametrize_with_checks([LinearRegressionGD(), LogisticRegressionGD()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("batch_size", [None, 32])
def test_resuming_from_weights_equals_training_longer(batch_size):
    X, y = make_regression(n_samples=120, n_features=5, noise=1.0, random_state=0)
    X = StandardScaler().fit_transform(X)
    y = (y - y.mean()) / y.std()
    # With full batches, 3 + 4 epochs from the handed-over weights equal 7 epochs.
    if batch_size is None:
        long = LinearRegressionGD(learning_rate=0.1, max_iter=7).fit(X, y)
        first = LinearRegressionGD(learning_rate=0.1, max_iter=3).fit(X, y)
        second = LinearRegressionGD(learning_rate=0.1, max_iter=4).fit(
            X, y, coef_init=first.coef_, intercept_init=first.intercept_
        )
        np.testing.assert_allclose(second.coef_, long.coef_, rtol=1e-12)
        np.testing.assert_allclose(second.intercept_, long.intercept_, rtol=1e-12)
    else:
        a = LinearRegressionGD(learning_rate=0.1, max_iter=3, batch_size=32, random_state=4)
        b = LinearRegressionGD(learning_rate=0.1, max_iter=3, batch_size=32, random_state=4)
        np.testing.assert_array_equal(a.fit(X, y).coef_, b.fit(X, y).coef_)


def test_full_batch_gradient_step_matches_the_closed_form_gradient():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = LogisticRegressionGD(alpha=0.01, learning_rate=0.5, max_iter=1).fit(X, y)
    p = 0.5  # sigmoid(0): the first step starts from zero weights
    grad = X.T @ (p - y) / len(y)
    np.testing.assert_allclose(clf.coef_[0], -0.5 * grad, rtol=1e-12)
    np.testing.assert_allclose(clf.intercept_[0], -0.5 * np.mean(p - y), rtol=1e-12)


def test_one_class_client_trains_with_the_federation_classes():
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
    clf = LogisticRegressionGD(max_iter=3).fit(X, [1, 1, 1], classes=[0, 1])
    assert clf.classes_.tolist() == [0, 1]
    assert np.all(clf.predict(X) == 1)
    with pytest.raises(ValueError, match="one class"):
        LogisticRegressionGD().fit(X, [1, 1, 1])
    with pytest.raises(ValueError, match="outside classes"):
        LogisticRegressionGD().fit(X, [0, 1, 2], classes=[0, 1])


def test_divergence_is_an_error_not_nan_weights():
    X, y = make_regression(n_samples=50, n_features=3, random_state=0)
    with pytest.raises(TrainingDiverged, match="learning_rate"):
        LinearRegressionGD(learning_rate=10.0, max_iter=500).fit(X * 100, y)


def test_auto_learning_rate_never_diverges_and_converges_on_unscaled_data():
    X, y = make_regression(n_samples=200, n_features=4, noise=0.5, random_state=0)
    # Badly conditioned: slow, but no blow-up with the 1/L step.
    wild = LinearRegressionGD(max_iter=50).fit(X * [1, 10, 100, 0.1], y)
    assert np.isfinite(wild.coef_).all()
    reg = LinearRegressionGD(alpha=0.0, max_iter=500).fit(X * [1, 3, 5, 0.5], y)
    assert reg.score(X * [1, 3, 5, 0.5], y) > 0.99


def test_tol_stops_early_and_warns_when_it_does_not():
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = LogisticRegressionGD(max_iter=1000, tol=1e-4).fit(X, y)
    assert clf.n_iter_ < 1000
    with pytest.warns(ConvergenceWarning):
        LogisticRegressionGD(max_iter=2, tol=1e-12).fit(X, y)
