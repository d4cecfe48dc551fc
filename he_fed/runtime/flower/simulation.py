"""Running a federation on Flower's simulation engine, in this process.

:func:`simulate` starts ``K + 1`` virtual SuperNodes with
``flwr.simulation.run_simulation`` (Ray backend): nodes ``0 .. K-1`` are the
clients, each holding its own partition, and node ``K`` is the key holder. The
function given runs inside the ServerApp, against a federation whose key holder
and clients are reached through Flower messages only, exactly as in a deployment.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from he_fed.exceptions import ExecutorError
from he_fed.protocol.federation import Federation
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime.flower.nodes import make_client_app
from he_fed.runtime.flower.server import FlowerExecutor
from he_fed.runtime.launch import run_federation
from he_fed.runtime.processes import default_workers

__all__ = ["simulate"]

_T = TypeVar("_T")


class _Partitions:
    """Each virtual node's data, by its partition id (held by the ClientApp)."""

    def __init__(self, partitions: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self._data = tuple((np.asarray(X), np.asarray(y)) for X, y in partitions)

    def __call__(self, context: Context) -> tuple[np.ndarray, np.ndarray]:
        return self._data[int(context.node_config["partition-id"])]  # type: ignore[arg-type]


@contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Keep Flower's per-message log lines and Ray's start-up tips out of he-fed's output.

    Flower also logs that ``run_simulation`` is deprecated in favour of ``flwr
    run``; the shipped app (:mod:`he_fed.runtime.flower.app`) supports both.
    """
    logger = logging.getLogger("flwr")
    level = logger.level
    with warnings.catch_warnings():
        if not verbose:
            logger.setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray\.")
        try:
            yield
        finally:
            logger.setLevel(level)


def simulate(
    setup: FederationSetup,
    partitions: Sequence[tuple[np.ndarray, np.ndarray]],
    body: Callable[[Federation], _T],
    *,
    workers: int | None = None,
    verbose: bool = False,
) -> _T:
    """Run ``body`` on a federation simulated with Flower; return what it returns.

    Parameters
    ----------
    setup : FederationSetup
        The federation.
    partitions : sequence of (X_k, y_k)
        The clients' data, in the order of ``setup.client_ids``. Each virtual
        client node holds only its own.
    body : callable
        What to do with the federation; it runs in the ServerApp.
    workers : int, optional
        Ray actors running ClientApps concurrently (default: all cores).
    verbose : bool, default=False
        Show Flower's INFO log.

    Raises
    ------
    HEFedError
        Whatever the protocol raised in the ServerApp.
    ExecutorError
        If the simulation ended without a result.
    """
    n_clients = len(partitions)
    cores = workers or default_workers()
    outcome: list[_T] = []
    server = ServerApp()

    started = time.perf_counter()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        executor = FlowerExecutor(grid, nodes=n_clients + 1)
        executor.start()
        # Start-up as the caller sees it: Ray, the virtual nodes, and their roles.
        executor.startup_s = time.perf_counter() - started
        outcome.append(run_federation(executor, setup, partitions, body))

    backend: dict[str, Any] = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cores, "include_dashboard": False},
    }
    with _quiet(verbose):
        run_simulation(
            server_app=server,
            client_app=make_client_app(_Partitions(partitions)),
            num_supernodes=n_clients + 1,
            backend_config=backend,  # type: ignore[arg-type]
            verbose_logging=verbose,
        )
    if not outcome:
        raise ExecutorError("the Flower simulation ended without a result")
    return outcome[0]
