"""The server side: a Flower ServerApp's grid as an he-fed executor.

In the ServerApp, the *aggregator* is local and blind: it holds the aggregation
bytes only. The clients and the key holder are other SuperNodes, reached through
Flower's ``Grid``:

* :class:`FlowerExecutor` waits for the nodes, finds out who is who
  (:meth:`~FlowerExecutor.start`), has the key-holder node generate the keys and
  the client nodes take the public key (:meth:`~FlowerExecutor.connect`), then
  runs each round's client side by messaging the client nodes
  (:meth:`~FlowerExecutor.collect`).
* :class:`RemoteKeyHolder` stands in for the key holder in the round logic: it
  forwards the encrypted aggregate to the key-holder node and returns its answer.

Who is who: a node started with ``--node-config "role='keyholder'"`` is the key
holder; client nodes carry ``partition-id`` (their index among the clients). In
a simulation, where Flower gives every virtual node only ``partition-id``, the
node with ``partition-id`` equal to the number of clients is the key holder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from he_fed._validation import check_int
from he_fed.crypto import PublicKey, load_public
from he_fed.exceptions import ConfigurationError, ExecutorError, HEFedError, ProtocolError
from he_fed.protocol import Aggregator, EncryptedAggregate, Task, decode
from he_fed.protocol.client import ClientReport
from he_fed.protocol.setup import build_aggregator
from he_fed.protocol.signed_release import Release
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime.base import ClientHandle, ClientResult
from he_fed.runtime.federation import Federation
from he_fed.runtime.flower import records, rejoin
from he_fed.runtime.flower.council import connect_council

__all__ = ["FlowerExecutor", "RemoteClient", "RemoteKeyHolder"]

log = logging.getLogger("he_fed")

#: Seconds to wait for the expected nodes to connect.
START_TIMEOUT_S = 300.0
#: Seconds to wait for the replies of one exchange.
REPLY_TIMEOUT_S = 900.0
#: Pauses between polls for replies: doubling from the first to the last.
_FIRST_POLL_S = 0.005
_POLL_S = 0.25


@dataclass(frozen=True)
class RemoteClient:
    """A client that lives on a Flower node."""

    client_id: str
    node_id: int


class RemoteKeyHolder:
    """The round logic's key holder when the real one is another Flower node.

    It holds public material only and forwards bytes; the key-holder node checks
    its policy and decrypts.

    Parameters
    ----------
    executor : FlowerExecutor
        How to reach the node.
    node_id : int
        The key-holder node.
    public_key, aggregation_key : bytes
        The public material the node sent.
    aggregator : Aggregator
        The ServerApp's aggregator. Its pinned key-holder identity
        (:attr:`~he_fed.protocol.Aggregator.keyholder`) must sign the tickets, the
        releases (for the federation of the tickets it verified) and a node's
        proof that it is the key holder after a restart.
    min_clients : int
        The node's cohort policy, as it reported it (the round logic skips smaller
        rounds itself; the node enforces its own policy regardless).
    allow_insecure : bool, default=False
        Accept public material below the security bar.
    """

    def __init__(
        self,
        executor: FlowerExecutor,
        node_id: int,
        public_key: bytes,
        aggregation_key: bytes,
        *,
        aggregator: Aggregator,
        min_clients: int,
        allow_insecure: bool = False,
    ) -> None:
        key = load_public(public_key, allow_insecure=allow_insecure)
        if not isinstance(key, PublicKey):
            raise ProtocolError("the key-holder node sent no public key")
        self._executor = executor
        self.node_id = node_id
        self._public = key
        self._public_bytes = public_key
        self._aggregation_bytes = aggregation_key
        self.identity_bytes = aggregator.keyholder
        self._aggregator = aggregator
        self.min_clients = min_clients

    @property
    def public_key(self) -> PublicKey:
        """The public key the node generated."""
        return self._public

    def public_key_bytes(self) -> bytes:
        """Encoded public key, as the node sent it."""
        return self._public_bytes

    def aggregation_key_bytes(self) -> bytes:
        """Encoded aggregation material, as the node sent it."""
        return self._aggregation_bytes

    def start_round(self, task: Task) -> bytes:
        """Ask the key-holder node for the next round's signed ticket.

        Raises
        ------
        PolicyViolation, ProtocolError
            If the node's policy refuses the task (as a local key holder would).
        """
        self.node_id, answer = rejoin.ask_keyholder(
            self._executor,
            self.node_id,
            records.TICKET,
            {"task": Task(task).value},
            identity=self.identity_bytes,
        )
        return records.blob(answer, "ticket")

    def decrypt_aggregate(self, data: bytes) -> bytes:
        """Send an encoded encrypted aggregate to the key-holder node; return its release.

        The node answers with a :class:`~he_fed.protocol.signed_release.Release`.
        Its aggregate is returned only if the key holder pinned at setup signed it
        for this federation, and it answers ``data``'s round and task: a node that
        merely says it is the key holder (one that joined while the key holder was
        away, :mod:`he_fed.runtime.flower.rejoin`) cannot release anything.

        Raises
        ------
        PolicyViolation
            If the node's policy refuses (as a local key holder would).
        InvalidSignature
            If the pinned key holder did not sign the release for this federation.
        ProtocolError
            If the release answers another round or task.
        MalformedMessage
            If the answer is not a release.
        ExecutorError
            If the node does not answer, and no key-holder node comes back within
            ``start_timeout`` (a restarted node is asked again:
            :mod:`he_fed.runtime.flower.rejoin`).
        """
        asked = decode(data, EncryptedAggregate)
        node_id, answer = rejoin.ask_keyholder(
            self._executor,
            self.node_id,
            records.DECRYPT,
            {"encrypted-aggregate": data},
            identity=self.identity_bytes,
        )
        release = Release.from_bytes(records.blob(answer, "release"))
        aggregate = release.verified(self.identity_bytes, self._aggregator.federation)
        if (aggregate.round, aggregate.task) != (asked.round, asked.task):
            raise ProtocolError(
                f"the key holder's release answers round {aggregate.round} "
                f"({aggregate.task.value}), not round {asked.round} ({asked.task.value})"
            )
        self.node_id = node_id
        return release.aggregate

    def __repr__(self) -> str:
        return f"<RemoteKeyHolder node={self.node_id} {self._public!r}>"


class FlowerExecutor:
    """Run clients on Flower SuperNodes, from inside a ServerApp.

    Parameters
    ----------
    grid : flwr.serverapp.Grid
        The ServerApp's grid.
    nodes : int
        Nodes to wait for: the clients plus the key holder.
    start_timeout : float, default=300
        Seconds to wait for them to connect.
    reply_timeout : float, default=900
        Seconds to wait for the replies of one exchange; a client that has not
        answered by then is left out of the round, like a dropout.

    Attributes
    ----------
    startup_s : float or None
        Seconds :meth:`start` waited for the nodes and their roles.
    """

    name = "flower"

    def __init__(
        self,
        grid: Grid,
        *,
        nodes: int,
        start_timeout: float = START_TIMEOUT_S,
        reply_timeout: float = REPLY_TIMEOUT_S,
    ) -> None:
        check_int("nodes", nodes, low=2, bounds=">= 2 (a key holder and a client)")
        self._grid = grid
        self.nodes = nodes
        self.start_timeout = start_timeout
        self.reply_timeout = reply_timeout
        self.startup_s: float | None = None
        self._roles: dict[int, tuple[str, int]] = {}

    def start(self) -> float:
        """Wait until ``nodes`` nodes are connected, then ask each for its role.

        Raises
        ------
        ExecutorError
            If fewer nodes connect within ``start_timeout``, or one does not answer.
        """
        if self.startup_s is not None:
            return 0.0
        started = time.perf_counter()
        node_ids = sorted(self._grid.get_node_ids())
        while len(node_ids) < self.nodes:
            if time.perf_counter() - started > self.start_timeout:
                raise ExecutorError(
                    f"only {len(node_ids)} of {self.nodes} Flower nodes connected within "
                    f"{self.start_timeout:.0f} s"
                )
            time.sleep(_POLL_S)
            node_ids = sorted(self._grid.get_node_ids())
        answers = self.exchange(records.HELLO, dict.fromkeys(node_ids, {}), group="setup")
        for node_id in node_ids:
            reply = answers.get(node_id)
            try:
                if reply is None or reply.has_error():
                    raise ExecutorError("no answer")
                self._roles[node_id] = records.role_of(reply)
            except HEFedError as exc:
                raise ExecutorError(f"Flower node {node_id} did not say who it is: {exc}") from None
        self.startup_s = time.perf_counter() - started
        return self.startup_s

    def _assign(self, n_clients: int) -> tuple[int, dict[int, int]]:
        """The key-holder node, and the client node of each partition index."""
        declared = [n for n, (role, _) in self._roles.items() if role == "keyholder"]
        if not declared:  # a simulation: the node after the clients
            declared = [n for n, (role, p) in self._roles.items() if role == "" and p == n_clients]
        if len(declared) != 1:
            raise ExecutorError(
                f"found {len(declared)} key-holder nodes; start exactly one SuperNode with "
                "--node-config \"role='keyholder'\""
            )
        keyholder = declared[0]
        by_partition: dict[int, list[int]] = {}
        for node_id, (role, partition) in self._roles.items():
            if node_id != keyholder and role in ("", "client") and 0 <= partition < n_clients:
                by_partition.setdefault(partition, []).append(node_id)
        missing = [p for p in range(n_clients) if len(by_partition.get(p, [])) != 1]
        if missing:
            raise ExecutorError(
                f"partition ids {missing[:10]} do not have exactly one client node; give each "
                f'client SuperNode --node-config "partition-id=K" with K in 0..{n_clients - 1}'
            )
        return keyholder, {p: nodes[0] for p, nodes in by_partition.items()}

    def connect(self, setup: FederationSetup) -> Federation:
        """Have the key-holder node make the keys and the client nodes take the public key.

        The aggregator is built here, from the aggregation bytes alone. The
        client data stays on the client nodes.

        Returns
        -------
        Federation
            Whose key holder is a :class:`RemoteKeyHolder` and whose clients are
            :class:`RemoteClient` handles.

        Raises
        ------
        ExecutorError
            If the nodes are not one key holder and one client per partition.
        ConfigurationError
            If a client node's data does not have ``setup.n_features`` features.
        """
        self.start()
        if setup.threshold is not None:
            return connect_council(self, setup)
        keyholder_node, client_nodes = self._assign(len(setup.client_ids))
        keygen = records.keyholder_request(setup)
        answer, metrics = self.ask(keyholder_node, records.KEYGEN, keygen)
        public, aggregation = (
            records.blob(answer, "public-key"),
            records.blob(answer, "aggregation-key"),
        )
        identity = records.blob(answer, "identity")
        aggregator = build_aggregator(aggregation, identity, setup)
        clients, identities = self.connect_clients(setup, client_nodes, public, identity)
        # Setup: every identity is registered with both parties (the key-holder node
        # checks them against its provisioned list, if it was given one).
        for client_id, verify_key in identities.items():
            aggregator.register(client_id, verify_key)
        registered, _ = self.ask(
            keyholder_node,
            records.REGISTER,
            {"client-ids": list(identities), "verify-keys": list(identities.values())},
        )
        remote = RemoteKeyHolder(
            self,
            keyholder_node,
            public,
            aggregation,
            aggregator=aggregator,
            min_clients=records.integer(registered, "min-clients"),  # type: ignore[arg-type]
            allow_insecure=setup.plan.allow_insecure,
        )
        return Federation(remote, aggregator, clients, self, float(metrics.get("keygen-s", 0.0)))

    def connect_clients(
        self, setup: FederationSetup, client_nodes: Mapping[int, int], public: bytes, pin: bytes
    ) -> tuple[list[RemoteClient], dict[str, bytes]]:
        """Have each client node take the public key, the plan and the key holder's pin.

        Returns
        -------
        clients : list of RemoteClient
            One per client id, on the node of its partition index.
        identities : dict of str to bytes
            Each client's Ed25519 identity, to register with the key holder(s).

        Their data stays unread until a ticket: a client whose data does not fit the
        plan (another width, say) fails its first round, and its node's log says why.
        """
        client_plan = {f"plan.{key}": value for key, value in setup.plan.to_config().items()}
        clients = [
            RemoteClient(client_id, client_nodes[index])
            for index, client_id in enumerate(setup.client_ids)
        ]
        requests = {
            c.node_id: {
                "client-id": c.client_id,
                "public-key": public,
                "keyholder-identity": pin,
                **client_plan,
            }
            for c in clients
        }
        replies = self.exchange(records.SETUP, requests, group="setup")
        identities: dict[str, bytes] = {}
        for client in clients:
            config = self._answer(replies.get(client.node_id), f"client {client.client_id!r}")
            identities[client.client_id] = records.blob(config, "verify-key")
        return clients, identities

    def exchange(
        self,
        message_type: str,
        requests: Mapping[int, Mapping[str, Any]],
        *,
        group: str,
        timeout: float | None = None,
    ) -> dict[int, Message]:
        """Send one message per node and return the replies that came back, by node.

        Replies are awaited ``reply_timeout`` seconds, or ``timeout`` if shorter.
        """
        messages = [
            Message(records.content(dict(config)), node_id, message_type, group_id=group)
            for node_id, config in requests.items()
        ]
        # Grid.send_and_receive polls every 3 s in a deployment. Poll soon after
        # sending (a simulated node answers in milliseconds), then back off.
        pending = set(self._grid.push_messages(messages))
        wait = self.reply_timeout if timeout is None else min(timeout, self.reply_timeout)
        deadline = time.monotonic() + max(wait, 0.0)
        replies: dict[int, Message] = {}
        pause = _FIRST_POLL_S
        while pending:
            for reply in self._grid.pull_messages(pending):
                pending.discard(reply.metadata.reply_to_message_id)
                replies[reply.metadata.src_node_id] = reply
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(pause)
            pause = min(2 * pause, _POLL_S)
        return replies

    def ask(self, node_id: int, message_type: str, config: Mapping[str, Any]) -> tuple[Any, Any]:
        """One request to one node; its ConfigRecord and MetricRecord.

        Raises
        ------
        HEFedError
            The exception the node refused with, or :class:`ExecutorError` if it
            did not answer.
        """
        reply = self.exchange(message_type, {node_id: config}, group=message_type).get(node_id)
        return self._answer(reply, f"Flower node {node_id}"), (
            records.metrics_of(reply) if reply is not None else {}
        )

    def _answer(self, reply: Message | None, where: str) -> Any:
        if reply is None:
            raise ExecutorError(f"{where} did not answer within {self.reply_timeout:.0f} s")
        if reply.has_error():
            records.raise_remote(reply.error.reason, where)
        return records.config_of(reply)

    def collect(self, clients: Sequence[ClientHandle], message: bytes) -> list[ClientResult]:
        """Send the round start to each client's node and gather the encrypted updates.

        A client whose node refuses, fails, answers with a malformed report or does
        not answer within ``reply_timeout`` is reported with the reason and left out
        of the round.

        Raises
        ------
        ConfigurationError
            If a client is not a :class:`RemoteClient`.
        """
        for client in clients:
            if not isinstance(client, RemoteClient):
                raise ConfigurationError(
                    f"the flower executor runs RemoteClient handles, not {type(client).__name__}"
                )
        remote: list[RemoteClient] = list(clients)  # type: ignore[arg-type]
        replies = self.exchange(
            records.ROUND, {c.node_id: {"round-start": message} for c in remote}, group="round"
        )
        results = []
        for client in remote:
            reply = replies.get(client.node_id)
            if reply is None:
                error = f"no reply within {self.reply_timeout:.0f} s"
            elif reply.has_error():
                error = reply.error.reason or "the node failed"
            else:
                try:
                    config, metrics = records.config_of(reply), records.metrics_of(reply)
                    report = ClientReport.from_record({**metrics, **config})
                except HEFedError as exc:  # garbage from one client costs only its update
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    results.append(ClientResult(client.client_id, report))
                    continue
            log.warning("client %s failed this round: %s", client.client_id, error)
            results.append(ClientResult(client.client_id, None, error))
        return results

    def close(self) -> None:
        """Nothing to release: the grid belongs to Flower."""

    def __repr__(self) -> str:
        return f"<FlowerExecutor nodes={self.nodes}>"
