"""Signed contributions, and the receipts a key holder checks before it decrypts.

The attack: a curious aggregator forwards one client's ciphertext (or one client's
ciphertext K times, or last round's) as if it were an aggregate, and reads that
client's update in the key holder's answer.

The defence, chosen as the cheapest sound design:

1. Every client has an Ed25519 identity, registered with the key holder (and the
   aggregator) at setup. The key holder's registry is fixed once its first round
   ticket is signed.
2. With each update the client signs twice, over the federation id, round, task,
   client id and key fingerprint:

   * the *update signature* adds the SHA-256 of its ciphertext bytes and of its
     commitment. The aggregator, which holds the ciphertext, checks it.
   * the *commitment signature* adds the SHA-256 of the commitment alone. The
     *commitment* (:meth:`~he_fed.crypto.EncryptedVector.commitment`) is a part of
     the ciphertext that does not depend on the message and adds exactly as the
     ciphertext does: ``c mod n`` for Paillier, the ``c1`` polynomial for CKKS.
   With a Paillier update the client also sends a proof that it knows its
   commitment's randomness (:mod:`he_fed.crypto._commitment_proof`), bound to the
   commitment signature's payload, so that a client colluding with the aggregator
   cannot sign a *rogue* commitment that cancels the others' receipts. The
   aggregator and the key holder both check it.
3. The aggregator forwards the summed ciphertext and, per contributor, a
   :class:`~he_fed.protocol.messages.Receipt`: client id, commitment, commitment
   signature and proof.
4. The key holder decrypts only if the signatures verify for the round it
   ticketed, the contributors are distinct, registered and at least its minimum
   cohort, and the aggregate's own commitment equals the sum of the receipts'
   commitments.

What the key holder learns from a receipt: who contributed, and a commitment,
which is independent of the message (Paillier: ``r^n mod n``; CKKS: ``pk1·u +
e1``). It never receives a digest of a single ciphertext. With the
factorisation it can compute ``r^n mod n²`` from ``r^n mod n`` and so re-encrypt a
guess ``m`` as ``(1 + m·n)·r^n``, but it has nothing to compare that with: the
only ciphertext it sees is the aggregate. (An earlier design put the ciphertext's
digest in the receipt, which let the key holder decide whether a guessed update
was a client's: ``tests/protocol/test_receipt_oracle.py`` performs that attack.)

Why this and not the alternatives:

* Forwarding the clients' ciphertexts themselves would let the key holder check the
  sum, but it would also hand the key holder every individual ciphertext, which it
  can decrypt: the aggregator's attack would simply move to the key holder.
* Signatures over ciphertext hashes alone bind nothing the key holder can check
  against the aggregate, and hand it the oracle above.
* The commitment costs the client nothing for Paillier (one reduction per
  ciphertext) and one parse for CKKS, and forwarding it costs half a ciphertext per
  contributor (Paillier ``n`` bytes per ciphertext; CKKS the ``c1`` half).

Soundness sketch: a Paillier ciphertext ``C`` whose residue ``C mod n`` equals
``∏ r_k^n mod n`` is ``(1 + x·n) · (∏ r_k)^n`` for some ``x`` (``y ↦ y^n`` is a
bijection on ``Z*_n``), and the only such ciphertexts the aggregator can build
without the factorisation are ``∏ c_k · (1 + x·n)``, which decrypt to the honest
sum plus an offset it chose. For CKKS, with ``C1 = Σ c1_k`` fixed, the decryption
``C0 + C1·s`` equals ``C0 − Σ c0_k + Σ (m_k + e_k)``: again the honest sum plus an
offset the aggregator chose. Neither lets it isolate one client, and the binding
commitments refuse the offset itself after decryption (:mod:`he_fed.crypto._binding`,
:mod:`he_fed.crypto._ckks_binding`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from he_fed._validation import check_client_id
from he_fed.crypto import AggregationKey, wire
from he_fed.exceptions import ConfigurationError, PolicyViolation
from he_fed.protocol.messages import Receipt, Task

__all__ = [
    "Identity",
    "Registry",
    "commitment_payload",
    "commitments_digest",
    "contribution_payloads",
    "digest",
    "ticket_payload",
    "update_payload",
    "verify_signature",
]

_UPDATE_DOMAIN = b"he-fed/update/v4"
_COMMITMENT_DOMAIN = b"he-fed/commitment/v4"
_TICKET_DOMAIN = b"he-fed/ticket/v3"


def digest(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    return hashlib.sha256(data).digest()


def commitments_digest(commitment: bytes, binding: bytes = b"") -> bytes:
    """SHA-256 of a contribution's commitment and its binding commitment, length-prefixed."""
    w = wire.Writer()
    w.blob(commitment)
    w.blob(binding)
    return digest(w.getvalue())


