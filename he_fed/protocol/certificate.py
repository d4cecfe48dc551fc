"""Aggregate certificates: a quorum of share holders vouches for ONE aggregate per round.

The aggregator relays every message between share holders, so it can show
different holders different valid aggregates of one round (different cohorts of
the same clients' updates). If each holder then answered its own with a partial
decryption, ``t - 1`` colluding holders plus one honest partial would decrypt
each of them, and the difference of two cohorts is one client's exact update.

So a holder computes its partial only against a *certificate*: the signatures of
:func:`~he_fed.protocol.council.quorum_size` ``q = ceil((n + t) / 2)`` holders on
:func:`certificate_payload` (federation, round, task, SHA-256 of the exact
aggregate bytes, and the digest of the model its ticket carried). Each honest
holder signs at most one digest per round, after
all its policy checks; any two quorums share at least ``t`` holders, hence an
honest one when at most ``t - 1`` collude, so at most one aggregate per round is
ever certified, and the digest is bound into every partial's proof context
(:func:`~he_fed.protocol.decryptor.partial_context`). The model digest makes a
holder whose chain fell behind (it missed a release, and its own ticket for the
round carried an older model) unable to vouch for, or decrypt, an aggregate that
clients computed under another model: its payload differs from the quorum's
(a second red team had such a holder release under a model its chain did not
produce, forking it from the council). Under a privacy budget the payload also
carries the release's number, so that a quorum certifies each number once
(:mod:`he_fed.protocol.council_budget`). Bytes::

    payload      b"he-fed/threshold/aggregate/v3", federation (blob), round u64,
                 task (blob), SHA-256 of the encoded EncryptedAggregate (32),
                 model digest (blob; :func:`model_digest` of the holder's ticket),
                 release number u64 (0 without a privacy budget)
    certificate  a co-signature (:mod:`he_fed.protocol.council`)
"""

from __future__ import annotations

import hashlib

import numpy as np

from he_fed.crypto import wire
from he_fed.exceptions import PolicyViolation
from he_fed.protocol.council import parse_council, quorum_size, signers
from he_fed.protocol.messages import Task

__all__ = ["aggregate_digest", "certificate_payload", "check_certificate", "model_digest"]

_DOMAIN = b"he-fed/threshold/aggregate/v3"


def aggregate_digest(data: bytes) -> bytes:
    """SHA-256 of an encoded :class:`~he_fed.protocol.messages.EncryptedAggregate`."""
    return hashlib.sha256(data).digest()


def model_digest(task: Task, fields: tuple[np.ndarray, ...]) -> bytes:
    """SHA-256 of a ticket's task and model fields (weights, center, scale): what its
    clients answer."""
    h = hashlib.sha256(Task(task).value.encode())
    for field in fields:
        data = np.ascontiguousarray(field, dtype=np.float64).tobytes()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.digest()


def certificate_payload(
    federation: bytes, round_id: int, task: Task, digest: bytes, model: bytes, release: int = 0
) -> bytes:
    """The bytes each holder signs to vouch for the aggregate of ``digest``, answering
    a ticket that carried the model of digest ``model``, as privacy release number
    ``release`` (0 without a budget)."""
    w = wire.Writer()
    w.raw(_DOMAIN)
    w.blob(federation)
    w.uint(round_id, 8)
    w.blob(Task(task).value.encode())
    w.raw(digest)
    w.blob(model)
    w.uint(release, 8)
    return w.getvalue()


def check_certificate(pin: bytes, certificate: bytes, payload: bytes) -> None:
    """Refuse unless ``certificate`` holds a quorum of the council's signatures on ``payload``.

    Raises
    ------
    PolicyViolation
        If fewer than ``q`` distinct holders validly signed (or it is malformed).
    """
    council = parse_council(pin)
    if council is None:
        raise PolicyViolation("a share holder needs its council's pin to check certificates")
    threshold, keys = council
    quorum = quorum_size(threshold, len(keys))
    count = len(signers(pin, certificate, payload))
    if count < quorum:
        raise PolicyViolation(
            f"the aggregate is certified by {count} share holder(s); {quorum} of "
            f"{len(keys)} must vouch for it before any partial decryption"
        )
