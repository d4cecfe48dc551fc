"""Partial decryptions travel sealed to a share holder, so that the aggregator cannot combine.

Whoever combines ``t`` partial decryptions learns the aggregate's exact plaintext,
the total weight ``W`` included, which the aggregator alone must never learn
(``DESIGN.md``, "Releases hide the total weight"; every holder combines, so one
holder colluding with the aggregator does learn it: README, "Threat model"). The
aggregator relays every message between share holders, so each holder seals its
partial to each other holder separately:

* a fresh X25519 key pair per message, whose shared secret with the recipient's
  long-term X25519 key gives confidentiality even if the sender's long-term key
  leaks later; and the shared secret of the sender's and the recipient's
  long-term keys, which only those two holders can compute, so a message that
  opens was sealed by the holder its header names (or by the recipient itself);
* both secrets go through HKDF-SHA256, whose info binds the domain, the context
  (federation, round, task), the sender and recipient indices and all three
  public keys, into a 32-byte ChaCha20-Poly1305 key used for this one message (so
  a fixed nonce is safe);
* the header (version, sender, recipient, ephemeral key) is associated data.

Bytes (no pickle)::

    version u8, sender u8, recipient u8, ephemeral X25519 key (32), AEAD ciphertext (blob)

A partial's Chaum-Pedersen proofs verify only under its holder's verification
key, for this context and ciphertext (:mod:`he_fed.crypto.threshold`), so a
forged or replayed partial is never combined. Who gets the blame is the seal's
job: the relay can write any sender index into a header, so a message that does
not open names nobody (the relay may have made it), while one that opens and
carries a bad partial names its sender, who alone could have sealed it. An
earlier version sealed with the ephemeral key only, and a red team made honest
holders name another honest holder by relaying junk under its index
(``tests/protocol/test_threshold_roles.py``).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from he_fed.crypto import wire
from he_fed.exceptions import MalformedMessage

__all__ = ["ExchangeKey", "Sealed", "open_sealed", "seal"]

_VERSION = 2
_DOMAIN = b"he-fed/threshold/partial-transport/v2"
_NONCE = bytes(12)
#: Largest sealed partial accepted (a 100,000-value packed vector is about 2 MiB).
_MAX_SEALED = 1 << 30


class ExchangeKey:
    """A share holder's long-term X25519 key for receiving partials. SECRET: it stays home.

    Parameters
    ----------
    private_key : X25519PrivateKey, optional
        An existing key; a fresh one is generated when omitted.
    """

    def __init__(self, private_key: X25519PrivateKey | None = None) -> None:
        self._key = private_key or X25519PrivateKey.generate()

    @property
    def public_bytes(self) -> bytes:
        """The 32-byte public half, which the other holders seal to."""
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def __repr__(self) -> str:
        return f"<ExchangeKey {self.public_bytes[:8].hex()}>"


class Sealed:
    """A parsed sealed message: who sent it, to whom, and the rest."""

    def __init__(self, sender: int, recipient: int, ephemeral: bytes, ciphertext: bytes) -> None:
        self.sender, self.recipient = sender, recipient
        self.ephemeral, self.ciphertext = ephemeral, ciphertext

    @classmethod
    def from_bytes(cls, data: bytes) -> Sealed:
        """Parse the bytes :func:`seal` wrote.

        Raises
        ------
        MalformedMessage
            If they are truncated or of another version.
        """
        r = wire.Reader(data, "sealed partial decryption")
        if r.uint(1) != _VERSION:
            raise MalformedMessage("sealed partial decryption: unknown version")
        sender, recipient = r.uint(1), r.uint(1)
        ephemeral = bytes(r.raw(32))
        ciphertext = r.blob(max_size=_MAX_SEALED)
        r.finish()
        return cls(sender, recipient, ephemeral, ciphertext)


def _key(
    shared: bytes,
    context: bytes,
    sender: int,
    recipient: int,
    ephemeral: bytes,
    static: bytes,
    sender_static: bytes,
) -> bytes:
    w = wire.Writer()
    w.raw(_DOMAIN)
    w.blob(context)
    w.uint(sender, 1)
    w.uint(recipient, 1)
    w.raw(ephemeral)
    w.raw(static)
    w.raw(sender_static)
    info = w.getvalue()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _header(sender: int, recipient: int, ephemeral: bytes) -> bytes:
    return bytes([_VERSION, sender, recipient]) + ephemeral


def seal(
    payload: bytes,
    *,
    sender: int,
    sender_key: ExchangeKey,
    recipient: int,
    recipient_key: bytes,
    context: bytes,
) -> bytes:
    """Seal ``payload`` (a partial decryption's bytes) from holder ``sender`` to ``recipient``."""
    ephemeral_key = X25519PrivateKey.generate()
    ephemeral = ephemeral_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    recipient_public = X25519PublicKey.from_public_bytes(recipient_key)
    shared = ephemeral_key.exchange(recipient_public) + sender_key._key.exchange(recipient_public)
    key = _key(
        shared, context, sender, recipient, ephemeral, recipient_key, sender_key.public_bytes
    )
    header = _header(sender, recipient, ephemeral)
    w = wire.Writer()
    w.raw(header)
    w.blob(ChaCha20Poly1305(key).encrypt(_NONCE, payload, header))
    return w.getvalue()


def open_sealed(sealed: Sealed, exchange: ExchangeKey, sender_key: bytes, context: bytes) -> bytes:
    """The payload of a message sealed by ``sender_key``'s holder to ``exchange``'s.

    Raises
    ------
    MalformedMessage
        If it does not open (another sender or recipient, another context, or
        tampered): nothing then shows who made it.
    """
    try:
        shared = exchange._key.exchange(
            X25519PublicKey.from_public_bytes(sealed.ephemeral)
        ) + exchange._key.exchange(X25519PublicKey.from_public_bytes(sender_key))
        key = _key(
            shared,
            context,
            sealed.sender,
            sealed.recipient,
            sealed.ephemeral,
            exchange.public_bytes,
            sender_key,
        )
        header = _header(sealed.sender, sealed.recipient, sealed.ephemeral)
        return ChaCha20Poly1305(key).decrypt(_NONCE, sealed.ciphertext, header)
    except (InvalidTag, ValueError):
        raise MalformedMessage(
            f"a sealed partial decryption said to be from holder {sealed.sender} does not open"
        ) from None
