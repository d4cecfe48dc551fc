"""The scheme registry: names to scheme classes, and the loaders that need them.

This module exists to break an import cycle, as pyca/cryptography's
``_serialization.py`` does. Loading public or secret material means choosing a
scheme class by the name in a header, so the loaders import every scheme; the
schemes' keys in turn import the file format (:mod:`he_fed.crypto.keyfile`) to
export themselves. With the registry and the loaders here, above every scheme,
each import points one way. :mod:`he_fed.crypto` re-exports everything.
"""

from __future__ import annotations

from he_fed.crypto import keyfile, wire
from he_fed.crypto.base import AggregationKey, KeyPair, PublicKey, Scheme
from he_fed.crypto.ckks import CKKS
from he_fed.crypto.paillier import PackedPaillier, Paillier
from he_fed.crypto.plain import Plain
from he_fed.exceptions import ConfigurationError, MalformedMessage, SecretMaterialError

__all__ = ["SCHEMES", "load_public", "load_secret", "make_scheme", "scheme_from_options"]

#: Every scheme by its registry name.
SCHEMES: dict[str, type[Scheme]] = {
    cls.name: cls for cls in (Plain, Paillier, PackedPaillier, CKKS)
}


def make_scheme(name: str, **params: object) -> Scheme:
    """Build a scheme by its registry name, e.g. ``make_scheme("paillier", key_bits=3072)``.

    Raises
    ------
    ConfigurationError
        If the name is unknown or a parameter is invalid.
    """
    try:
        cls = SCHEMES[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown scheme {name!r}; choose one of {sorted(SCHEMES)}"
        ) from None
    try:
        return cls(**params)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigurationError(f"invalid parameters for {name}: {exc}") from None


def scheme_from_options(
    name: str,
    *,
    clip: float,
    max_clients: int,
    max_weight: int,
    key_bits: int,
    ckks_preset: str,
    allow_insecure: bool = False,
) -> Scheme:
    """Build a scheme from the options every entry point offers, passing each its own.

    The estimators, ``he-fed run``, ``he-fed keygen`` and ``he-fed estimate`` all
    take the same options; only the Paillier schemes use ``key_bits`` and
    ``allow_insecure``, and only CKKS uses ``ckks_preset``.

    Raises
    ------
    ConfigurationError
        If the name is unknown or a parameter is invalid.
    """
    params: dict[str, object] = {
        "clip": clip,
        "max_clients": max_clients,
        "max_weight": max_weight,
    }
    if name in ("paillier", "paillier-packed"):
        params.update(key_bits=key_bits, allow_insecure=allow_insecure)
    elif name == "ckks":
        params.update(preset=ckks_preset)
    return make_scheme(name, **params)


@wire.unpinned
def load_public(data: bytes, *, allow_insecure: bool = False) -> AggregationKey:
    """Read public material written by ``PublicKey.to_bytes`` or ``AggregationKey.to_bytes``.

    Parameters
    ----------
    data : bytes
        The encoded key.
    allow_insecure : bool, default=False
        Accept parameters below the security bar (such as 1024-bit Paillier).

    Returns
    -------
    AggregationKey
        A :class:`PublicKey` when the bytes hold one, otherwise the aggregation-only
        material.

    Raises
    ------
    SecretMaterialError
        If the bytes hold a secret key.
    InsecureParameters
        If the parameters are below the bar and ``allow_insecure`` is false.
    MalformedMessage
        If the bytes are not a valid public key.
    """
    envelope = wire.open_envelope(data)
    if envelope.kind is wire.Kind.SECRET_KEY:
        raise SecretMaterialError("these bytes hold a secret key; public material was expected")
    if envelope.kind not in (wire.Kind.PUBLIC_KEY, wire.Kind.AGGREGATION_KEY):
        raise MalformedMessage(f"expected a public key, got a {envelope.kind.label}")
    cls = SCHEMES.get(envelope.scheme)
    if cls is None:
        raise MalformedMessage(f"unknown scheme {envelope.scheme!r}")
    scheme = cls.from_params(envelope.params, allow_insecure=allow_insecure)
    return cls._load_key(envelope, scheme)


@wire.unpinned
def load_secret(
    data: bytes, *, passphrase: str | bytes | None = None, allow_insecure: bool = False
) -> KeyPair:
    """Read a secret-key file written by :meth:`SecretKey.to_bytes`.

    Parameters
    ----------
    data : bytes
        The file's contents.
    passphrase : str or bytes, optional
        Needed when the file is protected.
    allow_insecure : bool, default=False
        Accept parameters below the security bar.

    Returns
    -------
    KeyPair

    Raises
    ------
    InvalidPassphrase
        If the file is protected and the passphrase is missing or wrong, or the file
        was tampered with.
    InsecureParameters
        If the header's parameters are below the bar and ``allow_insecure`` is false.
    MalformedMessage
        If the bytes are not a valid secret-key file: a header that does not
        describe a scheme, scrypt costs other than those he-fed writes, or a key
        whose scheme, parameters or fingerprint differ from the header's.
    """
    envelope = wire.open_envelope(data, wire.Kind.SECRET_KEY)
    cls = SCHEMES.get(envelope.scheme)
    if cls is None:
        raise MalformedMessage(f"unknown scheme {envelope.scheme!r}")
    scheme = cls.from_params(envelope.params, allow_insecure=allow_insecure)
    payload = keyfile.open_secret(envelope, passphrase)
    inner = wire.Reader(payload, "secret key")
    public = load_public(inner.blob(), allow_insecure=allow_insecure)
    secret_body = inner.blob()
    inner.finish()
    _check_matches_header(public, envelope, scheme)
    return KeyPair(public, cls._load_secret(public, secret_body))


def _check_matches_header(public: object, envelope: wire.Envelope, scheme: Scheme) -> None:
    """Refuse a file whose public key is not the one its header describes.

    The scheme *class* must match too: ``paillier`` and ``paillier-packed`` keys
    hold the same material, and a ``paillier`` header around a CKKS key must never
    reach Paillier's secret-key parser.
    """
    if (
        not isinstance(public, PublicKey)
        or type(public.scheme) is not type(scheme)
        or public.scheme.name != envelope.scheme
        or public.scheme != scheme
        or public.scheme.params_text() != envelope.params
        or public.fingerprint != envelope.fingerprint
    ):
        raise MalformedMessage("secret key file: its public key does not match its header")
