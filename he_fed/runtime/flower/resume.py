"""A Flower ServerApp that resumes its federation from a checkpoint directory.

Flower gives every ``flwr run`` (and every simulation) a new run id and each node
an empty node state, so a restarted ServerApp is a *new* run over the same
checkpoint. :class:`FlowerResumableRun` makes it continue the old one:

* **started** (no :data:`~he_fed.runtime.server_checkpoint.SERVER_FILE` in the
  directory): it connects as usual (the key-holder node generates its keys and
  registers the clients) and writes the ServerApp's checkpoint;
* **resumed**: it asks the key-holder node to reopen the federation in its
  ``state-file`` (``hefed_reopen``, :mod:`he_fed.runtime.flower.reopen`) instead
  of generating keys, sets up the client nodes again and checks that each comes
  back with the identity the key holder registered (client nodes keep it in
  their ``identity-file``), and restores the aggregator from the checkpoint.

Then it trains like :class:`~he_fed.runtime.resume.ResumableRun`: it journals
each round just before the aggregate goes to the key holder and records it once
applied. After a crash, a round the key holder released is completed from the
journal (shown the journaled aggregate again, the key holder's store hands back
the release it saved, undecrypted); any other round in flight is redone under
the next round id, whose ticket closes it, so it is never decrypted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from he_fed.exceptions import MalformedMessage, StateError
from he_fed.protocol import Task
from he_fed.protocol.aggregator import Aggregator
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime import checkpoint as files
from he_fed.runtime import server_checkpoint as serverstate
from he_fed.runtime._journaled import JournaledRun, check_checkpointable
from he_fed.runtime.federation import Federation, RoundOutcome
from he_fed.runtime.flower import records, rejoin
from he_fed.runtime.flower.server import FlowerExecutor, RemoteKeyHolder

__all__ = ["FlowerResumableRun", "reconnect"]

log = logging.getLogger("he_fed")


def reconnect(
    executor: FlowerExecutor, setup: FederationSetup, aggregator_state: bytes
) -> tuple[Federation, Mapping[str, Any]]:
    """The federation of a key holder's ``state-file``, reached in a new Flower run.

    Parameters
    ----------
    executor : FlowerExecutor
        The new run's executor.
    setup : FederationSetup
        The federation (as the run that started it gave it).
    aggregator_state : bytes
        The aggregator's state from the ServerApp's checkpoint.

    Returns
    -------
    federation : Federation
        With a :class:`RemoteKeyHolder` and :class:`RemoteClient` handles.
    reopened : mapping
        The key holder's answer (``last-round`` and ``released`` among it).

    Raises
    ------
    StateError
        If a client node comes back with another identity than the key holder
        registered, or the aggregator's state is of another key.
    HEFedError
        Whatever the key-holder node refused with.
    """
    executor.start()
    keyholder_node, client_nodes = executor._assign(len(setup.client_ids))
    reopened, _ = executor.ask(keyholder_node, records.REOPEN, records.keyholder_request(setup))
    public, aggregation = (
        records.blob(reopened, "public-key"),
        records.blob(reopened, "aggregation-key"),
    )
    ids, keys = records.texts(reopened, "client-ids"), records.blobs(reopened, "verify-keys")
    if len(ids) != len(keys):
        raise MalformedMessage("the key holder's registry needs one public key per client")
    registered = dict(zip(ids, keys, strict=True))
    try:
        aggregator = Aggregator.restore(
            aggregation, aggregator_state, allow_insecure=setup.plan.allow_insecure
        )
    except Exception as exc:  # KeyMismatchError, MalformedMessage
        raise StateError(f"the ServerApp's checkpoint does not fit the key holder: {exc}") from None
    if records.blob(reopened, "identity") != aggregator.keyholder:
        # Any node can say it is the key holder; the checkpoint pinned which one is.
        raise StateError(
            f"Flower node {keyholder_node} is not the key holder the ServerApp's checkpoint "
            "pinned: it answered with another identity"
        )
    identity = aggregator.keyholder
    if keyholder_node not in rejoin.proving(executor, [keyholder_node], identity):
        # Its identity is public; only the key holder can sign with it (red team 39).
        raise StateError(
            f"Flower node {keyholder_node} answered the reopen with the key holder's identity "
            "but cannot sign with it; it is not the key holder"
        )
    clients, identities = executor.connect_clients(setup, client_nodes, public, identity)
    for client_id, verify_key in identities.items():
        if registered.get(client_id) != verify_key:
            raise StateError(
                f"client {client_id!r} came back with another identity than the key "
                "holder registered; start each client node with its identity-file"
            )
    remote = RemoteKeyHolder(
        executor,
        keyholder_node,
        public,
        aggregation,
        aggregator=aggregator,
        min_clients=records.integer(reopened, "min-clients"),
        allow_insecure=setup.plan.allow_insecure,
    )
    return Federation(remote, aggregator, clients, executor), reopened


class FlowerResumableRun(JournaledRun):
    """A ServerApp's federation kept in a checkpoint directory: started there, or resumed.

    The interface is :class:`~he_fed.runtime.resume.ResumableRun`'s.

    Attributes
    ----------
    federation : Federation
        The federation, reached through the run's grid.
    history : list of dict
        The caller's record of each training round so far.
    resumed_from : int or None
        Training rounds already done when the run was resumed (None: a new run).
    """

    def __init__(
        self,
        directory: Path,
        federation: Federation,
        progress: files.Progress,
        resumed_from: int | None,
        *,
        journaled_released: bool = False,
    ) -> None:
        self.directory = directory
        self.federation = federation
        self._progress = progress
        self.history: list[dict[str, Any]] = list(progress.history)
        self.resumed_from = resumed_from
        self._journaled_released = journaled_released
        self._rng: np.random.Generator | None = None

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        run: str,
        setup: FederationSetup,
        executor: FlowerExecutor,
    ) -> FlowerResumableRun:
        """Resume the run checkpointed in ``directory``, or start it there.

        Raises
        ------
        ConfigurationError
            If the checkpoint would not keep part of ``setup``
            (:func:`~he_fed.runtime._journaled.check_checkpointable`).
        StateError
            If the checkpoint belongs to another run, is unreadable, or does not
            match the key holder's state (see :func:`serverstate.reconcile`).
        """
        check_checkpointable(setup)
        folder = Path(directory)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot use {folder} as a checkpoint: {exc.strerror}") from None
        if not (folder / serverstate.SERVER_FILE).exists():
            federation = executor.connect(setup)
            progress = files.Progress(
                run=run,
                generation=0,
                releases=0,
                round_done=-1,
                training_rounds=0,
                rng="",
                aggregator=federation.aggregator.export_state(),
                clients={},
            )
            serverstate.write(folder, progress)
            return cls(folder, federation, progress, None)
        progress = serverstate.read(folder)
        files.check_same_run(folder, progress.run, run)
        federation, reopened = reconnect(executor, setup, progress.aggregator)
        released = records.integers(reopened, "released")
        journaled = serverstate.reconcile(
            progress, records.integer(reopened, "last-round"), released
        )
        federation.training_rounds = progress.training_rounds
        federation.setup_outcomes = [files.outcome_from_dict(o) for o in progress.statistics]
        federation.stopped = progress.stopped or None
        return cls(
            folder, federation, progress, progress.training_rounds, journaled_released=journaled
        )

    def close(self) -> None:
        """Nothing to release: every save is done when a round ends."""

    def __enter__(self) -> FlowerResumableRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _save(self, round_done: int) -> None:
        federation = self.federation
        assert self._rng is not None
        self._progress = files.Progress(
            run=self._progress.run,
            generation=0,
            releases=0,
            round_done=round_done,
            training_rounds=federation.training_rounds,
            rng=json.dumps(self._rng.bit_generator.state),
            aggregator=federation.aggregator.export_state(),
            clients={},
            statistics=[files.outcome_to_dict(o) for o in federation.setup_outcomes],
            history=list(self.history),
            stopped=federation.stopped or "",
        )
        serverstate.write(self.directory, self._progress)

    def _journal(self, outcome: RoundOutcome, aggregate: bytes) -> None:
        """Journal the round before its aggregate goes to the key holder."""
        assert self._rng is not None
        # The aggregator's state now has the round open, with the model it started from.
        progress = dataclasses.replace(
            self._progress,
            aggregator=self.federation.aggregator.export_state(),
            pending=files.Pending(
                outcome=files.outcome_to_dict(outcome),
                aggregate=aggregate,
                rng=json.dumps(self._rng.bit_generator.state),
                training_rounds=self.federation.training_rounds,
                clients={},
            ),
        )
        serverstate.write(self.directory, progress)

    def _complete_journaled(self, on_round: Callable[[RoundOutcome], dict[str, Any]]) -> None:
        """Finish the round the key holder released before the ServerApp stopped."""
        if not self._journaled_released:
            return
        pending = self._progress.pending
        assert pending is not None and self._rng is not None
        federation = self.federation
        outcome = files.outcome_from_dict(pending.outcome)
        # The aggregator was restored with the round open (the journal's state); the
        # key holder answers the journaled aggregate with the release it saved.
        federation.aggregator.apply(federation.keyholder.decrypt_aggregate(pending.aggregate))
        log.info("round %d: completed from the journal after a restart", outcome.round)
        self._rng.bit_generator.state = json.loads(pending.rng)
        federation.training_rounds = pending.training_rounds
        if outcome.task is Task.TRAIN:
            self.history.append(on_round(outcome))
        else:
            federation.setup_outcomes.append(outcome)
        self._save(outcome.round)
