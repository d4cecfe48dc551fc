"""The ServerApp finds the key holder again when its SuperNode restarts mid-run.

A key-holder SuperNode that is killed and restarted with the same node config
(and ``state-file``) comes back as a *new* Flower node: without SuperNode
authentication a SuperNode makes a fresh key pair at every start, and the
SuperLink names nodes by their key. Messages to the old node then end in
Flower's ``NODE_UNAVAILABLE`` error, once the SuperLink stops hearing the old
node's heartbeat (Flower's default: 30 s between heartbeats, two missed).

:func:`ask_keyholder` sends one request to the key holder; when the node is gone
(no reply, or ``NODE_UNAVAILABLE``) it waits for a node that says it is the key
holder (``role='keyholder'`` in its node config) and sends the *same* request
there. Repeating a request is safe because of the key holder's state file:

* a ticket request: a ticket that the old node signed and saved but never
  delivered is closed by the next ticket, so the round is redone under the next
  round id and the lost ticket's round is never decrypted;
* a decryption: a round still open is decrypted once; a round the old node
  released (saved) before it died is answered with the very release it saved,
  undecrypted (:meth:`~he_fed.runtime.keyholder_store.KeyHolderStore.decrypt_aggregate`).

A refusal (any he-fed error the node reports) is never repeated. Any node can
declare ``role='keyholder'``, so the role is not enough: a node found is asked
only once it has signed a fresh nonce with the key holder's identity pinned at
setup (``hefed_prove``). Its tickets must verify against that identity too (the
aggregator and every client check them), and so must its releases
(:meth:`~he_fed.runtime.flower.server.RemoteKeyHolder.decrypt_aggregate`): a node
that is not the key holder is never asked, so it can neither refuse, open a round
nor change the model in the key holder's name.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flwr.app import Message
from flwr.common.constant import ErrorCode

from he_fed.exceptions import ExecutorError, MalformedMessage
from he_fed.protocol.receipts import verify_signature
from he_fed.runtime.flower import records

if TYPE_CHECKING:  # pragma: no cover
    from he_fed.runtime.flower.server import FlowerExecutor

__all__ = ["ask_keyholder", "find_keyholder", "node_lost", "proving"]

log = logging.getLogger("he_fed")

_POLL_S = 0.5


def node_lost(reply: Message | None) -> bool:
    """Whether a reply says the node is gone (none came, or Flower's ``NODE_UNAVAILABLE``)."""
    return reply is None or (reply.has_error() and reply.error.code == ErrorCode.NODE_UNAVAILABLE)


def find_keyholder(executor: FlowerExecutor, lost: int, deadline: float, identity: bytes) -> int:
    """Wait for a node that proves it is the key holder, other than the client nodes.

    A node that says ``role='keyholder'`` is sent a fresh nonce, and is taken only
    if it signs it with the pinned ``identity``; one that cannot is passed over for
    the rest of the search, so an impostor can neither answer nor refuse in the
    key holder's name.

    Parameters
    ----------
    executor : FlowerExecutor
        The ServerApp's executor (its grid and the roles it learned at start).
    lost : int
        The node that stopped answering; asked again only if it is back online
        (a SuperNode with an authentication key keeps its node id).
    deadline : float
        ``time.monotonic()`` after which to give up.
    identity : bytes
        The key holder's Ed25519 identity, pinned at setup.

    Raises
    ------
    ExecutorError
        If no node that proves it is the key holder connects before ``deadline``.
    """
    roles = executor._roles  # noqa: SLF001 - same package: the roles start() learned
    asked: set[int] = set()
    while (left := deadline - time.monotonic()) > 0:
        online = set(executor._grid.get_node_ids())  # noqa: SLF001
        candidates = sorted(n for n in online if (n not in roles or n == lost) and n not in asked)
        if candidates:
            # Every exchange ends by the deadline: nodes that never answer cannot
            # stretch the search (red team 39).
            hello = dict.fromkeys(candidates, {})
            answers = executor.exchange(records.HELLO, hello, group="rejoin", timeout=left)
            claimants = []
            for node_id in candidates:
                reply = answers.get(node_id)
                if reply is None or reply.has_error():
                    continue
                try:
                    role, partition = records.role_of(reply)
                except MalformedMessage:
                    continue
                roles[node_id] = (role, partition)
                asked.add(node_id)
                if role == "keyholder":
                    claimants.append(node_id)
            left = deadline - time.monotonic()
            proven = proving(executor, claimants, identity, timeout=left) if claimants else []
            for node_id in claimants:
                if node_id in proven:
                    return node_id
                log.warning("node %d says it is the key holder and cannot prove it", node_id)
        time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0.0)))
    raise ExecutorError(
        f"the key-holder node {lost} went away and no key-holder node came back within "
        f"{executor.start_timeout:.0f} s"
    )


def proving(
    executor: FlowerExecutor, nodes: list[int], identity: bytes, *, timeout: float | None = None
) -> set[int]:
    """Which of ``nodes`` sign a fresh nonce each with the key holder's ``identity``.

    One exchange for all of them, awaited at most ``timeout`` seconds.
    """
    nonces = {n: secrets.token_bytes(records.NONCE_BYTES) for n in nodes}
    requests = {n: {"nonce": nonce} for n, nonce in nonces.items()}
    replies = executor.exchange(records.PROVE, requests, group="rejoin", timeout=timeout)
    proven = set()
    for node_id, reply in replies.items():
        if node_id not in nonces or reply.has_error():
            continue
        try:
            signature = records.blob(records.config_of(reply), "signature")
        except MalformedMessage:
            continue
        if verify_signature(identity, signature, records.identity_challenge(nonces[node_id])):
            proven.add(node_id)
    return proven


def ask_keyholder(
    executor: FlowerExecutor,
    node_id: int,
    message_type: str,
    config: Mapping[str, Any],
    *,
    identity: bytes,
) -> tuple[int, Any]:
    """One request to the key holder, repeated on its new node if its node went away.

    Only a node that proves it holds the key holder's ``identity`` is asked again
    (:func:`find_keyholder`).

    Returns
    -------
    node_id : int
        The node that answered (the key holder's node from now on).
    config : ConfigRecord
        Its answer.

    Raises
    ------
    HEFedError
        The exception the node refused with.
    ExecutorError
        If the key holder does not come back within the executor's ``start_timeout``.
    """
    deadline: float | None = None
    while True:
        reply = executor.exchange(message_type, {node_id: config}, group=message_type).get(node_id)
        if not node_lost(reply):
            assert reply is not None
            if reply.has_error():
                records.raise_remote(reply.error.reason, f"Flower node {node_id}")
            return node_id, records.config_of(reply)
        if deadline is None:
            deadline = time.monotonic() + executor.start_timeout
        log.warning("the key-holder node %d went away; waiting for it to come back", node_id)
        node_id = find_keyholder(executor, node_id, deadline, identity)
        log.warning("the key holder is back as node %d; asking it again", node_id)
