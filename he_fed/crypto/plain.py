"""The no-encryption baseline. INSECURE: it exists to measure what encryption costs.

``Plain`` follows the scheme interface exactly (weights, plans, bytes, checks) but
its "ciphertexts" are the float64 values themselves. Whoever holds a vector reads it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from he_fed.crypto import wire
from he_fed.crypto.base import (
    EncryptedVector,
    KeyPair,
    PublicKey,
    Scheme,
    SecretKey,
    WeightedSum,
    key_fingerprint,
)
from he_fed.exceptions import MalformedMessage

__all__ = ["Plain"]

_DOMAIN = "he-fed/plain/v1"


@dataclass(frozen=True, kw_only=True)
class Plain(Scheme):
    """No encryption (INSECURE). The baseline every overhead figure is measured against.

    Parameters
    ----------
    clip, max_clients, max_weight
        The encoding plan, checked exactly as the real schemes check it.

    Examples
    --------
    >>> import numpy as np
    >>> keys = Plain(max_weight=8).keygen()
    >>> total = keys.public.encrypt(np.array([1.0, -2.0]), weight=3) + keys.public.encrypt(
    ...     np.array([0.5, 0.5]))
    >>> keys.secret.decrypt(total)
    array([ 3.5, -5.5])
    """

    name: ClassVar[str] = "plain"
    insecure: ClassVar[bool] = True

    def keygen(self) -> KeyPair:
        """Make a random key identifier, so that runs cannot be mixed up by accident."""
        key_id = secrets.token_bytes(32)
        public = PlainPublicKey(self, key_id)
        return KeyPair(public, PlainSecretKey(public))

    @classmethod
    def _load_key(cls, envelope: wire.Envelope, scheme: Any) -> PlainPublicKey:
        if envelope.kind is not wire.Kind.PUBLIC_KEY:
            raise MalformedMessage(f"a plain scheme has no {envelope.kind.label}")
        r = wire.Reader(envelope.body, "plain key")
        key_id = bytes(r.raw(32))
        r.finish()
        key = PlainPublicKey(scheme, key_id)
        if key.fingerprint != envelope.fingerprint:
            raise MalformedMessage("plain key fingerprint does not match its contents")
        return key

    @classmethod
    def _load_secret(cls, public: PlainPublicKey, body: bytes) -> PlainSecretKey:
        if body:
            raise MalformedMessage("a plain secret key holds no material")
        return PlainSecretKey(public)


class PlainPublicKey(PublicKey):
    """Public key of the :class:`Plain` baseline."""

    def __init__(self, scheme: Plain, key_id: bytes) -> None:
        super().__init__(scheme, key_fingerprint(_DOMAIN, key_id))
        self._key_id = key_id

    def _key_body(self) -> bytes:
        return self._key_id

    def _encrypt(self, values: np.ndarray, weight: int) -> PlainVector:
        return PlainVector(self, weight * values, weight, 1)

    def _sum_commitments(self, commitments: list[bytes], size: int) -> bytes:
        total = np.zeros(size)
        weight = 0
        for c in commitments:
            if len(c) != 8 * (size + 1):
                raise MalformedMessage("plain commitment has the wrong length")
            total = total + np.frombuffer(c, dtype=">f8", count=size)
            weight += int(np.frombuffer(c, dtype=">f8", offset=8 * size)[0])
        return _plain_commitment(total, weight)

    def _read_vector(self, reader: wire.Reader, size: int, count: int) -> PlainVector:
        weight = reader.uint()
        values = reader.array(size)
        if not np.all(np.isfinite(values)):
            raise MalformedMessage("plain vector holds non-finite values")
        if not 1 <= weight <= count * self.scheme.max_weight:
            raise MalformedMessage(f"plain vector weight {weight} is out of range")
        return PlainVector(self, values, weight, count)

    def _payload_bound(self, size: int) -> int:
        return 16 + 8 * size  # the weight, the array's length, the values


class PlainSecretKey(SecretKey):
    """Secret key of the :class:`Plain` baseline (it reads the values as they are)."""

    def _decrypt(self, vector: PlainVector, binding: bytes) -> WeightedSum:
        return WeightedSum(vector.values.copy(), vector.weight, vector.count)

    def _secret_body(self) -> bytes:
        return b""


def _plain_commitment(values: np.ndarray, weight: int) -> bytes:
    # ``+ 0.0`` turns -0.0 into 0.0: a sum of -0.0s is -0.0, but the commitments'
    # sum starts from 0.0, and the two must agree byte for byte.
    return (np.append(values, float(weight)) + 0.0).astype(">f8").tobytes()


class PlainVector(EncryptedVector):
    """Float64 values in the clear."""

    def __init__(self, key: PlainPublicKey, values: np.ndarray, weight: int, count: int) -> None:
        super().__init__(key, values.size, count)
        self.values = values
        self.weight = weight

    def _add(self, other: PlainVector, count: int) -> PlainVector:
        return PlainVector(
            self.key,  # type: ignore[arg-type]
            self.values + other.values,
            self.weight + other.weight,
            count,
        )

    def commitment(self) -> bytes:
        """The values and the weight themselves: the baseline hides nothing."""
        return _plain_commitment(self.values, self.weight)

    def _payload(self) -> bytes:
        w = wire.Writer()
        w.uint(self.weight)
        w.array(self.values)
        return w.getvalue()
