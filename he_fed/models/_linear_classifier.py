"""What every linear classifier predicts from its fitted weights.

Like scikit-learn's ``LinearClassifierMixin``, the mixin needs only the fitted
``coef_``, ``intercept_`` and ``classes_``. So the gradient-descent model a client
trains and the federated estimator, which learn the weights in different ways,
score, label and give probabilities the same way.

Shapes follow scikit-learn's. With two classes, ``coef_`` has shape
``(1, n_features)``, ``intercept_`` has shape ``(1,)``, and ``classes_[1]`` is the
positive class. With more, there is one row per class of ``classes_``:
``(n_classes, n_features)`` and ``(n_classes,)``. Probabilities are what a model
trained on log loss gives: the logistic function of the score for two classes,
the softmax of the scores for more.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["LinearClassifierMixin"]


class LinearClassifierMixin(ClassifierMixin):
    """Scores, labels and probabilities of a fitted linear classifier on log loss.

    A subclass sets ``coef_``, ``intercept_`` and ``classes_`` in ``fit`` (see the
    module docstring for their shapes). A subclass whose ``fit`` learns more than
    two classes sets ``_multiclass = True``.
    """

    #: Whether ``fit`` learns more than two classes (scikit-learn's ``multi_class`` tag).
    _multiclass: ClassVar[bool] = False

    coef_: np.ndarray
    intercept_: np.ndarray
    classes_: np.ndarray

    def __sklearn_tags__(self):  # noqa: ANN204 (sklearn's Tags type)
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = self._multiclass
        return tags

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Scores of each sample: the linear predictor ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            With two classes, the signed distance to the boundary: positive means
            ``classes_[1]``. With more, one score per class of ``classes_``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        if self.coef_.shape[0] == 1:
            return X @ self.coef_[0] + self.intercept_[0]
        return X @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns ordered as ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1.0 - p, p])
        return softmax(scores, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict class labels: the class of the highest score.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(axis=1)]
