"""Clipping: per-record gradients (``record`` level) and whole updates (``client`` level).

At ``record`` level a round is one step of DP-SGD whose batch is spread across
the clients: each client computes every record's gradient of the penalised loss
at the ticket's weights, clips each to L2 norm ``clip``, and contributes the
negated sum. One record then moves the sum by at most ``clip``, whatever the
others hold. Local epochs, batches and the client's learning rate play no part:
exactly one gradient step per round, by construction.

Without noise, the same per-record clipping is FedSGD's step in a run without a
privacy budget (:func:`clipped_gradient_mean`, when :func:`fedsgd_step` says the
client's training is one full-batch epoch at a fixed step): weighted by the
client's row count, it is a sum over its rows, which clipping the whole update is
not.

The gradient of one record, for the linear predictor ``z = W [x; 1]`` with rows
``W`` laid out as the protocol's weights (per row, coefficients then intercept),
is ``r ⊗ [x; 1] + alpha · [W_coef; 0]``, where ``r = dloss/dz`` is the models'
own residual (:meth:`~he_fed.models.BaseGD._loss_and_residual`): ``z - y`` for
squared loss, ``sigmoid(z) - y`` for the binary log loss, ``softmax(z) - onehot(y)``
for the multinomial one.
"""

from __future__ import annotations

import numpy as np

from he_fed.exceptions import ConfigurationError
from he_fed.models import BaseGD, LogisticRegressionGD

__all__ = [
    "clip_update",
    "clipped_gradient_mean",
    "clipped_gradient_sum",
    "fedsgd_step",
    "per_record_gradients",
]


def _targets(model: BaseGD, y: np.ndarray, classes: np.ndarray | None, rows: int) -> np.ndarray:
    """Regression targets, or each record's class as a 0/1 target (one column per class).

    A label matches a class as Python compares them (``1 == 1.0``, ``"1" != 1``), and
    a label that matches none is refused: training it as "no class" would let a
    relay that sends other labels than the client's data holds zero its gradients.
    """
    if not isinstance(model, LogisticRegressionGD):
        return np.asarray(y, dtype=np.float64)
    labels = (np.asarray(classes) if classes is not None else np.unique(y)).tolist()
    index = {label: i for i, label in enumerate(labels)}
    try:
        codes = np.array([index[v] for v in np.asarray(y).tolist()], dtype=np.intp)
    except (KeyError, TypeError):
        raise ConfigurationError(f"y holds labels outside the classes {labels}") from None
    if rows == 1:
        return (codes == 1).astype(np.float64)
    return np.eye(len(labels))[codes]


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
    norms = _norms(grads)
    factor = np.minimum(1.0, clip / np.maximum(norms, np.finfo(np.float64).tiny))
    return -(grads * factor[:, None]).sum(axis=0), int(np.count_nonzero(norms > clip))


def _norms(rows: np.ndarray) -> np.ndarray:
    """Each row's L2 norm, finite whenever its entries are: a norm past ``1e154`` would
    square to inf, and the clip would scale the row to zeros."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    peaks = np.max(np.abs(rows), axis=1) if rows.shape[1] else np.zeros(len(rows))
    safe = np.where(peaks > 0, peaks, 1.0)
    return peaks * np.linalg.norm(rows / safe[:, None], axis=1)


def fedsgd_step(model: BaseGD, epochs: int) -> float | None:
    """The public step of one pooled full-batch epoch, or None for local training.

    One epoch (``epochs == 1``) of full-batch descent at a learning rate fixed
    before any data is seen (not ``"auto"``, which reads the client's Gram
    matrix), with an intercept and without a proximal term: FedSGD, whose step
    :func:`clipped_gradient_mean` computes.
    """
    params = model.get_params()
    rate = params.get("learning_rate")
    pooled = (
        epochs == 1
        and not isinstance(rate, str)
        and params.get("batch_size") is None
        and not params.get("prox_mu")
        and params.get("fit_intercept", True)
    )
    return float(rate) if pooled else None


def clipped_gradient_mean(
    model: BaseGD,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    step: float,
    bound: float,
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """``-step * mean_i clip(g_i)``: one full-batch step whose weighted sum is pooled.

    Each coordinate of each record's gradient is clipped to ``bound / step``, so
    every value of the step lies in ``[-bound, bound]`` without clipping the step
    itself. Weighted by ``n_k`` and summed over clients, it is ``-step`` times the
    sum of the clipped gradients of all their records: in exact arithmetic, the
    same for any split of the same rows among the clients. Each client's float
    rounding of its mean, and its rounding to the encoding grid, are not pooled,
    and a colluder can read them (red team 12, ``DESIGN.md``). Where no gradient
    reaches the limit, it is one epoch of full-batch descent at ``step``.

    Returns
    -------
    step : ndarray of shape (n_rows * (n_features + 1),)
    clipped : int
        Record gradient coordinates that were clipped.
    """
    grads = per_record_gradients(model, X, y, weights, classes)
    limit = bound / step
    clipped = int(np.count_nonzero(np.abs(grads) > limit))
    # The mean of values at the limit can round one ulp past it: the final clip only
    # undoes that rounding.
    mean = -step * np.clip(grads, -limit, limit).mean(axis=0)
    return np.clip(mean, -bound, bound), clipped


def clip_update(delta: np.ndarray, clip: float) -> tuple[np.ndarray, int]:
    """``delta`` scaled to L2 norm at most ``clip``, and 1 if it was scaled (else 0)."""
    values = np.asarray(delta, dtype=np.float64)
    norm = float(_norms(values.reshape(1, -1))[0])
    if norm <= clip:
        return values, 0
    return values * (clip / norm), 1
