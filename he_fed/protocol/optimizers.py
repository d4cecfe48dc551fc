"""Server optimizers: how a released mean update moves the global model.

The key holder computes every ticket's model itself from the public
:class:`~he_fed.protocol.model.RunPlan` and the aggregates it released, and the
aggregator checks each ticket against the same computation. So a server optimizer
must be a pure function of the plan (its name and ``server_lr``; the other
hyperparameters are the constants below) and of the released means, in order.
Its state (momentum, second moment) is kept beside the weights in
:class:`~he_fed.protocol.model.GlobalModel` and in both roles' saved state.

* ``avg``: FedAvg, ``w <- w + lr · Δ``.
* ``avgm``: FedAvgM (Hsu et al., 2019), server momentum ``m <- β · m + Δ``,
  ``w <- w + lr · m``.
* ``adam`` and ``yogi``: FedAdam and FedYogi (Reddi et al., "Adaptive Federated
  Optimization", ICLR 2021, Algorithm 2): ``m <- β1 · m + (1 - β1) · Δ``; the
  second moment ``v <- β2 · v + (1 - β2) · Δ²`` (Adam) or
  ``v <- v - (1 - β2) · Δ² · sign(v - Δ²)`` (Yogi); ``w <- w + lr · m / (√v + τ)``,
  with ``v`` starting at ``τ²`` as in the paper.

Δ is the released mean of the clients' updates (``new local weights - global
weights``), already a descent direction, so every rule adds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ADAM_BETAS",
    "MOMENTUM",
    "OPTIMIZERS",
    "TAU",
    "OptimizerState",
    "server_step",
]

#: The server optimizers by name, in the order their code is written in a plan.
OPTIMIZERS = ("avg", "avgm", "adam", "yogi")
#: FedAvgM's server momentum.
MOMENTUM = 0.9
#: FedAdam's and FedYogi's ``(β1, β2)``, the paper's defaults.
ADAM_BETAS = (0.9, 0.99)
#: FedAdam's and FedYogi's adaptivity ``τ`` (the paper's grid spans 1e-5 to 1e-1).
TAU = 1e-3


@dataclass(frozen=True, eq=False)
class OptimizerState:
    """The server optimizer's memory: first and second moments.

    Attributes
    ----------
    first : ndarray of shape (n_weights,)
        Momentum (``avgm``) or first moment (``adam``, ``yogi``); empty for ``avg``.
    second : ndarray of shape (n_weights,)
        Second moment (``adam``, ``yogi``); empty otherwise.
    """

    first: np.ndarray
    second: np.ndarray

    @classmethod
    def initial(cls, name: str, n_weights: int) -> OptimizerState:
        """The state before the first release."""
        empty = np.empty(0)
        if name == "avg":
            return cls(empty, empty)
        if name == "avgm":
            return cls(np.zeros(n_weights), empty)
        return cls(np.zeros(n_weights), np.full(n_weights, TAU * TAU))


def server_step(
    name: str, lr: float, weights: np.ndarray, delta: np.ndarray, state: OptimizerState
) -> tuple[np.ndarray, OptimizerState]:
    """The weights and state after applying the released mean update ``delta``.

    Parameters
    ----------
    name : {"avg", "avgm", "adam", "yogi"}
        The plan's server optimizer.
    lr : float
        The plan's server step.
    weights : ndarray of shape (n_weights,)
        The global weights before the step.
    delta : ndarray of shape (n_weights,)
        The released mean update.
    state : OptimizerState
        The state before the step (:meth:`OptimizerState.initial` at first).

    Returns
    -------
    (ndarray, OptimizerState)
        New weights and state; the inputs are not modified.
    """
    if name == "avg":
        return weights + lr * delta, state
    if name == "avgm":
        first = MOMENTUM * state.first + delta
        return weights + lr * first, OptimizerState(first, state.second)
    beta1, beta2 = ADAM_BETAS
    first = beta1 * state.first + (1 - beta1) * delta
    square = delta * delta
    if name == "adam":
        second = beta2 * state.second + (1 - beta2) * square
    elif name == "yogi":
        second = state.second - (1 - beta2) * square * np.sign(state.second - square)
    else:
        raise ValueError(f"unknown server optimizer {name!r}")
    return weights + lr * first / (np.sqrt(second) + TAU), OptimizerState(first, second)
