"""Turning what a role is handed into the public material it may hold."""

from __future__ import annotations

from he_fed.crypto import AggregationKey, KeyPair, PublicKey, SecretKey, load_public
from he_fed.exceptions import ConfigurationError, SecretMaterialError

__all__ = ["client_key", "public_material"]


def public_material(
    key: bytes | AggregationKey, *, role: str, allow_insecure: bool
) -> AggregationKey:
    """Load or check public key material for ``role``; refuse anything secret.

    Raises
    ------
    SecretMaterialError
        If ``key`` is (or holds) a secret key.
    """
    if isinstance(key, (SecretKey, KeyPair)):
        raise SecretMaterialError(f"the {role} must not hold secret key material")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return load_public(bytes(key), allow_insecure=allow_insecure)
    if isinstance(key, AggregationKey):
        return key
    raise ConfigurationError(
        f"the {role} needs public key bytes or a key object, got {type(key).__name__}"
    )


def client_key(key: bytes | AggregationKey, *, allow_insecure: bool) -> PublicKey:
    """A client's public key: one that can encrypt, and no secret.

    Raises
    ------
    SecretMaterialError
        If ``key`` is (or holds) a secret key.
    ConfigurationError
        If it cannot encrypt (an aggregation key).
    """
    loaded = public_material(key, role="client", allow_insecure=allow_insecure)
    if not isinstance(loaded, PublicKey):
        raise ConfigurationError("a client needs a public key that can encrypt")
    return loaded
