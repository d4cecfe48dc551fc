"""A client's checks of a ticket that need none of its data.

A Flower client node runs them before it reads its data: a setup comes from the
ServerApp, which may choose any plan or key, so only a ticket the key holder
signed, naming the digest of the node's plan under its key's encoding plan, may
lead the node to check its data against them (red team 44: otherwise each fresh
run gave one bit, "the data fits", for a plan the ServerApp chose). And only a
fresh one: a garbled or replayed ticket refused after the node read its data took
time that grows with its rows, a probe the ServerApp could repeat at will (red
team 51).
"""

from __future__ import annotations

from he_fed.crypto import PublicKey
from he_fed.exceptions import InvalidSignature, KeyMismatchError, PolicyViolation, ProtocolError
from he_fed.protocol import tasks
from he_fed.protocol.council import verify_ticket
from he_fed.protocol.messages import RoundStart, Task, decode
from he_fed.protocol.receipts import ticket_payload

__all__ = ["PHASE", "checked_ticket"]

#: How far a task takes a client (see ``Client(phase=...)``).
PHASE = {Task.MAGNITUDE: 1, Task.MOMENTS: 2, Task.TRAIN: 3, Task.EVALUATE: 3}


def checked_ticket(
    message: bytes,
    *,
    client_id: str,
    keyholder: bytes,
    plan: bytes,
    key: PublicKey,
    last_round: int,
    phase: int,
) -> RoundStart:
    """The round start in ``message``, if the key holder signed it for this plan and key.

    Parameters
    ----------
    message : bytes
        An encoded :class:`~he_fed.protocol.messages.RoundStart`.
    client_id : str
        For the messages.
    keyholder : bytes
        The key holder's identity, or its council's pin, that the client trusts.
    plan : bytes
        :func:`~he_fed.protocol.spec.ticket_plan` of the client's plan and key.
    key : PublicKey
        The client's public key.
    last_round, phase : int
        The last round the client answered (or tried to), and how far its tasks took
        it (:data:`PHASE`): it answers each round once, in order, and the statistics
        once each, before training.

    Raises
    ------
    MalformedMessage
        If ``message`` is not a round start.
    InvalidSignature
        If the trusted key holder did not sign it.
    PolicyViolation
        If it names another training or encoding plan.
    KeyMismatchError
        If it names another public key.
    ProtocolError
        If the client already answered this round or a later one, or these
        statistics, or trained already.
    """
    start = decode(message, RoundStart)
    if not verify_ticket(keyholder, start.signature, ticket_payload(start.signed_bytes())):
        raise InvalidSignature(
            f"client {client_id!r}: the round start is not signed by the key holder this "
            "client trusts"
        )
    if start.plan != plan:
        raise PolicyViolation(
            f"client {client_id!r}: the key holder's ticket names another training plan or "
            "encoding plan than this client's; it trains only under the plans the key holder "
            "names"
        )
    if start.fingerprint != tasks.plan_for(key, start.task).fingerprint:
        raise KeyMismatchError(
            f"client {client_id!r}: the key holder's ticket names another public key"
        )
    if start.round <= last_round:
        raise ProtocolError(
            f"client {client_id!r} already answered round {last_round}; "
            f"it answers each round once, in order (got round {start.round})"
        )
    if start.task in (Task.MAGNITUDE, Task.MOMENTS) and PHASE[start.task] <= phase:
        raise ProtocolError(
            f"client {client_id!r} answers the {start.task.value} statistics once, "
            "and no statistics after training started"
        )
    return start
