"""What each task computes: vector lengths, encoding plans and the statistics math.

Feature standardisation must not leak one client's statistics to another, so the
global mean and standard deviation come from two encrypted sums:

For regression the target is standardised the same way, so that updates, the clip
bound and the learning rate mean the same thing whatever the target's units.

1. :attr:`~he_fed.protocol.messages.Task.MAGNITUDE`: each client sends, per
   feature, ``0.5 * log2(mean(x**2))`` (its log root-mean-square), weighted by its
   sample count. The decrypted mean fixes a power-of-two pre-scale ``s`` per
   feature. It is coarse on purpose: its only job is to bring every feature near 1.
2. :attr:`~he_fed.protocol.messages.Task.MOMENTS`: each client sends
   ``mean(x / s)`` and ``mean((x / s)**2)``, weighted by its sample count. The
   decrypted means give the global mean and variance exactly as a central
   ``StandardScaler`` would compute them (population variance), up to encoding
   precision.

Pre-scaling matters because every scheme encodes with one fixed-point scale per
vector: without it, a feature measured in thousands and one measured in
thousandths could not both keep their precision. The statistics rounds use wider
plans than training (see :func:`plan_for`); the key holder decrypts only these
aggregates, and only the global figures are released.
"""

from __future__ import annotations

import numpy as np

from he_fed.crypto import AggregationKey
from he_fed.protocol.evaluation import EVALUATION_CLIP
from he_fed.protocol.messages import Task

__all__ = [
    "MAGNITUDE_CLIP",
    "MOMENTS_CLIP",
    "log_magnitude",
    "moments",
    "plan_for",
    "prescale",
    "standardization",
    "to_raw",
    "vector_size",
]

#: Bound on a log2 root-mean-square; values are clamped to it.
MAGNITUDE_CLIP = 64.0
#: Bound on pre-scaled moments: a client's RMS may be up to 64 times the global one.
MOMENTS_CLIP = 4096.0
#: Statistics need more precision than model updates.
_STATS_PRECISION_BITS = 40


def plan_for(key: AggregationKey, task: Task) -> AggregationKey:
    """The key under the encoding plan a task uses.

    Training uses the key's own plan; the statistics and evaluation tasks widen
    the clip bound and, where the scheme has ``precision_bits``, raise it to at
    least 40 bits.
    """
    if task is Task.TRAIN:
        return key
    clips = {Task.MAGNITUDE: MAGNITUDE_CLIP, Task.MOMENTS: MOMENTS_CLIP}
    changes: dict[str, object] = {"clip": clips.get(task, EVALUATION_CLIP)}
    precision = getattr(key.scheme, "precision_bits", None)
    if precision is not None and precision < _STATS_PRECISION_BITS:
        changes["precision_bits"] = _STATS_PRECISION_BITS
    return key.with_plan(**changes)


def vector_size(task: Task, n_features: int, n_columns: int, n_outputs: int = 1) -> int:
    """Length of the vector a client sends for ``task``.

    ``n_columns`` counts the columns whose statistics are computed: the features,
    plus the target when it is standardised too (regression). A training update
    holds ``n_outputs`` rows of ``n_features + 1`` weights (one row per class of a
    multinomial model).
    """
    if task is Task.TRAIN:
        return n_outputs * (n_features + 1)
    if task is Task.MAGNITUDE:
        return n_columns
    return 2 * n_columns


def log_magnitude(X: np.ndarray) -> np.ndarray:
    """Per-feature ``0.5 * log2(mean(x**2))``, clamped to ``±(MAGNITUDE_CLIP - 4)``."""
    with np.errstate(divide="ignore"):
        out = 0.5 * np.log2(np.mean(np.square(X), axis=0))
    limit = MAGNITUDE_CLIP - 4
    return np.clip(np.nan_to_num(out, neginf=-limit), -limit, limit)


def prescale(mean_log: np.ndarray) -> np.ndarray:
    """Power-of-two pre-scale per feature from the mean log root-mean-square."""
    return np.exp2(np.round(np.asarray(mean_log, dtype=np.float64)))


def moments(X: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``[mean(x / s), mean((x / s)**2)]`` per feature, concatenated."""
    z = X / scale
    return np.concatenate([z.mean(axis=0), np.square(z).mean(axis=0)])


def standardization(moment_mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global mean and standard deviation from the decrypted mean moments.

    A feature with (numerically) zero variance gets a standard deviation of 1, as in
    scikit-learn's ``StandardScaler``.
    """
    d = scale.size
    m1, m2 = moment_mean[:d], moment_mean[d:]
    variance = np.maximum(m2 - m1 * m1, 0.0)
    std = np.sqrt(variance) * scale
    center = m1 * scale
    std[np.sqrt(variance) < 1e-9] = 1.0
    return center, std


def to_raw(
    weights: np.ndarray,
    center: np.ndarray | None,
    scale: np.ndarray | None,
    n_outputs: int = 1,
) -> tuple[np.ndarray, float | np.ndarray]:
    """Turn weights on standardised data into ``(coef, intercept)`` on raw data.

    ``center`` and ``scale`` hold one entry per feature, plus a last entry for the
    target when it was standardised as well (regression). With ``n_outputs > 1``
    the weights are that many rows (a multinomial model, whose target is never
    standardised): ``coef`` has shape ``(n_outputs, n_features)`` and the
    intercept ``(n_outputs,)``.
    """
    if n_outputs > 1:
        matrix = weights.reshape(n_outputs, -1)
        coef, intercepts = matrix[:, :-1].copy(), matrix[:, -1].copy()
        if center is None or scale is None:
            return coef, intercepts
        d = coef.shape[1]
        raw = coef / scale[:d]
        return raw, intercepts - raw @ center[:d]
    coef, intercept = weights[:-1], float(weights[-1])
    if center is None or scale is None:
        return coef.copy(), intercept
    d = coef.size
    y_center, y_scale = (center[d], scale[d]) if center.size > d else (0.0, 1.0)
    raw = y_scale * coef / scale[:d]
    return raw, y_center + y_scale * intercept - float(raw @ center[:d])
