"""The global model as a function of the run plan and the released aggregates.

The key holder owns the rounds: before it signs a round ticket it computes the
global model that the ticket carries, from two things only:

* the public :class:`RunPlan` (the number of features and of rows of weights,
  the server step, whether features and target are standardised), fixed before
  the first round, and
* the aggregates it has itself released, in order.

So an aggregator cannot hand clients global weights of its choosing, nor get two
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
from he_fed.protocol import evaluation, tasks
from he_fed.protocol.messages import Task
from he_fed.protocol.optimizers import OPTIMIZERS, OptimizerState, server_step

__all__ = ["GlobalModel", "RunPlan"]

#: Weights on standardised data beyond this mean the model has diverged.
_DIVERGED = 1e12
#: The smallest server step the key holder accepts: a step near zero would keep
#: the model (nearly) fixed across releases, which the differencing defence needs
#: to move.
MIN_SERVER_LR = 1e-3
#: The most rows of weights (classes of a multinomial model) a plan may have.
MAX_OUTPUTS = 4096
#: The most weights (rows times ``n_features + 1``) a plan may have: 128 MiB of
#: float64 for each copy of the model a role keeps.
MAX_WEIGHTS = 1 << 24


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
    server_optimizer : {"avg", "avgm", "adam", "yogi"}, default="avg"
        How a released mean update moves the weights
        (:mod:`he_fed.protocol.optimizers`).
    evaluation : {"classification", "regression"} or None, default=None
        Whether clients score each model on their validation rows
        (:attr:`Task.EVALUATE`, :mod:`he_fed.protocol.evaluation`), and which
        figures they send.
    client_plan : bytes, default=b""
        The SHA-256 digest of the clients' training plan
        (:meth:`~he_fed.protocol.spec.ClientPlan.digest`). Every ticket carries
        it, and a client trains only on a ticket that names its own plan's digest:
        whoever relays the plan to the clients (a ServerApp) cannot give one client
        another recipe than the rest. Empty: the plan names no client plan, and no
        client answers its tickets.
    """

    n_features: int
    server_lr: float = 1.0
    standardize: bool = True
    standardize_target: bool = False
    n_outputs: int = 1
    server_optimizer: str = "avg"
    evaluation: str | None = None
    client_plan: bytes = b""

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
        if rows * (n + 1) > MAX_WEIGHTS:
            raise ConfigurationError(
                f"a plan of {rows} x {n + 1} weights is over the {MAX_WEIGHTS:,} a model may have"
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
        if self.server_optimizer not in OPTIMIZERS:
            raise ConfigurationError(
                f"unknown server optimizer {self.server_optimizer!r}; choose one of "
                f"{', '.join(OPTIMIZERS)}"
            )
        if self.evaluation is not None and self.evaluation not in evaluation.KINDS:
            raise ConfigurationError(
                f"unknown evaluation {self.evaluation!r}; choose one of "
                f"{', '.join(evaluation.KINDS)} (or None)"
            )
        if not isinstance(self.client_plan, bytes) or len(self.client_plan) not in (0, 32):
            raise ConfigurationError("client_plan is a 32-byte SHA-256 digest (or empty)")

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
        if task is Task.EVALUATE:
            return evaluation.vector_size(self.evaluation or "", self.n_outputs)
        return tasks.vector_size(task, self.n_features, self.n_columns, self.n_outputs)

    def write_to(self, w: wire.Writer) -> None:
        """Append the plan's bytes: features, server step, flags, and what the flags announce.

        Flag bit 2 says a u32 row count follows, bit 3 a one-byte server optimizer
        (its index in ``OPTIMIZERS``), bit 4 a one-byte evaluation kind (its index in
        ``evaluation.KINDS``), bit 5 the clients' 32-byte plan digest: a plan
        without them keeps the bytes it had before they existed, and a reader that
        predates one refuses the plan's unknown flag. :meth:`read_from` reads it.
        """
        w.uint(self.n_features)
        w.float64(self.server_lr)
        rows = self.n_outputs > 1
        optimizer = self.server_optimizer != "avg"
        evaluates = self.evaluation is not None
        w.uint(
            int(self.standardize)
            | int(self.standardize_target) << 1
            | int(rows) << 2
            | int(optimizer) << 3
            | int(evaluates) << 4
            | int(bool(self.client_plan)) << 5,
            1,
        )
        if rows:
            w.uint(self.n_outputs, 4)
        if optimizer:
            w.uint(OPTIMIZERS.index(self.server_optimizer), 1)
        if evaluates:
            w.uint(evaluation.KINDS.index(self.evaluation), 1)
        if self.client_plan:
            w.raw(self.client_plan)

    @classmethod
    def read_from(cls, r: wire.Reader, what: str) -> RunPlan:
        """Read a plan :meth:`write_to` wrote.

        Raises
        ------
        MalformedMessage
            If the bytes are not a valid plan (``what`` names them in the message).
        """
        n_features, server_lr, flags = r.uint(), r.float64(), r.uint(1)
        if flags > 63:
            raise MalformedMessage(f"{what}: unknown plan flags {flags:#x}")
        n_outputs = r.uint(4) if flags & 4 else 1
        if flags & 4 and n_outputs == 1:
            raise MalformedMessage(f"{what}: a one-row plan written with a row count")
        optimizer = r.uint(1) if flags & 8 else 0
        kind = r.uint(1) if flags & 16 else None
        client_plan = bytes(r.raw(32)) if flags & 32 else b""
        if (flags & 8 and not 0 < optimizer < len(OPTIMIZERS)) or (
            kind is not None and kind >= len(evaluation.KINDS)
        ):
            raise MalformedMessage(f"{what}: unknown server optimizer or evaluation code")
        try:
            return cls(
                n_features,
                server_lr,
                bool(flags & 1),
                bool(flags & 2),
                n_outputs,
                OPTIMIZERS[optimizer],
                None if kind is None else evaluation.KINDS[kind],
                client_plan,
            )
        except ConfigurationError as exc:
            raise MalformedMessage(f"{what}: {exc}") from None


class GlobalModel:
    """The global state a run's releases determine: weights, standardisation, optimizer.

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
    optimizer : OptimizerState
        The server optimizer's moments (empty for ``avg``).
    evaluation : ndarray or None
        The last released evaluation (:mod:`he_fed.protocol.evaluation`).
    evaluated : bool
        Whether the current weights were evaluated: each model is evaluated at
        most once, so two evaluation releases never share a model (the
        differencing defence of the training rounds, kept for evaluation).
    """

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.weights = np.zeros(plan.n_weights)
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.prescale: np.ndarray | None = None
        self.optimizer = OptimizerState.initial(plan.server_optimizer, plan.n_weights)
        self.evaluation: np.ndarray | None = None
        self.evaluated = False

    def check_task(self, task: Task) -> None:
        """Raise unless ``task`` may be ticketed now.

        Raises
        ------
        PolicyViolation
            If a statistics task was already released, or the plan does not
            standardise (statistics are released once per federation, and only
            when needed); or an evaluation is asked of a plan without one, or of
            a model already evaluated.
        ProtocolError
            If a task comes before the one it depends on.
        """
        task = Task(task)
        if task in (Task.TRAIN, Task.EVALUATE):
            if task is Task.EVALUATE:
                if self.plan.evaluation is None:
                    raise PolicyViolation("this run does not evaluate; no evaluate round is run")
                if self.evaluated:
                    raise PolicyViolation("this model was evaluated; each model is evaluated once")
            if self.plan.standardize and self.center is None:
                what = "training" if task is Task.TRAIN else "evaluation"
                raise ProtocolError(f"standardisation statistics must be computed before {what}")
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
        if task in (Task.TRAIN, Task.EVALUATE):
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
            plan = self.plan
            weights, state = server_step(
                plan.server_optimizer, plan.server_lr, self.weights, mean, self.optimizer
            )
            if not np.all(np.abs(weights) < _DIVERGED):
                raise TrainingDiverged(
                    "the global model diverged; lower the learning rate or local epochs"
                )
            self.weights, self.optimizer, self.evaluated = weights, state, False
        elif task is Task.EVALUATE:
            self.evaluation, self.evaluated = np.array(mean, dtype=np.float64), True
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

    def write_to(self, w: wire.Writer) -> None:
        """Append the state's bytes (for the key holder's and the aggregator's saved state).

        Weights, then center, scale and pre-scale (each a presence byte and an
        array); then, only if the plan has them (so that other plans keep their
        bytes), the optimizer's two moments and the evaluation state.
        """
        w.array(self.weights)
        for part in (self.center, self.scale, self.prescale):
            w.uint(int(part is not None), 1)
            w.array(part if part is not None else np.empty(0))
        if self.plan.server_optimizer != "avg":
            w.array(self.optimizer.first)
            w.array(self.optimizer.second)
        if self.plan.evaluation is not None:
            w.uint(int(self.evaluated), 1)
            w.array(self.evaluation if self.evaluation is not None else np.empty(0))

    @classmethod
    def read_from(cls, r: wire.Reader, plan: RunPlan) -> GlobalModel:
        """Read a state :meth:`write_to` wrote under ``plan``.

        Raises
        ------
        MalformedMessage
            If the bytes do not fit the plan.
        """
        weights = r.array(plan.n_weights)  # checked against the bytes before anything is sized
        model = cls(plan)
        model.weights = weights
        parts = []
        for _ in range(3):
            present = r.uint(1)
            values = r.array()
            parts.append(values if present else None)
        model.center, model.scale, model.prescale = parts
        if plan.server_optimizer != "avg":
            initial = model.optimizer
            first = r.array(initial.first.size)
            second = r.array(initial.second.size)
            model.optimizer = OptimizerState(first, second)
        if plan.evaluation is not None:
            model.evaluated = bool(r.uint(1))
            values = r.array()
            if values.size not in (0, plan.vector_size(Task.EVALUATE)):
                raise MalformedMessage("saved evaluation of the wrong length")
            model.evaluation = values if values.size else None
        return model
