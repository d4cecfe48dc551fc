"""Signing identities as files: a private one its owner keeps, a public one it hands out.

Both are envelopes of :mod:`he_fed.crypto.wire`:

* ``SIGNING_KEY`` (``NAME.id``, mode 0600): the owner's name and its raw 32-byte
  Ed25519 private key. It never leaves its owner.
* ``VERIFY_KEY`` (``NAME.pub``): the name and the raw 32-byte public key, which a
  client hands to the key holder (who registers it) and the aggregator.

The envelope's fingerprint field holds the public key, so ``he-fed inspect`` tells
whose a file is without reading the private half.
"""

from __future__ import annotations

import re

from he_fed.crypto import wire
from he_fed.exceptions import ConfigurationError, MalformedMessage
from he_fed.protocol.receipts import Identity

__all__ = [
    "check_name",
    "read_signing_key",
    "read_verify_key",
    "signing_key_bytes",
    "verify_key_bytes",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEY_BYTES = 32


def check_name(name: str) -> str:
    """A client or key-holder name: 1 to 64 letters, digits, ``.``, ``_`` or ``-``.

    The name is also a file name, so it cannot hold a path separator.

    Raises
    ------
    ConfigurationError
        If it is not such a name.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} is not a name: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def signing_key_bytes(name: str, identity: Identity) -> bytes:
    """The private identity file of ``name``. SECRET: write it with mode 0600."""
    w = wire.Writer()
    w.text(check_name(name), length_bytes=1)
    w.raw(identity.private_bytes())
    public = identity.public_bytes
    return wire.seal_envelope(wire.Kind.SIGNING_KEY, w.getvalue(), fingerprint=public)


def verify_key_bytes(name: str, public: bytes) -> bytes:
    """The public identity file of ``name``, for the key holder and the aggregator."""
    if not isinstance(public, bytes) or len(public) != _KEY_BYTES:
        raise ConfigurationError("a verify key is a 32-byte Ed25519 public key")
    w = wire.Writer()
    w.text(check_name(name), length_bytes=1)
    w.raw(public)
    return wire.seal_envelope(wire.Kind.VERIFY_KEY, w.getvalue(), fingerprint=public)


def _read(data: bytes, kind: wire.Kind) -> tuple[str, bytes, bytes]:
    envelope = wire.open_envelope(data, kind)
    r = wire.Reader(envelope.body, kind.label)
    name = r.text(length_bytes=1, max_size=64)
    key = bytes(r.raw(_KEY_BYTES))
    r.finish()
    try:
        check_name(name)
    except ConfigurationError as exc:
        raise MalformedMessage(f"{kind.label}: {exc}") from None
    return name, key, envelope.fingerprint


def read_signing_key(data: bytes) -> tuple[str, Identity]:
    """``(name, identity)`` from a private identity file.

    Raises
    ------
    MalformedMessage
        If the bytes are not a signing key file, or its public half is not the
        one its header names.
    """
    name, private, public = _read(data, wire.Kind.SIGNING_KEY)
    identity = Identity.from_private_bytes(private)
    if identity.public_bytes != public:
        raise MalformedMessage("signing key file: the key does not match its header")
    return name, identity


def read_verify_key(data: bytes) -> tuple[str, bytes]:
    """``(name, 32-byte public key)`` from a public identity file.

    Raises
    ------
    MalformedMessage
        If the bytes are not a verify key file.
    """
    name, public, header = _read(data, wire.Kind.VERIFY_KEY)
    if header != public:
        raise MalformedMessage("verify key file: the key does not match its header")
    return name, public
