"""Linear regression (squared loss) trained by gradient descent."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from he_fed.models._gd import BaseGD

__all__ = ["LinearRegressionGD"]


class LinearRegressionGD(RegressorMixin, BaseGD):
    """Least-squares linear regression with an L2 penalty, by gradient descent.

    Minimises ``mean(0.5 * (y - X @ coef_ - intercept_)**2) + 0.5 * alpha * ||coef_||**2``
    by full-batch (``batch_size=None``) or mini-batch gradient descent. Training
    can continue from given weights, which is what a federated client does each
    round: ``fit(X, y, coef_init=w, intercept_init=b)`` runs ``max_iter`` epochs.

    Parameters
    ----------
    alpha : float, default=1e-4
        L2 penalty strength (the intercept is not penalised).
    learning_rate : float or "auto", default="auto"
        Constant step size. ``"auto"`` uses ``1 / L``, where ``L`` bounds the
        curvature of the objective on the training data, so that full-batch descent
        cannot diverge. Federated clients pass the federation's fixed step instead.
    max_iter : int, default=100
        Number of epochs (passes over the data).
    batch_size : int or None, default=None
        Mini-batch size; None means full batch.
    fit_intercept : bool, default=True
        Whether to learn an intercept.
    shuffle : bool, default=True
        Shuffle samples each epoch (mini-batch only).
    tol : float or None, default=None
        Stop when an epoch improves the objective by less than ``tol``. None runs
        exactly ``max_iter`` epochs.
    random_state : int, RandomState or None, default=None
        Seed for shuffling.
    prox_mu : float, default=0.0
        FedProx's proximal term: adds ``0.5 * prox_mu * ||w - w_init||**2`` (over
        coefficients and intercepts) to the objective, ``w_init`` the weights the
        fit starts from (a federated client's global model). 0 turns it off.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Weights.
    intercept_ : float
        Intercept.
    n_iter_ : int
        Epochs run.
    learning_rate_ : float
        Step size used.
    n_features_in_ : int
        Number of features seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> reg = LinearRegressionGD(alpha=0.0, max_iter=500).fit(X, 2 * X[:, 0] + 1)
    >>> np.round([reg.coef_[0], reg.intercept_], 3)
    array([2., 1.])
    """

    @staticmethod
    def _loss_and_residual(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = z - y
        return 0.5 * r * r, r

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        *,
        coef_init: np.ndarray | None = None,
        intercept_init: float | None = None,
    ) -> LinearRegressionGD:
        """Fit by gradient descent, optionally starting from given weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Targets.
        sample_weight : array-like of shape (n_samples,), optional
            Per-sample weights.
        coef_init : array-like of shape (n_features,), optional
            Starting weights (default zeros).
        intercept_init : float, optional
            Starting intercept (default 0).

        Returns
        -------
        self : LinearRegressionGD
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        coef, intercept = self._descend(X, y, sample_weight, coef_init, intercept_init)
        self.coef_ = coef
        self.intercept_ = intercept
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_ + self.intercept_
