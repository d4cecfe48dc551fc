"""The messages that pass between roles, and the one place they turn into bytes.

Every message is a frozen dataclass. :func:`encode` and :func:`decode` are the
only way to turn them into bytes and back; the bytes are envelopes of
:mod:`he_fed.crypto.wire`, so they are versioned, checksummed and pickle-free.

::

    KeyHolder ──RoundStart (signed ticket)──► Aggregator ──► Client
    Client ──EncryptedUpdate──► Aggregator
    Aggregator ──EncryptedAggregate──► KeyHolder ──Aggregate──► Aggregator

A :class:`RoundStart` is a *ticket*: the key holder signs it, and the aggregator
only forwards it (see :mod:`he_fed.protocol.tickets`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, TypeVar, Union

import numpy as np

from he_fed._validation import MAX_CLIENT_ID_BYTES
from he_fed.crypto import _value_range, wire
from he_fed.exceptions import MalformedMessage

__all__ = [
    "FEDERATION_ID_BYTES",
    "Aggregate",
    "EncryptedAggregate",
    "EncryptedUpdate",
    "Message",
    "Receipt",
    "RoundStart",
    "Task",
    "decode",
    "encode",
]

_MAX_ID = MAX_CLIENT_ID_BYTES


#: Length of a federation id.
FEDERATION_ID_BYTES = 16
_SIGNATURE_BYTES = 64
#: A council of up to 64 holders co-signs a ticket (index byte and signature each).
_MAX_TICKET_SIGNATURE = 64 * (_SIGNATURE_BYTES + 1)
_DIGEST_BYTES = 32
#: Largest binding commitment, and a proof's allowance beyond :func:`_proof_bound`'s
#: share: a few residues under an 8192-bit key.
_MAX_PROOF = 4096
#: A weight's proof under the widest plan (``max_weight = 2**64 - 1``), which every
#: Paillier and CKKS proof starts with (``_weight_range.linked_size``, checked in
#: ``tests/crypto/test_weight_range.py``).
MAX_RANGE_PROOF = 28_218


def _proof_bound(carrier: bytes) -> int:
    """Largest proof that may come with ``carrier`` (the vector, or its commitment).

    A proof is the weight's range proof, the values' range proof, then the proof of
    an opening; each is bounded by the carrier's length ``L`` alone, so the bound is
    linear in what the message carries, never open-ended:

    * The weight's: at most :data:`MAX_RANGE_PROOF`, the widest plan's.
    * The values' (:mod:`he_fed.crypto._value_range`): a carrier byte holds at most 8
      bits of the values' ranges. A packed Paillier slot has at least as many bits as
      its value's range, and a ciphertext of ``key_bits`` bits has ``key_bits / 8``
      bytes of commitment (twice that of vector); per-value Paillier puts one value
      (at most 128 bits) in a ciphertext; a CKKS digit (at most 54 bits) takes a slot
      of 8 bytes of ``c1`` per data prime. So it covers at most ``8 L`` bits in at
      most :data:`~he_fed.crypto._value_range.MAX_VALUE_BITS` planes, and is at most
      :func:`~he_fed.crypto._value_range.largest_size` of ``8 L``: its 128 planes
      take 74,880 bytes whatever ``L``, which is what a fixed allowance of 4,096
      missed (a 1024-bit key's one-ciphertext magnitude round: 92 planes, 71,318
      bytes in all against 70,458).
    * The opening's: a CKKS proof (:mod:`he_fed.crypto._opening_proof`) takes under
      16 bytes per committed slot (at worst 56-bit slots, 9 to an exponent, each
      response 96 bytes) plus a few hundred, and each slot takes 8 bytes of ``c1`` per
      data prime in the commitment, more in the ciphertext; a Paillier proof is one
      residue. So at most :data:`_MAX_PROOF` plus ``2 L``
      (``tests/crypto/test_opening_proof.py``).

    That is 109,095 bytes whatever ``L`` (from 16 bytes on), and 8 responses and 2
    bytes per carrier byte (154 while ``8 L < 2^17``): a 1024-bit key's 128-byte
    commitment admits 28,218 + 96,237 + 4,096 + 256 = 128,807 bytes, a 2048-bit
    key's 256-byte one 148,519.
    """
    bits = 8 * len(carrier)
    return MAX_RANGE_PROOF + _value_range.largest_size(bits) + _MAX_PROOF + 2 * len(carrier)


class Task(str, enum.Enum):
    """What a round computes."""

    #: Federated training: clients send their weighted model update.
    TRAIN = "train"
    #: Standardisation, pass 1: each feature's log2 root-mean-square.
    MAGNITUDE = "magnitude"
    #: Standardisation, pass 2: first and second moments of pre-scaled features.
    MOMENTS = "moments"
    #: Federated evaluation: each client's metric sums on its validation rows.
    EVALUATE = "evaluate"


def _frozen_array(values: object) -> np.ndarray:
    arr = np.array(values, dtype=np.float64).ravel()
    arr.flags.writeable = False
    return arr


def _read_task(r: wire.Reader) -> Task:
    raw = r.text(length_bytes=1)
    try:
        return Task(raw)
    except ValueError:
        raise MalformedMessage(f"unknown task {raw!r}") from None


@dataclass(frozen=True, eq=False)
class RoundStart:
    """Key holder to clients (through the aggregator): a signed round ticket.

    The key holder owns the rounds: it picks the round id and the task, computes
    the global model from the public run plan and the aggregates it released, and
    signs all of it. Clients train only on a ticket that verifies under the key
    holder's identity they were provisioned with, and answer each round once.

    Attributes
    ----------
    federation : bytes
        16-byte id of the federation (drawn by the key holder at setup), so a
        ticket of one federation is worthless in another.
    round : int
        Round id, unique and increasing over a federation's life.
    task : Task
        What to compute.
    fingerprint : bytes
        Fingerprint of the public key clients must encrypt under.
    weights : ndarray of shape (n_features + 1,)
        Global weights (coefficients, then intercept) for :attr:`Task.TRAIN`.
    center, scale : ndarray of shape (n_features,)
        Standardisation ``(x - center) / scale`` for training, or the pre-scale of
        :attr:`Task.MOMENTS` in ``scale``. Empty when unused.
    plan : bytes
        The digest of the clients' training plan the key holder's run plan names
        (:attr:`~he_fed.protocol.model.RunPlan.client_plan`): a client answers only
        a ticket naming its own plan's, so one ticket's contributors all trained
        under one plan.
    signature : bytes
        The key holder's Ed25519 signature over all of the above.
    """

    federation: bytes
    round: int
    task: Task
    fingerprint: bytes
    weights: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    plan: bytes = b""
    signature: bytes = b""

    kind: ClassVar[wire.Kind] = wire.Kind.ROUND_START

    def __post_init__(self) -> None:
        for name in ("weights", "center", "scale"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name)))

    def signed_bytes(self) -> bytes:
        """The canonical bytes the key holder signs: every field but the signature."""
        w = wire.Writer()
        self._write_body(w)
        return w.getvalue()

    @classmethod
    def encoded_size(cls, weights: int, statistics: int) -> int:
        """Bytes of a ticket of ``weights`` weights and ``statistics`` centres and scales,
        signed by one key holder: the empty ticket and 8 bytes a number, without encoding
        an update-sized one (8 GB at a billion features)."""
        empty = np.zeros(0)
        ticket = cls(bytes(FEDERATION_ID_BYTES), 1, Task.TRAIN, bytes(_DIGEST_BYTES), empty,
                     empty, empty, bytes(_DIGEST_BYTES), bytes(_SIGNATURE_BYTES))  # fmt: skip
        return len(encode(ticket)) + 8 * (weights + 2 * statistics)

    def _write_body(self, w: wire.Writer) -> None:
        w.blob(self.federation)
        w.uint(self.round)
        w.text(self.task.value, length_bytes=1)
        w.blob(self.fingerprint)
        w.array(self.weights)
        w.array(self.center)
        w.array(self.scale)
        w.blob(self.plan)

    def _write(self, w: wire.Writer) -> None:
        self._write_body(w)
        w.blob(self.signature)

    @classmethod
    def _read(cls, r: wire.Reader) -> RoundStart:
        federation = _fixed(r, FEDERATION_ID_BYTES, "federation id")
        round_id, task = r.uint(), _read_task(r)
        fingerprint = _fixed(r, _DIGEST_BYTES, "key fingerprint")
        weights, center, scale = r.array(), r.array(), r.array()
        plan = r.blob(max_size=_DIGEST_BYTES)
        if len(plan) not in (0, _DIGEST_BYTES):
            raise MalformedMessage(f"a ticket's plan digest is {_DIGEST_BYTES} bytes or none")
        # One key holder's signature, or a council's co-signature (protocol/council.py).
        signature = r.blob(max_size=_MAX_TICKET_SIGNATURE)
        if len(signature) != _SIGNATURE_BYTES and len(signature) % (_SIGNATURE_BYTES + 1):
            raise MalformedMessage("ticket signature is neither one signature nor a co-signature")
        return cls(federation, round_id, task, fingerprint, weights, center, scale, plan, signature)


def _fixed(r: wire.Reader, size: int, what: str) -> bytes:
    value = r.blob(max_size=size)
    if len(value) != size:
        raise MalformedMessage(f"{what} must be {size} bytes")
    return value


@dataclass(frozen=True)
class EncryptedUpdate:
    """Client to aggregator: one encrypted, signed contribution.

    It carries two signatures, because two parties check different things:

    * :attr:`signature` covers the ciphertext's digest. Only the aggregator, which
      holds the ciphertext, checks it.
    * :attr:`commitment_signature` covers the commitment alone. The aggregator
      forwards it in a :class:`Receipt`, and the key holder checks it. Nothing the
      key holder receives depends on the ciphertext's message-dependent part, so
      it cannot test a guess about one client's update against a digest.

    Attributes
    ----------
    round : int
        The round it answers.
    task : Task
        The task it answers.
    client_id : str
        Who sent it.
    vector : bytes
        The encrypted vector (its own envelope carries the key fingerprint).
    signature : bytes
        Ed25519 signature over the federation, round, task, client id, key
        fingerprint and the digests of the vector and its commitment.
    commitment_signature : bytes
        Ed25519 signature over the same fields but the vector's digest (see
        :mod:`he_fed.protocol.receipts`).
    proof : bytes, default=b""
        Proof that the sender knows its commitment's randomness, bound to the
        commitment signature's payload
        (:meth:`~he_fed.crypto.EncryptedVector.prove_commitment`): of its DJN
        exponents for Paillier, of its binding commitment's opening for CKKS.
    binding : bytes, default=b""
        The commitment that binds the vector's plaintext, covered by both
        signatures (:meth:`~he_fed.crypto.EncryptedVector.binding`).
    """

    round: int
    task: Task
    client_id: str
    vector: bytes
    signature: bytes
    commitment_signature: bytes
    proof: bytes = b""
    binding: bytes = b""

    kind: ClassVar[wire.Kind] = wire.Kind.UPDATE

    def _write(self, w: wire.Writer) -> None:
        w.uint(self.round)
        w.text(self.task.value, length_bytes=1)
        w.text(self.client_id, length_bytes=2)
        w.blob(self.vector)
        w.blob(self.signature)
        w.blob(self.commitment_signature)
        w.blob(self.proof)
        w.blob(self.binding)

    @classmethod
    def _read(cls, r: wire.Reader) -> EncryptedUpdate:
        round_id, task, client_id = r.uint(), _read_task(r), r.text(max_size=_MAX_ID)
        vector = r.blob()
        signature = _fixed(r, _SIGNATURE_BYTES, "signature")
        commitment_signature = _fixed(r, _SIGNATURE_BYTES, "commitment signature")
        proof = r.blob(max_size=_proof_bound(vector))
        binding = r.blob(max_size=_MAX_PROOF)
        return cls(
            round_id, task, client_id, vector, signature, commitment_signature, proof, binding
        )


@dataclass(frozen=True)
class Receipt:
    """What the key holder needs to check one contribution to an aggregate.

    It holds no digest of the ciphertext: see :class:`EncryptedUpdate`.

    Attributes
    ----------
    client_id : str
        The contributor.
    commitment : bytes
        The ciphertext's message-independent commitment.
    signature : bytes
        The contributor's Ed25519 signature over the commitment
        (:attr:`EncryptedUpdate.commitment_signature`).
    proof : bytes, default=b""
        The contributor's proof of knowledge of the commitment's randomness
        (:attr:`EncryptedUpdate.proof`).
    binding : bytes, default=b""
        The contributor's signed commitment to its plaintext
        (:attr:`EncryptedUpdate.binding`).
    """

    client_id: str
    commitment: bytes
    signature: bytes
    proof: bytes = b""
    binding: bytes = b""

    def _write(self, w: wire.Writer) -> None:
        w.text(self.client_id, length_bytes=2)
        w.blob(self.commitment)
        w.blob(self.signature)
        w.blob(self.proof)
        w.blob(self.binding)

    @classmethod
    def _read(cls, r: wire.Reader) -> Receipt:
        client_id = r.text(max_size=_MAX_ID)
        commitment = r.blob()
        signature = _fixed(r, _SIGNATURE_BYTES, "signature")
        proof = r.blob(max_size=_proof_bound(commitment))
        return cls(client_id, commitment, signature, proof, r.blob(max_size=_MAX_PROOF))


@dataclass(frozen=True)
class EncryptedAggregate:
    """Aggregator to key holder: the homomorphic sum and a receipt per contribution.

    Attributes
    ----------
    round : int
        The round summed.
    task : Task
        The round's task.
    receipts : tuple of Receipt
        One per contribution the sum holds.
    vector : bytes
        The encrypted sum.
    """

    round: int
    task: Task
    receipts: tuple[Receipt, ...]
    vector: bytes

    kind: ClassVar[wire.Kind] = wire.Kind.ENCRYPTED_AGGREGATE

    @property
    def contributors(self) -> tuple[str, ...]:
        """The client ids of the receipts."""
        return tuple(r.client_id for r in self.receipts)

    def _write(self, w: wire.Writer) -> None:
        w.uint(self.round)
        w.text(self.task.value, length_bytes=1)
        w.uint(len(self.receipts), 4)
        for receipt in self.receipts:
            receipt._write(w)
        w.blob(self.vector)

    @classmethod
    def _read(cls, r: wire.Reader) -> EncryptedAggregate:
        round_id, task = r.uint(), _read_task(r)
        count = r.uint(4)
        if count > r.remaining // (2 + 4 * 8 + _SIGNATURE_BYTES):
            raise MalformedMessage(f"aggregate claims {count} receipts")
        receipts = tuple(Receipt._read(r) for _ in range(count))
        return cls(round_id, task, receipts, r.blob())


@dataclass(frozen=True, eq=False)
class Aggregate:
    """Key holder to aggregator: the decrypted weighted mean, and nothing per client.

    The total weight (the cohort's sample count) stays with the key holder: across
    rounds with chosen cohorts, released totals would give every client's count.

    Attributes
    ----------
    round : int
        The round decrypted.
    task : Task
        The round's task.
    mean : ndarray
        ``sum_k n_k v_k / sum_k n_k``, rounded to the plan's grid, which keeps the
        total weight from being read off it (:mod:`he_fed.protocol.release`).
    contributors : int
        Number of contributions in the sum.
    """

    round: int
    task: Task
    mean: np.ndarray
    contributors: int

    kind: ClassVar[wire.Kind] = wire.Kind.AGGREGATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _frozen_array(self.mean))

    def _write(self, w: wire.Writer) -> None:
        w.uint(self.round)
        w.text(self.task.value, length_bytes=1)
        w.array(self.mean)
        w.uint(self.contributors)

    @classmethod
    def _read(cls, r: wire.Reader) -> Aggregate:
        return cls(r.uint(), _read_task(r), r.array(), r.uint())


Message = Union[RoundStart, EncryptedUpdate, EncryptedAggregate, Aggregate]  # noqa: UP007
_M = TypeVar("_M", RoundStart, EncryptedUpdate, EncryptedAggregate, Aggregate)


def encode(message: Message) -> bytes:
    """Turn a message into versioned bytes."""
    w = wire.Writer()
    message._write(w)
    return wire.seal_envelope(message.kind, w)


@wire.unpinned
def decode(data: bytes, cls: type[_M]) -> _M:
    """Read a message of type ``cls`` from bytes.

    Raises
    ------
    MalformedMessage
        If the bytes are not a well-formed ``cls`` message.
    """
    # A view, not a copy: a round's aggregate carries every contribution's proof.
    r = wire.Reader(wire.open_body(data, cls.kind), cls.__name__)
    message = cls._read(r)
    r.finish()
    return message
