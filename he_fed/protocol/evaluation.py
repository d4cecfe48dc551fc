"""Federated evaluation: what a client sends for :attr:`Task.EVALUATE`, and what it means.

Each client scores the global model of the ticket on its own validation rows and
sends one more encrypted vector through the same protocol (ticketed, signed,
summed blind, released by the key holder as a global figure only). The weight
that rides in the ciphertext is the client's validation row count ``n_k``, and
each value is a per-row mean, so the released weighted mean is the federation's
own ratio (the sum over all validation rows divided by their count), and no
count is released:

* classification (``C`` classes, 2 for a binary model): ``[mean log loss,
  correct / n, confusion / n]``, the ``C × C`` confusion matrix row by row (true
  class, then predicted class); the correct count is its trace, sent too so that
  accuracy is one released value;
* regression: ``[SSE / n, Σy / n, Σy² / n]`` in the model's units (the
  standardised target when the run standardises it), enough for the MSE and R².

**Counts would give the total weight away.** A released fraction ``c / W`` of
integers has a small denominator, and rounding it to the evaluation grid (at
least 40 bits over the clip of 4,096: a step of ``2^-27`` or finer) does not
hide it: continued fractions give ``W``, the cohort's validation row count, and
two cohorts give a client's (the attack of DESIGN.md, "Releases hide the total
weight"). The same holds for target sums whose values lie
on a lattice (integer targets). So every client adds to each of these sums (all
values but the first; the loss and the SSE are sums of real numbers, like a
training update) a draw uniform on ``[-1/2, 1/2)`` (one row's worth, in the
sum's units) before dividing by ``n_k``:
the federation's total is then an integer plus a sum of independent uniforms of
width one, whose fractional part is exactly uniform whatever the cohort, so the
released mean is a real number like a training mean, and every total weight the
plan allows is as consistent with it as the true one
(``tests/protocol/test_evaluation.py``). The draw is keyed by the client's own
signing key, the federation and the round (HMAC-SHA256), so a rerun gives the same
figures and no other party can predict it. The cost: each released fraction is
off by at most ``K / (2W)`` for ``K`` contributors (about ``√(K/12) / W``
typically: 0.014 in accuracy for 3 clients of 12 validation rows each); the loss,
which early stopping and selection follow, is exact. For regression the width is
one unit of the model's target (one standard deviation when the target is
standardised): integer targets whose standard deviation is below 1 lie on a
lattice wider than the draw, and their row count is only partly hidden.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
from scipy.special import expit, log_softmax

from he_fed.exceptions import ConfigurationError

__all__ = [
    "EVALUATION_CLIP",
    "KINDS",
    "dither",
    "figures",
    "local_means",
    "validation_rows",
    "vector_size",
]

#: The kinds of evaluation a plan may ask for.
KINDS = ("classification", "regression")
#: Bound on every evaluation value (clamped, not refused, as moments are).
EVALUATION_CLIP = 4096.0
#: The largest per-row log loss counted: probabilities are clipped to 1e-15, as
#: scikit-learn's ``log_loss`` once did, so that one confident mistake stays finite.
_MAX_LOSS = -float(np.log(1e-15))
_DITHER_LABEL = b"he-fed/evaluation-dither/v1"


def validation_rows(n_rows: int, split: float, client_id: str) -> np.ndarray:
    """Indices of the rows a client holds out for evaluation, sorted.

    ``max(1, round(split · n_rows))`` rows (none when ``split`` is 0), drawn by a
    generator seeded with the client's id, so that a client rebuilt elsewhere
    holds out the same rows.

    Raises
    ------
    ConfigurationError
        If no row would be left to train on.
    """
    if split <= 0:
        return np.empty(0, dtype=np.int64)
    count = max(1, int(round(split * n_rows)))
    if count >= n_rows:
        raise ConfigurationError(
            f"client {client_id!r} has {n_rows} row(s): too few to hold out "
            f"{split:g} of them for validation and still train"
        )
    seed = int.from_bytes(hashlib.sha256(client_id.encode("utf-8")).digest(), "big")
    return np.sort(np.random.default_rng(seed).permutation(n_rows)[:count])


def _n_classes(n_outputs: int) -> int:
    return n_outputs if n_outputs > 1 else 2


def vector_size(kind: str, n_outputs: int) -> int:
    """Length of an evaluation vector: ``2 + C²`` for classification, 3 for regression."""
    if kind == "regression":
        return 3
    return 2 + _n_classes(n_outputs) ** 2


def local_means(
    kind: str, X: np.ndarray, y: np.ndarray, weights: np.ndarray, n_outputs: int
) -> tuple[np.ndarray, int]:
    """One client's per-row means on its validation rows (before :func:`dither`).

    Parameters
    ----------
    kind : {"classification", "regression"}
    X : ndarray of shape (n_rows, n_features)
        Validation features, standardised as the ticket says.
    y : ndarray of shape (n_rows,)
        Class indices (classification) or targets in the model's units.
    weights : ndarray of shape (n_outputs * (n_features + 1),)
        The ticket's global weights, row by row (coefficients, then intercept).
    n_outputs : int
        Rows of weights.

    Returns
    -------
    values : ndarray
        The vector of :func:`vector_size` values, clamped to ``± EVALUATION_CLIP``.
    clipped : int
        Values the clamp changed (a regression's MSE, mean or mean square beyond
        it, in the model's units): the released figures are then bounds, not values.
    """
    n, d = X.shape
    matrix = weights.reshape(n_outputs, d + 1)
    scores = X @ matrix[:, :-1].T + matrix[:, -1]
    if kind == "regression":
        error = y - scores[:, 0]
        values = np.array([np.mean(error * error), np.mean(y), np.mean(y * y)])
        clipped = int(np.count_nonzero(~(np.abs(values) <= EVALUATION_CLIP)))
        return np.clip(values, -EVALUATION_CLIP, EVALUATION_CLIP), clipped
    classes = _n_classes(n_outputs)
    truth = np.asarray(y, dtype=np.int64)
    if n_outputs > 1:
        log_p = log_softmax(scores, axis=1)
        loss = -log_p[np.arange(n), truth]
        predicted = np.argmax(scores, axis=1)
    else:
        p = np.clip(expit(scores[:, 0]), 1e-15, 1 - 1e-15)
        loss = -np.where(truth == 1, np.log(p), np.log1p(-p))
        predicted = (p > 0.5).astype(np.int64)
    confusion = np.zeros((classes, classes))
    np.add.at(confusion, (truth, predicted), 1.0)
    head = [np.mean(np.minimum(loss, _MAX_LOSS)), np.trace(confusion) / n]
    return np.concatenate([head, confusion.ravel() / n]), 0


def dither(
    values: np.ndarray, n_rows: int, *, key: bytes, federation: bytes, round_id: int
) -> np.ndarray:
    """``values[1:] + u / n_rows``, ``u`` uniform on ``[-1/2, 1/2)`` per value, keyed by ``key``.

    See the module docstring: it keeps released fractions from giving away the
    total validation row count. The first value (loss or SSE) is left as it is.
    ``key`` is the client's own secret (its signing key), so the draw is
    reproducible by the client alone.
    """
    message = _DITHER_LABEL + federation + int(round_id).to_bytes(8, "big")
    seed = hmac.new(key, message, hashlib.sha256).digest()
    rng = np.random.default_rng(int.from_bytes(seed, "big"))
    out = np.array(values, dtype=np.float64)
    out[1:] += (rng.random(values.size - 1) - 0.5) / n_rows
    # Clamped again: a value at the clip dithered past it was refused, and by how
    # far told the aggregator the validation row count (red team 49).
    return np.clip(out, -EVALUATION_CLIP, EVALUATION_CLIP, out=out)


def figures(kind: str, mean: np.ndarray, target_scale: float = 1.0) -> dict[str, object]:
    """The global figures a released evaluation mean gives.

    Parameters
    ----------
    kind : {"classification", "regression"}
    mean : ndarray
        The released mean.
    target_scale : float, default=1.0
        The target's standardisation scale (regression), to report the MSE in the
        target's own units.

    Returns
    -------
    dict
        Classification: ``loss`` (mean log loss), ``accuracy`` and ``confusion``
        (the ``C × C`` matrix of fractions, rows the true class), the fractions
        clipped to ``[0, 1]`` (the dither can push one just outside). Regression:
        ``mse`` (in the target's units) and ``r2``.
    """
    if kind == "regression":
        sse, first, second = (float(v) for v in mean)
        spread = second - first * first
        r2 = 1.0 - sse / spread if spread > 0 else float("nan")
        return {"mse": sse * target_scale * target_scale, "r2": r2}
    classes = int(round(np.sqrt(mean.size - 2)))
    return {
        "loss": float(mean[0]),
        "accuracy": float(np.clip(mean[1], 0.0, 1.0)),
        "confusion": np.clip(mean[2:], 0.0, 1.0).reshape(classes, classes),
    }
