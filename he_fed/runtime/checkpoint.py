"""The files of a run's checkpoint directory, and what each holds.

A checkpointed run (``he-fed run --checkpoint DIR``, ``checkpoint=`` on the
estimators; the driver is :mod:`he_fed.runtime.resume`) keeps three files:

``secrets`` (mode 0600, :data:`SECRETS_FILE`)
    The key holder's secret key, its signing identity and every simulated
    client's signing key: what a party would keep in its own key files. An
    envelope with a checksum, not sealed (the sealing keys derive from it); a
    changed secret makes the two other files fail to verify.
``keyholder.state`` (mode 0600)
    The key holder's policy state, kept by
    :class:`~he_fed.runtime.keyholder_store.KeyHolderStore` exactly as ``he-fed
    decrypt`` keeps it: saved before each ticket and release leaves, sealed
    under a key derived from the secret key and identity, with a generation
    counter.
``progress`` (mode 0600, :data:`PROGRESS_FILE`)
    What the rest of the simulation needs to continue (:class:`Progress`): the
    run's description (parameters and a digest of the data), the aggregator's
    model chain, each client's last round answered, the training rounds counted,
    the dropout generator's state, the statistics rounds and the estimator's
    history; the key holder store's generation when it was written; and, while a
    round waits for its release, that round's journal (:class:`Pending`). Sealed
    with HMAC-SHA256 under its own label (``he-fed/run-checkpoint/v1``) and the
    key holder's secrets, so an edited file is refused.

All three are explicit, versioned formats (:mod:`he_fed.crypto.wire`, the
history as JSON text inside); nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from he_fed._files import write_atomic
from he_fed.crypto import KeyPair, load_secret, wire
from he_fed.exceptions import HEFedError, MalformedMessage, StateError
from he_fed.protocol.messages import Task
from he_fed.protocol.receipts import Identity
from he_fed.runtime import _sealed
from he_fed.runtime.federation import RoundOutcome
from he_fed.runtime.keyholder_store import KeyHolderStore

__all__ = [
    "FORMAT_VERSION",
    "PROGRESS_FILE",
    "SECRETS_FILE",
    "STATE_FILE",
    "Pending",
    "Progress",
    "RunSecrets",
    "check_in_step",
    "check_same_run",
    "describe_run",
    "mismatch",
    "outcome_from_dict",
    "outcome_to_dict",
    "peek_progress",
    "read_progress",
    "read_secrets",
    "write_progress",
]

#: Version of the ``progress`` and ``secrets`` formats.
FORMAT_VERSION = 1
SECRETS_FILE = "secrets"
STATE_FILE = "keyholder.state"
PROGRESS_FILE = "progress"
_LABEL = b"he-fed/run-checkpoint/v1"
_WHAT = "the checkpoint's progress"
_MAX_BYTES = 256 << 20


def describe_run(params: dict[str, Any], arrays: Sequence[np.ndarray]) -> str:
    """The canonical description of a run: its parameters and a digest of its data.

    Two commands resume each other's checkpoint only if their descriptions are
    equal; the digest covers the arrays' dtypes, shapes and bytes.
    """
    data = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array)
        data.update(f"{a.dtype.str}{a.shape}".encode())
        data.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return json.dumps(
        {"format": FORMAT_VERSION, **params, "data": data.hexdigest()},
        sort_keys=True,
        default=repr,
    )


def mismatch(saved: str, wanted: str) -> str | None:
    """The first parameter two run descriptions differ in (None when they are equal)."""
    if saved == wanted:
        return None
    try:
        old, new = json.loads(saved), json.loads(wanted)
    except ValueError:
        return "format"
    # Parameters first: another seed also deals other data, and the seed is the cause.
    for key in sorted(set(old) | set(new), key=lambda k: (k == "data", k)):
        if old.get(key) != new.get(key):
            return key
    return "format"  # pragma: no cover - equal dicts come from equal canonical texts


def outcome_to_dict(outcome: RoundOutcome) -> dict[str, Any]:
    """A round's outcome as plain data (JSON-ready)."""
    return {
        "round": outcome.round,
        "task": outcome.task.value,
        "contributors": list(outcome.contributors),
        "failures": dict(outcome.failures),
        "absent": list(outcome.absent),
        "timings": dict(outcome.timings),
        "bytes_up": outcome.bytes_up,
        "bytes_down": outcome.bytes_down,
        "clipped": outcome.clipped,
        "skipped": outcome.skipped,
        "wall_s": outcome.wall_s,
    }


def outcome_from_dict(data: dict[str, Any]) -> RoundOutcome:
    """The outcome :func:`outcome_to_dict` gave ``data``."""
    return RoundOutcome(
        round=int(data["round"]),
        task=Task(data["task"]),
        contributors=tuple(data["contributors"]),
        failures=dict(data["failures"]),
        absent=tuple(data["absent"]),
        timings={k: None if v is None else float(v) for k, v in data["timings"].items()},
        bytes_up=int(data["bytes_up"]),
        bytes_down=int(data["bytes_down"]),
        clipped=None if data["clipped"] is None else int(data["clipped"]),
        skipped=data["skipped"],
        wall_s=float(data["wall_s"]),
    )