def _contribution(
    domain: bytes,
    *,
    federation: bytes,
    round: int,
    task: Task,
    client_id: str,
    fingerprint: bytes,
) -> wire.Writer:
    w = wire.Writer()
    w.raw(domain)
    w.blob(federation)
    w.uint(round)
    w.text(task.value, length_bytes=1)
    w.text(client_id, length_bytes=2)
    w.blob(fingerprint)
    return w


def update_payload(
    *,
    federation: bytes,
    round: int,
    task: Task,
    client_id: str,
    fingerprint: bytes,
    vector_digest: bytes,
    commitment_digest: bytes,
) -> bytes:
    """The canonical bytes a client signs for the aggregator: the whole ciphertext."""
    w = _contribution(
        _UPDATE_DOMAIN,
        federation=federation,
        round=round,
        task=task,
        client_id=client_id,
        fingerprint=fingerprint,
    )
    w.blob(vector_digest)
    w.blob(commitment_digest)
    return w.getvalue()


def commitment_payload(
    *,
    federation: bytes,
    round: int,
    task: Task,
    client_id: str,
    fingerprint: bytes,
    commitment_digest: bytes,
) -> bytes:
    """The canonical bytes a client signs for the key holder: the commitment alone."""
    w = _contribution(
        _COMMITMENT_DOMAIN,
        federation=federation,
        round=round,
        task=task,
        client_id=client_id,
        fingerprint=fingerprint,
    )
    w.blob(commitment_digest)
    return w.getvalue()


def contribution_payloads(
    *,
    federation: bytes,
    round: int,
    task: Task,
    client_id: str,
    fingerprint: bytes,
    vector: bytes,
    commitment: bytes,
    binding: bytes = b"",
) -> tuple[bytes, bytes]:
    """What a client signs for one contribution: ``(update payload, commitment payload)``.

    The first covers the whole ciphertext and is for the aggregator; the second
    covers the commitment and the binding commitment alone, and travels to the key
    holder in a receipt.
    """
    commitment_digest = commitments_digest(commitment, binding)
    whole = update_payload(
        federation=federation,
        round=round,
        task=task,
        client_id=client_id,
        fingerprint=fingerprint,
        vector_digest=digest(vector),
        commitment_digest=commitment_digest,
    )
    alone = commitment_payload(
        federation=federation,
        round=round,
        task=task,
        client_id=client_id,
        fingerprint=fingerprint,
        commitment_digest=commitment_digest,
    )
    return whole, alone


def ticket_payload(signed_bytes: bytes) -> bytes:
    """The canonical bytes the key holder signs for a round ticket."""
    return _TICKET_DOMAIN + signed_bytes


