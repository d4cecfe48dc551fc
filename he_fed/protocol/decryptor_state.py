"""A share holder's state as bytes, for a holder whose process does not outlive a message.

A Flower SuperNode runs each message in a fresh process, so a share-holder node
rebuilds its :class:`~he_fed.protocol.decryptor.Decryptor` from its node state
for every message. :func:`export_decryptor_state` writes everything its policy
depends on; :func:`restore_decryptor` reads it back. Nothing secret is in the
bytes: the share, the identity and the exchange key are stored apart by the node.

What is written: the key holder's state (:meth:`KeyHolder.export_state`: plan,
registry, open round, model chain, counters, privacy budget), the model digest of the open
round's ticket, every model an aggregate was combined under, the shares the last
release used and refused, and the aggregate the holder vouched for, if it has not
released it yet (with its release number and its own partial decryption, once
computed). A pending
aggregate is checked again on restore (receipts and sum), exactly as when it was
first admitted, so a tampered state cannot smuggle an unchecked one in.
"""

from __future__ import annotations

from collections.abc import Mapping

from he_fed.crypto import KeyPair, wire
from he_fed.crypto.threshold import KeyShare, load_partial
from he_fed.exceptions import MalformedMessage
from he_fed.protocol.admission import check_receipts, check_sum
from he_fed.protocol.certificate import aggregate_digest
from he_fed.protocol.decryptor import Decryptor, _Pending
from he_fed.protocol.keyholder import KeyHolder
from he_fed.protocol.messages import EncryptedAggregate, decode
from he_fed.protocol.partial_transport import ExchangeKey
from he_fed.protocol.receipts import Identity

__all__ = ["export_decryptor_state", "restore_decryptor"]

_MAGIC = b"HEFED-DECRYPTOR-STATE/2"


def _indices(w: wire.Writer, values: tuple[int, ...]) -> None:
    w.uint(len(values), 2)
    for value in values:
        w.uint(value, 2)


def _read_indices(r: wire.Reader) -> tuple[int, ...]:
    return tuple(r.uint(2) for _ in range(r.uint(2)))


def export_decryptor_state(holder: Decryptor) -> bytes:
    """Everything ``holder``'s policy depends on, as bytes; no secret is in them."""
    w = wire.Writer()
    w.raw(_MAGIC)
    w.blob(holder.export_state())
    w.blob(holder._ticket_model)
    w.uint(len(holder._answered), 4)
    for model in sorted(holder._answered):
        w.blob(model)
    _indices(w, holder.last_partials[0])
    _indices(w, holder.last_partials[1])
    pending = holder._pending
    w.uint(int(pending is not None), 1)
    if pending is not None:
        w.blob(pending.raw)
        w.blob(pending.model)
        w.uint(pending.release, 4)
        own = b"" if pending.own is None else pending.own.to_bytes(holder._share.verification)
        w.blob(own)
    return w.getvalue()


def restore_decryptor(
    share: KeyShare,
    *,
    exchange: ExchangeKey,
    peers: Mapping[int, bytes],
    council: bytes,
    identity: Identity,
    state: bytes,
) -> Decryptor:
    """The share holder whose :func:`export_decryptor_state` gave ``state``.

    Raises
    ------
    MalformedMessage
        If ``state`` is not a share holder's state, or its pending aggregate no
        longer passes the checks it passed when admitted.
    KeyMismatchError
        If it belongs to another key.
    """
    r = wire.Reader(state, "share holder state")
    if bytes(r.raw(len(_MAGIC))) != _MAGIC:
        raise MalformedMessage("share holder state: not a share holder's state")
    base = KeyHolder.restore(KeyPair(share.public, None), identity, r.blob())  # type: ignore[arg-type]
    holder = Decryptor(
        share,
        exchange=exchange,
        peers=peers,
        council=council,
        identity=identity,
        plan=base._plan,
        min_clients=base._min_clients,
        clients=base._registry.public_keys(),
        federation=base._federation,
        max_rejections=base._max_rejections,
        privacy=base._privacy,
    )
    # The key holder's counters and chain, as KeyHolder.restore rebuilt them.
    for name in (
        "_min_clients",
        "_last_round",
        "_open",
        "_released",
        "_rejected",
        "_model",
        "_registry",
        "_divisors",  # the cohort and total weight the first release pinned (red team 55)
    ):
        setattr(holder, name, getattr(base, name))
    holder._ticket_model = r.blob()
    holder._answered = {r.blob() for _ in range(r.uint(4))}
    holder.last_partials = (_read_indices(r), _read_indices(r))
    if r.uint(1):
        raw, model, release = r.blob(), r.blob(), r.uint(4)
        own = r.blob()
        message = decode(raw, EncryptedAggregate)
        key = check_receipts(
            message,
            open_round=(message.round, message.task),
            registry=holder._registry,
            federation=holder._federation,
            public_key=holder._keys.public,
            plan=holder._plan,
        )
        admitted = check_sum(message, key=key, plan=holder._plan, min_clients=holder.min_clients)
        pending = _Pending(message, admitted, aggregate_digest(raw), model, release, raw=raw)
        if own:
            pending.own = load_partial(own, share.verification)
        holder._pending = pending
    r.finish()
    return holder
