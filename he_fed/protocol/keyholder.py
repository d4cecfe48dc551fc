"""The key holder: owns the keys, the rounds, the policy and the release.

Its policy comes from its own configuration only (the constructor's arguments, or
on a Flower node its node config), never from the aggregator's messages.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets

import numpy as np

from he_fed._validation import check_int
from he_fed.crypto import AggregationKey, EncryptedVector, KeyPair, PublicKey, Scheme, wire
from he_fed.exceptions import (
    AggregateRejected,
    ConfigurationError,
    KeyMismatchError,
    MalformedMessage,
    PolicyViolation,
)
from he_fed.privacy import PrivacyBudget
from he_fed.protocol import privacy_policy
from he_fed.protocol.admission import check_receipts, check_sum
from he_fed.protocol.messages import (
    FEDERATION_ID_BYTES,
    Aggregate,
    EncryptedAggregate,
    RoundStart,
    Task,
    decode,
    encode,
)
from he_fed.protocol.model import GlobalModel, RunPlan
from he_fed.protocol.normalisers import Normalisers
from he_fed.protocol.receipts import Identity, Registry, ticket_payload
from he_fed.protocol.release import WeightedDecryption, checked_mean
from he_fed.protocol.spec import ticket_plan

__all__ = ["DEFAULT_MAX_REJECTIONS", "KeyHolder", "majority"]

log = logging.getLogger("he_fed")

#: Decrypted aggregates refused (:class:`~he_fed.exceptions.AggregateRejected`) after
#: which the key holder retires its key. A refusal after decryption tells whoever
#: sees the round skipped one bit about the plaintext (is the sum, plus any offset an
#: aggregator added, within range?) or, for a CKKS value off the grid, about the
#: secret key; refused rounds do not move the model, so without a cap an aggregator
#: could binary-search one cohort's sum under one model, then another's, and
#: subtract. With at most ``R`` refusals in ``T`` rounds, everything refusals reveal
#: fits in about ``R · log2(T)`` bits (``DESIGN.md``, "Bound on one malicious client").
DEFAULT_MAX_REJECTIONS = 3


def majority(registered: int) -> int:
    """The default minimum cohort: a majority of the registered clients, and at least 2.

    At least 3 where 3 are registered: a cohort of 2 would be one honest client
    beside a client colluding with the aggregator, which left the third out of the
    first release and read the victim's exact statistics and updates (red team 45).
    """
    return max(min(registered, 3), 2, registered // 2 + 1)


class KeyHolder:
    """Holds the secret key, signs the round tickets, and releases only verified sums.

    Rounds belong to the key holder. :meth:`start_round` signs a ticket (a
    :class:`~he_fed.protocol.messages.RoundStart`) for the next round id, carrying
    the global model it computed itself from the :class:`RunPlan` and the
    aggregates it released. Clients train only on such tickets.

    :meth:`decrypt_aggregate` decrypts an
    :class:`~he_fed.protocol.messages.EncryptedAggregate` only if

    * it answers the round ticketed last, which is still open (each ticket is
      decrypted at most once, and issuing a ticket closes the one before),
    * every receipt's commitment signature verifies, for this federation, round,
      task and key, under a client registered before the first ticket,
    * the contributors are distinct and at least the minimum cohort,
    * the ciphertext has exactly the task's length and its own contribution count
      equals the number of receipts, and
    * the aggregate's commitment equals the sum of the receipts' commitments,
      and, after decryption, its plaintext opens the product of the receipts'
      binding commitments (Paillier and CKKS; a sum with an offset added is refused).

    Once the signatures verify, the attempt uses up its round, whatever follows.
    After decryption the weighted sum must be one that honest contributions under
    the plan can produce: total weight within ``[count, count · max_weight]``, and
    every value within ``± weight · clip`` (so the released mean lies within the
    clip bound); otherwise it raises
    :class:`~he_fed.exceptions.AggregateRejected`. No error message carries a
    decrypted value. It releases only the weighted mean, rounded to the plan's grid
    so that the total weight cannot be read off it (:mod:`he_fed.protocol.release`),
    and the contributor count, never a total weight or anything per client.

    Parameters
    ----------
    keys : KeyPair
        The federation's homomorphic keys.
    plan : RunPlan
        The public run plan the global model follows.
    min_clients : int, optional
        Smallest cohort whose aggregate may be decrypted. Default: a majority of
        the clients registered when the first ticket is signed (at least 2, and
        all three of three: :func:`majority`); at most the scheme's ``max_clients``.
    clients : mapping of str to bytes, optional
        Registered clients' Ed25519 public keys (more with :meth:`register`, until
        the first ticket fixes the registry).
    identity : Identity, optional
        The key holder's long-term Ed25519 identity, which signs tickets. Clients
        pin its public half (:attr:`identity_bytes`). Generated when omitted.
    federation : bytes, optional
        16-byte federation id (drawn at random when omitted).
    max_rejections : int, default=DEFAULT_MAX_REJECTIONS
        Refused decryptions (``AggregateRejected``) after which the key is retired.
    privacy : PrivacyBudget, optional
        A differential-privacy budget that charges every release (``privacy_policy``).
    """

    def __init__(
        self,
        keys: KeyPair,
        *,
        plan: RunPlan,
        min_clients: int | None = None,
        clients: dict[str, bytes] | None = None,
        identity: Identity | None = None,
        federation: bytes | None = None,
        max_rejections: int = DEFAULT_MAX_REJECTIONS,
        privacy: PrivacyBudget | None = None,
    ) -> None:
        if min_clients is not None:
            most = keys.public.scheme.max_clients  # a larger cohort could never be summed
            check_int(
                "min_clients",
                min_clients,
                low=1,
                high=most,
                bounds=f"in [1, max_clients={most}] (or None: majority)",
            )
        check_int("max_rejections", max_rejections, low=1)
        if not isinstance(plan, RunPlan):
            raise ConfigurationError("the key holder needs a RunPlan")
        federation = secrets.token_bytes(FEDERATION_ID_BYTES) if federation is None else federation
        if not isinstance(federation, bytes) or len(federation) != FEDERATION_ID_BYTES:
            raise ConfigurationError(f"a federation id is {FEDERATION_ID_BYTES} bytes")
        self._keys = keys
        self._plan = plan
        self._min_clients = min_clients
        self._registry = Registry(clients)
        self._identity = identity or Identity()
        self._federation = federation
        self._max_rejections = max_rejections
        privacy_policy.check_budget(privacy, plan, plan.vector_size(Task.TRAIN))
        self._privacy = privacy
        self._model = GlobalModel(plan)
        self._last_round = -1
        self._open: tuple[int, Task] | None = None
        self._released = 0
        self._rejected = 0
        self._divisors = Normalisers()

    @classmethod
    def generate(cls, scheme: Scheme, *, plan: RunPlan, **policy: object) -> KeyHolder:
        """Generate fresh keys under ``scheme``; ``policy`` as in the constructor."""
        return cls(scheme.keygen(), plan=plan, **policy)  # type: ignore[arg-type]

    # -- setup ---------------------------------------------------------------------

    def register(self, client_id: str, verify_key: bytes) -> None:
        """Register a client's Ed25519 public key, before the first ticket only.

        Raises
        ------
        PolicyViolation
            If a ticket was already signed: the registry is fixed at setup.
        """
        self._registry.register(client_id, verify_key)

    def registered_clients(self) -> dict[str, bytes]:
        """Every registered client's public key."""
        return self._registry.public_keys()

    @property
    def min_clients(self) -> int:
        """The smallest cohort decrypted (the policy's, or a majority of the registry)."""
        if self._min_clients is not None:
            return self._min_clients
        return majority(len(self._registry))

    @property
    def federation(self) -> bytes:
        """The federation id every ticket and signature is bound to."""
        return self._federation

    @property
    def identity_bytes(self) -> bytes:
        """The key holder's Ed25519 public key (32 bytes), for clients to pin."""
        return self._identity.public_bytes

    @property
    def plan(self) -> RunPlan:
        """The run plan."""
        return self._plan

    @property
    def model(self) -> GlobalModel:
        """The global model as the key holder computed it (do not modify)."""
        return self._model

    @property
    def last_round(self) -> int:
        """The last round ticketed (-1 before the first)."""
        return self._last_round

    @property
    def privacy(self) -> PrivacyBudget | None:
        """The differential-privacy budget, if the run has one (do not modify)."""
        return self._privacy

    @property
    def released(self) -> int:
        """How many aggregates were released."""
        return self._released

    @property
    def public_key(self) -> PublicKey:
        """The public key, for clients."""
        return self._keys.public

    def public_key_bytes(self) -> bytes:
        """Encoded public key, for clients."""
        return self._keys.public.to_bytes()

    def secret_key_bytes(self) -> bytes:
        """Encoded secret key, for this key holder's own storage only. SECRET. Never send it."""
        return self._keys.secret.to_bytes()

    def aggregation_key_bytes(self) -> bytes:
        """Encoded aggregation material (the least that can add), for the aggregator."""
        material: AggregationKey = self._keys.public.aggregation_key()
        return material.to_bytes()

    # -- rounds --------------------------------------------------------------------

    def start_round(self, task: Task = Task.TRAIN) -> bytes:
        """Sign the ticket of the next round and open it; the previous one closes.

        Returns
        -------
        bytes
            An encoded, signed :class:`~he_fed.protocol.messages.RoundStart`.

        Raises
        ------
        ConfigurationError
            If fewer clients are registered than the minimum cohort.
        PolicyViolation
            If the task may not run (statistics are released once per federation),
            or the key was retired.
        ProtocolError
            If the task comes before the one it depends on.
        """
        task = Task(task)
        if self._rejected >= self._max_rejections:
            raise PolicyViolation(self._retired())
        if len(self._registry) < self.min_clients:
            lower = max(1, len(self._registry))
            raise ConfigurationError(
                f"{len(self._registry)} client(s) registered, but the key holder decrypts "
                f"cohorts of at least {self.min_clients}; to run anyway, lower min_clients "
                f"to {lower} (CLI: --min-clients {lower})"
            )
        self._model.check_task(task)
        self._registry.freeze()
        if self._min_clients is None:
            self._min_clients = majority(len(self._registry))
        privacy_policy.ticket_allowed(self._privacy, task, self.min_clients)
        round_id = self._last_round + 1
        weights, center, scale = self._model.ticket_fields(task)
        unsigned = RoundStart(
            self._federation,
            round_id,
            task,
            self._keys.public.fingerprint,
            weights,
            center,
            scale,
            ticket_plan(self._plan.client_plan, self._keys.public.scheme),
        )
        signature = self._identity.sign(ticket_payload(unsigned.signed_bytes()))
        self._last_round = round_id
        self._open = (round_id, task)
        return encode(dataclasses.replace(unsigned, signature=signature))

    @wire.unpinned
    def decrypt_aggregate(self, data: bytes) -> bytes:
        """Check the policy, decrypt the aggregate, and return the encoded mean.

        Parameters
        ----------
        data : bytes
            An encoded :class:`EncryptedAggregate`.

        Returns
        -------
        bytes
            An encoded :class:`Aggregate` holding the weighted mean.

        Raises
        ------
        PolicyViolation
            If the round is not the open one, a receipt is unsigned or forged, the
            cohort is too small or has duplicates, or the ciphertext is not the sum
            of the receipts' contributions.
        AggregateRejected
            If the decrypted sum is not one honest contributions can produce.
        MalformedMessage, KeyMismatchError
            If the bytes are bad or under another key (the round is used up if the
            receipts verified).
        """
        message = decode(data, EncryptedAggregate)
        key = check_receipts(
            message,
            open_round=self._open,
            registry=self._registry,
            federation=self._federation,
            public_key=self._keys.public,
            plan=self._plan,
        )
        self._open = None  # past the signatures: this attempt uses up the round
        admitted = check_sum(message, key=key, plan=self._plan, min_clients=self.min_clients)
        contributors = message.contributors
        self._check_cohort(message)
        if self._privacy is not None:
            self._privacy.charge()  # before decrypting: refuses a release past the target
        mean = self._decrypt(message, admitted.vector, key.scheme, admitted.binding)
        self._model.apply(message.task, mean)
        self._released += 1
        return encode(Aggregate(message.round, message.task, mean, len(contributors)))

    def _check_cohort(self, message: EncryptedAggregate) -> None:
        """Refuse, before decrypting, a cohort that cannot use its task's pinned divisor."""
        if self._privacy is None:
            self._divisors.check(message.task, message.contributors)

    def _decrypt(
        self,
        message: EncryptedAggregate,
        vector: EncryptedVector,
        plan: Scheme,
        binding: bytes,
        secret: WeightedDecryption | None = None,
    ) -> np.ndarray:
        """Decrypt and check that honest contributions under ``plan`` can produce the sum.

        Every refusal from here on is counted (see ``DEFAULT_MAX_REJECTIONS``).
        ``secret`` replaces the secret key (a share holder's combined partials). The
        mean is divided by the task's pinned total weight (the first release of its
        kind pins its own; :mod:`he_fed.protocol.normalisers`), or in a private run
        by the budget's public normaliser.
        """
        if self._rejected >= self._max_rejections:
            raise PolicyViolation(self._retired())
        budget = self._privacy
        try:
            mean, weight = checked_mean(
                secret or self._keys.secret,
                vector,
                plan,
                binding=binding,
                normaliser=None if budget is None else budget.divisor,
                divisor=self._divisors.divisor(message.task) if budget is None else None,
            )
        except AggregateRejected as exc:
            self._rejected += 1
            log.warning(
                "decrypted aggregate refused (%d of at most %d)%s",
                self._rejected,
                self._max_rejections,
                " off the CKKS grid" if exc.off_grid else "",
            )
            # One text for every check, so a refusal says one bit and no more.
            raise AggregateRejected(
                "the decrypted aggregate is not one that contributions within the plan can "
                "sum to; nothing was released",
                off_grid=exc.off_grid,
            ) from None
        if budget is None:
            self._divisors.pin(message.task, weight, message.contributors)
        return mean

    # -- state -----------------------------------------------------------------------

    def export_state(self) -> bytes:
        """Everything the policy depends on, as versioned bytes; no secret is in them.

        The key holder's secret key and identity are stored apart
        (:meth:`secret_key_bytes`, the identity's private bytes). A key holder
        whose process does not outlive a message (a Flower SuperNode runs each
        message in a fresh process) keeps all three on its own node and rebuilds
        itself with :meth:`restore`.
        """
        w = wire.Writer()
        w.raw(self._federation)
        self._plan.write_to(w)
        w.uint(self._min_clients or 0)
        w.uint(self._max_rejections)
        w.uint(self._last_round + 1)
        open_round, open_task = self._open if self._open is not None else (-1, Task.TRAIN)
        w.uint(open_round + 1)
        w.text(open_task.value, length_bytes=1)
        w.uint(self._released)
        w.uint(self._rejected)
        self._model.write_to(w)
        registry = self._registry.public_keys()
        w.uint(int(self._registry.frozen), 1)
        w.uint(len(registry), 4)
        for client_id, key in sorted(registry.items()):
            w.text(client_id)
            w.raw(key)
        privacy_policy.write_budget(w, self._privacy)
        self._divisors.write_to(w)
        fingerprint, params = self._keys.public.fingerprint, privacy_policy.STATE_PARAMS
        return wire.seal_envelope(
            wire.Kind.KEYHOLDER_STATE, w.getvalue(), params=params, fingerprint=fingerprint
        )

    @classmethod
    def restore(cls, keys: KeyPair, identity: Identity, state: bytes) -> KeyHolder:
        """The key holder whose :meth:`export_state` gave ``state``.

        Raises
        ------
        MalformedMessage
            If ``state`` is not a key holder's state.
        KeyMismatchError
            If it belongs to other keys.
        """
        envelope = wire.open_envelope(state, wire.Kind.KEYHOLDER_STATE)
        if envelope.fingerprint != keys.public.fingerprint:
            raise KeyMismatchError("this key holder state belongs to other keys")
        r = wire.Reader(envelope.body, "key holder state")
        federation = bytes(r.raw(FEDERATION_ID_BYTES))
        plan = RunPlan.read_from(r, "key holder state")
        min_clients, max_rejections = r.uint() or None, r.uint()
        last_round, open_round = r.uint() - 1, r.uint() - 1
        open_task = r.text(length_bytes=1)
        released, rejected = r.uint(), r.uint()
        model = GlobalModel.read_from(r, plan)
        frozen = bool(r.uint(1))
        clients = {}
        for _ in range(r.uint(4)):
            client_id = r.text()
            clients[client_id] = bytes(r.raw(32))
        privacy = privacy_policy.read_budget(r, envelope.params)
        divisors = privacy_policy.read_divisors(
            r, envelope.params, released=released, budget=privacy
        )
        r.finish()
        try:
            holder = cls(
                keys,
                plan=plan,
                min_clients=min_clients,
                clients=clients,
                identity=identity,
                federation=federation,
                max_rejections=max_rejections,
                privacy=privacy,
            )
            task = Task(open_task)
        except (ConfigurationError, ValueError) as exc:
            raise MalformedMessage(f"key holder state: {exc}") from None
        holder._last_round = last_round
        holder._open = (open_round, task) if open_round >= 0 else None
        holder._released, holder._rejected = released, rejected
        holder._model = model
        holder._divisors = divisors
        if frozen:
            holder._registry.freeze()
        return holder

    def _retired(self) -> str:
        return (
            f"the key holder retired its key after {self._rejected} refused aggregates: each "
            "refusal may tell the round's observers a bit, so it releases nothing more; "
            "find the client or aggregator that sends out-of-range sums, and generate new keys"
        )

    @property
    def rejected(self) -> int:
        """Decrypted aggregates refused so far (``AggregateRejected``)."""
        return self._rejected

    def __repr__(self) -> str:
        return f"<KeyHolder {self._keys.public!r} min_clients={self.min_clients}>"