# -- secrets ---------------------------------------------------------------------


@dataclass(frozen=True)
class RunSecrets:
    """The key holder's keys and identity, and each simulated client's identity."""

    keys: KeyPair
    identity: Identity
    clients: dict[str, Identity]

    def to_bytes(self) -> bytes:
        """The ``secrets`` file. SECRET: written with mode 0600 only."""
        w = wire.Writer()
        w.uint(FORMAT_VERSION, 2)
        w.blob(self.keys.secret.to_bytes())
        w.raw(self.identity.private_bytes())
        w.uint(len(self.clients), 4)
        for client_id, identity in self.clients.items():
            w.text(client_id)
            w.raw(identity.private_bytes())
        return wire.seal_envelope(
            wire.Kind.RUN_SECRETS, w.getvalue(), fingerprint=self.keys.public.fingerprint
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, allow_insecure: bool) -> RunSecrets:
        """Parse a ``secrets`` file.

        Raises
        ------
        StateError
            If the bytes are not one.
        """
        try:
            envelope = wire.open_envelope(data, wire.Kind.RUN_SECRETS)
            r = wire.Reader(envelope.body, "the checkpoint's secrets")
            version = r.uint(2)
            if version != FORMAT_VERSION:
                raise MalformedMessage(f"format {version}, this he-fed reads {FORMAT_VERSION}")
            keys = load_secret(r.blob(), allow_insecure=allow_insecure)
            identity = Identity.from_private_bytes(bytes(r.raw(32)))
            clients = {}
            for _ in range(r.uint(4)):
                client_id = r.text()
                clients[client_id] = Identity.from_private_bytes(bytes(r.raw(32)))
            r.finish()
        except MalformedMessage as exc:
            raise StateError(f"the checkpoint's secrets are not readable ({exc})") from None
        if envelope.fingerprint != keys.public.fingerprint:
            raise StateError("the checkpoint's secrets do not match their own header")
        return cls(keys, identity, clients)

    def sealing_key(self) -> bytes:
        """The key that seals the ``progress`` file."""
        return _sealed.derive_key(
            _LABEL, self.keys.secret.to_bytes(), self.identity.private_bytes()
        )


# -- progress --------------------------------------------------------------------


@dataclass
class Pending:
    """A round journaled just before its aggregate went to the key holder.

    If the key holder's state shows the round released (or used up) and the
    progress was not written after it, the run completes the round from this
    journal; otherwise the round is redone under a new round id.
    """

    outcome: dict[str, Any]
    aggregate: bytes
    rng: str
    training_rounds: int
    clients: dict[str, tuple[int, int]]


@dataclass
class Progress:
    """Everything but the key holder's state that a run needs to continue.

    Attributes
    ----------
    run : str
        The run's description (:func:`describe_run`).
    generation : int
        The key holder store's generation when this was written.
    releases : int
        Releases the key holder had made by then.
    round_done : int
        Ticket id of the last round completed (-1 before any).
    training_rounds : int
        Training rounds completed.
    rng : str
        The dropout generator's state (JSON) after the last completed round; empty
        before training started (the generator is then seeded afresh).
    aggregator : bytes
        The aggregator's exported state.
    clients : dict of str to (int, int)
        Each client's last round answered and phase.
    statistics : list of dict
        The standardisation rounds' outcomes (:func:`outcome_to_dict`).
    history : list of dict
        The estimator's record of each training round.
    stopped : str
        Why training stopped early (empty if it did not).
    pending : Pending or None
        The round waiting for its release, if any.
    """

    run: str
    generation: int
    releases: int
    round_done: int
    training_rounds: int
    rng: str
    aggregator: bytes
    clients: dict[str, tuple[int, int]]
    statistics: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""
    pending: Pending | None = None

    def to_content(self) -> bytes:
        """The sealed file's content."""
        w = wire.Writer()
        w.uint(FORMAT_VERSION, 2)
        w.blob(self.run.encode())
        for value in (self.generation, self.releases, self.round_done + 1, self.training_rounds):
            w.uint(value)
        w.blob(self.rng.encode())
        w.blob(self.aggregator)
        _write_clients(w, self.clients)
        w.blob(json.dumps(self.statistics).encode())
        w.blob(json.dumps(self.history).encode())
        w.blob(self.stopped.encode())
        w.uint(int(self.pending is not None), 1)
        if self.pending is not None:
            p = self.pending
            w.blob(json.dumps(p.outcome).encode())
            w.blob(p.aggregate)
            w.blob(p.rng.encode())
            w.uint(p.training_rounds)
            _write_clients(w, p.clients)
        return w.getvalue()

    @classmethod
    def from_content(cls, content: bytes) -> Progress:
        """Parse the content :meth:`to_content` wrote.

        Raises
        ------
        MalformedMessage
            If it is not one.
        """
        r = wire.Reader(content, _WHAT)
        version = r.uint(2)
        if version != FORMAT_VERSION:
            raise MalformedMessage(f"format {version}, this he-fed reads {FORMAT_VERSION}")
        run = _text(r)
        generation, releases, round_done, training = (r.uint() for _ in range(4))
        rng, aggregator = _text(r), r.blob()
        clients = _read_clients(r)
        statistics, history = _json(r), _json(r)
        stopped = _text(r)
        pending = None
        if r.uint(1):
            outcome, aggregate, pending_rng = _json(r), r.blob(), _text(r)
            pending = Pending(outcome, aggregate, pending_rng, r.uint(), _read_clients(r))
        r.finish()
        return cls(
            run,
            generation,
            releases,
            round_done - 1,
            training,
            rng,
            aggregator,
            clients,
            statistics,
            history,
            stopped,
            pending,
        )


