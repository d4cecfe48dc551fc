"""Clipping: per-record gradients (``record`` level) and whole updates (``client`` level).

At ``record`` level a round is one step of DP-SGD whose batch is spread across
the clients: each client computes every record's gradient of the penalised loss
at the ticket's weights, clips each to L2 norm ``clip``, and contributes the
negated sum. One record then moves the sum by at most ``clip``, whatever the
others hold. Local epochs, batches and the client's learning rate play no part:
exactly one gradient step per round, by construction.

The gradient of one record, for the linear predictor ``z = W [x; 1]`` with rows
``W`` laid out as the protocol's weights (per row, coefficients then intercept),
is ``r ⊗ [x; 1] + alpha · [W_coef; 0]``, where ``r = dloss/dz`` is the models'
own residual (:meth:`~he_fed.models.BaseGD._loss_and_residual`): ``z - y`` for
squared loss, ``sigmoid(z) - y`` for the binary log loss, ``softmax(z) - onehot(y)``
for the multinomial one.
"""

from __future__ import annotations

import numpy as np

from he_fed.models import BaseGD, LogisticRegressionGD

__all__ = ["clip_update", "clipped_gradient_sum", "per_record_gradients"]


def _targets(model: BaseGD, y: np.ndarray, classes: np.ndarray | None, rows: int) -> np.ndarray:
    if not isinstance(model, LogisticRegressionGD):
        return np.asarray(y, dtype=np.float64)
    labels = np.asarray(classes) if classes is not None else np.unique(y)
    if rows == 1:
        return (np.asarray(y) == labels[1]).astype(np.float64)
    return (np.asarray(y)[:, None] == labels[None, :]).astype(np.float64)


def per_record_gradients(
    model: BaseGD,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    classes: np.ndarray | None = None,
) -> np.ndarray:
    """Every record's gradient of its penalised loss at ``weights``.

    Parameters
    ----------
    model : LinearRegressionGD or LogisticRegressionGD
        The loss (and its ``alpha``).
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    weights : ndarray of shape (n_rows * (n_features + 1),)
        Per row, coefficients then intercept.
    classes : ndarray, optional
        The federation's labels (classification).

    Returns
    -------
    ndarray of shape (n_samples, n_rows * (n_features + 1))
    """
    n, d = X.shape
    rows = weights.size // (d + 1)
    matrix = weights.reshape(rows, d + 1)
    coef, intercept = matrix[:, :-1], matrix[:, -1]
    target = _targets(model, y, classes, rows)
    if rows == 1:
        z = X @ coef[0] + intercept[0]
        _, residual = model._loss_and_residual(z, target)
        residual = residual[:, None]
    else:
        _, residual = model._loss_and_residual(X @ coef.T + intercept, target)
    augmented = np.column_stack([X, np.ones(n)])
    grads = residual[:, :, None] * augmented[:, None, :]  # (n, rows, d + 1)
    penalty = np.zeros_like(matrix)
    penalty[:, :-1] = float(model.alpha) * coef
    return (grads + penalty[None]).reshape(n, rows * (d + 1))


def clipped_gradient_sum(
    model: BaseGD,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    clip: float,
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """``-sum_i clip(g_i)``: the descent direction of one DP-SGD step, and how many were clipped.

    Each record's gradient is scaled to L2 norm at most ``clip``.
    """
    grads = per_record_gradients(model, X, y, weights, classes)
    norms = np.linalg.norm(grads, axis=1)
    factor = np.minimum(1.0, clip / np.maximum(norms, np.finfo(np.float64).tiny))
    return -(grads * factor[:, None]).sum(axis=0), int(np.count_nonzero(norms > clip))


def clip_update(delta: np.ndarray, clip: float) -> tuple[np.ndarray, int]:
    """``delta`` scaled to L2 norm at most ``clip``, and 1 if it was scaled (else 0)."""
    norm = float(np.linalg.norm(delta))
    if norm <= clip:
        return np.asarray(delta, dtype=np.float64), 0
    return np.asarray(delta, dtype=np.float64) * (clip / norm), 1
