"""The global model as a function of the run plan and the released aggregates.

The key holder owns the rounds: before it signs a round ticket it computes the
global model that the ticket carries, from two things only:

* the public :class:`RunPlan` (the number of features and of rows of weights,
  the server step, whether features and target are standardised), fixed before
  the first round, and
* the aggregates it has itself released, in order.

So an aggregator cannot hand clients a model of its choosing, and it cannot get two
releases under the same model: every release moves the model (a statistics round
fixes the standardisation, a training round moves the weights by
``server_lr · mean``), and each ticket is decrypted at most once. That is what
stops the differencing attack in which the same round start is sent twice, once
to everyone and once to everyone but a victim. The aggregator runs the same
:class:`GlobalModel` on the same releases, so both sides agree without trust.

The order of tasks is fixed too: with standardisation, :attr:`Task.MAGNITUDE` and
then :attr:`Task.MOMENTS`, each released once per federation, then training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from he_fed._validation import check_float, check_int
from he_fed.crypto import wire
from he_fed.exceptions import (
    ConfigurationError,
    MalformedMessage,
    PolicyViolation,
    ProtocolError,
    ShapeMismatchError,
    TrainingDiverged,
)
from he_fed.protocol import tasks
from he_fed.protocol.messages import Task

__all__ = ["GlobalModel", "RunPlan"]

#: Weights on standardised data beyond this mean the model has diverged.
_DIVERGED = 1e12
#: The smallest server step the key holder accepts: a step near zero would keep
#: the model (nearly) fixed across releases, which the differencing defence needs
#: to move.
MIN_SERVER_LR = 1e-3
#: The most rows of weights (classes of a multinomial model) a plan may have.
MAX_OUTPUTS = 4096


@dataclass(frozen=True)
class RunPlan:
    """The public description of a run that fixes every round's global model.

    Parameters
    ----------
    n_features : int
        Number of model features (each row of weights holds one more value, the
        intercept).
    server_lr : float, default=1.0
        Server step: ``w <- w + server_lr * mean_update``. At least
        ``MIN_SERVER_LR`` and at most 100.
    standardize : bool, default=True
        Standardise features with federated statistics before training.
    standardize_target : bool, default=False
        Standardise the target too (regression).
    n_outputs : int, default=1
        Rows of weights: 1 for linear and binary logistic regression, the number
        of classes (3 to ``MAX_OUTPUTS``) for the multinomial model. The weights
        and every training update are the ``(n_outputs, n_features + 1)`` matrix
        flattened row by row, each row its coefficients and then its intercept.
    """

    n_features: int
    server_lr: float = 1.0
    standardize: bool = True
    standardize_target: bool = False
    n_outputs: int = 1

    def __post_init__(self) -> None:
        n = check_int("n_features", self.n_features, low=1, types=(int, np.integer))
        object.__setattr__(self, "n_features", n)
        lr = check_float(
            "server_lr",
            self.server_lr,
            low=MIN_SERVER_LR,
            high=100,
            types=(int, float, np.floating),
            bounds=f"in [{MIN_SERVER_LR:g}, 100]",
        )
        object.__setattr__(self, "server_lr", lr)
        for name in ("standardize", "standardize_target"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name} must be a bool")
        if self.standardize_target and not self.standardize:
            raise ConfigurationError("standardize_target needs standardize")
        rows = check_int(
            "n_outputs", self.n_outputs, low=1, high=MAX_OUTPUTS, types=(int, np.integer)
        )
        if rows == 2:
            raise ConfigurationError(
                "n_outputs=2 is not a model: two classes take one row of weights (n_outputs=1)"
            )
        if rows > 1 and self.standardize_target:
            raise ConfigurationError(
                "a multinomial model (n_outputs > 1) has no target to standardise"
            )
        object.__setattr__(self, "n_outputs", rows)

    @property
    def n_columns(self) -> int:
        """Columns whose statistics are computed: the features, plus the target if standardised."""
        return self.n_features + int(self.standardize_target)

    @property
    def n_weights(self) -> int:
        """Length of the weight vector: ``n_outputs * (n_features + 1)``."""
        return self.n_outputs * (self.n_features + 1)

    def vector_size(self, task: Task) -> int:
        """Length of the vector every client sends for ``task``."""
        return tasks.vector_size(task, self.n_features, self.n_columns, self.n_outputs)

    def write_to(self, w: wire.Writer) -> None:
        """Append the plan's bytes: features, server step, flags, and the row count.

        Flag bit 2 says a u32 row count follows, so that a one-row plan keeps the
        bytes it had before multinomial plans existed. :meth:`read_from` reads it.
        """
        w.uint(self.n_features)
        w.float64(self.server_lr)
        rows = self.n_outputs > 1
        w.uint(int(self.standardize) | int(self.standardize_target) << 1 | int(rows) << 2, 1)
        if rows:
            w.uint(self.n_outputs, 4)

    @classmethod
    def read_from(cls, r: wire.Reader, what: str) -> RunPlan:
        """Read a plan :meth:`write_to` wrote.

        Raises
        ------
        MalformedMessage
            If the bytes are not a valid plan (``what`` names them in the message).
        """
        n_features, server_lr, flags = r.uint(), r.float64(), r.uint(1)
        if flags > 7:
            raise MalformedMessage(f"{what}: unknown plan flags {flags:#x}")
        n_outputs = r.uint(4) if flags & 4 else 1
        if flags & 4 and n_outputs == 1:
            raise MalformedMessage(f"{what}: a one-row plan written with a row count")
        try:
            return cls(n_features, server_lr, bool(flags & 1), bool(flags & 2), n_outputs)
        except ConfigurationError as exc:
            raise MalformedMessage(f"{what}: {exc}") from None


class GlobalModel:
    """The global state a run's releases determine: weights and standardisation.

    Parameters
    ----------
    plan : RunPlan
        The run plan.

    Attributes
    ----------
    weights : ndarray of shape (n_outputs * (n_features + 1),)
        Global weights on standardised features: per row, coefficients, then
        intercept.
    center, scale : ndarray of shape (n_columns,) or None
        Federated standardisation, once computed.
    prescale : ndarray of shape (n_columns,) or None
        The pre-scale from the magnitude round, once released.
    """

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.weights = np.zeros(plan.n_weights)
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.prescale: np.ndarray | None = None

    def check_task(self, task: Task) -> None:
        """Raise unless ``task`` may be ticketed now.

        Raises
        ------
        PolicyViolation
            If a statistics task was already released, or the plan does not
            standardise (statistics are released once per federation, and only
            when needed).
        ProtocolError
            If a task comes before the one it depends on.
        """
        task = Task(task)
        if task is Task.TRAIN:
            if self.plan.standardize and self.center is None:
                raise ProtocolError("standardisation statistics must be computed before training")
            return
        if not self.plan.standardize:
            raise PolicyViolation(f"this run does not standardise; no {task.value} round is run")
        if task is Task.MAGNITUDE and self.prescale is not None:
            raise PolicyViolation("the magnitude statistics were released; they run once")
        if task is Task.MOMENTS:
            if self.prescale is None:
                raise ProtocolError("the magnitude round must come before the moments round")
            if self.center is not None:
                raise PolicyViolation("the moments statistics were released; they run once")

    def ticket_fields(self, task: Task) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(weights, center, scale)`` that a round of ``task`` starts from."""
        empty = np.empty(0)
        if task is Task.TRAIN:
            center = self.center if self.center is not None else empty
            scale = self.scale if self.scale is not None else empty
            return self.weights, center, scale
        if task is Task.MOMENTS:
            assert self.prescale is not None
            return empty, empty, self.prescale
        return empty, empty, empty

    def apply(self, task: Task, mean: np.ndarray) -> None:
        """Move the state by a released mean.

        Raises
        ------
        ShapeMismatchError
            If the mean has the wrong length for ``task``.
        TrainingDiverged
            If training pushed a weight beyond any sensible magnitude.
        """
        size = self.plan.vector_size(task)
        if mean.size != size:
            raise ShapeMismatchError(f"aggregate has {mean.size} values, expected {size}")
        if task is Task.TRAIN:
            weights = self.weights + self.plan.server_lr * mean
            if not np.all(np.abs(weights) < _DIVERGED):
                raise TrainingDiverged(
                    "the global model diverged; lower the learning rate or local epochs"
                )
            self.weights = weights
        elif task is Task.MAGNITUDE:
            self.prescale = tasks.prescale(mean)
        else:
            assert self.prescale is not None
            self.center, self.scale = tasks.standardization(mean, self.prescale)

    def raw_model(self) -> tuple[np.ndarray, float | np.ndarray]:
        """``(coef, intercept)`` of the global model on raw (unstandardised) features.

        One row: ``coef`` of shape ``(n_features,)`` and a float. More rows:
        ``(n_outputs, n_features)`` and ``(n_outputs,)``.
        """
        return tasks.to_raw(self.weights, self.center, self.scale, self.plan.n_outputs)
