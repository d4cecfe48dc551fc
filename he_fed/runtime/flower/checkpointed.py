"""Checkpointed runs on Flower: ``he-fed run --executor flower --checkpoint DIR``.

:func:`run_checkpointed` is :func:`~he_fed.runtime.resume.run_resumable` for the
Flower executor:

* given a :class:`~he_fed.runtime.flower.FlowerExecutor` (a deployed ServerApp,
  run config ``checkpoint``), the ServerApp keeps its own checkpoint in the
  directory (:mod:`he_fed.runtime.server_checkpoint`); the key-holder node
  keeps its state in its own ``state-file`` and the client nodes their
  identities in their ``identity-file``, as their operators started them;
* given ``"flower"`` (a simulation, whose nodes all belong to the person running
  it), the directory also holds what those operators would provision, made at
  the first start (:class:`SimulatedNodeFiles`): the key-holder node's secret
  key, identity, policy and state file under ``keyholder/``, and each client
  node's identity under ``clients/``. Every simulation is a new Flower run with
  fresh node states; the virtual nodes find their files through their node
  config, exactly as deployed nodes do.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from flwr.app import Context

from he_fed._files import write_atomic
from he_fed.exceptions import StateError
from he_fed.protocol.receipts import Identity
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime import server_checkpoint as serverstate
from he_fed.runtime.flower.policy import KeyHolderPolicy
from he_fed.runtime.flower.resume import FlowerResumableRun
from he_fed.runtime.flower.server import FlowerExecutor
from he_fed.runtime.flower.simulation import simulate_with

__all__ = ["SimulatedNodeFiles", "run_checkpointed"]

_T = TypeVar("_T")


class SimulatedNodeFiles:
    """The node-config files of a checkpointed simulation's virtual nodes.

    The key-holder node (partition id ``n_clients``) gets ``state-file``,
    ``secret-key-file``, ``identity-file`` and ``policy-file``; client node ``K``
    gets ``identity-file``. Small and picklable: Flower's Ray backend ships it
    with every message.
    """

    def __init__(self, folder: Path, n_clients: int) -> None:
        self.folder = str(folder)
        self.n_clients = n_clients

    @property
    def keyholder(self) -> dict[str, str]:
        """The key-holder node's file entries."""
        base = Path(self.folder) / "keyholder"
        return {
            "state-file": str(base / "keyholder.state"),
            "secret-key-file": str(base / "secret.key"),
            "identity-file": str(base / "identity"),
            "policy-file": str(base / "policy.json"),
        }

    def client(self, index: int) -> dict[str, str]:
        """Client node ``index``'s file entries."""
        return {"identity-file": str(Path(self.folder) / "clients" / f"{index}.identity")}

    def __call__(self, context: Context) -> Mapping[str, Any]:
        partition = int(context.node_config.get("partition-id", -1))  # type: ignore[arg-type]
        if partition == self.n_clients:
            return self.keyholder
        return self.client(partition) if 0 <= partition < self.n_clients else {}

    def provision(self, setup: FederationSetup) -> None:
        """Write the files a new run's nodes start with (SECRET: mode 0600).

        A key-holder state left by a run that stopped before the ServerApp wrote
        its checkpoint (during setup, before any ticket) is removed: no round was
        ever run under it.
        """
        keyholder = self.keyholder
        for path in (Path(keyholder["state-file"]).parent, Path(self.folder) / "clients"):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for suffix in ("", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(keyholder["state-file"] + suffix)
        keys = setup.scheme.keygen()
        write_atomic(Path(keyholder["secret-key-file"]), keys.secret.to_bytes(), mode=0o600)
        identity = Identity().private_bytes().hex().encode()
        write_atomic(Path(keyholder["identity-file"]), identity, mode=0o600)
        policy = KeyHolderPolicy(
            setup.scheme, setup.run_plan, setup.min_clients, trust_on_first_use=True
        )
        policy.write(keyholder["policy-file"])
        for index in range(self.n_clients):
            own = Identity().private_bytes().hex().encode()
            write_atomic(Path(self.client(index)["identity-file"]), own, mode=0o600)


def run_checkpointed(
    directory: str | os.PathLike[str],
    run: str,
    executor: str | FlowerExecutor,
    setup: FederationSetup,
    partitions: Sequence[tuple[np.ndarray, np.ndarray]],
    body: Callable[[FlowerResumableRun], _T],
    *,
    workers: int | None = None,
) -> _T:
    """``body(run)`` on a Flower federation checkpointed in ``directory``.

    Parameters
    ----------
    directory : path-like
        The checkpoint directory.
    run : str
        The run's description; a checkpoint of another is refused.
    executor : "flower" or FlowerExecutor
        A simulation, or the deployed ServerApp's executor.
    setup, partitions
        The federation and (for a simulation) its clients' data.
    body : callable
        What to do with the run (``run.train(...)``).
    workers : int, optional
        Simulation actors.

    Raises
    ------
    StateError
        If the checkpoint belongs to another run or does not match the nodes' state.
    """
    folder = Path(directory)
    if isinstance(executor, FlowerExecutor):
        return body(FlowerResumableRun.open(folder, run, setup, executor))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot use {folder} as a checkpoint: {exc.strerror}") from None
    files = SimulatedNodeFiles(folder.resolve(), len(partitions))
    progress = serverstate.peek(folder) if (folder / serverstate.SERVER_FILE).exists() else None
    if progress is None:
        leftovers = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
        if not leftovers <= {"keyholder", "clients"}:
            raise StateError(
                f"{folder} holds other files and no ServerApp checkpoint: it is not a "
                "checkpoint he-fed can resume; give an empty or new directory"
            )
        files.provision(setup)

    def drive(flower: FlowerExecutor) -> _T:
        with FlowerResumableRun.open(folder, run, setup, flower) as resumable:
            return body(resumable)

    return simulate_with(partitions, drive, workers=workers, node_files=files)
