"""A client's and the aggregator's own state between commands.

The key holder's state is :mod:`he_fed.runtime.keyholder_store`. The other two
roles keep less, each in one file written with :func:`he_fed._files.write_atomic`:

* a **client** (:class:`ClientState`) keeps the key holder identity it pinned,
  the federation it joined, the last round it answered and how far it got
  (statistics, training), so it answers each round once and each statistics
  round once, across commands. The file is sealed under a key derived from the
  client's own signing identity (:mod:`he_fed.runtime._sealed`): an edited file
  is refused. It is saved before the update it accounts for is written.
* the **aggregator** keeps its model chain and its round
  (:meth:`~he_fed.protocol.aggregator.Aggregator.export_state`), to check each
  ticket against the model the releases determine. It holds no secret to seal
  with, and needs none: the state protects the aggregator's own checks only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from he_fed._files import write_atomic
from he_fed.crypto import AggregationKey, wire
from he_fed.exceptions import KeyMismatchError, MalformedMessage, StateError
from he_fed.protocol.aggregator import Aggregator
from he_fed.protocol.messages import FEDERATION_ID_BYTES
from he_fed.protocol.receipts import Identity
from he_fed.runtime import _sealed

__all__ = [
    "ClientState",
    "load_aggregator",
    "load_client_state",
    "read_client_state",
    "save_aggregator",
    "save_client_state",
]

_CLIENT_LABEL = b"he-fed/client-state/v1"
_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class ClientState:
    """What a client remembers between rounds.

    Attributes
    ----------
    client_id : str
        The client's name.
    keyholder : bytes
        The key holder's Ed25519 identity it pinned.
    federation : bytes
        The federation it joined.
    last_round : int
        The last round it answered (-1 before the first).
    phase : int
        How far it got (see :class:`~he_fed.protocol.client.Client`).
    generation : int
        Saves so far.
    """

    client_id: str
    keyholder: bytes
    federation: bytes
    last_round: int = -1
    phase: int = 0
    generation: int = 0

    def to_content(self) -> bytes:
        """The state's fields as bytes (sealed by :func:`save_client_state`)."""
        w = wire.Writer()
        w.uint(self.generation)
        w.text(self.client_id, length_bytes=1)
        w.raw(self.keyholder)
        w.raw(self.federation)
        w.uint(self.last_round + 1)
        w.uint(self.phase, 1)
        return w.getvalue()

    @classmethod
    def from_content(cls, content: bytes) -> ClientState:
        """The inverse of :meth:`to_content`.

        Raises
        ------
        MalformedMessage
            If the content is not a client state's.
        """
        r = wire.Reader(content, "client state")
        generation, client_id = r.uint(), r.text(length_bytes=1)
        keyholder, federation = bytes(r.raw(32)), bytes(r.raw(FEDERATION_ID_BYTES))
        last_round, phase = r.uint() - 1, r.uint(1)
        r.finish()
        return cls(client_id, keyholder, federation, last_round, phase, generation)


def _key(identity: Identity) -> bytes:
    return _sealed.derive_key(_CLIENT_LABEL, identity.private_bytes())


def _read_bytes(path: Path, what: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > _MAX_BYTES:
        raise StateError(f"{what} {path} is larger than any he-fed writes")
    return data


def read_client_state(data: bytes, identity: Identity, *, what: str) -> ClientState:
    """A client's state from its file's bytes, once its seal verifies under ``identity``.

    Raises
    ------
    StateError
        If it does not verify (edited, torn, or another client's).
    """
    content = _sealed.unseal(
        data, wire.Kind.CLIENT_STATE, _key(identity), fingerprint=identity.public_bytes, what=what
    )
    try:
        return ClientState.from_content(content)
    except MalformedMessage as exc:
        raise StateError(f"{what}: {exc}") from None


def load_client_state(path: str | os.PathLike[str], identity: Identity) -> ClientState | None:
    """The state saved at ``path``, or None if there is none yet.

    Raises
    ------
    StateError
        If the file exists but does not verify.
    """
    target = Path(path)
    what = f"the client state {target}"
    data = _read_bytes(target, what)
    return None if data is None else read_client_state(data, identity, what=what)


def save_client_state(
    path: str | os.PathLike[str], state: ClientState, identity: Identity
) -> ClientState:
    """Seal and write ``state`` (one generation on); return what was written."""
    saved = replace(state, generation=state.generation + 1)
    sealed = _sealed.seal(
        wire.Kind.CLIENT_STATE,
        saved.to_content(),
        _key(identity),
        fingerprint=identity.public_bytes,
    )
    write_atomic(path, sealed, mode=0o600)
    return saved


def load_aggregator(
    path: str | os.PathLike[str], key: bytes | AggregationKey, *, allow_insecure: bool
) -> Aggregator | None:
    """The aggregator saved at ``path``, or None if there is none yet.

    Raises
    ------
    StateError
        If the file exists but is not this aggregator's state.
    """
    target = Path(path)
    what = "the aggregator state"
    data = _read_bytes(target, what)
    if data is None:
        return None
    try:
        return Aggregator.restore(key, data, allow_insecure=allow_insecure)
    except (MalformedMessage, KeyMismatchError) as exc:
        raise StateError(f"{what} {target} cannot be used: {exc}") from None


def save_aggregator(path: str | os.PathLike[str], aggregator: Aggregator) -> None:
    """Write the aggregator's state (:meth:`Aggregator.export_state`)."""
    write_atomic(path, aggregator.export_state(), mode=0o644)
