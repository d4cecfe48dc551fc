"""The blind aggregator: adds ciphertexts it can never read."""

from __future__ import annotations

import numpy as np

from he_fed.crypto import AggregationKey, EncryptedVector, PublicKey, wire
from he_fed.exceptions import (
    ConfigurationError,
    HEFedError,
    InvalidSignature,
    KeyMismatchError,
    MalformedMessage,
    PolicyViolation,
    ProtocolError,
)
from he_fed.protocol import tasks
from he_fed.protocol._keys import public_material
from he_fed.protocol.council import is_pin, verify_ticket
from he_fed.protocol.messages import (
    Aggregate,
    EncryptedAggregate,
    EncryptedUpdate,
    Receipt,
    RoundStart,
    Task,
    decode,
    encode,
)
from he_fed.protocol.model import GlobalModel, RunPlan
from he_fed.protocol.receipts import (
    Registry,
    contribution_payloads,
    ticket_payload,
)

__all__ = ["Aggregator"]


class Aggregator:
    """Holds public material only; forwards the key holder's tickets and sums updates.

    Constructing one with a secret key (or bytes holding one) raises
    :class:`~he_fed.exceptions.SecretMaterialError`. Given a full public key, it
    keeps only the aggregation material (for CKKS, the parameters alone).

    The aggregator does not decide rounds: :meth:`open_round` takes a ticket the
    key holder signed (:meth:`KeyHolder.start_round`), checks its signature, and
    returns the bytes to broadcast. Each :meth:`add` is validated completely
    (round, task, registered sender, both signatures, duplicate, key, plan,
    length) *before* it touches the running sum, so a bad update raises a typed
    error and loses nothing already aggregated. The aggregate it forwards carries
    a receipt per contribution, which the key holder checks (see
    :mod:`he_fed.protocol.receipts`). It follows the global model by applying the
    released aggregates, exactly as the key holder does (:mod:`he_fed.protocol.model`).

    Parameters
    ----------
    key : bytes or AggregationKey
        Public material from the key holder.
    plan : RunPlan
        The run plan, the same the key holder follows.
    keyholder : bytes
        The key holder's Ed25519 public key (32 bytes), which signs the tickets.
    clients : mapping of str to bytes, optional
        Registered clients' Ed25519 public keys (more with :meth:`register`).
    allow_insecure : bool, default=False
        Accept public material below the security bar.
    """

    def __init__(
        self,
        key: bytes | AggregationKey,
        *,
        plan: RunPlan,
        keyholder: bytes,
        clients: dict[str, bytes] | None = None,
        allow_insecure: bool = False,
    ) -> None:
        material = public_material(key, role="aggregator", allow_insecure=allow_insecure)
        if isinstance(material, PublicKey):
            material = material.aggregation_key()
        if not isinstance(plan, RunPlan):
            raise ConfigurationError("the aggregator needs a RunPlan")
        if not is_pin(keyholder):
            raise ConfigurationError(
                "the key holder's identity is a 32-byte Ed25519 public key or a council pin"
            )
        self._key = material
        self._plan = plan
        self._keyholder = keyholder
        self.model = GlobalModel(plan)
        self._round = -1
        self._federation = b""
        self._task: Task | None = None
        self._sum: EncryptedVector | None = None
        # By client id, in arrival order: the duplicate check is one lookup, not a
        # scan of the cohort (which made a round quadratic in the number of clients).
        self._receipts: dict[str, Receipt] = {}
        self._sent: tuple[str, ...] | None = None  # the contributors, once the sum is sent
        self._registry = Registry(clients)

    def register(self, client_id: str, verify_key: bytes) -> None:
        """Register a client's Ed25519 public key; updates from others are refused."""
        self._registry.register(client_id, verify_key)

    @property
    def key(self) -> AggregationKey:
        """The public material held (never a secret)."""
        return self._key

    @property
    def plan(self) -> RunPlan:
        """The run plan."""
        return self._plan

    @property
    def federation(self) -> bytes:
        """The federation id of the tickets opened (empty before the first)."""
        return self._federation

    @property
    def keyholder(self) -> bytes:
        """The key holder's Ed25519 public key, which must sign every ticket."""
        return self._keyholder

    @property
    def round(self) -> int:
        """Id of the current round (-1 before the first)."""
        return self._round

    @property
    def weights(self) -> np.ndarray:
        """Global weights on standardised features (coefficients, then intercept)."""
        return self.model.weights

    @property
    def center(self) -> np.ndarray | None:
        """Federated feature (and target) means, once computed."""
        return self.model.center

    @property
    def scale(self) -> np.ndarray | None:
        """Federated feature (and target) standard deviations, once computed."""
        return self.model.scale

    @property
    def contributors(self) -> tuple[str, ...]:
        """Clients whose updates the current sum holds."""
        return self._sent if self._sent is not None else tuple(self._receipts)

    def open_round(self, ticket: bytes) -> bytes:
        """Open the round a key holder's ticket describes; return the bytes to broadcast.

        Raises
        ------
        MalformedMessage
            If the bytes are not a round ticket.
        InvalidSignature
            If the key holder did not sign it.
        ProtocolError
            If its round is not newer than the current one.
        KeyMismatchError
            If it names another key.
        PolicyViolation
            If its task is out of order, or its model is not the one the released
            aggregates determine (the aggregator follows the same model chain).
        """
        start = decode(ticket, RoundStart)
        if not verify_ticket(
            self._keyholder, start.signature, ticket_payload(start.signed_bytes())
        ):
            raise InvalidSignature("the round ticket is not signed by the key holder")
        if start.round <= self._round:
            raise ProtocolError(f"ticket for round {start.round} is not newer than {self._round}")
        if start.fingerprint != self._key.fingerprint:
            raise KeyMismatchError("the round ticket names another key")
        # The ticket's model must be the one the releases determine: a key holder
        # that froze the model (never applying what it released) would get sums of
        # changing cohorts under one model, and could difference them.
        try:
            self.model.check_task(start.task)
        except HEFedError as exc:
            raise PolicyViolation(f"the key holder's ticket is out of order: {exc}") from None
        expected = self.model.ticket_fields(start.task)
        got = (start.weights, start.center, start.scale)
        if not all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True)):
            raise PolicyViolation(
                "the key holder's ticket carries another model than its releases determine"
            )
        self._federation = start.federation
        self._round = start.round
        self._task = start.task
        self._sum = None
        self._receipts = {}
        self._sent = None
        return ticket

    @wire.unpinned
    def add(self, data: bytes) -> None:
        """Fold one encrypted update into the round's sum.

        Raises
        ------
        MalformedMessage
            If the bytes are not a well-formed update (or the vector has the wrong length).
        ProtocolError
            If the update answers another round or task, or its sender already contributed.
        InvalidSignature
            If the sender is not registered, a signature does not verify, or the
            commitment's proof of knowledge does not.
        KeyMismatchError
            If it was encrypted under another key or plan.
        EncodingOverflowError
            If the sum would exceed the plan's ``max_clients``.
        """
        if self._task is None:
            raise ProtocolError("no round is open")
        if self._sent is not None:
            raise ProtocolError(f"round {self._round}'s sum was already sent to the key holder")
        update = decode(data, EncryptedUpdate)
        if update.round != self._round or update.task is not self._task:
            raise ProtocolError(
                f"update for round {update.round} ({update.task.value}) arrived during "
                f"round {self._round} ({self._task.value})"
            )
        if update.client_id in self._receipts:
            raise ProtocolError(f"client {update.client_id!r} already contributed this round")
        if update.client_id not in self._registry:
            raise InvalidSignature(f"client {update.client_id!r} is not registered")
        key = tasks.plan_for(self._key, self._task)
        vector = key.load_vector(update.vector, size=self._plan.vector_size(self._task))
        if vector.count != 1:
            raise MalformedMessage("an update must hold exactly one contribution")
        commitment = vector.commitment()
        whole, alone = contribution_payloads(
            federation=self._federation,
            round=self._round,
            task=self._task,
            client_id=update.client_id,
            fingerprint=key.fingerprint,
            vector=update.vector,
            commitment=commitment,
            binding=update.binding,
        )
        if not (
            self._registry.verify(update.client_id, update.signature, whole)
            and self._registry.verify(update.client_id, update.commitment_signature, alone)
        ):
            raise InvalidSignature(f"the update from {update.client_id!r} has a bad signature")
        try:
            key.sum_bindings([update.binding])  # well-formed (only the key holder can open it)
        except MalformedMessage:
            raise MalformedMessage(
                f"the update from {update.client_id!r} has a malformed binding commitment"
            ) from None
        if not key.verify_commitment_proof(
            commitment, update.proof, vector.size, alone, binding=update.binding
        ):
            # Checked here too, so that one client's bad proof costs only its own update
            # rather than the key holder's refusal of the whole round.
            raise InvalidSignature(
                f"the update from {update.client_id!r} does not prove its commitment"
            )
        total = vector if self._sum is None else self._sum + vector
        self._sum = total
        self._receipts[update.client_id] = Receipt(
            update.client_id,
            commitment,
            update.commitment_signature,
            update.proof,
            update.binding,
        )

    def finish_round(self) -> bytes:
        """Close the round and return the :class:`EncryptedAggregate` for the key holder.

        The receipts, with every contribution's proof, then live only in the bytes
        returned: the aggregator keeps the contributors' ids, and adds nothing more
        to this round. (At 10,000 clients a statistics round's proofs take 1.1 GB.)

        Raises
        ------
        ProtocolError
            If no update was added, or the round's sum was already sent.
        """
        if self._task is None or self._sum is None:
            raise ProtocolError("no update was aggregated this round")
        if self._sent is not None:
            raise ProtocolError(f"round {self._round}'s sum was already sent to the key holder")
        message = EncryptedAggregate(
            self._round, self._task, tuple(self._receipts.values()), self._sum.to_bytes()
        )
        data = encode(message)
        self._sent, self._receipts = tuple(self._receipts), {}
        return data

    def apply(self, data: bytes) -> Aggregate:
        """Apply the key holder's decrypted :class:`Aggregate` to the global model.

        Returns
        -------
        Aggregate
            The decoded release.

        Raises
        ------
        ProtocolError
            If it answers another round or task.
        MalformedMessage
            If it is malformed or has the wrong length.
        TrainingDiverged
            If the model diverged.
        """
        aggregate = decode(data, Aggregate)
        if aggregate.round != self._round or aggregate.task is not self._task:
            raise ProtocolError(f"aggregate for round {aggregate.round} does not match this round")
        self.model.apply(aggregate.task, aggregate.mean)
        self._task = None
        self._sum = None
        return aggregate

    def raw_model(self) -> tuple[np.ndarray, float | np.ndarray]:
        """``(coef, intercept)`` of the global model on raw (unstandardised) features."""
        return self.model.raw_model()

    # -- state -----------------------------------------------------------------------

    def export_state(self) -> bytes:
        """The model chain and the round between rounds, as versioned bytes (no secret).

        An aggregator that runs as separate commands (``he-fed aggregate``) saves
        this after each round and :meth:`restore`-s itself, so it checks the next
        ticket against the model its releases determine. The running sum is not
        kept: a round is summed within one command.
        """
        if len(self._keyholder) != 32:
            raise ConfigurationError(
                "an aggregator pinned to a council of share holders keeps no state file: "
                "threshold runs as separate commands are not built"
            )
        w = wire.Writer()
        w.raw(self._keyholder)
        w.blob(self._federation)
        self._plan.write_to(w)
        w.uint(self._round + 1)
        w.text(self._task.value if self._task is not None else "", length_bytes=1)
        self.model.write_to(w)
        registry = self._registry.public_keys()
        w.uint(len(registry), 4)
        for client_id, key in sorted(registry.items()):
            w.text(client_id)
            w.raw(key)
        return wire.seal_envelope(
            wire.Kind.AGGREGATOR_STATE, w.getvalue(), fingerprint=self._key.fingerprint
        )

    @classmethod
    def restore(
        cls, key: bytes | AggregationKey, state: bytes, *, allow_insecure: bool = False
    ) -> Aggregator:
        """The aggregator whose :meth:`export_state` gave ``state``.

        Raises
        ------
        MalformedMessage
            If ``state`` is not an aggregator's state.
        KeyMismatchError
            If it belongs to another key.
        """
        envelope = wire.open_envelope(state, wire.Kind.AGGREGATOR_STATE)
        r = wire.Reader(envelope.body, "aggregator state")
        keyholder, federation = bytes(r.raw(32)), r.blob(max_size=16)
        plan = RunPlan.read_from(r, "aggregator state")
        round_id, task = r.uint() - 1, r.text(length_bytes=1)
        model = GlobalModel.read_from(r, plan)
        clients = {r.text(): bytes(r.raw(32)) for _ in range(r.uint(4))}
        r.finish()
        material = public_material(key, role="aggregator", allow_insecure=allow_insecure)
        try:
            open_task = Task(task) if task else None
            aggregator = cls(material, plan=plan, keyholder=keyholder, clients=clients)
        except (ConfigurationError, ValueError) as exc:
            raise MalformedMessage(f"aggregator state: {exc}") from None
        if envelope.fingerprint != aggregator.key.fingerprint:
            raise KeyMismatchError("this aggregator state belongs to another key")
        aggregator._federation, aggregator._round = federation, round_id
        aggregator._task = open_task
        aggregator.model = model
        return aggregator
