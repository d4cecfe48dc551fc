"""State files that only their owner can write: an envelope whose body ends in an HMAC.

A role that keeps state between commands (the key holder's policy, a client's last
round) stores it in an envelope of :mod:`he_fed.crypto.wire` whose body is the
content followed by ``HMAC-SHA256(key, kind ‖ fingerprint ‖ content)``. The key
is derived with HKDF-SHA256 from secrets only that role holds (the key holder's
secret key and signing identity; a client's signing identity) and a domain label,
so it is never stored anywhere. The envelope's checksum catches a torn or
corrupted file; the tag catches an edited one, including one whose fields were
changed and re-sealed with a valid checksum, because that needs the key.

A valid tag says the owner wrote the file, not that it is the newest file the
owner wrote: an older copy verifies too. Catching that (rollback) is the job of
the store that uses this module (see :mod:`he_fed.runtime.keyholder_store`).
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from he_fed.crypto import wire
from he_fed.exceptions import MalformedMessage, StateError

__all__ = ["TAG_BYTES", "derive_key", "peek", "seal", "unseal"]

#: Bytes of the HMAC-SHA256 tag that ends a sealed body.
TAG_BYTES = 32


def derive_key(label: bytes, *secrets: bytes) -> bytes:
    """A 32-byte sealing key: HKDF-SHA256 over ``secrets`` (length-prefixed), info ``label``.

    Parameters
    ----------
    label : bytes
        Domain label, one per kind of state (so one secret never keys two formats).
    *secrets : bytes
        The owner's secret material, e.g. the secret key's bytes and the signing
        identity's private bytes.
    """
    material = b"".join(len(s).to_bytes(4, "big") + bytes(s) for s in secrets)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(material)


def _tag(key: bytes, kind: wire.Kind, fingerprint: bytes, content: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(int(kind).to_bytes(1, "big"))
    mac.update(len(fingerprint).to_bytes(1, "big") + fingerprint)
    mac.update(content)
    return mac.digest()


def seal(kind: wire.Kind, content: bytes, key: bytes, *, fingerprint: bytes) -> bytes:
    """An envelope of ``kind`` holding ``content`` and its tag under ``key``."""
    return wire.seal_envelope(
        kind, content + _tag(key, kind, fingerprint, content), fingerprint=fingerprint
    )


def _open(data: bytes, kind: wire.Kind, what: str) -> wire.Envelope:
    try:
        envelope = wire.open_envelope(data, kind)
    except MalformedMessage as exc:
        raise StateError(f"{what} is not readable ({exc})") from None
    if len(envelope.body) < TAG_BYTES:
        raise StateError(f"{what} is truncated")
    return envelope


def unseal(data: bytes, kind: wire.Kind, key: bytes, *, fingerprint: bytes, what: str) -> bytes:
    """The content of a sealed envelope, once its tag verifies under ``key``.

    Raises
    ------
    StateError
        If the bytes are not a sealed ``kind`` envelope, belong to another
        fingerprint, or their tag does not verify (edited, or sealed under other
        secrets).
    """
    envelope = _open(data, kind, what)
    if envelope.fingerprint != fingerprint:
        raise StateError(f"{what} belongs to other keys")
    content, tag = envelope.body[:-TAG_BYTES], envelope.body[-TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(key, kind, fingerprint, content)):
        raise StateError(f"{what} does not verify: it was edited, or sealed under other keys")
    return content


def peek(data: bytes, kind: wire.Kind, what: str) -> tuple[bytes, bytes]:
    """``(fingerprint, content)`` of a sealed envelope, NOT verified (for ``he-fed inspect``).

    Raises
    ------
    StateError
        If the bytes are not a sealed ``kind`` envelope.
    """
    envelope = _open(data, kind, what)
    return envelope.fingerprint, envelope.body[:-TAG_BYTES]
