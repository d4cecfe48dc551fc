"""What each task computes: vector lengths, encoding plans and the statistics math.

Feature standardisation must not leak one client's statistics to another, so the
global mean and standard deviation come from two encrypted sums, each released
once and only as a global figure. For regression the target is standardised the
same way, so that updates, the clip bound and the learning rate mean the same
thing whatever the target's units.

1. :attr:`~he_fed.protocol.messages.Task.MAGNITUDE`: each client sends, per
   column, its root-mean-square over ``2**48`` (:func:`magnitude`), weighted by its
   sample count ``n_k``. The release is the federation's weighted mean ``A`` of
   the clients' RMS, on a grid of at most ``2**-90`` (92 bits of precision up to
   the clip bound of 1), and fixes a power-of-two pre-scale ``s >= 2**48 *
   (A + 2**-90)`` per column (:func:`prescale`).
2. :attr:`~he_fed.protocol.messages.Task.MOMENTS`: each client sends
   ``mean(x / s)`` and ``mean((x / s)**2)``, weighted by its sample count. The
   decrypted means give the global mean and variance exactly as a central
   ``StandardScaler`` would compute them (population variance), up to encoding
   precision. The variance is ``m2 - m1**2``, so a column whose spread is under
   about ``2**-21`` of its magnitude is not resolved, and is standardised as a
   constant column, with a warning (:func:`standardization`).

Why a mean of RMS, and not of log RMS. A maximum cannot be summed, but a mean of
non-negative values bounds every term: ``n_k * rms_k <= N * A`` for every client,
so ``rms_k / s <= N / n_k <= W``, where ``W = max_clients * max_weight`` is the
plan's largest total weight, public and fixed before any data is seen. So the
moments plan's clip bound, ``W**2`` (:func:`moments_clip`), holds every honest
client's moments, whatever the columns: zero at some clients, spanning ``1e-6``
to ``1e6``, a 0/1 column set at one client only. Nothing an honest client sends
is clipped, and no client is left out. (The quantisation of ``A`` and the
release's rounding lose at most one grid step, which the ``2**-90`` in ``s``
covers.) The pre-scale also cannot be too large: the weighted mean of the RMS is
at most the pooled RMS (Jensen), so the global second moment ``m2`` of ``x / s``
is at least ``1/4``, and the moments plan's grid of ``2**-44`` leaves about 40 bits
of relative precision on it. The mean of log RMS (a geometric mean) had neither
property: a column that is zero at some clients pulls it towards ``2**-60``, and
a client whose RMS exceeded 64 times it had its moments clipped, silently wrong.

The window: a column whose RMS exceeds ``2**48`` at some client is clamped (and
counted as clipped), and one whose RMS is below about ``2**-42`` at every client
is standardised with less precision. The wider moments plan costs bytes in the
statistics rounds only, once per federation; it also lets one malicious client
move the released moments further (up to ``2 * W**2`` pre-scaled units), which the
threat model's poisoning row records.

Pre-scaling matters because every scheme encodes with one fixed-point scale per
vector: without it, a feature measured in thousands and one measured in
thousandths could not both keep their precision. The key holder decrypts only
these aggregates, and only the global figures are released.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from he_fed.crypto import CKKS, AggregationKey
from he_fed.data._warnings import DatasetWarning
from he_fed.protocol.evaluation import EVALUATION_CLIP
from he_fed.protocol.messages import Task

__all__ = [
    "MAGNITUDE_CLIP",
    "MAGNITUDE_WINDOW",
    "magnitude",
    "moments",
    "moments_clip",
    "plan_for",
    "prescale",
    "standardization",
    "to_raw",
    "vector_size",
]

#: Clients send their RMS over this power of two, so the values lie in [0, 1].
MAGNITUDE_WINDOW = 2.0**48
#: Bound on a magnitude value (an RMS over the window); larger ones are clamped.
MAGNITUDE_CLIP = 1.0
#: Precision of the magnitude round: a grid of at most 2**-91 (Paillier, up to the
#: clip bound of 1) or 2**-92 (CKKS), below :data:`_MAGNITUDE_SLACK`.
_MAGNITUDE_PRECISION_BITS = 92
#: Covers what quantisation and the release's rounding can take off the mean.
_MAGNITUDE_SLACK = 2.0**-90
#: The moments' grid: at most 2**-44, against a global second moment of at least 1/4.
_MOMENTS_GRID_BITS = 44
_MOMENTS_STEP = 2.0**-_MOMENTS_GRID_BITS
#: A variance within this many of its error bounds of zero is not resolved.
_RESOLVED = 4.0
#: The evaluation round's precision (bits up to its clip bound, or grid bits on CKKS).
_EVALUATION_PRECISION_BITS = 40
#: Largest clip bound a plan accepts.
_MAX_CLIP = 2.0**64


def moments_clip(key: AggregationKey) -> float:
    """The moments plan's clip bound: ``(max_clients * max_weight)**2``, at most ``2**64``.

    After the magnitude round, no honest client's pre-scaled RMS exceeds
    ``max_clients * max_weight`` (see the module's notes), so no honest moment
    exceeds this.
    """
    largest = float(key.scheme.max_clients * key.scheme.max_weight)
    return min(largest * largest, _MAX_CLIP)


def plan_for(key: AggregationKey, task: Task) -> AggregationKey:
    """The key under the encoding plan a task uses.

    Training uses the key's own plan. The magnitude round uses a clip bound of 1
    and 92 bits of precision; the moments round the clip bound of
    :func:`moments_clip` and a grid of at most ``2**-44``. Where the scheme's
    ``precision_bits`` counts bits up to the clip bound (Paillier), that is
    ``log2(clip) + 45`` bits; where it counts grid bits (CKKS), 44. The evaluation
    round uses :data:`~he_fed.protocol.evaluation.EVALUATION_CLIP` and at least 40
    bits.
    """
    if task is Task.TRAIN:
        return key
    if task is Task.MAGNITUDE:
        clip, absolute = MAGNITUDE_CLIP, _MAGNITUDE_PRECISION_BITS
        relative = _MAGNITUDE_PRECISION_BITS
    elif task is Task.MOMENTS:
        clip = moments_clip(key)
        absolute = _MOMENTS_GRID_BITS
        relative = min(math.ceil(math.log2(clip)) + _MOMENTS_GRID_BITS + 1, 128)
    else:
        clip, absolute, relative = (
            EVALUATION_CLIP,
            _EVALUATION_PRECISION_BITS,
            _EVALUATION_PRECISION_BITS,
        )
    changes: dict[str, object] = {"clip": clip}
    precision = getattr(key.scheme, "precision_bits", None)
    if precision is not None:
        wanted = absolute if isinstance(key.scheme, CKKS) else relative
        changes["precision_bits"] = max(precision, wanted)
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


def magnitude(X: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-column root-mean-square over :data:`MAGNITUDE_WINDOW`, clamped to 1.

    Returns
    -------
    values : ndarray of shape (n_columns,)
        ``min(sqrt(mean(x**2)) / 2**48, 1)``.
    clipped : int
        Columns whose RMS exceeds ``2**48`` (clamped, not refused: whether a client
        answers must not depend on its data).
    """
    rms = np.sqrt(np.mean(np.square(X), axis=0)) / MAGNITUDE_WINDOW
    clipped = int(np.count_nonzero(rms > MAGNITUDE_CLIP))
    return np.minimum(rms, MAGNITUDE_CLIP), clipped


def prescale(mean_magnitude: np.ndarray) -> np.ndarray:
    """Power-of-two pre-scale per column from the released mean magnitude.

    The smallest power of two at least ``2**48 * (mean + 2**-90)``: no client's RMS
    exceeds it more than ``max_clients * max_weight`` times, and it is at most
    twice the federation's pooled RMS (up to the slack, for columns that are all
    but zero).
    """
    mean = np.maximum(np.asarray(mean_magnitude, dtype=np.float64), 0.0)
    return MAGNITUDE_WINDOW * np.exp2(np.ceil(np.log2(mean + _MAGNITUDE_SLACK)))


def moments(X: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``[mean(x / s), mean((x / s)**2)]`` per feature, concatenated."""
    z = X / scale
    return np.concatenate([z.mean(axis=0), np.square(z).mean(axis=0)])


def standardization(moment_mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global mean and standard deviation from the decrypted mean moments.

    Each released moment lies within one step of the moments' grid (at most
    ``2**-44``), so ``m2 - m1**2`` within ``(1 + 2 |m1|)`` steps. A column whose
    variance is not four times that is constant or varies less than the statistics
    resolve (a standard deviation under about ``2**-21`` of its magnitude: a column
    of ``1e8 + N(0, 1)`` values): it gets a standard deviation of 1, as
    scikit-learn's ``StandardScaler`` gives a constant column, and a
    :class:`~he_fed.data.DatasetWarning` names it unless it is all zeros. (Its
    variance was noise: such a column's ``1e8 + N(0, 1)`` came out with a standard
    deviation of 21, and the model did not learn it.)
    """
    d = scale.size
    m1, m2 = moment_mean[:d], moment_mean[d:]
    variance = m2 - m1 * m1
    unresolved = variance <= _RESOLVED * _MOMENTS_STEP * (1 + 2 * np.abs(m1))
    std = np.where(unresolved, 1.0, np.sqrt(np.maximum(variance, 0.0)) * scale)
    named = np.flatnonzero(unresolved & ((m1 != 0) | (m2 != 0)))
    if named.size:
        warnings.warn(
            f"column(s) {named.tolist()} are constant or vary less than the federated "
            "statistics resolve (a standard deviation under about 2**-21 of their "
            "magnitude): standardised with scale 1, as a constant column; if one varies, "
            "subtract a public offset near its mean first, or pass standardize=False",
            DatasetWarning,
            stacklevel=2,
        )
    return m1 * scale, std


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
