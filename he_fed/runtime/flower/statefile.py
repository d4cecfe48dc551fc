"""A key-holder node's state on its own disk (node config ``state-file``).

The node state (``context.state``) lives in the SuperNode's memory: a SuperNode
that crashes, is redeployed or is bounced by the aggregator's operator forgets
which rounds it released. A key-holder node started with ``state-file`` keeps
its state in a :class:`~he_fed.runtime.keyholder_store.KeyHolderStore` at that
path as well, with the store's rules (saved before a ticket or release leaves,
sealed under its secrets, generation counter, lock):

* a deployed node needs it: ``hefed_keygen`` without ``state-file`` is refused
  (only a simulated node, whose owner owns the whole run, keeps its state in
  memory alone), since a node that forgets its federation between runs could be
  made to answer a second cohort from the same start;
* the state is made when the clients register (before the first ticket), and a
  node never makes a second one over it: ``hefed_keygen`` with an existing
  ``state-file`` is refused;
* every ticket and decryption goes through the store, and the node state gets
  the same bytes afterwards;
* a node restarted with an empty node state rebuilds it from the state file,
  its ``secret-key-file``, ``identity-file`` and ``policy-file`` (all three are
  required with ``state-file``: keys generated in memory would die with the
  node), so it refuses to release a round it released before the restart;
* a state file that differs from the node state in memory (rolled back or
  replaced while the node ran) is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flwr.app import ConfigRecord, Context

from he_fed.crypto import KeyPair, load_secret
from he_fed.exceptions import ConfigurationError, StateError
from he_fed.protocol.receipts import Identity
from he_fed.runtime.flower.policy import (
    KeyHolderPolicy,
    federation_record,
    with_trusted_clients,
)
from he_fed.runtime.keyholder_store import KeyHolderStore

__all__ = ["check_provisioned", "create", "path_of", "reload", "through_store"]

_T = TypeVar("_T")
_NEEDS = ("secret-key-file", "identity-file", "policy-file")
_EXAMPLE = (
    "state-file='keyholder.state' secret-key-file='secret.key' "
    "identity-file='keyholder.id' policy-file='keyholder.json'"
)


def path_of(context: Context) -> Path | None:
    """The node's ``state-file``, if it was started with one."""
    path = context.node_config.get("state-file")
    return Path(str(path)) if path else None


def check_provisioned(context: Context) -> None:
    """Refuse key generation without a ``state-file`` (when deployed) or over a state.

    A deployed key-holder node needs a ``state-file`` (see
    :func:`~he_fed.runtime.flower.policy.federation_record`): without it each
    ``flwr run`` would be a new federation to the node, answered from the same start
    with another cohort. Only a simulated node may keep its state in memory alone.

    Raises
    ------
    ConfigurationError
        If a deployed node has no ``state-file``, or ``secret-key-file``,
        ``identity-file`` or ``policy-file`` is missing beside one.
    StateError
        If the state file exists: it holds a federation this node ran.
    """
    path = federation_record(context.node_config, "state-file", "key-holder", _EXAMPLE)
    if path is None:
        return
    missing = [name for name in _NEEDS if not context.node_config.get(name)]
    if missing:
        raise ConfigurationError(
            f"a key-holder node with a state-file also needs {', '.join(missing)}: a "
            "restarted node rebuilds itself from them, and keys made in memory die with it"
        )
    if os.path.lexists(path):
        raise StateError(
            f"state-file {str(path)!r} holds a federation this node ran; a key-holder "
            "node never starts another over it (move it away to start a new federation)"
        )


def _keys(record: ConfigRecord, policy: KeyHolderPolicy) -> tuple[KeyPair, Identity]:
    allow_insecure = bool(getattr(policy.scheme, "allow_insecure", False))
    keys = load_secret(bytes(record["secret-key"]), allow_insecure=allow_insecure)  # type: ignore[arg-type]
    return keys, Identity.from_private_bytes(bytes(record["identity"]))  # type: ignore[arg-type]


def create(path: Path, record: ConfigRecord, clients: dict[str, bytes]) -> bytes:
    """Make the state file for the registered ``clients``; the key holder's new state.

    Raises
    ------
    StateError
        If a state exists at ``path`` (see :meth:`KeyHolderStore.create`).
    """
    policy = KeyHolderPolicy.from_json(str(record["policy"]))
    keys, identity = _keys(record, policy)
    with KeyHolderStore.create(
        path, keys, identity, plan=policy.plan, clients=clients, min_clients=policy.cohort
    ) as store:
        return store.keyholder.export_state()


def reload(context: Context) -> dict[str, Any]:
    """The key holder's node state, rebuilt from its files after a restart.

    Raises
    ------
    ConfigurationError
        If a file the node was provisioned with cannot be read.
    StateError
        If the state file is missing or does not verify.
    """
    path = path_of(context)
    assert path is not None
    node = context.node_config
    # With the node config's trusted clients, as at key generation (a red team found
    # a restarted node's policy without them).
    policy = with_trusted_clients(KeyHolderPolicy.read(str(node["policy-file"])), node)
    try:
        secret = Path(str(node["secret-key-file"])).read_bytes()
        identity_hex = Path(str(node["identity-file"])).read_text().strip()
        identity = Identity.from_private_bytes(bytes.fromhex(identity_hex))
    except (OSError, ValueError):
        raise ConfigurationError(
            "cannot read the key holder's secret-key-file or identity-file"
        ) from None
    keys = load_secret(secret, allow_insecure=bool(getattr(policy.scheme, "allow_insecure", False)))
    with KeyHolderStore.open(path, keys, identity) as store:
        state = store.keyholder.export_state()
    return {
        "secret-key": keys.secret.to_bytes(),
        "identity": identity.private_bytes(),
        "state": state,
        "policy": policy.to_json(),
    }


def through_store(path: Path, record: ConfigRecord, action: Callable[[KeyHolderStore], _T]) -> _T:
    """``action(store)`` on the state file; the node state gets the saved state after it.

    Raises
    ------
    StateError
        If the file does not verify, or differs from the node state in memory.
    """
    policy = KeyHolderPolicy.from_json(str(record["policy"]))
    keys, identity = _keys(record, policy)
    with KeyHolderStore.open(path, keys, identity) as store:
        if store.keyholder.export_state() != bytes(record["state"]):  # type: ignore[arg-type]
            raise StateError(
                f"state-file {str(path)!r} is not the state this node holds in memory: it "
                "was rolled back or replaced while the node ran; refusing to act on it"
            )
        try:
            return action(store)
        finally:
            record["state"] = store.keyholder.export_state()
