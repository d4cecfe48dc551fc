"""What a differentially private ``fit`` does differently, kept out of the estimators.

A private run releases nothing outside its accountant, so it runs no
standardisation rounds. Features (and a regression target) are mapped to
``[-1, 1]`` by bounds the user declares as public (``feature_bounds``,
``target_bounds``): each client applies the same public map to its own rows,
clamping values outside the declared range, and the global model is mapped back
to raw features with the same arithmetic as a standardised one
(:func:`he_fed.protocol.tasks.to_raw`). Bounds read off the training data would
be a release outside the budget; the caller declares them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from he_fed.crypto import Scheme
from he_fed.data import DatasetWarning, builtin_name
from he_fed.exceptions import ConfigurationError
from he_fed.privacy import PrivacyBudget, private_setup
from he_fed.protocol import tasks
from he_fed.protocol.keyholder import majority

__all__ = ["PrivateFit", "dp_step", "public_bounds", "tail_average"]


def dp_step(est: Any) -> float:
    """The DP-SGD step of a record-level run: ``learning_rate``, else ``1 / curvature``.

    The loss's curvature bound (1/4 for log loss, 1 for squared loss) makes 4 for
    logistic and 1 for linear regression. On breast_cancer at epsilon 1 over 20
    rounds, clip 1, step 4 gives a reported model (:func:`tail_average`) with
    accuracy 0.932 on average and below 0.90 in 0.70 % of 5,000 runs of the same
    arithmetic in the clear (``benchmarks/results/dp_repeats.md``).
    """
    if est.learning_rate is not None:
        return float(est.learning_rate)
    return 1.0 / float(est._local_model._curvature)


def tail_average(iterates: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the last half of a run's models (the last ``max(1, k // 2)`` of ``k``).

    Every model of a private run is a released sum's deterministic function, so their
    average is post-processing: it costs no privacy and changes no accounting. It
    averages the release noise of several rounds away; on breast_cancer at epsilon 1
    (20 rounds, step 4, clip 1) it cuts the share of runs below accuracy 0.90 from
    5.96 % (the last model) to 0.70 % (``benchmarks/results/dp_repeats.md``).

    Raises
    ------
    ConfigurationError
        If there is no model to average.
    """
    if not iterates:
        raise ConfigurationError("no released model to average: the run released no round")
    tail = iterates[len(iterates) - max(1, len(iterates) // 2) :]
    return np.mean(np.stack([np.asarray(w, dtype=np.float64) for w in tail]), axis=0)


def _bounds(name: str, value: Any, width: int) -> tuple[np.ndarray, np.ndarray]:
    if value is None:
        raise ConfigurationError(
            f"a differentially private fit needs {name}=(low, high): public bounds, declared "
            "before the run (bounds read off the data would be released outside the budget)"
        )
    try:
        low, high = (np.broadcast_to(np.asarray(v, dtype=np.float64), (width,)) for v in value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be (low, high), each a number or {width}") from None
    if not (np.isfinite(low).all() and np.isfinite(high).all() and np.all(high > low)):
        raise ConfigurationError(f"{name} must be finite with high > low everywhere")
    with np.errstate(over="ignore"):
        half = (high - low) / 2
    if not (np.isfinite(half).all() and np.all(half > 0)):
        # The map divides by the half-width: inf turned every value into 0.
        raise ConfigurationError(f"{name} must span a finite, positive width (high - low)")
    return low, high


def _clamped(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> int:
    return int(np.count_nonzero((values < low) | (values > high)))


@dataclass(frozen=True)
class PrivateFit:
    """The plan of one private fit: scaled partitions, the scheme and the key holder's budget.

    Attributes
    ----------
    partitions : list of (X_k, y_k)
        Each client's rows mapped by the public bounds.
    scheme : Scheme
        The scheme on the grid the noise is planned for.
    budget : PrivacyBudget
        The key holder's budget.
    center, scale : ndarray
        The public map, per feature (and the target, for regression).
    n_outputs : int
        Rows of weights.
    server_lr : float
        The run plan's server step: at ``record`` level the DP-SGD step
        (:func:`dp_step` times ``server_lr``).
    iterates : list of ndarray
        The weights after each released round, as :meth:`observe` saw them.
    """

    partitions: list[tuple[np.ndarray, np.ndarray]]
    scheme: Scheme
    budget: PrivacyBudget
    center: np.ndarray
    scale: np.ndarray
    n_outputs: int
    server_lr: float
    iterates: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def plan(
        cls,
        est: Any,
        partitions: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        regression: bool,
        n_outputs: int,
    ) -> PrivateFit:
        """Plan the private fit of estimator ``est`` over ``partitions``.

        Raises
        ------
        ConfigurationError
            If bounds are missing or bad, the scheme or executor cannot run it, or
            the target cannot be met.
        """
        if not isinstance(est.scheme, str) or est.executor not in ("inprocess", "processes"):
            raise ConfigurationError(
                "a differentially private fit takes a scheme name and the inprocess or "
                "processes executor (Flower's key-holder node has no privacy budget yet)"
            )
        d = partitions[0][0].shape[1]
        low, high = _bounds("feature_bounds", est.feature_bounds, d)
        if regression:
            y_low, y_high = _bounds("target_bounds", est.target_bounds, 1)
            low, high = np.append(low, y_low), np.append(high, y_high)
        center, scale = (low + high) / 2, (high - low) / 2
        outside = sum(_clamped(X, low[:d], high[:d]) for X, _ in partitions)
        if regression:
            outside += sum(_clamped(np.asarray(y), low[d], high[d]) for _, y in partitions)
        if outside:
            warnings.warn(
                f"{outside} value(s) lie outside feature_bounds or target_bounds and are "
                "clamped to them; widen the bounds (they are public: not read off the data)",
                DatasetWarning,
                stacklevel=4,
            )
        mapped = []
        for X, y in partitions:
            Z = np.clip((X - center[:d]) / scale[:d], -1.0, 1.0)
            if regression:
                y = np.clip((y - center[d]) / scale[d], -1.0, 1.0)
            mapped.append((Z, y))
        sizes = [len(X) for X, _ in partitions]
        # The shares are planned for the smallest cohort the key holder decrypts, and a
        # larger cohort adds more noise than planned: without dropouts, every client.
        everyone = len(sizes) if not est.dropout else majority(len(sizes))
        min_cohort = est.min_clients or everyone
        max_rows = est.max_weight or 1 << (max(sizes) - 1).bit_length()
        if est.dp_level == "record" and max(sizes) > max_rows:
            # The plan's range holds a sum of max_rows clipped gradients; a larger
            # client's sum can leave it, and the encoder would clip it without a word.
            raise ConfigurationError(
                f"a client holds {max(sizes)} rows, more than max_weight={max_rows}: a "
                "record-level private fit sizes its range for max_weight rows a client; "
                "raise max_weight or leave it None"
            )
        scheme, budget = private_setup(
            est.scheme,
            key_bits=est.key_bits,
            allow_insecure=est.allow_insecure,
            n_clients=len(sizes),
            max_rows=max_rows,
            size=n_outputs * (d + 1),
            target_epsilon=est.dp_epsilon,
            delta=est.dp_delta,
            rounds=est.rounds,
            level=est.dp_level,
            clip=est.dp_clip,
            min_cohort=min_cohort,
            normaliser=sum(sizes) if est.dp_level == "record" else len(sizes),
            noise_multiplier=est.dp_noise_multiplier,
            ckks_preset=est.ckks_preset,
            sampling_rate=est.dp_sampling_rate,
        )
        step = est.server_lr
        if est.dp_level == "record":
            step *= dp_step(est)
        return cls(mapped, scheme, budget, center, scale, n_outputs, step)

    def raw_model(self, weights: np.ndarray) -> tuple[np.ndarray, float | np.ndarray]:
        """``(coef, intercept)`` on raw features, from the weights on mapped ones."""
        return tasks.to_raw(weights, self.center, self.scale, self.n_outputs)

    def observe(self, weights: np.ndarray) -> tuple[np.ndarray, float | np.ndarray]:
        """Keep one round's released weights; return that round's model on raw features."""
        self.iterates.append(np.array(weights, dtype=np.float64))
        return self.raw_model(weights)

    def final_model(self) -> tuple[np.ndarray, float | np.ndarray]:
        """The reported model: :func:`tail_average` of the observed rounds, on raw features.

        The key holder's model chain is untouched (each round still steps from the
        last model); only the model the fit reports is the average.
        """
        return self.raw_model(tail_average(self.iterates))


def public_bounds(dataset: str, prepared: Any) -> dict[str, Any]:
    """The public bounds ``he-fed run`` declares for a built-in dataset.

    Built-in datasets are public, and scikit-learn publishes their value ranges
    (the ``Min``/``Max`` tables of their descriptions): the bounds are those ranges,
    over the whole dataset. A CSV file's bounds are not public, and a private run on
    one is refused until it can declare them.

    Parameters
    ----------
    dataset : str
        The dataset's name or path, as configured.
    prepared : ExperimentData
        Its split.

    Raises
    ------
    ConfigurationError
        If the dataset is not built in.
    """
    if builtin_name(dataset) is None:
        raise ConfigurationError(
            "a differentially private run needs public feature bounds; he-fed run declares "
            "them for built-in datasets only (the estimators take feature_bounds=)"
        )
    X = np.concatenate([prepared.X_train, prepared.X_test])
    bounds: dict[str, Any] = {"feature_bounds": (X.min(axis=0), X.max(axis=0))}
    if prepared.task == "regression":
        y = np.concatenate([prepared.y_train, prepared.y_test]).astype(np.float64)
        bounds["target_bounds"] = (float(y.min()), float(y.max()))
    return bounds