def verify_signature(public_key: bytes, signature: bytes, payload: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature by ``public_key`` (32 raw bytes)."""
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, payload)
    except (_CryptoInvalidSignature, ValueError):
        return False
    return True


class Identity:
    """A client's Ed25519 signing identity. The private half never leaves the client.

    Parameters
    ----------
    private_key : Ed25519PrivateKey, optional
        An existing key; a fresh one is generated when omitted.
    """

    def __init__(self, private_key: Ed25519PrivateKey | None = None) -> None:
        self._key = private_key or Ed25519PrivateKey.generate()

    @classmethod
    def from_private_bytes(cls, private: bytes) -> Identity:
        """The identity whose raw 32-byte private key is ``private``.

        Raises
        ------
        ConfigurationError
            If ``private`` is not 32 bytes.
        """
        if not isinstance(private, (bytes, bytearray)) or len(private) != 32:
            raise ConfigurationError("a signing identity is a 32-byte Ed25519 private key")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(private)))

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key. It belongs to the client alone."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def public_bytes(self) -> bytes:
        """The 32-byte raw public key to register with the key holder."""
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, payload: bytes) -> bytes:
        """A 64-byte Ed25519 signature."""
        return self._key.sign(payload)

    def __repr__(self) -> str:
        return f"<Identity {self.public_bytes[:8].hex()}>"


class Registry:
    """Registered clients: id to Ed25519 public key.

    A registry can be :meth:`freeze`-d: the key holder freezes its own when it
    signs its first round ticket, so that no one can add a client (a "ghost" whose
    encryption of zero, summed with a victim's update, would pass the cohort
    check) once rounds have started.

    Parameters
    ----------
    clients : mapping of str to bytes, optional
        Initial registrations.
    """

    def __init__(self, clients: Mapping[str, bytes] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._frozen = False
        for client_id, key in (clients or {}).items():
            self.register(client_id, key)

    def register(self, client_id: str, public_key: bytes) -> None:
        """Register (or re-register the same key for) a client.

        Raises
        ------
        ConfigurationError
            If the key is not a 32-byte Ed25519 key, or the id is taken by another key.
        PolicyViolation
            If the registry is frozen and the client is new.
        """
        check_client_id(client_id)
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise ConfigurationError("a client identity is a 32-byte Ed25519 public key")
        key = Ed25519PublicKey.from_public_bytes(public_key)
        known = self._keys.get(client_id)
        if known is not None and known != key:
            raise ConfigurationError(f"client {client_id!r} is already registered with another key")
        if known is None and self._frozen:
            raise PolicyViolation(
                f"client {client_id!r} cannot register: the registry was fixed at setup"
            )
        self._keys[client_id] = key

    def freeze(self) -> None:
        """Refuse new registrations from now on."""
        self._frozen = True

    @property
    def frozen(self) -> bool:
        """Whether new registrations are refused."""
        return self._frozen

    def public_keys(self) -> dict[str, bytes]:
        """Every registration, as raw 32-byte public keys (for storage)."""
        return {
            cid: key.public_bytes(Encoding.Raw, PublicFormat.Raw) for cid, key in self._keys.items()
        }

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, client_id: str, signature: bytes, payload: bytes) -> bool:
        """Whether ``signature`` over ``payload`` verifies under ``client_id``'s key."""
        key = self._keys.get(client_id)
        if key is None:
            return False
        try:
            key.verify(signature, payload)
        except _CryptoInvalidSignature:
            return False
        return True

    def first_unproven(
        self,
        receipts: Sequence[Receipt],
        *,
        federation: bytes,
        round: int,
        task: Task,
        key: AggregationKey,
        size: int,
    ) -> Receipt | None:
        """The first of ``receipts`` not validly signed by its registered client and proven.

        A receipt's commitment signature must verify under its client's key, and its
        proof (bound to the same payload) under ``key``. Every signature is checked,
        then every proof in one batch
        (:meth:`~he_fed.crypto.AggregationKey.verify_commitment_proofs`); only a
        batch that fails is checked receipt by receipt, to name the first culprit.
        """
        claims = []
        for receipt in receipts:
            payload = commitment_payload(
                federation=federation,
                round=round,
                task=task,
                client_id=receipt.client_id,
                fingerprint=key.fingerprint,
                commitment_digest=commitments_digest(receipt.commitment, receipt.binding),
            )
            if not self.verify(receipt.client_id, receipt.signature, payload):
                return receipt
            claims.append((receipt.commitment, receipt.proof, payload, receipt.binding))
        if key.verify_commitment_proofs(claims, size):
            return None
        for receipt, claim in zip(receipts, claims, strict=True):
            if not key.verify_commitment_proofs([claim], size):
                return receipt
        # Unreachable for sound checks (a batch of valid proofs holds); fail closed.
        raise PolicyViolation("the receipts' proofs fail together but hold one by one")
