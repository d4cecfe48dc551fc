"""Loaders of threshold Paillier bytes: verification keys, key shares, partial decryptions.

The formats are described (and written) in :mod:`he_fed.crypto._threshold_keys`.
Loading checks the envelope's kind, that its header is the one public key's, the
body's version, every length before slicing, every range, and that a share and
its verification key agree (``v^(Δ·s_i) = v_i``). Proofs are checked when
partials are combined, where a bad one is attributed to its holder.
"""

from __future__ import annotations

import gmpy2

from he_fed.crypto import _threshold_proof, keyfile, wire
from he_fed.crypto._paillier_keys import PaillierPublicKey
from he_fed.crypto._registry import SCHEMES, _check_matches_header, load_public
from he_fed.crypto._threshold_keys import (
    VERSION,
    KeyShare,
    PartialDecryption,
    VerificationKeys,
    exponent_bits,
)
from he_fed.exceptions import ConfigurationError, MalformedMessage

__all__ = ["load_partial", "load_share", "load_verification"]


def _check_envelope(envelope: wire.Envelope, public: PaillierPublicKey, what: str) -> None:
    if (
        envelope.scheme != public.scheme.name
        or envelope.params != public.scheme.params_text()
        or envelope.fingerprint != public.fingerprint
    ):
        raise MalformedMessage(f"{what}: made under another key or plan")


def _version(r: wire.Reader, what: str) -> None:
    version = r.uint(1)
    if version != VERSION:
        raise MalformedMessage(f"{what}: format version {version} is not {VERSION}")


def load_verification(data: bytes, public: PaillierPublicKey) -> VerificationKeys:
    """Read verification keys made for ``public``.

    Raises
    ------
    MalformedMessage
        If the bytes are not verification keys for this key, or out of range.
    """
    what = "threshold verification keys"
    envelope = wire.open_envelope(data, wire.Kind.VERIFICATION_KEYS)
    _check_envelope(envelope, public, what)
    width = public._width
    r = wire.Reader(envelope.body, what)
    _version(r, what)
    threshold, holders = r.uint(2), r.uint(2)
    if holders > r.remaining // width:
        raise MalformedMessage(f"{what}: truncated")
    values = [int.from_bytes(r.raw(width), "big") for _ in range(holders + 1)]
    r.finish()
    try:
        return VerificationKeys(public, threshold, holders, values[0], tuple(values[1:]))
    except ConfigurationError as exc:
        raise MalformedMessage(f"{what}: {exc}") from None


def load_share(
    data: bytes, *, passphrase: str | bytes | None = None, allow_insecure: bool = False
) -> KeyShare:
    """Read a share file written by :meth:`KeyShare.to_bytes`.

    Raises
    ------
    InvalidPassphrase
        If the file is protected and the passphrase is missing or wrong, or tampered.
    MalformedMessage
        If the file is not a share of a threshold Paillier key, or its share does
        not match its verification key.
    """
    what = "key share file"
    envelope = wire.open_envelope(data, wire.Kind.KEY_SHARE)
    cls = SCHEMES.get(envelope.scheme)
    if cls is None or not envelope.scheme.startswith("paillier"):
        raise MalformedMessage(f"{what}: scheme {envelope.scheme!r} has no threshold shares")
    scheme = cls.from_params(envelope.params, allow_insecure=allow_insecure)
    payload = keyfile.open_secret(envelope, passphrase)
    inner = wire.Reader(payload, what)
    public = load_public(inner.blob(), allow_insecure=allow_insecure)
    share_body = inner.blob()
    inner.finish()
    _check_matches_header(public, envelope, scheme)
    assert isinstance(public, PaillierPublicKey)
    r = wire.Reader(share_body, what)
    _version(r, what)
    index = r.uint(2)
    value = int.from_bytes(r.raw(public._width), "big")
    verification = load_verification(r.blob(), public)
    r.finish()
    try:
        return KeyShare(index, value, verification)
    except ConfigurationError as exc:
        raise MalformedMessage(f"{what}: {exc}") from None


def load_partial(data: bytes, vk: VerificationKeys) -> PartialDecryption:
    """Read a partial decryption made under ``vk``'s key (its proofs are checked on combining).

    Raises
    ------
    MalformedMessage
        If the bytes are not a partial decryption under this key, or out of range.
    """
    what = "partial decryption"
    envelope = wire.open_envelope(data, wire.Kind.PARTIAL_DECRYPTION)
    _check_envelope(envelope, vk.public, what)
    width = vk.public._width
    proof_size = _threshold_proof.proof_size(exponent_bits(vk.public.scheme.key_bits, vk.holders))
    r = wire.Reader(envelope.body, what)
    _version(r, what)
    index, count = r.uint(2), r.uint(4)
    if not 1 <= index <= vk.holders:
        raise MalformedMessage(f"{what}: holder {index} is not one of 1..{vk.holders}")
    if count > r.remaining // (width + proof_size):
        raise MalformedMessage(f"{what}: truncated")
    values, proofs = [], []
    nsquare = vk.public.nsquare
    for _ in range(count):
        value = int.from_bytes(r.raw(width), "big")
        if not 0 < value < nsquare or gmpy2.gcd(value, vk.public.n) != 1:
            raise MalformedMessage(f"{what}: a value is not in Z*_(n^2)")
        values.append(value)
        proofs.append(bytes(r.raw(proof_size)))
    r.finish()
    return PartialDecryption(index, tuple(values), tuple(proofs))
