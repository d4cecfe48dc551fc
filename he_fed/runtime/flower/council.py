"""The ServerApp's side of threshold decryption: share-holder nodes driven by Flower messages.

:func:`connect_council` sets a federation up whose key holder is ``n`` share-holder
nodes (:mod:`he_fed.runtime.flower.sharenode`), and :class:`RemoteCouncil` stands in
for the key holder in the round logic, as :class:`~he_fed.runtime.council.LocalCouncil`
does in process: it relays the quorum tickets, the endorsements that make an
aggregate's certificate, the sealed partial decryptions and the releases, and
nothing else. Each node runs the same :class:`~he_fed.protocol.decryptor.Decryptor`
code as in process and decides by itself.

Who is who: a node started with ``share-file`` in its node config (or
``role='shareholder'``) is a share holder; its index comes from its share. It may
also carry ``partition-id`` and train. In a simulation, where Flower gives every
virtual node only ``partition-id``, the ``n`` nodes after the clients are the
share holders, and the ServerApp deals their shares (one person owns every node).

Dropouts: a holder whose node does not answer (it died, or the reply timed out)
is absent from then on; a round needs a quorum ``q = ceil((n + t) / 2)`` of
present holders, so ``n − q`` may be absent (3 of 5: one). A holder that refuses
answers with its policy's exception, which is raised here as in process. A
holder that comes back is not taken back into the run (rejoining means replaying
the rounds it missed, which :class:`LocalCouncil` does in process only).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from flwr.app import Message

from he_fed.crypto import PublicKey, load_public
from he_fed.crypto.threshold import deal
from he_fed.exceptions import ConfigurationError, ExecutorError, MalformedMessage, ProtocolError
from he_fed.protocol import Task
from he_fed.protocol.council import council_pin, merge_signatures, merge_tickets, quorum_size
from he_fed.protocol.setup import build_aggregator
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime.federation import Federation
from he_fed.runtime.flower import records

if TYPE_CHECKING:
    from he_fed.runtime.flower.server import FlowerExecutor

__all__ = ["RemoteCouncil", "connect_council", "holder_nodes"]

log = logging.getLogger("he_fed")

_SHARE = "train.hefed_share_"


def _refused(reply: Message) -> bool:
    return reply.has_error() and reply.error.code == records.REFUSED


class RemoteCouncil:
    """The round logic's key holder when it is ``n`` share-holder nodes.

    Parameters
    ----------
    executor : FlowerExecutor
        How to reach the nodes.
    nodes : dict of int to int
        Each holder's node id, by share index (1 to ``n``).
    threshold : int
        Partials needed to decrypt.
    public_key, aggregation_key, pin : bytes
        The public material and the council pin (the holders' identities).
    min_clients : int
        The largest cohort minimum any holder reported.
    allow_insecure : bool, default=False
        Accept public material below the security bar.
    """

    def __init__(
        self,
        executor: FlowerExecutor,
        nodes: dict[int, int],
        threshold: int,
        public_key: bytes,
        aggregation_key: bytes,
        pin: bytes,
        *,
        min_clients: int,
        allow_insecure: bool = False,
    ) -> None:
        key = load_public(public_key, allow_insecure=allow_insecure)
        if not isinstance(key, PublicKey):
            raise ProtocolError("the share holders sent no public key")
        self._executor = executor
        self.nodes = dict(nodes)
        self.threshold, self.holders = threshold, len(nodes)
        #: Holders needed to sign a ticket or certify an aggregate.
        self.quorum = quorum_size(threshold, self.holders)
        self._public, self._public_bytes, self._aggregation_bytes = key, public_key, aggregation_key
        self.identity_bytes = pin
        self.min_clients = min_clients
        #: Holders whose nodes stopped answering (absent for the rest of the run).
        self.absent: set[int] = set()
        #: Holders whose partials the last release used, and those it refused.
        self.last_partials: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
        self._signed: list[int] = []  # holders that signed the open round's ticket

    @property
    def tolerated_absences(self) -> int:
        """How many holders may be absent from a round: ``n − q``."""
        return self.holders - self.quorum

    @property
    def public_key(self) -> PublicKey:
        """The public key the shares belong to."""
        return self._public

    def public_key_bytes(self) -> bytes:
        """Encoded public key, for clients."""
        return self._public_bytes

    def aggregation_key_bytes(self) -> bytes:
        """Encoded aggregation material, for the aggregator."""
        return self._aggregation_bytes

    def _ask(self, step: str, requests: dict[int, dict[str, Any]], needed: int) -> dict[int, Any]:
        """One step to several holders: their answers by index, the silent ones marked absent.

        Raises
        ------
        HEFedError
            The first refusal (a holder's policy exception), as in process.
        ProtocolError
            If fewer than ``needed`` holders answered.
        """
        by_node = {self.nodes[i]: config for i, config in requests.items()}
        replies = self._executor.exchange(_SHARE + step, by_node, group=f"council-{step}")
        answers: dict[int, Any] = {}
        for index in sorted(requests):
            reply = replies.get(self.nodes[index])
            if reply is not None and _refused(reply):
                records.raise_remote(reply.error.reason, f"share holder {index}")
            if reply is None or reply.has_error():
                why = "no reply" if reply is None else reply.error.reason
                log.warning("share holder %d is absent from now on (%s: %s)", index, step, why)
                self.absent.add(index)
                continue
            answers[index] = records.config_of(reply)
        if len(answers) < needed:
            raise ProtocolError(
                f"{len(answers)} share holder(s) answered {step}, {needed} are needed (a quorum "
                f"of {self.quorum} of {self.holders}; at most {self.tolerated_absences} absent)"
            )
        return answers

    def start_round(self, task: Task = Task.TRAIN) -> bytes:
        """A ticket co-signed by every present holder (at least a quorum ``q``)."""
        present = [i for i in sorted(self.nodes) if i not in self.absent]
        answers = self._ask(
            "ticket", dict.fromkeys(present, {"task": Task(task).value}), self.quorum
        )
        self._signed = sorted(answers)
        return merge_tickets(records.blob(a, "ticket") for a in answers.values())

    def decrypt_aggregate(self, data: bytes) -> bytes:
        """Endorse, certify, partially decrypt and release through the holders' nodes.

        Raises
        ------
        HEFedError
            What a holder refuses with (each runs every check itself).
        ProtocolError
            If too few holders answer a step (fewer than the threshold ``t`` release
            the aggregate), or the releases differ.
        """
        request = {"encrypted-aggregate": data}
        signed = [i for i in self._signed if i not in self.absent]
        endorsed = self._ask("endorse", dict.fromkeys(signed, request), self.quorum)
        certificate = merge_signatures(records.blob(a, "endorsement") for a in endorsed.values())
        asked = {**request, "certificate": certificate}
        partials = self._ask("partial", dict.fromkeys(endorsed, asked), self.threshold)
        sealed: dict[int, list[bytes]] = {}
        for answer in partials.values():
            recipients, blobs = (
                records.integers(answer, "recipients"),
                records.blobs(answer, "sealed"),
            )
            if len(recipients) != len(blobs):
                raise MalformedMessage("a holder's sealed partials need one recipient each")
            for recipient, blob in zip(recipients, blobs, strict=True):
                sealed.setdefault(recipient, []).append(blob)
        requests = {i: {"sealed": sealed.get(i, [])} for i in partials}
        # As many releases as a decryption needs shares, all alike: one holder alone
        # (whose peers were silent at this step) cannot set the model, as it cannot
        # decrypt alone (red team 38).
        released = self._ask("release", requests, self.threshold)
        first = next(iter(released.values()))
        aggregate = records.blob(first, "aggregate")
        if any(records.blob(a, "aggregate") != aggregate for a in released.values()):
            raise ProtocolError("share holders released different aggregates")
        self.last_partials = (
            tuple(records.integers(first, "used")),
            tuple(records.integers(first, "refused")),
        )
        return aggregate

    def __repr__(self) -> str:
        return f"<RemoteCouncil {self.threshold} of {self.holders}, absent {sorted(self.absent)}>"


def holder_nodes(
    roles: dict[int, tuple[str, int]], n_clients: int, holders: int
) -> tuple[dict[int, int] | None, list[int], dict[int, int]]:
    """The share-holder nodes, and the client node of each partition index.

    Returns
    -------
    dealt : dict of int to int, or None
        In a simulation (no node declares a share), the node of each holder index
        the ServerApp deals; None in a deployment.
    declared : list of int
        In a deployment, the nodes that declared a share (their indices come later).
    clients : dict of int to int
        The client node of each partition index.

    Raises
    ------
    ExecutorError
        If the nodes are not ``holders`` share holders and one client per partition.
    """
    declared = sorted(n for n, (role, _) in roles.items() if role == "shareholder")
    dealt = None
    if not declared:  # a simulation: the n nodes after the clients
        dealt = {
            p - n_clients + 1: n
            for n, (role, p) in roles.items()
            if role == "" and n_clients <= p < n_clients + holders
        }
    found = len(declared) if dealt is None else len(dealt)
    if found != holders:
        raise ExecutorError(
            f"found {found} share-holder nodes for {holders} shares; start one SuperNode per "
            "share with --node-config \"share-file='share-K.key' ...\""
        )
    by_partition: dict[int, list[int]] = {}
    for node_id, (role, partition) in roles.items():
        if role in ("", "client", "shareholder") and 0 <= partition < n_clients:
            by_partition.setdefault(partition, []).append(node_id)
    missing = [p for p in range(n_clients) if len(by_partition.get(p, [])) != 1]
    if missing:
        raise ExecutorError(
            f"partition ids {missing[:10]} do not have exactly one client node; give each "
            f'client SuperNode --node-config "partition-id=K" with K in 0..{n_clients - 1}'
        )
    return dealt, declared, {p: nodes[0] for p, nodes in by_partition.items()}


def _set_up_holders(
    executor: FlowerExecutor, setup: FederationSetup, n_clients: int
) -> tuple[dict[int, int], dict[int, Any], dict[int, int]]:
    """Each holder loads its share and policy; its node and answer by share index."""
    threshold, holders = setup.threshold or (0, 0)
    dealt, declared, clients = holder_nodes(executor._roles, n_clients, holders)
    request = records.keyholder_request(setup)
    if dealt is not None:  # a simulation: the person running it deals, as `he-fed keygen`
        keys = deal(setup.scheme, threshold=threshold, holders=holders)  # type: ignore[arg-type]
        requests = {dealt[s.index]: {**request, "share": s.to_bytes()} for s in keys.shares}
    else:
        requests = dict.fromkeys(declared, request)
    replies = executor.exchange(_SHARE + "setup", requests, group="setup")
    nodes: dict[int, int] = {}
    answers: dict[int, Any] = {}
    for node_id in requests:
        answer = executor._answer(replies.get(node_id), f"share-holder node {node_id}")
        index = records.integer(answer, "index")
        shape = (records.integer(answer, "threshold"), records.integer(answer, "holders"))
        if index in nodes or shape != (
            threshold,
            holders,
        ):
            raise ConfigurationError(
                f"share-holder node {node_id} holds share {index} of a "
                f"{answer['threshold']}-of-{answer['holders']} key; the run needs shares "
                f"1 to {holders} of one {threshold}-of-{holders} key"
            )
        nodes[index], answers[index] = node_id, answer
    if len({records.blob(a, "public-key") for a in answers.values()}) != 1:
        raise ConfigurationError("the share-holder nodes hold shares of different keys")
    return nodes, answers, clients


def connect_council(executor: FlowerExecutor, setup: FederationSetup) -> Federation:
    """A federation whose key holder is ``n`` share-holder nodes (``setup.threshold``).

    The holders load their shares and policies, learn each other's signed exchange
    keys, and register the clients; the clients pin the council; the aggregator is
    built from the aggregation bytes alone.

    Raises
    ------
    ExecutorError
        If the nodes are not ``n`` share holders and one client per partition, or
        a holder does not answer at setup.
    ConfigurationError
        If the shares are not shares 1 to ``n`` of one key, or a client's data does
        not have ``setup.n_features`` features.
    """
    executor.start()
    threshold = (setup.threshold or (0, 0))[0]
    started = time.perf_counter()
    nodes, answers, client_nodes = _set_up_holders(executor, setup, len(setup.client_ids))
    keygen_s = time.perf_counter() - started  # the dealing, in a simulation
    order = sorted(answers)
    pin = council_pin(threshold, [records.blob(answers[i], "identity") for i in order])
    join = {
        "council": pin,
        "exchanges": [records.blob(answers[i], "exchange") for i in order],
        "exchange-signatures": [records.blob(answers[i], "exchange-signature") for i in order],
    }
    replies = executor.exchange(_SHARE + "join", dict.fromkeys(nodes.values(), join), group="setup")
    for index, node_id in nodes.items():
        executor._answer(replies.get(node_id), f"share holder {index}")
    first = answers[min(answers)]
    public, aggregation = records.blob(first, "public-key"), records.blob(first, "aggregation-key")
    aggregator = build_aggregator(aggregation, pin, setup)
    clients, identities = executor.connect_clients(setup, client_nodes, public, pin)
    for client_id, verify_key in identities.items():
        aggregator.register(client_id, verify_key)
    register = {"client-ids": list(identities), "verify-keys": list(identities.values())}
    replies = executor.exchange(
        _SHARE + "register", dict.fromkeys(nodes.values(), register), group="setup"
    )
    minimum = [
        records.integer(executor._answer(replies.get(n), f"share holder {i}"), "min-clients")
        for i, n in nodes.items()
    ]
    council = RemoteCouncil(
        executor,
        nodes,
        threshold,
        public,
        aggregation,
        pin,
        min_clients=max(minimum),
        allow_insecure=setup.plan.allow_insecure,
    )
    return Federation(council, aggregator, clients, executor, keygen_s)  # type: ignore[arg-type]
