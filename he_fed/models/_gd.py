"""Gradient descent shared by the linear and logistic estimators.

The weights are one row (``coef`` of shape ``(n_features,)`` and a scalar
intercept) for linear and binary logistic regression, or one row per class
(``coef`` of shape ``(n_classes, n_features)``, ``intercept`` of shape
``(n_classes,)``) for the multinomial model. The single row takes exactly the
arithmetic it took before rows existed, so binary and linear results do not
change by a bit.
"""

from __future__ import annotations

import numbers
import warnings
from abc import abstractmethod

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from he_fed._validation import check_float, check_int
from he_fed.exceptions import ConfigurationError, TrainingDiverged

__all__ = ["BaseGD"]


class BaseGD(BaseEstimator):
    """Base class: full-batch or mini-batch gradient descent on an L2-penalised loss.

    Subclasses define the loss and its gradient on the linear predictor
    ``X @ coef.T + intercept`` (``_loss_and_residual``; with one row of weights,
    ``X @ coef + intercept``), and a ``fit`` that takes
    ``coef_init`` and ``intercept_init``: a federated client resumes from the
    global weights each round. Every model a federation trains is one. The
    parameters are documented on the subclasses, :class:`LinearRegressionGD` and
    :class:`LogisticRegressionGD`.
    """

    def __init__(
        self,
        alpha: float = 1e-4,
        *,
        learning_rate: float | str = "auto",
        max_iter: int = 100,
        batch_size: int | None = None,
        fit_intercept: bool = True,
        shuffle: bool = True,
        tol: float | None = None,
        random_state: int | np.random.RandomState | None = None,
        prox_mu: float = 0.0,
    ) -> None:
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.fit_intercept = fit_intercept
        self.shuffle = shuffle
        self.tol = tol
        self.random_state = random_state
        self.prox_mu = prox_mu

    def _check_params(self) -> None:
        # ConfigurationError is a ValueError, as scikit-learn expects.
        check_float("alpha", self.alpha, low=0)
        if not (isinstance(self.learning_rate, str) and self.learning_rate == "auto"):
            check_float("learning_rate", self.learning_rate, low=0, strict_low=True)
        check_int("max_iter", self.max_iter, low=1, types=numbers.Integral)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, low=1, types=numbers.Integral)
        if self.tol is not None:
            check_float("tol", self.tol, low=0)
        check_float("prox_mu", self.prox_mu, low=0)
        for name in ("fit_intercept", "shuffle"):  # "no" would be True
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigurationError(f"{name} must be a bool, got {getattr(self, name)!r}")

    #: Upper bound on the loss's second derivative in the predictor (1 for squared
    #: loss, 1/4 for log loss); sets the "auto" learning rate.
    _curvature: float = 1.0
    #: The same bound for several rows of weights: the Hessian of the multinomial log
    #: loss in the scores, ``diag(p) - p p^T``, has no eigenvalue above 1/2.
    _multinomial_curvature: float = 0.5

    def _auto_learning_rate(self, X: np.ndarray, sw: np.ndarray, curvature: float) -> float:
        """``1 / L`` for the smoothness constant ``L`` of the objective on ``X``.

        ``L`` is the largest eigenvalue of the weighted Gram matrix of ``[X, 1]``
        (estimated by power iteration, then inflated by 10%), times the loss
        curvature, plus ``alpha``. Full-batch descent with this step never diverges.
        """
        scale = sw / sw.sum()
        A = np.column_stack([X, np.ones(len(X))]) if self.fit_intercept else X
        v = np.random.default_rng(0).standard_normal(A.shape[1])
        top = 0.0
        for _ in range(100):
            u = A.T @ (scale * (A @ v))
            top_next = float(np.linalg.norm(u))
            if top_next == 0.0:
                break
            v = u / top_next
            if abs(top_next - top) <= 1e-6 * top_next:
                top = top_next
                break
            top = top_next
        smoothness = 1.1 * curvature * top + float(self.alpha)
        return 1.0 / smoothness if smoothness > 0 else 1.0

    @staticmethod
    @abstractmethod
    def _loss_and_residual(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample loss and its derivative with respect to the predictor ``z``.

        ``z`` and ``y`` have shape ``(n,)`` for one row of weights, ``(n, n_rows)``
        for several (``y`` then one-hot); the loss has shape ``(n,)`` and the
        residual ``z``'s shape.
        """

    def _objective(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sw: np.ndarray,
        coef: np.ndarray,
        intercept: float | np.ndarray,
    ) -> float:
        loss, _ = self._loss_and_residual(X @ coef.T + intercept, y)
        penalty = coef @ coef if coef.ndim == 1 else np.sum(coef * coef)
        return float(np.average(loss, weights=sw) + 0.5 * self.alpha * penalty)

    def _descend(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None,
        coef_init: np.ndarray | None,
        intercept_init: float | np.ndarray | None,
        *,
        n_rows: int | None = None,
    ) -> tuple[np.ndarray, float | np.ndarray]:
        """Run ``max_iter`` epochs from the given start and set ``n_iter_``.

        With ``n_rows=None`` the weights are one row: ``coef`` of shape
        ``(n_features,)`` and a float intercept. Otherwise ``coef`` has shape
        ``(n_rows, n_features)`` and the intercept ``(n_rows,)``, and ``y`` is
        ``(n_samples, n_rows)``.
        """
        self._check_params()
        n, d = X.shape
        sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if sw.shape != (n,) or np.any(sw < 0) or not np.isfinite(sw).all() or sw.sum() <= 0:
            raise ValueError("sample_weight must be non-negative, finite and not all zero")
        shape = (d,) if n_rows is None else (n_rows, d)
        coef = np.zeros(shape)
        if coef_init is not None:
            coef = np.array(coef_init, dtype=np.float64).ravel()
            if coef.size != d * (n_rows or 1):
                raise ValueError(f"coef_init has {coef.size} values, expected {d * (n_rows or 1)}")
            coef = coef.reshape(shape)
        intercept: float | np.ndarray = 0.0 if n_rows is None else np.zeros(n_rows)
        if intercept_init is not None:
            if n_rows is None:
                intercept = float(np.ravel(intercept_init)[0])
            else:
                intercept = np.array(intercept_init, dtype=np.float64).reshape(-1)
                if intercept.shape != (n_rows,):
                    raise ValueError(
                        f"intercept_init has {intercept.size} values, expected {n_rows}"
                    )
        if not self.fit_intercept:
            intercept = 0.0 if n_rows is None else np.zeros(n_rows)
        rng = check_random_state(self.random_state)
        batch = n if self.batch_size is None else min(int(self.batch_size), n)
        curvature = self._curvature if n_rows is None else self._multinomial_curvature
        lr = (
            self._auto_learning_rate(X, sw, curvature)
            if isinstance(self.learning_rate, str)
            else float(self.learning_rate)
        )
        self.learning_rate_ = lr
        # Overflow shows up as non-finite weights, which are checked every epoch.
        # FedProx's anchor: the weights the fit starts from (the global model).
        self._anchor = (coef.copy(), np.copy(intercept))
        with np.errstate(over="ignore", invalid="ignore"):
            coef, intercept, epoch, converged = self._epochs(
                X, y, sw, coef, intercept, rng, batch, lr
            )
        if self.tol is not None and not converged:
            warnings.warn(
                f"{type(self).__name__} did not converge within max_iter={self.max_iter} "
                "epochs; raise max_iter or learning_rate",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.n_iter_ = epoch
        return coef, intercept

    def _epochs(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sw: np.ndarray,
        coef: np.ndarray,
        intercept: float | np.ndarray,
        rng: np.random.RandomState,
        batch: int,
        lr: float,
    ) -> tuple[np.ndarray, float | np.ndarray, int, bool]:
        n = len(X)
        rows = coef.ndim == 2
        previous = np.inf
        converged = False
        epoch = 0
        for epoch in range(1, int(self.max_iter) + 1):
            order = rng.permutation(n) if self.shuffle and batch < n else None
            for start in range(0, n, batch):
                # Unshuffled batches are slices: views, not copies of the client's rows.
                idx = (
                    order[start : start + batch]
                    if order is not None
                    else slice(start, start + batch)
                )
                w = sw[idx]
                total = w.sum()
                if total <= 0:
                    continue
                part = X[idx]
                # One row: exactly the operations (and the rounding) of a vector model.
                _, residual = self._loss_and_residual(part @ coef.T + intercept, y[idx])
                residual = residual * (w[:, None] if rows else w) / total
                grad = (part.T @ residual).T + self.alpha * coef
                step = residual.sum(axis=0) if rows else float(residual.sum())
                if self.prox_mu:
                    # FedProx (Li et al., MLSys 2020): the term mu/2 ||w - w_start||^2
                    # keeps a client near the global model it started from.
                    grad = grad + self.prox_mu * (coef - self._anchor[0])
                    step = step + self.prox_mu * (intercept - self._anchor[1])
                coef = coef - lr * grad
                if self.fit_intercept:
                    if rows:
                        intercept = intercept - lr * step
                    else:
                        intercept -= lr * float(step)
            if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
                raise TrainingDiverged(
                    f"gradient descent diverged at epoch {epoch}; lower learning_rate "
                    f"(now {self.learning_rate}) or standardise the features"
                )
            if self.tol is not None:
                current = self._objective(X, y, sw, coef, intercept)
                if previous - current < self.tol:
                    converged = True
                    break
                previous = current
        return coef, intercept, epoch, converged
