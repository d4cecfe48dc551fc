"""Per-record gradients are the models' own gradients; clipping bounds each one."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.models import LinearRegressionGD, LogisticRegressionGD
from he_fed.privacy import clip_update, clipped_gradient_sum, per_record_gradients


def _data(kind: str):
    rng = np.random.default_rng(7)
    X = rng.uniform(-1, 1, size=(40, 3))
    if kind == "linear":
        return LinearRegressionGD(alpha=0.1), X, X @ [1.0, -2.0, 0.5] + 0.1, None, 1
    if kind == "binary":
        return LogisticRegressionGD(alpha=0.1), X, (X[:, 0] > 0).astype(int), np.array([0, 1]), 1
    y = np.array(["a", "b", "c"])[rng.integers(0, 3, 40)]
    return LogisticRegressionGD(alpha=0.1), X, y, np.array(["a", "b", "c"]), 3


@pytest.mark.parametrize("kind", ["linear", "binary", "multinomial"])
def test_the_mean_record_gradient_is_one_full_batch_step_of_the_model(kind):
    """One epoch of the models' full-batch descent from ``w`` with step 1 lands on
    ``w - mean_i g_i``: the per-record gradients are the models' own."""
    model, X, y, classes, rows = _data(kind)
    rng = np.random.default_rng(3)
    weights = rng.normal(size=rows * 4)
    matrix = weights.reshape(rows, 4)
    step = model.set_params(learning_rate=1.0, max_iter=1)
    fit = {"classes": classes} if classes is not None else {}
    if rows == 1:
        step.fit(X, y, coef_init=matrix[0, :-1], intercept_init=matrix[0, -1], **fit)
    else:
        step.fit(X, y, coef_init=matrix[:, :-1], intercept_init=matrix[:, -1], **fit)
    moved = np.column_stack([np.atleast_2d(step.coef_), np.ravel(step.intercept_)]).ravel()
    grads = per_record_gradients(model, X, y, weights, classes)
    assert grads.shape == (40, rows * 4)
    np.testing.assert_allclose(weights - grads.mean(axis=0), moved, rtol=0, atol=1e-14)


def test_each_record_moves_the_clipped_sum_by_at_most_the_clip_bound():
    model, X, y, classes, _ = _data("binary")
    weights = np.array([3.0, -3.0, 3.0, 1.0])
    grads = per_record_gradients(model, X, y, weights, classes)
    total, clipped = clipped_gradient_sum(model, X, y, weights, 0.5, classes)
    norms = np.linalg.norm(grads, axis=1)
    assert clipped == int(np.count_nonzero(norms > 0.5)) and 0 < clipped < 40
    without_first, _ = clipped_gradient_sum(model, X[1:], y[1:], weights, 0.5, classes)
    assert np.linalg.norm(total - without_first) <= 0.5 + 1e-12


def test_a_whole_update_is_scaled_to_the_clip_bound():
    update, clipped = clip_update(np.array([3.0, 4.0]), 1.0)
    np.testing.assert_allclose(update, [0.6, 0.8])
    assert clipped == 1
    small, none = clip_update(np.array([0.3, 0.4]), 1.0)
    assert none == 0 and small.tolist() == [0.3, 0.4]
