"""Logistic regression (log loss) trained by gradient descent: binary, or softmax.

Two classes take one row of weights and the logistic function, as before; three
or more take one row per class and the softmax (the multinomial model), as
scikit-learn's ``LogisticRegression`` does.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log1p, logsumexp
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import validate_data

from he_fed.models._gd import BaseGD
from he_fed.models._linear_classifier import LinearClassifierMixin

__all__ = ["LogisticRegressionGD"]


class LogisticRegressionGD(LinearClassifierMixin, BaseGD):
    """Logistic regression with an L2 penalty, by gradient descent: binary or softmax.

    Minimises the mean log loss plus ``0.5 * alpha * ||coef_||**2`` by full-batch
    (``batch_size=None``) or mini-batch gradient descent. Two classes make the
    binary model (one row of weights, the logistic function); three or more make
    the multinomial model: one row of weights per class, probabilities the softmax
    of the scores, and the penalty on the whole ``(n_classes, n_features)`` matrix.
    That is the model scikit-learn's ``LogisticRegression`` fits at ``C = 1 /
    (alpha * n_samples)``, with the same intercepts up to a constant (neither
    penalises them). Training can continue from given weights: ``fit(X, y,
    coef_init=w, intercept_init=b)`` runs ``max_iter`` epochs, which is what a
    federated client does each round. A client whose data lacks some of the
    classes passes the federation's ``classes``.

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
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted; with two, ``classes_[1]`` is the positive class.
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Weights: one row for two classes, one row per class for more.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercepts, likewise.
    n_iter_ : int
        Epochs run.
    learning_rate_ : float
        Step size used.
    n_features_in_ : int
        Number of features seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    >>> clf = LogisticRegressionGD().fit(X, ["no", "no", "yes", "yes"])
    >>> clf.predict([[-3.0], [3.0]]).tolist()
    ['no', 'yes']
    >>> softmax = LogisticRegressionGD().fit(X, ["lo", "lo", "mid", "hi"])
    >>> softmax.coef_.shape, softmax.predict_proba(X).shape
    ((3, 1), (4, 3))
    """

    _curvature = 0.25
    _multiclass = True

    @staticmethod
    def _loss_and_residual(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if z.ndim == 2:
            # Softmax: log(sum(exp(z))) - <y, z> for one-hot y; its gradient p - y.
            norm = logsumexp(z, axis=1)
            loss = norm - np.sum(y * z, axis=1)
            return loss, np.exp(z - norm[:, None]) - y
        # log(1 + exp(z)) - y z, computed without overflow.
        loss = np.maximum(z, 0) + log1p(np.exp(-np.abs(z))) - y * z
        return loss, expit(z) - y

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        *,
        coef_init: np.ndarray | None = None,
        intercept_init: float | np.ndarray | None = None,
        classes: np.ndarray | None = None,
    ) -> LogisticRegressionGD:
        """Fit by gradient descent, optionally starting from given weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels (numbers or strings).
        sample_weight : array-like of shape (n_samples,), optional
            Per-sample weights.
        coef_init : array-like of shape (n_features,) or (n_rows, n_features), optional
            Starting weights (default zeros): one row (``n_rows = 1``) for two
            classes, one per class (``n_rows = n_classes``) for more.
        intercept_init : float or array-like of shape (n_classes,), optional
            Starting intercept(s) (default 0).
        classes : array-like of shape (n_classes,), optional
            The labels of the whole problem. Needed when ``y`` lacks some of them,
            as a federated client's data may.

        Returns
        -------
        self : LogisticRegressionGD
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type not in ("binary", "multiclass"):
            raise ValueError(f"Unknown label type: {y_type}")
        present = np.unique(y)
        labels = present if classes is None else np.unique(np.asarray(classes))
        if classes is not None and not np.isin(present, labels).all():
            raise ValueError(f"y holds labels outside classes={labels.tolist()}")
        if labels.size < 2:
            raise ValueError(
                "LogisticRegressionGD needs at least two classes, but y holds one class; "
                "pass the problem's classes= to train on one-class data"
            )
        self.classes_ = labels
        if labels.size == 2:
            target = (y == labels[1]).astype(np.float64)
            coef, intercept = self._descend(X, target, sample_weight, coef_init, intercept_init)
            self.coef_ = coef.reshape(1, -1)
            self.intercept_ = np.array([intercept])
            return self
        one_hot = (y[:, None] == labels[None, :]).astype(np.float64)
        coef, intercept = self._descend(
            X, one_hot, sample_weight, coef_init, intercept_init, n_rows=labels.size
        )
        self.coef_ = coef
        self.intercept_ = np.asarray(intercept)
        return self

    def predict_log_proba(self, X: np.ndarray) -> np.ndarray:
        """Log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))
