"""Model adjustment from the federated validation figures: early stopping and selection.

Private: the estimators of :mod:`he_fed.federated` use it. Both steer training by
the global validation loss that the key holder releases each round
(:mod:`he_fed.protocol.evaluation`), never by a client's own figures: the
lower, the better (log loss for classifiers, mean squared error for regressors;
the loss is smooth where accuracy moves in steps of one row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from he_fed._history import RoundRecord
from he_fed.exceptions import ConfigurationError
from he_fed.protocol.evaluation import figures
from he_fed.runtime.federation import Federation, RoundOutcome

__all__ = ["EarlyStopping", "best_loss", "candidates", "released_validation"]


@dataclass
class EarlyStopping:
    """Stop after ``patience`` evaluated rounds without a new best validation loss.

    Parameters
    ----------
    patience : int
        Evaluated rounds without improvement after which training stops.

    Attributes
    ----------
    best_round : int
        The round whose model had the lowest validation loss (0 before any).
    best_loss : float
        That loss (infinite before any).
    best_model : tuple or None
        ``(coef, intercept)`` of that round's model.
    """

    patience: int
    best_round: int = 0
    best_loss: float = math.inf
    best_model: tuple[np.ndarray, float | np.ndarray] | None = field(default=None, repr=False)
    _since: int = 0

    def update(
        self, round_id: int, loss: float, model: tuple[np.ndarray, float | np.ndarray]
    ) -> bool:
        """Record round ``round_id``'s validation loss and model; True means stop.

        A round without a figure (its evaluation was skipped, NaN) neither improves
        nor counts against the patience.
        """
        if math.isnan(loss):
            return False
        if loss < self.best_loss:
            self.best_round, self.best_loss, self.best_model = round_id, loss, model
            self._since = 0
            return False
        self._since += 1
        return self._since >= self.patience


def candidates(name: str, value: object) -> list[object]:
    """``value`` as a list of candidates: a sequence's items, else ``[value]``.

    Raises
    ------
    ConfigurationError
        If a sequence is empty or repeats a value.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        return [value]
    items = list(value)
    if not items:
        raise ConfigurationError(f"{name} lists no candidate values")
    if len(set(items)) != len(items):
        raise ConfigurationError(f"{name} lists a candidate value twice: {items}")
    return items


def best_loss(history: list[RoundRecord]) -> float:
    """The lowest validation loss over a fit's rounds (infinite if none was released)."""
    losses = [r.validation_loss for r in history if not np.isnan(r.validation_loss)]
    return min(losses) if losses else float("inf")


def released_validation(
    federation: Federation, outcome: RoundOutcome, kind: str | None
) -> tuple[float, float]:
    """``(metric, loss)`` of the released evaluation of this round's model, else NaN."""
    scored = outcome.evaluation
    release = federation.aggregator.model.evaluation
    if kind is None or scored is None or scored.skipped or release is None:
        return float("nan"), float("nan")
    if kind == "classification":
        found = figures(kind, release)
        return float(found["accuracy"]), float(found["loss"])  # type: ignore[arg-type]
    scale = federation.aggregator.scale
    target_scale = float(scale[-1]) if federation.aggregator.plan.standardize_target else 1.0
    found = figures(kind, release, target_scale)
    return float(found["r2"]), float(found["mse"])  # type: ignore[arg-type]
