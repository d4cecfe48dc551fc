"""A threshold share holder: a key holder whose secret is one share, and a full policy enforcer.

A :class:`Decryptor` is a :class:`~he_fed.protocol.keyholder.KeyHolder` in everything
but the secret: its own policy (plan, minimum cohort, registry frozen at the first
ticket, one release per round, retiring after refusals), its own model chain, and
the same checks before anything touches the aggregate
(:mod:`he_fed.protocol.admission`). What differs:

* :meth:`start_round` signs the next ticket as one member of the council: the
  signature is a one-entry co-signature (:mod:`he_fed.protocol.council`), and a
  ticket counts for clients and the aggregator with ``t`` of them
  (:func:`~he_fed.protocol.council.merge_tickets`).
* :meth:`partial_decrypt` runs every check, closes the round, computes this
  holder's partial decryption with its proofs, and returns it *sealed* to each
  other holder (:mod:`he_fed.protocol.partial_transport`): the aggregator, which
  relays them, cannot combine them.
* :meth:`release` opens the partials sealed to it, verifies every proof (a bad
  partial is left out and its holder named in :attr:`last_partials`), combines
  ``t`` valid ones, runs the key holder's range and binding checks and releases
  the mean rounded to the plan's grid, exactly as a key holder would.

Each holder that takes part combines and releases for itself, so every holder's
model chain, and so every holder's next ticket, stays the same.
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
from he_fed.protocol.admission import Admitted, check_receipts, check_sum
from he_fed.protocol.council import cosignature
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


def partial_context(federation: bytes, round_id: int, task: Task) -> bytes:
    """What a round's partial decryptions and their seals are bound to."""
    return (
        b"he-fed/threshold/round/v1"
        + federation
        + round_id.to_bytes(8, "big")
        + task.value.encode()
    )


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
    plan, min_clients, clients, identity, federation, max_rejections
        As :class:`~he_fed.protocol.keyholder.KeyHolder`: this holder's own policy.
    """

    def __init__(
        self,
        share: KeyShare,
        *,
        exchange: ExchangeKey,
        peers: Mapping[int, bytes],
        plan: RunPlan,
        min_clients: int | None = None,
        clients: dict[str, bytes] | None = None,
        identity: Identity | None = None,
        federation: bytes | None = None,
        max_rejections: int = DEFAULT_MAX_REJECTIONS,
    ) -> None:
        if not isinstance(share, KeyShare):
            raise ConfigurationError("a share holder needs its KeyShare")
        holders = share.verification.holders
        if set(peers) - set(range(1, holders + 1)):
            raise ConfigurationError(f"peers are numbered 1 to {holders}")
        super().__init__(
            KeyPair(share.public, None),  # type: ignore[arg-type]  # no secret key exists
            plan=plan,
            min_clients=min_clients,
            clients=clients,
            identity=identity,
            federation=federation,
            max_rejections=max_rejections,
        )
        self._share = share
        self._exchange = exchange
        self._peers = {i: bytes(k) for i, k in peers.items() if i != share.index}
        self._pending: tuple[EncryptedAggregate, Admitted, PartialDecryption] | None = None
        #: Holders whose partials the last release used, and those it refused.
        self.last_partials: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())

    @property
    def index(self) -> int:
        """This holder's number, 1 to ``holders``."""
        return self._share.index

    @property
    def exchange_bytes(self) -> bytes:
        """This holder's X25519 public key, for the other holders."""
        return self._exchange.public_bytes

    def secret_key_bytes(self) -> bytes:
        """A share holder has no secret key; its share file was written at the ceremony."""
        raise SecretMaterialError("a share holder holds a share, not a secret key")

    def start_round(self, task: Task = Task.TRAIN) -> bytes:
        """Sign the next round's ticket as one member of the council (see the module)."""
        ticket = decode(super().start_round(task), RoundStart)
        signed = cosignature({self.index: ticket.signature})
        return encode(dataclasses.replace(ticket, signature=signed))

    def decrypt_aggregate(self, data: bytes) -> bytes:
        """Refused: a share holder answers :meth:`partial_decrypt`, then :meth:`release`."""
        raise PolicyViolation("a share holder decrypts only with other holders' partials")

    def partial_decrypt(self, data: bytes) -> dict[int, bytes]:
        """Check an encoded :class:`EncryptedAggregate` as a key holder would, then answer.

        Returns
        -------
        dict of int to bytes
            This holder's partial decryption sealed to each other holder, by index.

        Raises
        ------
        PolicyViolation, MalformedMessage, KeyMismatchError
            As :meth:`KeyHolder.decrypt_aggregate`, before any partial is computed.
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
        if self._rejected >= self._max_rejections:
            raise PolicyViolation(self._retired())
        context = partial_context(self._federation, message.round, message.task)
        own = self._share.partial_decrypt(admitted.vector, context)
        self._pending = (message, admitted, own)
        payload = own.to_bytes(self._share.verification)
        return {
            j: seal(payload, sender=self.index, recipient=j, recipient_key=k, context=context)
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
            If no aggregate of this holder's awaits release.
        """
        if self._pending is None:
            raise PolicyViolation("no aggregate this holder checked awaits release")
        message, admitted, own = self._pending
        context = partial_context(self._federation, message.round, message.task)
        partials, unreadable = [own], []
        for blob in sealed:
            try:
                envelope = Sealed.from_bytes(blob)
            except HEFedError:
                continue
            if envelope.recipient != self.index or envelope.sender == self.index:
                continue
            try:
                partial = load_partial(
                    open_sealed(envelope, self._exchange, context), self._share.verification
                )
            except HEFedError:
                unreadable.append(envelope.sender)
                continue
            if partial.index != envelope.sender:
                unreadable.append(envelope.sender)
                continue
            partials.append(partial)
        combination = _Combination(self._share, partials, context)
        try:
            mean = self._decrypt(
                admitted.vector, admitted.key.scheme, admitted.binding, secret=combination
            )
        except InvalidPartialDecryption:
            raise  # nothing decrypted: more partials may still come
        except HEFedError:
            self._pending = None  # a refusal after combining uses up the round
            raise
        self._pending = None
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
