"""The cryptographic layer: the only code that imports phe, tenseal or gmpy2.

Like cryptography's ``hazmat``, this is the low layer. Most users want the roles in
:mod:`he_fed.protocol` or the estimators in :mod:`he_fed`, which use it safely.

Examples
--------
>>> import numpy as np
>>> from he_fed.crypto import Paillier, load_public
>>> keys = Paillier(key_bits=1024, allow_insecure=True, max_weight=4).keygen()
>>> public = load_public(keys.public.to_bytes(), allow_insecure=True)
>>> total = sum(public.encrypt(np.array([0.25, -1.0]), weight=w) for w in (1, 3))
>>> keys.secret.decrypt_weighted(total).mean
array([ 0.25, -1.  ])
"""

from __future__ import annotations

from he_fed.crypto import wire
from he_fed.crypto.base import (
    AggregationKey,
    EncryptedVector,
    KeyPair,
    PublicKey,
    Scheme,
    SecretKey,
    WeightedSum,
)
from he_fed.crypto.ckks import CKKS
from he_fed.crypto.ckks_budget import ErrorBudget
from he_fed.crypto.keyfile import load_secret
from he_fed.crypto.paillier import PackedPaillier, Paillier
from he_fed.crypto.phe_interop import (
    key_pair_from_phe,
    public_key_from_phe,
    public_key_to_phe,
    secret_key_to_phe,
    vector_from_phe,
    vector_to_phe,
)
from he_fed.crypto.plain import Plain
from he_fed.exceptions import ConfigurationError, MalformedMessage, SecretMaterialError

__all__ = [
    "CKKS",
    "SCHEMES",
    "AggregationKey",
    "EncryptedVector",
    "ErrorBudget",
    "KeyPair",
    "PackedPaillier",
    "Paillier",
    "Plain",
    "PublicKey",
    "Scheme",
    "SecretKey",
    "WeightedSum",
    "key_pair_from_phe",
    "load_public",
    "load_secret",
    "make_scheme",
    "public_key_from_phe",
    "public_key_to_phe",
    "secret_key_to_phe",
    "vector_from_phe",
    "vector_to_phe",
]

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
