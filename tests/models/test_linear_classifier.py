"""Both logistic estimators predict through one mixin, which also fits more classes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from he_fed import FederatedLogisticRegression
from he_fed.models import LogisticRegressionGD
from he_fed.models._linear_classifier import LinearClassifierMixin


def _fitted_binary_model(federated: bool) -> LinearClassifierMixin:
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 1, "benign", "malignant")
    if federated:
        clf = FederatedLogisticRegression(scheme="plain", rounds=2)
        return clf.fit(X, labels, groups=np.arange(len(y)) % 3)
    return LogisticRegressionGD(max_iter=20).fit(StandardScaler().fit_transform(X), labels)


@pytest.mark.parametrize("federated", [False, True], ids=["LogisticRegressionGD", "Federated"])
def test_binary_predictions_are_the_logistic_model_of_the_first_row(federated):
    clf = _fitted_binary_model(federated)
    X = load_breast_cancer(return_X_y=True)[0][:50]
    assert clf.coef_.shape == (1, 30) and clf.intercept_.shape == (1,)
    scores = X @ clf.coef_[0] + clf.intercept_[0]
    np.testing.assert_array_equal(clf.decision_function(X), scores)
    p = expit(scores)
    np.testing.assert_array_equal(clf.predict_proba(X), np.column_stack([1.0 - p, p]))
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(scores > 0).astype(int)])
    assert clf.__sklearn_tags__().classifier_tags.multi_class is True  # fits more classes too


class _ThreeClasses(LinearClassifierMixin, BaseEstimator):
    """Fixed weights for three classes: what a softmax model's ``fit`` would set."""

    _multiclass = True

    def fit(self, X: np.ndarray, y: np.ndarray) -> _ThreeClasses:
        self.n_features_in_ = 2
        self.classes_ = np.array(["a", "b", "c"])
        self.coef_ = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
        self.intercept_ = np.array([0.0, 0.0, 0.5])
        return self


def test_more_classes_take_one_row_of_coef_per_class():
    clf = _ThreeClasses().fit(np.zeros((3, 2)), np.array(["a", "b", "c"]))
    X = np.array([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    scores = np.array([[2.0, 0.0, -1.5], [0.0, 2.0, -1.5], [-1.0, -1.0, 2.5]])
    np.testing.assert_array_equal(clf.decision_function(X), scores)
    assert clf.predict(X).tolist() == ["a", "b", "c"]
    proba = clf.predict_proba(X)
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(proba, expected, rtol=1e-15)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-15)
    assert clf.__sklearn_tags__().classifier_tags.multi_class is True
