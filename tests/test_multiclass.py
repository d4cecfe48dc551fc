"""Multinomial logistic regression end to end: estimator, experiment and command line."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine
from sklearn.model_selection import train_test_split

from he_fed import FederatedLogisticRegression
from he_fed.exceptions import ConfigurationError

FAST = {"key_bits": 1024, "allow_insecure": True}


@pytest.fixture(scope="module")
def iris_split():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    return train_test_split(X, names, test_size=0.25, random_state=0, stratify=names)


@pytest.mark.parametrize("scheme", ["plain", "paillier-packed", "paillier", "ckks"])
def test_the_estimator_learns_string_labelled_iris_on_every_scheme(scheme, iris_split):
    X_train, X_test, y_train, y_test = iris_split
    clf = FederatedLogisticRegression(scheme=scheme, **FAST).fit(
        X_train, y_train, groups=np.arange(len(y_train)) % 4, eval_set=(X_test, y_test)
    )
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert clf.coef_.shape == (3, 4) and clf.intercept_.shape == (3,)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(y_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert set(clf.predict(X_test)) <= set(clf.classes_)
    assert clf.score(X_test, y_test) >= 0.9
    assert clf.history_[-1].metric == clf.score(X_test, y_test)
    # The encrypted update is the whole 3 x (4 + 1) matrix and the weight.
    assert clf.history_[-1].contributors == 4


def test_one_class_and_a_class_no_client_holds_are_clear_errors(iris_split):
    X_train, X_test, y_train, y_test = iris_split
    clf = FederatedLogisticRegression(scheme="plain", rounds=1)
    groups = np.arange(len(y_train)) % 3
    with pytest.raises(ConfigurationError, match=r"single class \('setosa'\)"):
        clf.fit(X_train, np.full(len(y_train), "setosa"), groups=groups)
    kept = y_train != "virginica"
    with pytest.raises(ConfigurationError, match="'virginica' absent from every client"):
        clf.fit(X_train[kept], y_train[kept], groups=groups[kept], eval_set=(X_test, y_test))


def test_wine_three_classes_are_one_softmax_model_not_one_against_the_rest():
    X, y = load_wine(return_X_y=True)
    clf = FederatedLogisticRegression(scheme="plain").fit(X, y, groups=np.arange(len(y)) % 3)
    assert clf.classes_.tolist() == [0, 1, 2]
    scores = X @ clf.coef_.T + clf.intercept_
    np.testing.assert_allclose(clf.decision_function(X), scores, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), scores.argmax(axis=1))
    assert clf.__sklearn_tags__().classifier_tags.multi_class is True
