"""Secret-key files: the one way a secret key leaves the key holder, and only on request.

A secret-key file is an envelope of kind ``SECRET_KEY`` whose header repeats the
scheme, parameters and public fingerprint (so ``he-fed inspect`` can describe it
without the passphrase), and whose body is::

    protection   u8        0 = none, 1 = scrypt + ChaCha20-Poly1305
    [salt        16 bytes, scrypt log2(n) u8, r u8, p u8, nonce 12 bytes]   if protected
    payload      the public key's envelope, then the scheme's secret material,
                 encrypted and authenticated (the header is associated data) if protected

A wrong passphrase and a tampered file fail the same way, with
:class:`~he_fed.exceptions.InvalidPassphrase`, and reveal nothing about why.

What is checked before anything costly, in order: the envelope, the header's
scheme and parameters (:meth:`Scheme.from_params`), and the scrypt costs, which
must be exactly those :func:`export_secret` writes. A file that asks for more
memory or time is refused before any key derivation; so is one that asks for
less, which no he-fed ever wrote. (Lowering the costs of a real file would gain an
attacker nothing: the key derived from them would not open the AEAD tag, which
also binds the header as associated data. Refusing them is simply the narrowest
rule.) After decryption, the public key inside must be of the header's scheme,
with the header's parameters and fingerprint.

This module knows the file format, not the schemes: :func:`he_fed.crypto.load_secret`
(in the scheme registry, above every scheme) checks the header against the schemes,
calls :func:`open_secret`, and rebuilds the key. So ``SecretKey.to_bytes`` can call
:func:`export_secret` without an import cycle.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from he_fed.crypto import wire
from he_fed.exceptions import InvalidPassphrase, MalformedMessage

if TYPE_CHECKING:  # pragma: no cover
    from he_fed.crypto.base import SecretKey

__all__ = ["export_secret", "is_protected", "open_secret", "protect"]

_PLAIN, _SCRYPT = 0, 1
#: scrypt cost: n = 2**15, r = 8, p = 1 (about 32 MiB and a tenth of a second).
#: The only costs written, and the only ones read.
_SCRYPT_LOG2_N, _SCRYPT_R, _SCRYPT_P = 15, 8, 1
_SALT_BYTES, _NONCE_BYTES = 16, 12


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    data = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise InvalidPassphrase("the passphrase must not be empty")
    return data


def _derive(passphrase: bytes, salt: bytes) -> bytes:
    """The file key, always at the one cost this module writes (never a file's choice)."""
    return Scrypt(salt=salt, length=32, n=2**_SCRYPT_LOG2_N, r=_SCRYPT_R, p=_SCRYPT_P).derive(
        passphrase
    )


def _check_costs(reader: wire.Reader) -> None:
    """Read a file's scrypt costs and refuse any that :func:`export_secret` does not write."""
    costs = (reader.uint(1), reader.uint(1), reader.uint(1))
    if costs != (_SCRYPT_LOG2_N, _SCRYPT_R, _SCRYPT_P):
        log2_n, r, p = costs
        raise MalformedMessage(
            f"secret key file: scrypt costs n=2**{log2_n}, r={r}, p={p} are not the ones "
            f"he-fed writes (n=2**{_SCRYPT_LOG2_N}, r={_SCRYPT_R}, p={_SCRYPT_P}); "
            "refused before any key derivation"
        )


def _aad(scheme: str, fingerprint: bytes, params: str) -> bytes:
    """Associated data of the AEAD: the header's scheme, fingerprint and parameters."""
    head = wire.params_to_text({"scheme": scheme, "fingerprint": fingerprint.hex()})
    return (head + params).encode()


def _header(secret: SecretKey) -> tuple[str, str, bytes]:
    scheme = secret.public.scheme
    return scheme.name, scheme.params_text(), secret.public.fingerprint


def export_secret(secret: SecretKey, *, passphrase: str | bytes | None = None) -> bytes:
    """Versioned bytes of a secret key, encrypted under ``passphrase`` if one is given.

    Parameters
    ----------
    secret : SecretKey
        The key to export.
    passphrase : str or bytes, optional
        Protects the file with scrypt and ChaCha20-Poly1305. Without it the secret
        is written in the clear (keep such a file readable by its owner only).

    Returns
    -------
    bytes
    """
    scheme, params, fingerprint = _header(secret)
    inner = wire.Writer()
    inner.blob(secret.public.to_bytes())
    inner.blob(secret._secret_body())
    return protect(
        wire.Kind.SECRET_KEY,
        inner.getvalue(),
        scheme=scheme,
        params=params,
        fingerprint=fingerprint,
        passphrase=passphrase,
    )


def protect(
    kind: wire.Kind,
    payload: bytes,
    *,
    scheme: str,
    params: str,
    fingerprint: bytes,
    passphrase: str | bytes | None,
) -> bytes:
    """An envelope of ``kind`` around ``payload``, laid out and protected as a secret key is.

    Threshold key shares (:mod:`he_fed.crypto.threshold`) use it too, so that a
    share file is protected exactly as ``secret.key`` is; :func:`open_secret`
    reads either.

    Parameters
    ----------
    kind : wire.Kind
        The envelope's kind.
    payload : bytes
        The secret payload (its layout is the caller's).
    scheme, params, fingerprint
        The header, bound to the payload as associated data when protected.
    passphrase : str or bytes, optional
        Encrypt under scrypt and ChaCha20-Poly1305; without one, in the clear.

    Returns
    -------
    bytes
    """
    body = wire.Writer()
    if passphrase is None:
        body.uint(_PLAIN, 1)
        body.raw(payload)
    else:
        salt, nonce = os.urandom(_SALT_BYTES), os.urandom(_NONCE_BYTES)
        key = _derive(_passphrase_bytes(passphrase), salt)
        body.uint(_SCRYPT, 1)
        body.raw(salt)
        body.uint(_SCRYPT_LOG2_N, 1)
        body.uint(_SCRYPT_R, 1)
        body.uint(_SCRYPT_P, 1)
        body.raw(nonce)
        body.raw(ChaCha20Poly1305(key).encrypt(nonce, payload, _aad(scheme, fingerprint, params)))
    return wire.seal_envelope(
        kind, body.getvalue(), scheme=scheme, params=params, fingerprint=fingerprint
    )


def is_protected(envelope: wire.Envelope) -> bool:
    """Whether a secret-key envelope is passphrase-protected (no passphrase needed)."""
    return bool(envelope.body[:1] == bytes([_SCRYPT]))


def open_secret(envelope: wire.Envelope, passphrase: str | bytes | None) -> bytes:
    """Unlock a secret-key file's payload: two blobs, the public key's envelope and the secret.

    Call it only after the header's scheme and parameters have been checked; the
    scrypt costs are checked here before any key derivation.

    Raises
    ------
    InvalidPassphrase
        If the file is protected and the passphrase is missing or wrong, or the file
        was tampered with.
    MalformedMessage
        If the body is truncated, names an unknown protection, or other scrypt costs.
    """
    r = wire.Reader(envelope.body, "secret key file")
    protection = r.uint(1)
    if protection == _PLAIN:
        payload = bytes(r.raw(r.remaining))
    elif protection == _SCRYPT:
        if passphrase is None:
            raise InvalidPassphrase("this secret key is passphrase-protected; give the passphrase")
        secret_passphrase = _passphrase_bytes(passphrase)
        salt = bytes(r.raw(_SALT_BYTES))
        _check_costs(r)
        nonce = bytes(r.raw(_NONCE_BYTES))
        key = _derive(secret_passphrase, salt)
        aad = _aad(envelope.scheme, envelope.fingerprint, envelope.params)
        try:
            payload = ChaCha20Poly1305(key).decrypt(nonce, bytes(r.raw(r.remaining)), aad)
        except InvalidTag:
            raise InvalidPassphrase(
                "cannot unlock the secret key: wrong passphrase or tampered file"
            ) from None
    else:
        raise MalformedMessage(f"secret key file: unknown protection {protection}")
    return payload