def _write_clients(w: wire.Writer, clients: dict[str, tuple[int, int]]) -> None:
    w.uint(len(clients), 4)
    for client_id, (last_round, phase) in sorted(clients.items()):
        w.text(client_id)
        w.uint(last_round + 1)
        w.uint(phase, 1)


def _read_clients(r: wire.Reader) -> dict[str, tuple[int, int]]:
    clients = {}
    for _ in range(r.uint(4)):
        client_id = r.text()
        clients[client_id] = (r.uint() - 1, r.uint(1))
    return clients


def _text(r: wire.Reader) -> str:
    try:
        return r.blob().decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage(f"{_WHAT}: text that is not UTF-8") from None


def _json(r: wire.Reader) -> Any:
    try:
        return json.loads(_text(r))
    except ValueError:
        raise MalformedMessage(f"{_WHAT}: a field that is not JSON") from None


def write_progress(directory: Path, progress: Progress, secrets: RunSecrets) -> None:
    """Seal ``progress`` and replace the ``progress`` file atomically."""
    data = _sealed.seal(
        wire.Kind.RUN_PROGRESS,
        progress.to_content(),
        secrets.sealing_key(),
        fingerprint=secrets.keys.public.fingerprint,
    )
    write_atomic(directory / PROGRESS_FILE, data, mode=0o600)


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise StateError(f"{path} is missing: the checkpoint is incomplete") from None
    except OSError as exc:
        raise StateError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > _MAX_BYTES:
        raise StateError(f"{what} {path} is larger than any he-fed writes")
    return data


def read_progress(directory: Path, secrets: RunSecrets) -> Progress:
    """The ``progress`` file, once its seal verifies.

    Raises
    ------
    StateError
        If it is missing, edited, sealed under other secrets or malformed.
    """
    path = directory / PROGRESS_FILE
    content = _sealed.unseal(
        _read_bytes(path, _WHAT),
        wire.Kind.RUN_PROGRESS,
        secrets.sealing_key(),
        fingerprint=secrets.keys.public.fingerprint,
        what=f"{_WHAT} {path}",
    )
    try:
        return Progress.from_content(content)
    except MalformedMessage as exc:
        raise StateError(f"{_WHAT} {path}: {exc}") from None


def read_secrets(directory: Path, *, allow_insecure: bool) -> RunSecrets:
    """The ``secrets`` file (see :class:`RunSecrets`)."""
    path = directory / SECRETS_FILE
    return RunSecrets.from_bytes(
        _read_bytes(path, "the checkpoint's secrets"), allow_insecure=allow_insecure
    )


def peek_progress(directory: str | os.PathLike[str]) -> Progress | None:
    """The ``progress`` file, NOT verified (for showing progress only), or None.

    None when there is no readable checkpoint in ``directory``. Resuming
    verifies everything; use this only to say what a run will resume from.
    """
    path = Path(directory) / PROGRESS_FILE
    try:
        data = path.read_bytes()
        _, content = _sealed.peek(data, wire.Kind.RUN_PROGRESS, _WHAT)
        return Progress.from_content(content)
    except (OSError, HEFedError):
        return None


def check_same_run(folder: Path, saved: str, wanted: str) -> None:
    """Refuse to resume a checkpoint whose run description is not ``wanted``."""
    differs = mismatch(saved, wanted)
    if differs is not None:
        raise StateError(
            f"{folder} holds the checkpoint of another run ({differs} differs): resume it "
            "with the command that started it, or give another --checkpoint directory"
        )


def check_in_step(folder: Path, store: KeyHolderStore, progress: Progress) -> None:
    """Refuse a key holder state and a progress file that no crash can leave together."""
    ahead = store.generation - progress.generation
    rolled = f"the checkpoint in {folder} was rolled back: "
    if ahead < 0:
        raise StateError(rolled + "the key holder state is older than the progress")
    if ahead > 1:
        raise StateError(rolled + "the progress is older than the key holder state")
    releases = len(store.releases) - progress.releases
    if progress.pending is None:
        # At most a ticket saved after the progress: the round it opened is redone.
        ticketed = store.keyholder.last_round - progress.round_done
        if releases != 0 or ticketed != ahead:
            raise StateError(rolled + "the key holder released a round the progress lacks")
    elif releases not in (0, ahead):
        raise StateError(rolled + "the key holder's releases do not match the progress")
