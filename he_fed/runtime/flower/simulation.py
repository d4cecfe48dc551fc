"""Running a federation on Flower's simulation engine, in this process.

:func:`simulate` starts ``K + 1`` virtual SuperNodes with
``flwr.simulation.run_simulation`` (Ray backend): nodes ``0 .. K-1`` are the
clients, each reading only its own partition (from ``.npy`` files in a temporary
folder), and node ``K`` is the key holder; with threshold decryption (``t/n``)
nodes ``K .. K+n-1`` are the ``n`` share holders instead
(:mod:`he_fed.runtime.flower.council`). The
function given runs inside the ServerApp, against a federation whose key holder
and clients are reached through Flower messages only, exactly as in a deployment.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from he_fed.exceptions import ConfigurationError, ExecutorError
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime.federation import Federation
from he_fed.runtime.flower.nodes import NodeFiles, make_client_app
from he_fed.runtime.flower.server import FlowerExecutor
from he_fed.runtime.processes import default_workers

__all__ = ["simulate", "simulate_with"]

_T = TypeVar("_T")


@lru_cache(maxsize=2)
def _arrays(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """The simulation's stacked features and targets, mapped once per process."""
    X = np.load(Path(folder) / "X.npy", mmap_mode="r", allow_pickle=False)
    y = np.load(Path(folder) / "y.npy", mmap_mode="r", allow_pickle=False)
    return X, y


class _Partitions:
    """Each virtual node's data, by its partition id, read from ``.npy`` files.

    Flower's Ray backend ships the ClientApp with every message, so the ClientApp
    must stay small: it carries this folder's path and the row offsets, not the
    data. The files are plain ``.npy`` arrays, written and read without pickle.
    """

    def __init__(self, folder: Path, offsets: tuple[int, ...]) -> None:
        self.folder = str(folder)
        self.offsets = offsets

    @classmethod
    def write(
        cls, folder: Path, partitions: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> _Partitions:
        """Stack the partitions into ``folder``.

        Raises
        ------
        ConfigurationError
            If the targets are Python objects, which ``.npy`` cannot hold without pickle.
        """
        ys = [np.asarray(y) for _, y in partitions]
        if any(y.dtype == object for y in ys):
            raise ConfigurationError(
                "the flower simulation needs numeric or string targets, not Python objects"
            )
        np.save(
            folder / "X.npy",
            np.concatenate([np.asarray(X) for X, _ in partitions]),
            allow_pickle=False,
        )
        np.save(folder / "y.npy", np.concatenate(ys), allow_pickle=False)
        sizes = [len(y) for y in ys]
        return cls(folder, tuple(int(v) for v in np.concatenate([[0], np.cumsum(sizes)])))

    def __call__(self, context: Context) -> tuple[np.ndarray, np.ndarray]:
        k = int(context.node_config["partition-id"])  # type: ignore[arg-type]
        X, y = _arrays(self.folder)
        start, stop = self.offsets[k], self.offsets[k + 1]
        return np.array(X[start:stop]), np.array(y[start:stop])


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
    return simulate_with(
        partitions,
        lambda executor: body(executor.connect(setup)),
        workers=workers,
        verbose=verbose,
        holders=1 if setup.threshold is None else setup.threshold[1],
    )


def simulate_with(
    partitions: Sequence[tuple[np.ndarray, np.ndarray]],
    drive: Callable[[FlowerExecutor], _T],
    *,
    workers: int | None = None,
    verbose: bool = False,
    node_files: NodeFiles | None = None,
    holders: int = 1,
) -> _T:
    """Run ``drive(executor)`` in a simulated ServerApp, over ``len(partitions) + holders`` nodes.

    :func:`simulate` with the federation left to ``drive`` to build (connect, or
    reopen a checkpointed one: :mod:`he_fed.runtime.flower.resume`), and
    ``node_files`` added to the virtual nodes' node config. ``holders`` is 1 (the
    key holder) or, with threshold decryption, the number of share holders.
    """
    n_clients = len(partitions)
    cores = workers or default_workers()
    outcome: list[_T] = []
    server = ServerApp()

    started = time.perf_counter()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        executor = FlowerExecutor(grid, nodes=n_clients + holders)
        executor.start()
        # Start-up as the caller sees it: Ray, the virtual nodes, and their roles.
        executor.startup_s = time.perf_counter() - started
        # What run_federation does with an executor object, without importing it:
        # launch imports this module to run the "flower" executor name.
        try:
            outcome.append(drive(executor))
        finally:
            executor.close()

    backend: dict[str, Any] = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cores, "include_dashboard": False},
    }
    with tempfile.TemporaryDirectory(prefix="he-fed-simulation-") as folder, _quiet(verbose):
        data = _Partitions.write(Path(folder), partitions)
        run_simulation(
            server_app=server,
            client_app=make_client_app(data, node_files),
            num_supernodes=n_clients + holders,
            backend_config=backend,  # type: ignore[arg-type]
            verbose_logging=verbose,
        )
    if not outcome:
        raise ExecutorError("the Flower simulation ended without a result")
    return outcome[0]
