"""A threshold share holder: a key holder whose secret is one share, and a full policy enforcer.

A :class:`Decryptor` is a :class:`~he_fed.protocol.keyholder.KeyHolder` in everything
but the secret: its own policy (plan, minimum cohort, registry frozen at the first
ticket, one release per round, retiring after refusals), its own model chain, and
the same checks before anything touches the aggregate
(:mod:`he_fed.protocol.admission`). What differs, so that with up to ``t - 1``
colluding holders the honest ones agree on one aggregate per round and one model
per ticket (``DESIGN.md``, "One aggregate per round, one model per ticket"):

* :meth:`start_round` signs the next ticket as one member of the council: the
  signature is a one-entry co-signature (:mod:`he_fed.protocol.council`), and a
  ticket counts with a quorum ``q = ceil((n + t) / 2)`` of them
  (:func:`~he_fed.protocol.council.merge_tickets`). A holder that vouched for
  the current round's aggregate signs no ticket until it holds that round's
  release: its next ticket always carries its own, up-to-date model. Nor does
  it sign a ticket whose task and model (weights, center, scale) it already
  combined an aggregate under, released or refused: each model is answered by
  one decrypted cohort, so two cohorts cannot be differenced.
* :meth:`endorse` runs every check, closes the round and signs the aggregate's
  digest: at most one digest per round.
* :meth:`partial_decrypt` answers only an aggregate certified by ``q`` holders
  (:mod:`he_fed.protocol.certificate`), the one it vouched for if it did, and
  returns its partial decryption sealed to each other holder
  (:mod:`he_fed.protocol.partial_transport`): the aggregator, which relays them,
  cannot combine them.
* :meth:`release` opens the partials sealed to it, verifies every proof (a bad
  partial is left out, and its holder named in :attr:`last_partials` when the
  seal shows that holder made it; a seal that does not open names nobody, since
  the relay could have made it), combines
  ``t`` valid ones, runs the key holder's range and binding checks and releases
  the mean rounded to the plan's grid, exactly as a key holder would; it is
  refused once the holder has moved on.

Under a privacy budget each holder keeps its own, numbers the releases it vouches
for and counts every certified one, so the aggregator and ``t - 1`` colluding
holders get no more releases than one honest holder's budget allows
(:mod:`he_fed.protocol.council_budget`).

Whoever combines ``t`` partials learns the exact sum and total weight: any one
holder colluding with the aggregator does (README, "Threat model").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from he_fed.crypto import EncryptedVector, KeyPair, WeightedSum
from he_fed.crypto.threshold import KeyShare, PartialDecryption, load_partial
from he_fed.exceptions import (
    ConfigurationError,
    HEFedError,
    InvalidPartialDecryption,
    PolicyViolation,
    SecretMaterialError,
)
from he_fed.privacy import PrivacyBudget
from he_fed.protocol.admission import Admitted, check_receipts, check_sum
from he_fed.protocol.certificate import (
    aggregate_digest,
    certificate_payload,
    check_certificate,
    model_digest,
)
from he_fed.protocol.council import cosignature, parse_council
from he_fed.protocol.council_budget import count_certified, next_release, vouch
from he_fed.protocol.keyholder import DEFAULT_MAX_REJECTIONS, KeyHolder
from he_fed.protocol.messages import (
    Aggregate,
    EncryptedAggregate,
    RoundStart,
    Task,
    decode,
    encode,
)
from he_fed.protocol.model import RunPlan
from he_fed.protocol.partial_transport import ExchangeKey, Sealed, open_sealed, seal
from he_fed.protocol.receipts import Identity

__all__ = ["Decryptor", "partial_context"]


def partial_context(federation: bytes, round_id: int, task: Task, digest: bytes) -> bytes:
    """What a round's partial decryptions and their seals are bound to: its certified digest."""
    return (
        b"he-fed/threshold/round/v2"
        + federation
        + round_id.to_bytes(8, "big")
        + task.value.encode()
        + digest
    )


