"""Executors: where clients run. They move bytes and call role methods, nothing else.

* :class:`InProcessExecutor` (``"inprocess"``, the default): every client here, in
  order. Deterministic.
* :class:`ProcessesExecutor` (``"processes"``): clients' training and encryption in
  a pool of spawned worker processes, with identical results.
* ``"flower"``: Flower ClientApps on SuperNodes, simulated or deployed
  (:mod:`he_fed.runtime.flower`, ``pip install "he-fed[flower]"``). Importing this
  package does not import Flower.

:class:`Federation` is the round driver: it wires the three roles of
:mod:`he_fed.protocol` together and runs rounds through an executor.
:func:`run_federation` runs a federation on any executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from he_fed import _lazy

if TYPE_CHECKING:
    from he_fed.runtime.base import ClientHandle, ClientResult, Executor
    from he_fed.runtime.council import LocalCouncil
    from he_fed.runtime.federation import PHASES, Federation, KeyHolderRole, RoundOutcome
    from he_fed.runtime.inprocess import InProcessExecutor
    from he_fed.runtime.launch import EXECUTORS, make_executor, run_federation
    from he_fed.runtime.processes import ProcessesExecutor

__all__ = [
    "EXECUTORS",
    "PHASES",
    "ClientHandle",
    "ClientResult",
    "Executor",
    "Federation",
    "InProcessExecutor",
    "KeyHolderRole",
    "LocalCouncil",
    "ProcessesExecutor",
    "RoundOutcome",
    "make_executor",
    "run_federation",
]

__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "he_fed.runtime.base": (
            "ClientHandle",
            "ClientResult",
            "Executor",
        ),
        "he_fed.runtime.council": ("LocalCouncil",),
        "he_fed.runtime.federation": (
            "PHASES",
            "Federation",
            "KeyHolderRole",
            "RoundOutcome",
        ),
        "he_fed.runtime.inprocess": ("InProcessExecutor",),
        "he_fed.runtime.launch": (
            "EXECUTORS",
            "make_executor",
            "run_federation",
        ),
        "he_fed.runtime.processes": ("ProcessesExecutor",),
    },
)
