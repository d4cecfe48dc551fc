"""Resumable runs: a federation whose progress survives a crash (``--checkpoint DIR``).

:class:`ResumableRun` builds a federation from a checkpoint directory (the files
are described in :mod:`he_fed.runtime.checkpoint`), new or resumed, and trains it
with the same rounds, in the same order, as :meth:`Federation.train
<he_fed.runtime.federation.Federation.train>`, saving after each one:

1. the key holder saves its state before each ticket and release leaves (its
   :class:`~he_fed.runtime.keyholder_store.KeyHolderStore`);
2. just before the aggregate goes to the key holder, the round is journaled in
   the progress file (:class:`~he_fed.runtime.checkpoint.Pending`);
3. once the round is applied, the progress file records it and drops the journal.

A run killed anywhere restarts from the files:

* **a round ticketed but not released** (the store holds a newer ticket, or the
  journal while the store did not move) is redone under the next round id: the
  key holder never decrypts it, and its next ticket closes it;
* **a round released but not recorded** (the store moved once past the journal) is
  completed from the journal: shown the journaled aggregate again, the store
  hands back the very release it saved, without decrypting;
* **anything else** (the store older than the progress, or more than one save
  ahead of it; an edited file; another run's description) is refused with a
  :class:`~he_fed.exceptions.StateError`.

Every round's client training depends only on the model its ticket carries, the
dropout draws come from a generator whose state is saved, and Paillier sums
decrypt exactly, so a resumed run ends with the uninterrupted run's coefficients
bit for bit (CKKS: within its tolerance).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from he_fed._files import write_atomic
from he_fed.crypto import PublicKey
from he_fed.exceptions import ConfigurationError, PolicyViolation, StateError
from he_fed.protocol.aggregator import Aggregator
from he_fed.protocol.client import Client
from he_fed.protocol.messages import Task
from he_fed.protocol.receipts import Identity
from he_fed.protocol.setup import build_aggregator, build_client
from he_fed.protocol.spec import ClientSpec, FederationSetup
from he_fed.runtime import checkpoint as files
from he_fed.runtime._journaled import JournaledRun, check_checkpointable
from he_fed.runtime.base import Executor
from he_fed.runtime.federation import Federation, RoundOutcome
from he_fed.runtime.keyholder_store import KeyHolderStore
from he_fed.runtime.launch import make_executor

__all__ = ["ResumableRun", "check_checkpointable", "run_resumable"]

log = logging.getLogger("he_fed")

_T = TypeVar("_T")


class _StoredKeyHolder:
    """The key holder role, acting through its store (saved before anything leaves)."""

    def __init__(self, store: KeyHolderStore) -> None:
        self._store = store

    @property
    def min_clients(self) -> int:
        return self._store.keyholder.min_clients

    @property
    def identity_bytes(self) -> bytes:
        return self._store.keyholder.identity_bytes

    @property
    def public_key(self) -> PublicKey:
        return self._store.keyholder.public_key

    def public_key_bytes(self) -> bytes:
        return self._store.keyholder.public_key_bytes()

    def aggregation_key_bytes(self) -> bytes:
        return self._store.keyholder.aggregation_key_bytes()

    def start_round(self, task: Task) -> bytes:
        return self._store.start_round(task)

    def decrypt_aggregate(self, data: bytes) -> bytes:
        return self._store.decrypt_aggregate(data)


def _clients_state(clients: Sequence[Any]) -> dict[str, tuple[int, int]]:
    return {c.client_id: (c.last_round, c.phase) for c in clients}


class ResumableRun(JournaledRun):
    """A federation kept in a checkpoint directory: started there, or resumed from it.

    Use :meth:`open`, then :meth:`train`, then :meth:`close` (or a ``with`` block).

    Attributes
    ----------
    federation : Federation
        The federation, with every role restored.
    history : list of dict
        The caller's record of each training round so far (``on_round``'s results).
    resumed_from : int or None
        Training rounds already done when the run was resumed (None: a new run).
    """

    def __init__(
        self,
        directory: Path,
        federation: Federation,
        store: KeyHolderStore,
        secrets: files.RunSecrets,
        progress: files.Progress,
        resumed_from: int | None,
    ) -> None:
        self.directory = directory
        self.federation = federation
        self._store = store
        self._secrets = secrets
        self._progress = progress
        self.history: list[dict[str, Any]] = list(progress.history)
        self.resumed_from = resumed_from
        self._rng: np.random.Generator | None = None

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        run: str,
        setup: FederationSetup,
        partitions: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        executor: Executor,
    ) -> ResumableRun:
        """Resume the run checkpointed in ``directory``, or start it there.

        Parameters
        ----------
        directory : path-like
            The checkpoint directory (made if missing; a new run needs it empty).
        run : str
            The run's description (:func:`~he_fed.runtime.checkpoint.describe_run`);
            a checkpoint of another description is refused.
        setup, partitions
            The federation and its clients' data, as for
            :meth:`Federation.from_setup`.
        executor : Executor
            Where the clients run (``inprocess`` or ``processes``).

        Raises
        ------
        ConfigurationError
            If the checkpoint would not keep part of ``setup`` (:func:`check_checkpointable`).
        StateError
            If the checkpoint belongs to another run, does not verify, is
            incomplete or was rolled back.
        """
        check_checkpointable(setup)
        folder = Path(directory)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot use {folder} as a checkpoint: {exc.strerror}") from None
        if not (folder / files.PROGRESS_FILE).exists():
            return cls._start(folder, run, setup, partitions, executor)
        return cls._resume(folder, run, setup, partitions, executor)

    @classmethod
    def _start(
        cls,
        folder: Path,
        run: str,
        setup: FederationSetup,
        partitions: Sequence[tuple[np.ndarray, np.ndarray]],
        executor: Executor,
    ) -> ResumableRun:
        # Without a progress file no round ever started (the first is written before
        # the first ticket): what a crash during setup left may be replaced.
        setup_files = {files.SECRETS_FILE, files.STATE_FILE, files.STATE_FILE + ".lock"}
        leftovers = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if not set(leftovers) <= setup_files:
            raise StateError(
                f"{folder} holds other files and no progress: it is not a "
                "checkpoint he-fed can resume; give an empty or new directory"
            )
        if len(partitions) != len(setup.client_ids):
            raise ConfigurationError(
                f"{len(partitions)} partitions for {len(setup.client_ids)} client ids"
            )
        t0 = time.perf_counter()
        keys = setup.scheme.keygen()
        keygen_s = time.perf_counter() - t0
        secrets = files.RunSecrets(keys, Identity(), {c: Identity() for c in setup.client_ids})
        _write_secrets(folder, secrets)
        store = KeyHolderStore.create(
            folder / files.STATE_FILE,
            keys,
            secrets.identity,
            plan=setup.run_plan,
            clients={c: i.public_bytes for c, i in secrets.clients.items()},
            min_clients=setup.min_clients,
            force=True,  # the folder held no progress: no run was ever started here
        )
        try:
            keyholder = _StoredKeyHolder(store)
            aggregator = build_aggregator(
                keyholder.aggregation_key_bytes(), keyholder.identity_bytes, setup
            )
            for client_id, identity in secrets.clients.items():
                aggregator.register(client_id, identity.public_bytes)
            clients = _clients(setup, partitions, keyholder, secrets, {})
            federation = Federation(keyholder, aggregator, clients, executor, keygen_s)
            progress = files.Progress(
                run=run,
                generation=store.generation,
                releases=0,
                round_done=-1,
                training_rounds=0,
                rng="",  # train() seeds the generator, and saves its state after each round
                aggregator=aggregator.export_state(),
                clients=_clients_state(clients),
            )
            files.write_progress(folder, progress, secrets)
        except BaseException:
            store.close()
            raise
        return cls(folder, federation, store, secrets, progress, None)

    @classmethod
    def _resume(
        cls,
        folder: Path,
        run: str,
        setup: FederationSetup,
        partitions: Sequence[tuple[np.ndarray, np.ndarray]],
        executor: Executor,
    ) -> ResumableRun:
        seen = files.peek_progress(folder)
        if seen is not None:  # say which parameter differs before any key is loaded
            files.check_same_run(folder, seen.run, run)
        secrets = files.read_secrets(folder, allow_insecure=setup.plan.allow_insecure)
        progress = files.read_progress(folder, secrets)
        files.check_same_run(folder, progress.run, run)
        store = KeyHolderStore.open(folder / files.STATE_FILE, secrets.keys, secrets.identity)
        try:
            files.check_in_step(folder, store, progress)
            registered = store.keyholder.registered_clients()
            if registered != {c: i.public_bytes for c, i in secrets.clients.items()}:
                raise StateError(f"the checkpoint in {folder}: its clients are not the registry's")
            keyholder = _StoredKeyHolder(store)
            aggregator = Aggregator.restore(
                keyholder.aggregation_key_bytes(),
                progress.aggregator,
                allow_insecure=setup.plan.allow_insecure,
            )
            clients = _clients(setup, partitions, keyholder, secrets, progress.clients)
            federation = Federation(keyholder, aggregator, clients, executor)
            federation.training_rounds = progress.training_rounds
            federation.setup_outcomes = [files.outcome_from_dict(o) for o in progress.statistics]
            federation.stopped = progress.stopped or None
        except BaseException:
            store.close()
            raise
        return cls(folder, federation, store, secrets, progress, progress.training_rounds)

    def close(self) -> None:
        """Release the key holder state's lock (everything is saved already)."""
        self._store.close()

    def __enter__(self) -> ResumableRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- training ------------------------------------------------------------------

    # -- saving --------------------------------------------------------------------

    def _snapshot(self, round_done: int) -> files.Progress:
        federation = self.federation
        assert self._rng is not None
        return files.Progress(
            run=self._progress.run,
            generation=self._store.generation,
            releases=len(self._store.releases),
            round_done=round_done,
            training_rounds=federation.training_rounds,
            rng=json.dumps(self._rng.bit_generator.state),
            aggregator=federation.aggregator.export_state(),
            clients=_clients_state(federation.clients),
            statistics=[files.outcome_to_dict(o) for o in federation.setup_outcomes],
            history=list(self.history),
            stopped=federation.stopped or "",
        )

    def _save(self, round_done: int) -> None:
        self._progress = self._snapshot(round_done)
        files.write_progress(self.directory, self._progress, self._secrets)

    def _journal(self, outcome: RoundOutcome, aggregate: bytes) -> None:
        """Write the round's journal before its aggregate goes to the key holder."""
        assert self._rng is not None
        progress = self._progress
        progress.generation = self._store.generation
        progress.pending = files.Pending(
            outcome=files.outcome_to_dict(outcome),
            aggregate=aggregate,
            rng=json.dumps(self._rng.bit_generator.state),
            training_rounds=self.federation.training_rounds,
            clients=_clients_state(self.federation.clients),
        )
        files.write_progress(self.directory, progress, self._secrets)

    def _complete_journaled(self, on_round: Callable[[RoundOutcome], dict[str, Any]]) -> None:
        """Finish a round the key holder released (or used up) before the crash."""
        pending = self._progress.pending
        if pending is None or self._store.generation != self._progress.generation + 1:
            return  # nothing journaled, or the key holder never saw the aggregate: redo
        federation, store = self.federation, self._store
        outcome = files.outcome_from_dict(pending.outcome)
        released = store.releases and store.releases[-1].round == outcome.round
        if released:
            federation.aggregator.open_round(store.last_ticket)
            federation.aggregator.apply(store.decrypt_aggregate(pending.aggregate))
        else:
            reason = "the key holder refused the aggregate (recorded before a crash)"
            outcome = dataclasses.replace(outcome, skipped=reason)
        log.info("round %d: completed from the journal after a restart", outcome.round)
        assert self._rng is not None
        self._rng.bit_generator.state = json.loads(pending.rng)
        federation.training_rounds = pending.training_rounds
        for client in federation.clients:
            if isinstance(client, Client) and client.client_id in pending.clients:
                client.mark_answered(*pending.clients[client.client_id])
        if outcome.task is Task.TRAIN:
            self.history.append(on_round(outcome))
        elif outcome.skipped:
            raise PolicyViolation(f"standardisation failed: {outcome.skipped}")
        else:
            federation.setup_outcomes.append(outcome)
        self._save(outcome.round)