@dataclasses.dataclass
class _Pending:
    """The aggregate this holder vouched for in the open round, until it releases it."""

    message: EncryptedAggregate
    admitted: Admitted
    digest: bytes
    model: bytes
    release: int  # its privacy release number (0 without a budget)
    own: PartialDecryption | None = None
    raw: bytes = b""  # the encoded aggregate, for a holder's saved state


class _Combination:
    """Decrypts by combining verified partials; what :func:`checked_mean` calls."""

    def __init__(self, share: KeyShare, partials: list[PartialDecryption], context: bytes) -> None:
        self._share, self._partials, self._context = share, partials, context
        self.used: tuple[int, ...] = ()
        self.refused: tuple[int, ...] = ()

    def decrypt_weighted(self, vector: EncryptedVector, *, binding: bytes = b"") -> WeightedSum:
        outcome = self._share.verification.combine(
            vector, self._partials, self._context, binding=binding
        )
        self.used, self.refused = outcome.used, outcome.refused
        return outcome.result


class Decryptor(KeyHolder):
    """Holds one share of a threshold Paillier key and enforces the key holder's policy.

    Parameters
    ----------
    share : KeyShare
        This holder's share (its index and every verification key inside).
    exchange : ExchangeKey
        This holder's X25519 key, to which the others seal their partials.
    peers : mapping of int to bytes
        Every holder's X25519 public key by index (this one's may be included).
    council : bytes
        The council pin (:func:`~he_fed.protocol.council.council_pin`): every
        holder's Ed25519 identity, this one's at its index, to check certificates.
    identity : Identity
        This holder's signing identity, the one the pin names.
    plan, min_clients, clients, federation, max_rejections, privacy
        As :class:`~he_fed.protocol.keyholder.KeyHolder`: this holder's own policy.
        Its budget is its own: it numbers the releases it vouches for and counts
        every certified one (:mod:`he_fed.protocol.council_budget`).
    """

    def __init__(
        self,
        share: KeyShare,
        *,
        exchange: ExchangeKey,
        peers: Mapping[int, bytes],
        council: bytes,
        identity: Identity,
        plan: RunPlan,
        min_clients: int | None = None,
        clients: dict[str, bytes] | None = None,
        federation: bytes | None = None,
        max_rejections: int = DEFAULT_MAX_REJECTIONS,
        privacy: PrivacyBudget | None = None,
    ) -> None:
        if not isinstance(share, KeyShare):
            raise ConfigurationError("a share holder needs its KeyShare")
        holders = share.verification.holders
        if set(peers) - set(range(1, holders + 1)):
            raise ConfigurationError(f"peers are numbered 1 to {holders}")
        parsed = parse_council(council)
        if (
            parsed is None
            or parsed[0] != share.verification.threshold
            or len(parsed[1]) != holders
            or parsed[1][share.index - 1] != identity.public_bytes
        ):
            raise ConfigurationError(
                f"the council pin must name {holders} holders, t={share.verification.threshold}, "
                f"and this holder's identity at index {share.index}"
            )
        super().__init__(
            KeyPair(share.public, None),  # type: ignore[arg-type]  # no secret key exists
            plan=plan,
            min_clients=min_clients,
            clients=clients,
            identity=identity,
            federation=federation,
            max_rejections=max_rejections,
            privacy=privacy,
        )
        self._share = share
        self._exchange = exchange
        self._council = council
        self._peers = {i: bytes(k) for i, k in peers.items() if i != share.index}
        self._pending: _Pending | None = None
        self._ticket_model = b""  # the model digest of the open round's ticket
        self._answered: set[bytes] = set()  # model digests an aggregate was combined under
        #: Holders whose partials the last release used, and those it refused.
        self.last_partials: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())

    @property
    def index(self) -> int:
        """This holder's number, 1 to ``holders``."""
        return self._share.index

    @property
    def council(self) -> bytes:
        """The council pin this holder checks tickets and certificates against."""
        return self._council

    @property
    def exchange_bytes(self) -> bytes:
        """This holder's X25519 public key, for the other holders."""
        return self._exchange.public_bytes

    def secret_key_bytes(self) -> bytes:
        """A share holder has no secret key; its share file was written at the ceremony."""
        raise SecretMaterialError("a share holder holds a share, not a secret key")

    def start_round(self, task: Task = Task.TRAIN) -> bytes:
        """Sign the next round's ticket as one member of the council (see the module).

        Raises
        ------
        PolicyViolation
            If this holder vouched for the open round's aggregate but holds no
            release of it (its model would be stale: liveness waits, safety holds),
            or it already combined an aggregate under this task and model.
            Otherwise as :meth:`KeyHolder.start_round`.
        """
        if self._pending is not None:
            raise PolicyViolation(
                f"share holder {self.index} vouched for round {self._pending.message.round}'s "
                "aggregate but holds no release of it: it signs no later ticket until it "
                "releases that round"
            )
        self._model.check_task(Task(task))
        model = model_digest(task, self._model.ticket_fields(Task(task)))
        if model in self._answered:
            raise PolicyViolation(
                f"share holder {self.index} already combined a {Task(task).value} aggregate "
                "under this model: each model is answered by one decrypted cohort"
            )
        ticket = decode(super().start_round(task), RoundStart)
        self._ticket_model = model
        signed = cosignature({self.index: ticket.signature})
        return encode(dataclasses.replace(ticket, signature=signed))

    def decrypt_aggregate(self, data: bytes) -> bytes:
        """Refused: a share holder answers :meth:`endorse`, then :meth:`partial_decrypt`."""
        raise PolicyViolation("a share holder decrypts only with other holders' partials")

    def _admit(self, data: bytes, release: int | None = None) -> _Pending:
        """Every key-holder check on an encoded aggregate; closes the open round.

        ``release`` is the number of a certified release already counted; without
        it, the aggregate is vouched for as the next one, and charged.
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
        self._check_cohort(message)  # before any partial: nothing of another cohort decrypts
        if self._rejected >= self._max_rejections:
            raise PolicyViolation(self._retired())
        if release is None:
            release = vouch(self._privacy)  # refuses past the target, before signing
        digest = aggregate_digest(data)
        self._pending = _Pending(
            message, admitted, digest, self._ticket_model, release, raw=bytes(data)
        )
        return self._pending

    def _payload(self, pending: _Pending) -> bytes:
        message = pending.message
        return certificate_payload(
            self._federation,
            message.round,
            message.task,
            pending.digest,
            pending.model,
            pending.release,
        )

    def endorse(self, data: bytes) -> bytes:
        """Check an encoded :class:`EncryptedAggregate` and vouch for it: once per round.

        Returns
        -------
        bytes
            This holder's signature on the aggregate's certificate payload, as a
            one-entry co-signature (merge ``q`` of them into a certificate with
            :func:`~he_fed.protocol.council.merge_signatures`).

        Raises
        ------
        PolicyViolation, MalformedMessage, KeyMismatchError
            As :meth:`KeyHolder.decrypt_aggregate`; a second aggregate of the same
            round is refused because the round is closed, and one more release past
            this holder's privacy budget before it signs.
        """
        pending = self._admit(data)
        return cosignature({self.index: self._identity.sign(self._payload(pending))})

    def partial_decrypt(self, data: bytes, certificate: bytes) -> dict[int, bytes]:
        """This holder's partial decryption of a certified aggregate, sealed to each other holder.

        A holder that vouched for an aggregate this round answers only that one;
        one that did not (it was absent) runs every check on it first.

        Returns
        -------
        dict of int to bytes
            The partial sealed to each other holder, by index.

        Raises
        ------
        PolicyViolation
            If ``certificate`` lacks a quorum's signatures on exactly these bytes
            (and this holder's model and release number), the holder vouched for
            another aggregate, or it already answered; or, for a certified release
            it did not vouch for, the release is past its privacy budget (counted).
        MalformedMessage, KeyMismatchError
            As :meth:`KeyHolder.decrypt_aggregate`, before any partial is computed.
        """
        message = decode(data, EncryptedAggregate)
        digest = aggregate_digest(data)
        pending = self._pending
        # The model of this holder's own ticket: a quorum that answered another model
        # (this holder's chain fell behind) certified a payload this one cannot match.
        model = self._ticket_model if pending is None else pending.model
        # Likewise the release number: a holder that missed a certified release must
        # have counted it (shown its certificate) before it can match the next one.
        release = next_release(self._privacy) if pending is None else pending.release
        payload = certificate_payload(
            self._federation, message.round, message.task, digest, model, release
        )
        check_certificate(self._council, certificate, payload)
        if pending is None:
            count_certified(self._privacy, release, self.index)  # counted even if refused
            pending = self._admit(data, release)
        elif pending.digest != digest or pending.own is not None:
            raise PolicyViolation(
                f"share holder {self.index} answers one aggregate of round "
                f"{pending.message.round}, once: the one it vouched for"
            )
        context = partial_context(self._federation, message.round, message.task, digest)
        pending.own = self._share.partial_decrypt(pending.admitted.vector, context)
        body = pending.own.to_bytes(self._share.verification)
        return {
            j: seal(
                body,
                sender=self.index,
                sender_key=self._exchange,
                recipient=j,
                recipient_key=k,
                context=context,
            )
            for j, k in sorted(self._peers.items())
        }

    def release(self, sealed: Iterable[bytes]) -> bytes:
        """Combine this holder's partial with those sealed to it, check, and release.

        Parameters
        ----------
        sealed : iterable of bytes
            Partials other holders sealed to this one (others' are ignored).

        Returns
        -------
        bytes
            An encoded :class:`Aggregate`, the same every honest holder releases.

        Raises
        ------
        InvalidPartialDecryption
            If fewer than ``t`` valid partials arrived (the round stays pending, so a
            later call with more partials can still release it).
        AggregateRejected
            If the combined sum is not one honest contributions can produce (counted).
        PolicyViolation
            If no partial of this holder's awaits release (none computed, already
            released, or the holder has signed a later ticket).
        """
        if self._pending is None or self._pending.own is None:
            raise PolicyViolation("no aggregate this holder partially decrypted awaits release")
        pending = self._pending
        message, admitted = pending.message, pending.admitted
        context = partial_context(self._federation, message.round, message.task, pending.digest)
        partials, unreadable = [pending.own], []
        for blob in sealed:
            try:
                envelope = Sealed.from_bytes(blob)
            except HEFedError:
                continue
            if envelope.recipient != self.index or envelope.sender not in self._peers:
                continue
            try:
                body = open_sealed(envelope, self._exchange, self._peers[envelope.sender], context)
            except HEFedError:
                continue  # anyone could have made it: the relay too, so it names nobody
            try:
                partial = load_partial(body, self._share.verification)
            except HEFedError:
                unreadable.append(envelope.sender)  # sealed by its sender: its fault
                continue
            if partial.index != envelope.sender:
                unreadable.append(envelope.sender)
                continue
            partials.append(partial)
        combination = _Combination(self._share, partials, context)
        try:
            mean = self._decrypt(
                message, admitted.vector, admitted.key.scheme, admitted.binding, secret=combination
            )
        except InvalidPartialDecryption:
            raise  # nothing decrypted: more partials may still come
        except HEFedError:
            self._pending = None  # a refusal after combining uses up the round
            self._answered.add(pending.model)  # ... and its model: the sum was combined
            raise
        self._pending = None
        self._answered.add(pending.model)
        self.last_partials = (
            combination.used,
            tuple(sorted(set(combination.refused) | set(unreadable))),
        )
        self._model.apply(message.task, mean)
        self._released += 1
        return encode(Aggregate(message.round, message.task, mean, len(message.contributors)))

    def __repr__(self) -> str:
        vk = self._share.verification
        return f"<Decryptor {self.index} of {vk.holders} (t={vk.threshold})>"
