"""Turning what a role is handed into the public material it may hold."""

from __future__ import annotations

from he_fed.crypto import AggregationKey, KeyPair, SecretKey, load_public
from he_fed.exceptions import ConfigurationError, SecretMaterialError

__all__ = ["public_material"]


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
