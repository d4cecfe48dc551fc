"""The softmax (multinomial) model: scikit-learn's, by the same gradient descent."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from he_fed.models import LogisticRegressionGD


def _standardised(loader) -> tuple[np.ndarray, np.ndarray]:
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize(("loader", "epochs"), [(load_iris, 2000), (load_wine, 5000)])
def test_agrees_with_scikit_learn_multinomial_at_matching_regularisation(loader, epochs):
    """Mean log loss + alpha/2 ||W||^2 is scikit-learn's objective at C = 1 / (alpha n).

    Measured at alpha = 1e-2 (iris, wine): coefficients within 1.7e-6 and 2.3e-6,
    intercepts within 2.4e-6 and 1.2e-5, probabilities within 3.1e-7 and 7.1e-7;
    asserted with 5e-5 on the weights and 5e-6 on the probabilities.
    """
    X, y = _standardised(loader)
    alpha = 1e-2
    ours = LogisticRegressionGD(alpha=alpha, max_iter=epochs).fit(X, y)
    theirs = LogisticRegression(C=1 / (alpha * len(y)), tol=1e-12, max_iter=10_000).fit(X, y)
    assert ours.coef_.shape == theirs.coef_.shape == (3, X.shape[1])
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=5e-5, rtol=0)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, atol=5e-5, rtol=0)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=5e-6, rtol=0)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_binary_takes_exactly_the_arithmetic_of_one_row_of_weights():
    """Two classes: bit for bit the vector descent that binary training always ran."""
    X, y = _standardised(load_breast_cancer)
    clf = LogisticRegressionGD(alpha=1e-4, learning_rate=0.5, max_iter=5).fit(X, y)
    coef, intercept = np.zeros(X.shape[1]), 0.0
    for _ in range(5):
        z = X @ coef + intercept
        residual = (expit(z) - y) * np.ones(len(y)) / len(y)
        coef = coef - 0.5 * (X.T @ residual + 1e-4 * coef)
        intercept -= 0.5 * float(residual.sum())
    assert clf.coef_.shape == (1, X.shape[1]) and clf.intercept_.shape == (1,)
    np.testing.assert_array_equal(clf.coef_[0], coef)
    assert clf.intercept_[0] == intercept


def test_first_step_is_the_closed_form_softmax_gradient():
    X, y = _standardised(load_iris)
    clf = LogisticRegressionGD(alpha=0.01, learning_rate=0.5, max_iter=1).fit(X, y)
    one_hot = np.eye(3)[y]
    residual = (1 / 3 - one_hot) / len(y)  # softmax(0) is uniform
    np.testing.assert_allclose(clf.coef_, -0.5 * (X.T @ residual).T, rtol=1e-12)
    np.testing.assert_allclose(clf.intercept_, -0.5 * residual.sum(axis=0), rtol=1e-12)


def test_resuming_from_a_weight_matrix_equals_training_longer():
    X, y = _standardised(load_wine)
    long = LogisticRegressionGD(learning_rate=0.5, max_iter=7).fit(X, y)
    first = LogisticRegressionGD(learning_rate=0.5, max_iter=3).fit(X, y)
    second = LogisticRegressionGD(learning_rate=0.5, max_iter=4).fit(
        X, y, coef_init=first.coef_, intercept_init=first.intercept_
    )
    np.testing.assert_allclose(second.coef_, long.coef_, rtol=1e-12)
    np.testing.assert_allclose(second.intercept_, long.intercept_, rtol=1e-12)


def test_string_labels_give_probabilities_per_class_in_classes_order():
    X, y = _standardised(load_iris)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = LogisticRegressionGD(max_iter=200).fit(X, names)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, names) > 0.95


def test_a_client_lacking_classes_trains_all_rows_with_the_federation_classes():
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
    clf = LogisticRegressionGD(max_iter=3).fit(X, ["b", "b", "c"], classes=["a", "b", "c"])
    assert clf.classes_.tolist() == ["a", "b", "c"]
    assert clf.coef_.shape == (3, 2) and clf.intercept_.shape == (3,)
    assert np.all(clf.coef_[0] <= 0) and clf.intercept_[0] < 0  # "a" is never seen
    with pytest.raises(ValueError, match="outside classes"):
        LogisticRegressionGD().fit(X, ["a", "b", "d"], classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="one class"):
        LogisticRegressionGD().fit(X, ["a", "a", "a"])


def test_a_start_of_the_wrong_shape_is_refused():
    X, y = _standardised(load_iris)
    with pytest.raises(ValueError, match="coef_init has 4 values, expected 12"):
        LogisticRegressionGD().fit(X, y, coef_init=np.zeros(4))
    with pytest.raises(ValueError, match="intercept_init has 1 values, expected 3"):
        LogisticRegressionGD().fit(X, y, coef_init=np.zeros((3, 4)), intercept_init=0.0)
