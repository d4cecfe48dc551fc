"""Choosing an executor by name, and running a federation on it from start to end.

The estimators and ``he-fed run`` describe a federation (a
:class:`~he_fed.protocol.spec.FederationSetup` and the clients' data) and say what
to do with it (a function of the :class:`~he_fed.runtime.Federation`);
:func:`run_federation` builds the federation where the executor says and tears
it down afterwards:

* ``"inprocess"`` and ``"processes"``: all three roles are built here; the
  clients' side of each round runs here or in worker processes.
* ``"flower"``: Flower's simulation engine starts one virtual SuperNode per
  client plus one for the key holder, and the function runs inside the ServerApp
  (see :mod:`he_fed.runtime.flower`). Needs ``pip install "he-fed[flower]"``.
* an executor object with a ``connect`` method (a
  :class:`~he_fed.runtime.flower.FlowerExecutor` inside a ServerApp) builds the
  federation from remote parties.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from he_fed.exceptions import ConfigurationError
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime.base import Executor
from he_fed.runtime.federation import Federation
from he_fed.runtime.inprocess import InProcessExecutor
from he_fed.runtime.processes import ProcessesExecutor

__all__ = ["EXECUTORS", "make_executor", "run_federation"]

#: Executor names, for ``executor=`` and ``he-fed run --executor``.
EXECUTORS = ("inprocess", "processes", "flower")

_T = TypeVar("_T")


def make_executor(name: str, *, workers: int | None = None) -> Executor:
    """The ``inprocess`` or ``processes`` executor by name.

    ``flower`` is not made here: it exists only inside a Flower ServerApp (see
    :func:`run_federation`).

    Raises
    ------
    ConfigurationError
        If the name is unknown, or is ``flower``.
    """
    if name == "inprocess":
        return InProcessExecutor()
    if name == "processes":
        return ProcessesExecutor(workers)
    if name == "flower":
        raise ConfigurationError(
            "the flower executor is created by a ServerApp; use run_federation"
        )
    raise ConfigurationError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


def _simulate(
    setup: FederationSetup,
    partitions: Sequence[tuple[np.ndarray, np.ndarray]],
    body: Callable[[Federation], _T],
    workers: int | None,
) -> _T:
    try:
        from he_fed.runtime.flower.simulation import simulate
    except ImportError as exc:
        raise ConfigurationError(
            f'the flower executor needs Flower: pip install "he-fed[flower]" ({exc})'
        ) from None
    return simulate(setup, partitions, body, workers=workers)


def run_federation(
    executor: str | Executor,
    setup: FederationSetup,
    partitions: Sequence[tuple[np.ndarray, np.ndarray]],
    body: Callable[[Federation], _T],
    *,
    workers: int | None = None,
) -> _T:
    """Build the federation on ``executor``, return ``body(federation)``, release everything.

    Parameters
    ----------
    executor : str or Executor
        ``"inprocess"``, ``"processes"``, ``"flower"``, or an executor object.
        An object is closed afterwards (a :class:`ProcessesExecutor` starts its
        pool again if reused).
    setup : FederationSetup
        The federation.
    partitions : sequence of (X_k, y_k)
        The clients' data, in the order of ``setup.client_ids``. A remote
        executor ignores it: its clients load their own.
    body : callable
        What to do with the federation, e.g. train it.
    workers : int, optional
        Worker processes (``processes``) or simulation actors (``flower``);
        default all cores.

    Returns
    -------
    Whatever ``body`` returns.
    """
    if isinstance(executor, str):
        if executor == "flower":
            return _simulate(setup, partitions, body, workers)
        executor = make_executor(executor, workers=workers)
    try:
        executor.start()
        connect = getattr(executor, "connect", None)
        if connect is not None:
            federation: Federation = connect(setup)
        else:
            federation = Federation.from_setup(setup, partitions, executor=executor)
        return body(federation)
    finally:
        executor.close()
