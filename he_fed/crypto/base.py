"""The one scheme interface every homomorphic scheme implements.

A :class:`Scheme` is a value object holding the scheme's parameters and its
*encoding plan* (clip bound, precision, and how many contributions of what weight
a sum may hold). ``scheme.keygen()`` returns a :class:`KeyPair`:

* :class:`PublicKey` encrypts a *contribution*: ``weight * x`` together with the
  integer ``weight`` itself, so that a sum of contributions carries both the
  weighted sum and the total weight (FedAvg's ``sum n_k delta_k`` and ``sum n_k``).
* :class:`AggregationKey` is the public material that suffices to load and add
  ciphertexts, and nothing more. It is all the aggregator may hold.
* :class:`SecretKey` decrypts. It never leaves the key holder unless asked.
* :class:`EncryptedVector` adds with ``+`` and ``sum()``, and turns into bytes:
  one envelope (``to_bytes``), or a stream of frames (``write_to``) that a key reads
  back piece by piece (``read_vector_from``) without one giant buffer.

Everything that crosses between roles goes through :mod:`he_fed.crypto.wire` (or
:mod:`he_fed.crypto.stream`, which keeps the same header fields).
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar, TypeVar

import numpy as np

from he_fed._validation import check_int
from he_fed.crypto import wire
from he_fed.crypto._scheme import (
    DEFAULT_CLIP,
    DEFAULT_MAX_CLIENTS,
    DEFAULT_MAX_WEIGHT,
    MAX_CLIP,
    MAX_COUNT,
    MIN_CLIP,
    Scheme,
    key_fingerprint,
)
from he_fed.crypto._vector import EncryptedVector, WeightedSum
from he_fed.crypto.keyfile import export_secret
from he_fed.crypto.stream import FrameReader, FrameWriter, Header
from he_fed.exceptions import (
    EncodingError,
    EncodingOverflowError,
    KeyMismatchError,
    MalformedMessage,
    ShapeMismatchError,
)

__all__ = [
    "DEFAULT_CLIP",
    "DEFAULT_MAX_CLIENTS",
    "DEFAULT_MAX_WEIGHT",
    "MAX_CLIP",
    "MAX_COUNT",
    "MIN_CLIP",
    "AggregationKey",
    "EncryptedVector",
    "KeyPair",
    "PublicKey",
    "Scheme",
    "SecretKey",
    "WeightedSum",
    "key_fingerprint",
]

_K = TypeVar("_K", bound="AggregationKey")


@dataclass(frozen=True)
class KeyPair:
    """A public key and its secret key, as returned by ``Scheme.keygen()``."""

    public: PublicKey
    secret: SecretKey = dataclasses.field(repr=False)


class AggregationKey(ABC):
    """Public material that suffices to load and add ciphertexts, and nothing more."""

    kind: ClassVar[wire.Kind] = wire.Kind.AGGREGATION_KEY

    def __init__(self, scheme: Scheme, fingerprint: bytes) -> None:
        self._scheme = scheme
        self._fingerprint = fingerprint

    @property
    def scheme(self) -> Scheme:
        """Scheme parameters and encoding plan."""
        return self._scheme

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 fingerprint of the key material (32 bytes)."""
        return self._fingerprint

    def with_plan(self: _K, **changes: Any) -> _K:
        """The same key under another encoding plan (see :meth:`Scheme.with_plan`)."""
        other = copy.copy(self)
        other._scheme = self._scheme.with_plan(**changes)
        return other

    def to_bytes(self) -> bytes:
        """Versioned bytes of this public material; :func:`he_fed.crypto.load_public` reads them."""
        return wire.seal_envelope(
            self.kind,
            self._key_body(),
            scheme=self._scheme.name,
            params=self._scheme.params_text(),
            fingerprint=self._fingerprint,
        )

    def check_header(self, envelope: wire.Envelope | Header) -> None:
        """Raise :class:`KeyMismatchError` unless ``envelope`` was made under this key and plan."""
        if envelope.scheme != self._scheme.name:
            raise KeyMismatchError(
                f"bytes were made under scheme {envelope.scheme!r}, "
                f"this key is {self._scheme.name!r}"
            )
        if envelope.fingerprint != self._fingerprint:
            raise KeyMismatchError("bytes were made under another key (fingerprint differs)")
        if envelope.params != self._scheme.params_text():
            raise KeyMismatchError(
                "bytes were made under other parameters or another encoding plan: "
                f"{envelope.params!r} != {self._scheme.params_text()!r}"
            )

    def load_vector(self, data: bytes, *, size: int | None = None) -> EncryptedVector:
        """Read an encrypted vector written by :meth:`EncryptedVector.to_bytes`.

        Parameters
        ----------
        data : bytes
            The encoded vector.
        size : int, optional
            The length expected; another length raises :class:`ShapeMismatchError`.

        Raises
        ------
        KeyMismatchError
            If the bytes were made under another key, scheme or plan.
        ShapeMismatchError
            If the vector has the wrong length.
        MalformedMessage
            If the bytes are truncated, corrupted or out of range.
        """
        envelope = wire.open_envelope(data, wire.Kind.VECTOR)
        self.check_header(envelope)
        r = wire.Reader(envelope.body, "encrypted vector")
        n, count = self._read_shape(r, size)
        vector = self._read_vector(r, n, count)
        r.finish()
        return vector

    def read_vector_from(self, stream: BinaryIO, *, size: int | None = None) -> EncryptedVector:
        """Read a vector written by :meth:`EncryptedVector.write_to`, frame by frame.

        Takes exactly the vector's bytes from ``stream`` (header, 16-byte shape frame,
        payload frames; see :mod:`he_fed.crypto.stream`) and raises what
        :meth:`load_vector` raises.
        """
        frames = FrameReader(stream, wire.Kind.VECTOR)
        self.check_header(frames.header)
        r = wire.Reader(frames.read(16), "encrypted vector")
        n, count = self._read_shape(r, size)
        r.finish()
        vector = self._read_frames(frames, n, count)
        frames.finish()
        return vector

    def _write_stream(
        self, stream: BinaryIO, size: int, count: int, payloads: Iterable[bytes]
    ) -> int:
        """Write a vector's stream under this key from its payload frames; return its bytes."""
        frames = FrameWriter(
            stream,
            wire.Kind.VECTOR,
            scheme=self._scheme.name,
            params=self._scheme.params_text(),
            fingerprint=self._fingerprint,
        )
        shape = wire.Writer()
        shape.uint(size)
        shape.uint(count)
        frames.write(shape.getvalue())
        for payload in payloads:
            frames.write(payload)
        return frames.close()

    def _read_shape(self, reader: wire.Reader, size: int | None) -> tuple[int, int]:
        n, count = reader.uint(), reader.uint()
        if size is not None and n != size:
            raise ShapeMismatchError(f"vector has {n} values, expected {size}")
        if not 1 <= count <= self._scheme.max_clients:
            raise MalformedMessage(
                f"vector claims {count} contributions, the plan allows 1 to "
                f"{self._scheme.max_clients}"
            )
        return n, count

    def _read_frames(self, frames: FrameReader, size: int, count: int) -> EncryptedVector:
        """Read a vector's payload frames; by default its whole payload is one frame."""
        r = wire.Reader(frames.read(self._payload_bound(size)), "encrypted vector")
        vector = self._read_vector(r, size, count)
        r.finish()
        return vector

    def sum_commitments(self, commitments: list[bytes], size: int) -> bytes:
        """The commitment that the sum of vectors with these commitments must have.

        See :meth:`EncryptedVector.commitment`. A key holder that knows each
        contribution's (signed) commitment checks an aggregate against this before
        decrypting it.

        Parameters
        ----------
        commitments : list of bytes
            One commitment per contribution, in any order.
        size : int
            Number of values of the vectors.

        Raises
        ------
        MalformedMessage
            If a commitment has the wrong length or is out of range.
        """
        if not commitments:
            raise MalformedMessage("no commitments to sum")
        return self._sum_commitments(commitments, size)

    @abstractmethod
    def _sum_commitments(self, commitments: list[bytes], size: int) -> bytes:
        """Combine checked-nonempty commitments."""

    def sum_bindings(self, bindings: list[bytes]) -> bytes:
        """The binding commitment a sum of contributions with these ones must open.

        See :meth:`EncryptedVector.binding`; ``b""`` for schemes without them.

        Raises
        ------
        MalformedMessage
            If a binding commitment is malformed (or missing where the scheme has them).
        """
        if not bindings:
            raise MalformedMessage("no binding commitments to combine")
        return self._sum_bindings(bindings)

    def _sum_bindings(self, bindings: list[bytes]) -> bytes:
        if any(bindings):
            raise MalformedMessage(f"a {self._scheme.name} contribution has no binding commitment")
        return b""

    def verify_commitment_proof(
        self, commitment: bytes, proof: bytes, size: int, context: bytes, *, binding: bytes = b""
    ) -> bool:
        """Whether ``proof`` shows that its maker knows what ``commitment`` or ``binding`` hides.

        See :meth:`EncryptedVector.prove_commitment`: Paillier proves the
        randomness behind ``commitment``, CKKS an opening of ``binding``. Schemes
        without such proofs (``Plain``) accept only the empty proof.

        Parameters
        ----------
        commitment : bytes
            One contribution's commitment.
        proof : bytes
            Its proof.
        size : int
            Number of values of the vector.
        context : bytes
            What the proof was bound to when it was made.
        binding : bytes, default=b""
            The contribution's binding commitment (:meth:`EncryptedVector.binding`).
        """
        return self._verify_commitment_proofs([(commitment, proof, context, binding)], size)

    def verify_commitment_proofs(
        self, claims: Sequence[tuple[bytes, bytes, bytes, bytes]], size: int
    ) -> bool:
        """Whether every ``(commitment, proof, context, binding)`` of ``claims`` verifies.

        As :meth:`verify_commitment_proof` for each, with their values' range proofs
        checked in one product of powers: a round's receipts cost about one receipt's
        check more than its signatures, pins and links. False names no culprit.
        """
        return self._verify_commitment_proofs(list(claims), size)

    def _verify_commitment_proofs(
        self, claims: list[tuple[bytes, bytes, bytes, bytes]], size: int
    ) -> bool:
        return all(proof == b"" for _, proof, _, _ in claims)

    @abstractmethod
    def _key_body(self) -> bytes:
        """Body bytes of this key's envelope."""

    @abstractmethod
    def _read_vector(self, reader: wire.Reader, size: int, count: int) -> EncryptedVector:
        """Read a vector's scheme-specific payload."""

    @abstractmethod
    def _payload_bound(self, size: int) -> int:
        """Most payload bytes a vector of ``size`` values can take (checked before reading)."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AggregationKey):
            return NotImplemented
        return (
            self.kind == other.kind
            and self._fingerprint == other._fingerprint
            and self._scheme == other._scheme
        )

    def __hash__(self) -> int:
        return hash((self.kind, self._fingerprint, self._scheme))

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._scheme.name} fingerprint={self._fingerprint[:8].hex()}>"
        )


class PublicKey(AggregationKey):
    """Public material that encrypts contributions (what clients hold)."""

    kind: ClassVar[wire.Kind] = wire.Kind.PUBLIC_KEY

    def aggregation_key(self) -> AggregationKey:
        """The least public material that can still add ciphertexts (for the aggregator)."""
        return self

    def encrypt(self, x: np.ndarray, *, weight: int = 1) -> EncryptedVector:
        """Encrypt the contribution ``weight * x`` together with ``weight``.

        The values are quantized (where the scheme does) *before* they are
        multiplied by the integer weight, so the weighting itself is exact.

        Parameters
        ----------
        x : array-like of shape (n,)
            Finite values with ``|x| <= scheme.clip``.
        weight : int, default=1
            Integer weight in ``[1, scheme.max_weight]``, e.g. a sample count.

        Returns
        -------
        EncryptedVector

        Raises
        ------
        EncodingError
            If a value is NaN or infinite.
        EncodingOverflowError
            If a value exceeds the clip bound or the weight exceeds ``max_weight``.
        """
        return self._encrypt(*self._contribution(x, weight))

    def encrypt_to(self, stream: BinaryIO, x: np.ndarray, *, weight: int = 1) -> int:
        """Encrypt ``weight * x`` straight into ``stream``; return the bytes written.

        Writes what ``encrypt(x, weight=weight).write_to(stream)`` writes, but a
        scheme that encrypts chunk by chunk (CKKS) holds one ciphertext at a time.
        Raises what :meth:`encrypt` raises, before writing anything.

        A streamed contribution has no :meth:`EncryptedVector.binding` and no proof
        of it: their openings never leave this call, and a vector read back from
        bytes has none. The protocol's clients, whose updates carry both, therefore
        use :meth:`encrypt`; this serves storage and transport outside a round.
        """
        values, checked = self._contribution(x, weight)
        frames = self._encrypt_frames(values, checked)
        return self._write_stream(stream, values.size, 1, frames)

    def _contribution(self, x: np.ndarray, weight: int) -> tuple[np.ndarray, int]:
        values = np.asarray(x, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ShapeMismatchError(f"expected a non-empty 1-D vector, got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise EncodingError("cannot encrypt NaN or infinite values")
        peak = float(np.max(np.abs(values)))
        if peak > self._scheme.clip:
            raise EncodingOverflowError(
                f"a value of magnitude {peak:.6g} exceeds the plan's clip bound "
                f"{self._scheme.clip:g}; clip the update before encrypting"
            )
        check_int("weight", weight, types=(int, np.integer))
        if int(weight) < 1:
            raise EncodingOverflowError(
                f"weight {int(weight)} is outside [1, {self._scheme.max_weight}]: weights are "
                "positive"
            )
        if int(weight) > self._scheme.max_weight:
            enough = 1 << (int(weight) - 1).bit_length()
            raise EncodingOverflowError(
                f"weight {int(weight)} is outside [1, {self._scheme.max_weight}], the weights "
                "this key's plan allows; make keys whose plan allows it (max_weight; CLI: "
                f"he-fed keygen --max-weight {enough})"
            )
        return values, int(weight)

    def expect_contributions(self, count: int, size: int, *, proofs: int = 0) -> None:
        """Announce work to come in this process, so that one-time tables fit it.

        A hint, never required: ``count`` encryptions of ``size`` values, and
        ``proofs`` commitment proofs made or checked. Paillier sizes its fixed-base
        tables from it when it builds them (:func:`he_fed.crypto._djn.plan_uses`);
        other schemes have no such tables and ignore it.
        """

    def _encrypt_frames(self, values: np.ndarray, weight: int) -> Iterator[bytes]:
        """Payload frames of a fresh encryption; by default those of :meth:`_encrypt`."""
        return self._encrypt(values, weight)._frames()

    @abstractmethod
    def _encrypt(self, values: np.ndarray, weight: int) -> EncryptedVector:
        """Encrypt checked values."""


class SecretKey(ABC):
    """Decrypts sums. It stays with the key holder."""

    def __init__(self, public: PublicKey) -> None:
        self._public = public

    @property
    def public(self) -> PublicKey:
        """The matching public key."""
        return self._public

    def decrypt(self, vector: EncryptedVector) -> np.ndarray:
        """Decrypt a vector and return ``sum_k weight_k * x_k``."""
        return self.decrypt_weighted(vector).total

    def decrypt_weighted(self, vector: EncryptedVector, *, binding: bytes = b"") -> WeightedSum:
        """Decrypt a vector into its weighted sum, total weight and contribution count.

        With ``binding`` (the product of the contributions' binding commitments,
        :meth:`AggregationKey.sum_bindings`), the plaintext must open it, so that a
        sum someone added a known offset to is refused; schemes without binding
        commitments ignore an empty one.

        Raises
        ------
        KeyMismatchError
            If ``vector`` was made under another key.
        EncodingOverflowError
            If the decrypted sum lies outside what the plan can represent (Paillier).
        AggregateRejected
            If a decrypted CKKS value lies off the plan's grid, fills a slot beyond the
            vector's values, or leaves the plan's range; ``off_grid`` says whether the
            refusal could depend on the secret key (``DESIGN.md``, "CKKS releases").
        """
        if not isinstance(vector, EncryptedVector):
            raise TypeError(f"expected an EncryptedVector, got {type(vector).__name__}")
        if (
            vector.key.fingerprint != self._public.fingerprint
            or vector.key.scheme.name != self._public.scheme.name
        ):
            raise KeyMismatchError("vector was encrypted under another key")
        return self._decrypt(vector, binding)

    @abstractmethod
    def _decrypt(self, vector: Any, binding: bytes) -> WeightedSum:
        """Decrypt a vector known to be under this key."""

    def to_bytes(self, *, passphrase: str | bytes | None = None) -> bytes:
        """Export the secret key: the only way it leaves the key holder, on request.

        Parameters
        ----------
        passphrase : str or bytes, optional
            Encrypt the file with scrypt and ChaCha20-Poly1305. Without one the
            secret is written in the clear.

        Returns
        -------
        bytes
            Read back with :func:`he_fed.crypto.load_secret`.
        """
        return export_secret(self, passphrase=passphrase)

    @abstractmethod
    def _secret_body(self) -> bytes:
        """The scheme's secret material, for :meth:`to_bytes`."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self._public!r}>"
