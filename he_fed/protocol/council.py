"""Round tickets signed by a quorum of the ``n`` share holders instead of one key holder.

With threshold decryption no single party owns the rounds: each share holder
(:class:`~he_fed.protocol.decryptor.Decryptor`) computes the next ticket itself,
from the public run plan and the aggregates it released, and signs it; a ticket
counts only with valid Ed25519 signatures from at least :func:`quorum_size`
``q = ceil((n + t) / 2)`` distinct holders, not ``t``: any two quorums share at
least ``t`` holders, so an honest one when at most ``t - 1`` collude, and an
honest holder signs one ticket per round (``DESIGN.md``, "One aggregate per
round, one model per ticket"). Only ``n - q`` holders may be absent.

Clients and the aggregator pin the *council* where they pinned the key holder's
32-byte identity: the pin is :func:`council_pin` (a magic, ``t``, ``n``, and the
holders' public keys), and :func:`verify_ticket` accepts either kind of pin::

    council pin      b"HFC1", t u8, n u8, n × 32-byte Ed25519 public keys
    co-signature     k × (holder index u8, 64-byte signature), indices increasing

Every holder signs the same bytes (``ticket_payload`` of the same ticket), so the
signatures can be collected in any order by whoever relays them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from he_fed.crypto.threshold import MAX_HOLDERS
from he_fed.exceptions import ConfigurationError, ProtocolError
from he_fed.protocol.messages import RoundStart, decode, encode
from he_fed.protocol.receipts import verify_signature

__all__ = [
    "COUNCIL_MAGIC",
    "cosignature",
    "council_pin",
    "is_pin",
    "merge_signatures",
    "merge_tickets",
    "parse_council",
    "quorum_size",
    "signers",
    "verify_ticket",
]

COUNCIL_MAGIC = b"HFC1"
_KEY, _SIG = 32, 64
#: Most bytes of a co-signature (every holder signs).
MAX_COSIGNATURE_BYTES = MAX_HOLDERS * (1 + _SIG)


def quorum_size(threshold: int, holders: int) -> int:
    """``ceil((holders + threshold) / 2)``: any two sets this large share ``threshold`` holders."""
    return (holders + threshold + 1) // 2


def council_pin(threshold: int, holders: Sequence[bytes]) -> bytes:
    """The pin of a council: ``threshold`` of the ``holders``' identities sign a ticket.

    Raises
    ------
    ConfigurationError
        If a key is not 32 bytes or the counts are out of range.
    """
    if not 2 <= threshold <= len(holders) <= MAX_HOLDERS:
        raise ConfigurationError(f"a council is t of n holders with 2 <= t <= n <= {MAX_HOLDERS}")
    if any(not isinstance(k, bytes) or len(k) != _KEY for k in holders):
        raise ConfigurationError("a holder's identity is a 32-byte Ed25519 public key")
    return COUNCIL_MAGIC + bytes([threshold, len(holders)]) + b"".join(holders)


def parse_council(pin: bytes) -> tuple[int, tuple[bytes, ...]] | None:
    """``(t, holders' keys)`` of a council pin, or None if ``pin`` is not one."""
    head = len(COUNCIL_MAGIC) + 2
    if not isinstance(pin, bytes) or len(pin) < head or not pin.startswith(COUNCIL_MAGIC):
        return None
    threshold, count = pin[head - 2], pin[head - 1]
    if len(pin) != head + count * _KEY or not 2 <= threshold <= count:
        return None
    keys = tuple(pin[head + i * _KEY : head + (i + 1) * _KEY] for i in range(count))
    return threshold, keys


def is_pin(pin: object) -> bool:
    """Whether ``pin`` is a single identity (32 bytes) or a council pin."""
    return isinstance(pin, bytes) and (len(pin) == _KEY or parse_council(pin) is not None)


def cosignature(signatures: Mapping[int, bytes]) -> bytes:
    """Holders' signatures (by index, from 1) as one co-signature."""
    return b"".join(bytes([i]) + signatures[i] for i in sorted(signatures))


def signers(pin: bytes, signature: bytes, payload: bytes) -> frozenset[int]:
    """The council members whose valid signatures on ``payload`` ``signature`` holds.

    Empty if ``pin`` is not a council pin or any entry is malformed, repeated or invalid.
    """
    council = parse_council(pin)
    if council is None:
        return frozenset()
    _, keys = council
    if len(signature) % (1 + _SIG) or len(signature) > MAX_COSIGNATURE_BYTES:
        return frozenset()
    seen: set[int] = set()
    for at in range(0, len(signature), 1 + _SIG):
        index = signature[at]
        if not 1 <= index <= len(keys) or index in seen:
            return frozenset()
        if not verify_signature(keys[index - 1], signature[at + 1 : at + 1 + _SIG], payload):
            return frozenset()
        seen.add(index)
    return frozenset(seen)


def verify_ticket(pin: bytes, signature: bytes, payload: bytes) -> bool:
    """Whether ``signature`` signs ``payload`` for ``pin``: one key, or a council's quorum."""
    council = parse_council(pin)
    if council is None:
        return verify_signature(pin, signature, payload)
    threshold, keys = council
    return len(signers(pin, signature, payload)) >= quorum_size(threshold, len(keys))


def _entries(signature: bytes) -> dict[int, bytes]:
    if len(signature) % (1 + _SIG):
        raise ProtocolError("a holder's ticket signature is not a co-signature")
    return {
        signature[at]: signature[at + 1 : at + 1 + _SIG]
        for at in range(0, len(signature), 1 + _SIG)
    }


def merge_signatures(cosignatures: Iterable[bytes]) -> bytes:
    """One co-signature holding every entry of ``cosignatures`` (each holder once).

    Raises
    ------
    ProtocolError
        If one is not a co-signature.
    """
    merged: dict[int, bytes] = {}
    for signature in cosignatures:
        merged.update(_entries(signature))
    return cosignature(merged)


def merge_tickets(tickets: Iterable[bytes]) -> bytes:
    """One ticket co-signed by every holder whose ticket is given.

    Raises
    ------
    ProtocolError
        If the holders signed different tickets (their model chains differ) or none.
    """
    decoded = [decode(t, RoundStart) for t in tickets]
    if not decoded:
        raise ProtocolError("no holder signed a ticket")
    first = decoded[0]
    signatures: dict[int, bytes] = {}
    for ticket in decoded:
        if ticket.signed_bytes() != first.signed_bytes():
            raise ProtocolError(
                f"share holders signed different tickets for round {first.round}: their "
                "policies or model chains differ"
            )
        signatures.update(_entries(ticket.signature))
    return encode(dataclasses.replace(first, signature=cosignature(signatures)))
