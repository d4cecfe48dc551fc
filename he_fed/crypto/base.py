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
import hashlib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar, TypeVar

import numpy as np

from he_fed.crypto import wire
from he_fed.crypto.stream import FrameReader, Header, read_vector, write_frames, write_vector
from he_fed.exceptions import (
    ConfigurationError,
    EncodingError,
    EncodingOverflowError,
    InsecureParameters,
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

#: Default clip bound on each value of a contribution. Model updates of
#: standardised linear models rarely exceed it; clients clip before encrypting.
DEFAULT_CLIP = 4.0
#: Default cap on the number of contributions in one sum.
DEFAULT_MAX_CLIENTS = 1024
#: Default cap on one contribution's weight: 1, i.e. unweighted sums. Weighted
#: protocols (FedAvg weights by sample count) declare their own bound, because a
#: loose bound costs CKKS precision.
DEFAULT_MAX_WEIGHT = 1
#: Range of ``clip``. Within it, ``clip * max_clients * max_weight`` (at most
#: 2**192) and every quantization scale stay finite doubles, so a plan read from a
#: header can never turn into an infinity, a NaN or a math domain error.
MIN_CLIP = 2.0**-64
MAX_CLIP = 2.0**64
#: Largest ``max_clients`` and ``max_weight``: contribution counts and weights
#: travel as u64 fields, so a larger bound could never be written.
MAX_COUNT = 2**64 - 1
#: Longest integer a header may spell (MAX_COUNT has 20 digits).
_MAX_DIGITS = 24
_INTEGER = re.compile(rf"-?[0-9]{{1,{_MAX_DIGITS}}}")

_S = TypeVar("_S", bound="Scheme")
_K = TypeVar("_K", bound="AggregationKey")


def key_fingerprint(domain: str, *parts: bytes) -> bytes:
    """SHA-256 over a domain label and length-prefixed parts."""
    h = hashlib.sha256(domain.encode())
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def _parse_int(raw: str) -> int:
    # ASCII digits only: int() would also take " 7", "+7", "7_0" and other scripts'
    # digits, which params_to_text never writes.
    if not _INTEGER.fullmatch(raw):
        raise ValueError(raw)
    return int(raw)


def _parse_field(field: dataclasses.Field[Any], raw: str) -> object:
    kind = str(field.type)
    try:
        if kind == "int":
            return _parse_int(raw)
        if kind == "float":
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
        if kind == "bool":
            if raw not in ("0", "1"):
                raise ValueError(raw)
            return raw == "1"
        if kind == "str":
            return raw
        if kind == "tuple[int, ...]":
            return tuple(_parse_int(v) for v in raw.split(",")) if raw else ()
    except ValueError:
        raise MalformedMessage(
            f"parameter {field.name}={raw[:40]!r} is not a valid {kind}"
        ) from None
    raise TypeError(f"unsupported parameter type {kind}")  # pragma: no cover


@dataclass(frozen=True, kw_only=True)
class Scheme(ABC):
    """Parameters of a homomorphic scheme and its encoding plan.

    Parameters
    ----------
    clip : float
        Largest magnitude of any value in a contribution, from ``2**-64`` to
        ``2**64``. ``encrypt`` refuses values beyond it (clients clip first, and
        count what they clipped).
    max_clients : int
        Most contributions one sum may hold, from 1 to ``2**64 - 1``. Adding more
        raises :class:`~he_fed.exceptions.EncodingOverflowError`.
    max_weight : int
        Largest weight of one contribution (for FedAvg, a client's sample count),
        from 1 to ``2**64 - 1``.
    """

    clip: float = DEFAULT_CLIP
    max_clients: int = DEFAULT_MAX_CLIENTS
    max_weight: int = DEFAULT_MAX_WEIGHT

    #: Registry name, written in every header.
    name: ClassVar[str]
    #: True only for the no-encryption baseline.
    insecure: ClassVar[bool] = False

    def __post_init__(self) -> None:
        clip = self.clip
        if isinstance(clip, bool) or not isinstance(clip, (int, float)):
            raise ConfigurationError("clip must be a number")
        if not (math.isfinite(clip) and MIN_CLIP <= clip <= MAX_CLIP):
            raise ConfigurationError(f"clip must be finite, from 2**-64 to 2**64, got {clip}")
        object.__setattr__(self, "clip", float(clip))
        for name in ("max_clients", "max_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
                raise ConfigurationError(
                    f"{name} must be an integer from 1 to 2**64 - 1, got {value!r}"
                )

    @abstractmethod
    def keygen(self) -> KeyPair:
        """Generate a fresh key pair under these parameters."""

    @property
    def bound(self) -> float:
        """Largest magnitude a decrypted sum may reach: ``clip * max_clients * max_weight``."""
        return self.clip * self.max_clients * self.max_weight

    def params(self) -> dict[str, object]:
        """The public parameters written in every header (not opt-in flags).

        A field whose metadata has ``"omit"`` is left out while it holds that value,
        so that adding such a field leaves existing headers byte for byte as they were.
        """
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("wire", True)
            and not ("omit" in f.metadata and getattr(self, f.name) == f.metadata["omit"])
        }

    def params_text(self) -> str:
        """Canonical text of :meth:`params`."""
        return wire.params_to_text(self.params())

    def with_plan(self: _S, **changes: Any) -> _S:
        """The same scheme with other encoding-plan fields (``clip``, ``max_clients``...)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_params(cls: type[_S], text: str, *, allow_insecure: bool = False) -> _S:
        """Rebuild a scheme from header parameters: the one place a header is validated.

        Every field must be present exactly once, parse as its type, pass the
        scheme's own checks (the ranges and plan checks of ``__post_init__``), and
        be written exactly as :meth:`params_text` writes it, so that one scheme has
        one header.

        Raises
        ------
        MalformedMessage
            If the parameters are malformed, out of range, not in canonical form, or
            describe an impossible plan.
        InsecureParameters
            If they are below the security bar and ``allow_insecure`` is false.
        """
        raw = wire.params_from_text(text)
        wired = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("wire", True)}
        required = {name for name, f in wired.items() if "omit" not in f.metadata}
        if not required <= set(raw) <= set(wired):
            raise MalformedMessage(f"parameters {sorted(raw)} do not describe a {cls.name} scheme")
        kwargs: dict[str, Any] = {k: _parse_field(wired[k], v) for k, v in raw.items()}
        for name in set(wired) - required:
            if name not in kwargs:
                kwargs[name] = wired[name].metadata["omit"]
            elif kwargs[name] == wired[name].metadata["omit"]:  # one text per plan
                raise MalformedMessage(f"parameter {name}={raw[name]} is implied, not written")
        if any(f.name == "allow_insecure" for f in dataclasses.fields(cls)):
            kwargs["allow_insecure"] = allow_insecure
        try:
            scheme = cls(**kwargs)
        except InsecureParameters:
            raise
        except (ConfigurationError, EncodingOverflowError) as exc:
            raise MalformedMessage(f"invalid {cls.name} parameters: {exc}") from None
        if scheme.params_text() != text:
            raise MalformedMessage(
                f"{cls.name} parameters are not in canonical form: {text[:200]!r}"
            )
        return scheme

    @classmethod
    @abstractmethod
    def _load_key(cls, envelope: wire.Envelope, scheme: Any) -> AggregationKey:
        """Build the public or aggregation key an envelope holds."""

    @classmethod
    @abstractmethod
    def _load_secret(cls, public: Any, body: bytes) -> SecretKey:
        """Rebuild the secret key from :meth:`SecretKey._secret_body` output."""


@dataclass(frozen=True)
class KeyPair:
    """A public key and its secret key, as returned by ``Scheme.keygen()``."""

    public: PublicKey
    secret: SecretKey = dataclasses.field(repr=False)


@dataclass(frozen=True)
class WeightedSum:
    """A decrypted sum of contributions.

    Attributes
    ----------
    total : ndarray of shape (n,)
        ``sum_k weight_k * x_k``.
    weight : int
        ``sum_k weight_k``.
    count : int
        Number of contributions summed.
    """

    total: np.ndarray
    weight: int
    count: int

    @property
    def mean(self) -> np.ndarray:
        """The weighted mean ``total / weight``."""
        return self.total / self.weight


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

        Takes exactly the vector's bytes from ``stream`` and raises what
        :meth:`load_vector` raises (see :func:`he_fed.crypto.stream.read_vector`).
        """
        return read_vector(self, stream, size)

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
        """
        values, checked = self._contribution(x, weight)
        frames = self._encrypt_frames(values, checked)
        return write_frames(stream, self, values.size, 1, frames)

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
        if isinstance(weight, bool) or not isinstance(weight, (int, np.integer)):
            raise ConfigurationError(f"weight must be an integer, got {weight!r}")
        if not 1 <= int(weight) <= self._scheme.max_weight:
            raise EncodingOverflowError(
                f"weight {int(weight)} is outside [1, {self._scheme.max_weight}] "
                "(raise the plan's max_weight)"
            )
        return values, int(weight)

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

    def decrypt_weighted(self, vector: EncryptedVector) -> WeightedSum:
        """Decrypt a vector into its weighted sum, total weight and contribution count.

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
        return self._decrypt(vector)

    @abstractmethod
    def _decrypt(self, vector: Any) -> WeightedSum:
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
        from he_fed.crypto.keyfile import export_secret

        return export_secret(self, passphrase=passphrase)

    @abstractmethod
    def _secret_body(self) -> bytes:
        """The scheme's secret material, for :meth:`to_bytes`."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self._public!r}>"


class EncryptedVector(ABC):
    """An encrypted contribution, or a sum of them.

    Attributes
    ----------
    key : AggregationKey
        The key and encoding plan it was made or loaded under.
    size : int
        Number of values (the weight is carried separately).
    count : int
        Number of contributions summed into it (public metadata).
    """

    def __init__(self, key: AggregationKey, size: int, count: int) -> None:
        self.key = key
        self.size = size
        self.count = count

    def __add__(self, other: object) -> EncryptedVector:
        if not isinstance(other, EncryptedVector):
            return NotImplemented
        if type(other) is not type(self) or other.key.fingerprint != self.key.fingerprint:
            raise KeyMismatchError("cannot add vectors made under different keys")
        if other.key.scheme != self.key.scheme:
            raise KeyMismatchError("cannot add vectors made under different encoding plans")
        if other.size != self.size:
            raise ShapeMismatchError(f"cannot add vectors of {self.size} and {other.size} values")
        count = self.count + other.count
        if count > self.key.scheme.max_clients:
            raise EncodingOverflowError(
                f"a sum of {count} contributions exceeds the plan's max_clients="
                f"{self.key.scheme.max_clients}"
            )
        return self._add(other, count)

    def __radd__(self, other: object) -> EncryptedVector:
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self  # so that sum([...]) works
        return NotImplemented

    def to_bytes(self) -> bytes:
        """Versioned bytes; ``key.load_vector`` reads them back."""
        w = wire.Writer()
        w.uint(self.size)
        w.uint(self.count)
        w.raw(self._payload())
        scheme = self.key.scheme
        return wire.seal_envelope(
            wire.Kind.VECTOR,
            w.getvalue(),
            scheme=scheme.name,
            params=scheme.params_text(),
            fingerprint=self.key.fingerprint,
        )

    def write_to(self, stream: BinaryIO) -> int:
        """Write to ``stream`` one frame per ciphertext (or per payload); return the bytes written.

        ``key.read_vector_from`` reads it back; see :func:`he_fed.crypto.stream.write_vector`.
        """
        return write_vector(self, stream)

    def _frames(self) -> Iterator[bytes]:
        """Payload frames for :meth:`write_to`; by default the whole payload in one."""
        yield self._payload()

    @abstractmethod
    def commitment(self) -> bytes:
        """A binding value that adds as the ciphertext does and hides the plaintext.

        For Paillier it is each ciphertext modulo ``n`` (that is ``r^n mod n``, which
        does not depend on the message); for CKKS it is the second ciphertext
        polynomial ``c1 = pk1·u + e1``, which does not either. Any ciphertext that
        has the commitment of a sum decrypts to that sum plus at most an offset the
        forger already knew, so an aggregator cannot pass off one client's
        ciphertext as an aggregate. (``Plain`` hides nothing, and its commitment is
        its values.)
        """

    @abstractmethod
    def _add(self, other: Any, count: int) -> EncryptedVector:
        """Add a compatible vector of the same type."""

    @abstractmethod
    def _payload(self) -> bytes:
        """Scheme-specific ciphertext bytes."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self.size} count={self.count}>"