def _clients(
    setup: FederationSetup,
    partitions: Sequence[tuple[np.ndarray, np.ndarray]],
    keyholder: _StoredKeyHolder,
    secrets: files.RunSecrets,
    state: dict[str, tuple[int, int]],
) -> list[Client]:
    if len(partitions) != len(setup.client_ids):
        raise ConfigurationError(f"{len(partitions)} partitions for {len(setup.client_ids)} ids")
    public, pinned = keyholder.public_key_bytes(), keyholder.identity_bytes
    clients = []
    for client_id, (X, y) in zip(setup.client_ids, partitions, strict=True):
        last_round, phase = state.get(client_id, (-1, 0))
        spec = ClientSpec(
            client_id,
            X,
            y,
            public,
            setup.plan,
            keyholder=pinned,
            signing_key=secrets.clients[client_id].private_bytes(),
            last_round=last_round,
            phase=phase,
        )
        clients.append(build_client(spec))
    return clients


def _write_secrets(folder: Path, secrets: files.RunSecrets) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / files.PROGRESS_FILE).unlink()
    write_atomic(folder / files.SECRETS_FILE, secrets.to_bytes(), mode=0o600)


def run_resumable(
    directory: str | os.PathLike[str],
    run: str,
    executor: str | Executor,
    setup: FederationSetup,
    partitions: Sequence[tuple[np.ndarray, np.ndarray]],
    body: Callable[[ResumableRun], _T],
    *,
    workers: int | None = None,
) -> _T:
    """:func:`~he_fed.runtime.run_federation` for a checkpointed run: ``body(run)``.

    On Flower (``"flower"`` or a ServerApp's executor) the ServerApp keeps its own
    checkpoint and the nodes theirs: :mod:`he_fed.runtime.flower.checkpointed`.

    Raises
    ------
    ConfigurationError
        If the checkpoint would not keep part of ``setup`` (:func:`check_checkpointable`).
    StateError
        See :meth:`ResumableRun.open`.
    """
    check_checkpointable(setup)
    if executor == "flower" or getattr(executor, "connect", None) is not None:
        try:
            from he_fed.runtime.flower.checkpointed import run_checkpointed
        except ImportError as exc:
            raise ConfigurationError(
                f'the flower executor needs Flower: pip install "he-fed[flower]" ({exc})'
            ) from None
        return run_checkpointed(directory, run, executor, setup, partitions, body, workers=workers)  # type: ignore[arg-type]
    if isinstance(executor, str):
        executor = make_executor(executor, workers=workers)
    try:
        with ResumableRun.open(directory, run, setup, partitions, executor=executor) as resumable:
            executor.start()
            return body(resumable)
    finally:
        executor.close()
