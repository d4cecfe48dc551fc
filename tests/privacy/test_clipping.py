"""Per-record gradients are the models' own gradients; clipping bounds each one."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.models import LinearRegressionGD, LogisticRegressionGD
from he_fed.privacy import (
    clip_update,
    clipped_gradient_mean,
    clipped_gradient_sum,
    fedsgd_step,
    per_record_gradients,
)


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


def test_a_norm_past_the_doubles_square_root_is_clipped_in_direction_not_to_zeros():
    """``[1e200, 1e200]`` squared to inf, so the clip scaled it to ``[0, 0]`` (an audit)."""
    update, clipped = clip_update(np.array([1e200, -1e200, 0.0]), 1.0)
    np.testing.assert_allclose(update, [2**-0.5, -(2**-0.5), 0.0], rtol=1e-15)
    assert clipped == 1
    model, X, y, classes, _ = _data("linear")
    far = clipped_gradient_sum(model, X * 1e100, y, np.ones(4), 0.5, classes)
    near = clipped_gradient_sum(model, X, y * 1e-160, np.zeros(4), 0.5, classes)
    assert far[1] == 40 and np.all(np.isfinite(far[0]))
    assert np.linalg.norm(far[0]) > 1.0  # 40 rows of norm 0.5 do not cancel to zero
    assert near[1] == 0


@pytest.mark.parametrize("kind", ["linear", "binary", "multinomial"])
def test_a_fedsgd_step_weighted_by_row_count_is_the_same_for_any_split_of_the_rows(kind):
    """``n_k`` times each client's step sums to the pooled rows' step, clipping included."""
    model, X, y, classes, rows = _data(kind)
    weights = np.random.default_rng(5).normal(scale=3, size=rows * 4)
    step, bound = 0.5, 0.1  # a limit of 0.2 per record coordinate: most records reach it
    pooled, clipped = clipped_gradient_mean(model, X, y, weights, step, bound, classes)
    assert clipped > 40
    assert np.abs(pooled).max() <= bound
    for cuts in ([7], [1, 20, 33], [39]):
        parts = np.split(np.arange(40), cuts)
        total = sum(
            len(p) * clipped_gradient_mean(model, X[p], y[p], weights, step, bound, classes)[0]
            for p in parts
        )
        np.testing.assert_allclose(total, 40 * pooled, rtol=0, atol=1e-12)
    # Clipping each client's step instead depends on the split.
    whole = sum(
        len(p)
        * np.clip(
            -step * per_record_gradients(model, X[p], y[p], weights, classes).mean(0), -bound, bound
        )
        for p in np.split(np.arange(40), [7])
    )
    assert np.abs(whole - 40 * pooled).max() > 1e-3


def test_below_the_limit_a_fedsgd_step_is_one_epoch_of_descent():
    model, X, y, classes, _ = _data("binary")
    weights = np.array([0.3, -0.2, 0.1, 0.05])
    step, clipped = clipped_gradient_mean(model, X, y, weights, 0.5, 100.0, classes)
    assert clipped == 0
    grads = per_record_gradients(model, X, y, weights, classes)
    np.testing.assert_array_equal(step, -0.5 * grads.mean(axis=0))


@pytest.mark.parametrize(
    ("params", "epochs", "expected"),
    [
        ({"learning_rate": 0.5}, 1, 0.5),
        ({"learning_rate": 0.5}, 2, None),
        ({"learning_rate": "auto"}, 1, None),  # read off the client's Gram matrix
        ({"learning_rate": 0.5, "batch_size": 8}, 1, None),
        ({"learning_rate": 0.5, "prox_mu": 0.1}, 1, None),
        ({"learning_rate": 0.5, "fit_intercept": False}, 1, None),
    ],
)
def test_only_one_full_batch_epoch_at_a_fixed_step_is_fedsgd(params, epochs, expected):
    assert fedsgd_step(LogisticRegressionGD(**params), epochs) == expected
