"""Versioned, pickle-free bytes for keys, contexts, ciphertexts and messages.

Every object he-fed sends or stores is one *envelope*::

    magic        4 bytes   b"HEFD"
    version      u16       FORMAT_VERSION
    kind         u8        Kind: what the body holds
    scheme       u8 len + ASCII     "plain", "paillier", "ckks", or "" for none
    params       u16 len + UTF-8    canonical "key=value;..." scheme and plan parameters
    fingerprint  u8 len + bytes     SHA-256 of the public key material, or empty
    body         u64 len + bytes    kind-specific, written with :class:`Writer`
    checksum     16 bytes           BLAKE2b over everything above

All integers are big-endian. Every length is checked against the bytes actually
present before anything is sliced, so a header that claims ten gigabytes is refused
without allocating. The checksum catches corruption in transit; it is not an
authenticity check (anyone can recompute it).

Objects too large for one buffer (a million-value encrypted update) can instead be
written frame by frame with the same header fields: see :mod:`he_fed.crypto.stream`.

Readers raise only :class:`~he_fed.exceptions.MalformedMessage` (or
:class:`~he_fed.exceptions.KeyMismatchError` from the callers that compare the
header with what they expect).
"""

from __future__ import annotations

import copy
import enum
import hashlib
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import ParamSpec, TypeVar

import numpy as np

from he_fed.exceptions import HEFedError, MalformedMessage

_T = TypeVar("_T")
_P = ParamSpec("_P")

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Envelope",
    "Kind",
    "Reader",
    "Writer",
    "open_body",
    "open_envelope",
    "params_from_text",
    "params_to_text",
    "seal_envelope",
    "unpinned",
]

MAGIC = b"HEFD"
#: 2: CKKS two values per slot; 3: signed round tickets, split signatures;
#: 4: proofs of knowledge of Paillier commitments in updates and receipts.
FORMAT_VERSION = 4
_CHECKSUM_BYTES = 16
_MAX_FINGERPRINT = 64
_MAX_TEXT = 4096


class Kind(enum.IntEnum):
    """What an envelope's body holds."""

    PUBLIC_KEY = 1
    AGGREGATION_KEY = 2
    SECRET_KEY = 3
    VECTOR = 4
    SIGNING_KEY = 5
    VERIFY_KEY = 6
    KEY_SHARE = 7
    VERIFICATION_KEYS = 8
    ROUND_START = 16
    UPDATE = 17
    ENCRYPTED_AGGREGATE = 18
    AGGREGATE = 19
    FEDERATION = 20
    RELEASE = 21
    PARTIAL_DECRYPTION = 22
    KEYHOLDER_STATE = 32
    KEYHOLDER_STORE = 33
    CLIENT_STATE = 34
    AGGREGATOR_STATE = 35
    RUN_PROGRESS = 36
    RUN_SECRETS = 37
    SERVER_PROGRESS = 38

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``"public key"``."""
        return self.name.lower().replace("_", " ")


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope: the header fields and the (still encoded) body."""

    kind: Kind
    scheme: str
    params: str
    fingerprint: bytes
    body: bytes


def _checksum(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=_CHECKSUM_BYTES).digest()


def seal_envelope(
    kind: Kind,
    body: bytes | Writer,
    *,
    scheme: str = "",
    params: str = "",
    fingerprint: bytes = b"",
) -> bytes:
    """Wrap ``body`` in a versioned, checksummed envelope.

    Parameters
    ----------
    kind : Kind
        What the body holds.
    body : bytes or Writer
        The kind-specific payload. A :class:`Writer` is sealed without first being
        joined, so a large body (a round's receipts) is copied once, not three times.
    scheme, params : str
        Scheme name and canonical parameters (see :func:`params_to_text`).
    fingerprint : bytes
        Key fingerprint, at most 64 bytes.

    Returns
    -------
    bytes
    """
    if len(fingerprint) > _MAX_FINGERPRINT:
        raise ValueError("fingerprint must be at most 64 bytes")
    w = Writer()
    w.raw(MAGIC)
    w.uint(FORMAT_VERSION, 2)
    w.uint(int(kind), 1)
    w.text(scheme, length_bytes=1)
    w.text(params, length_bytes=2)
    w.uint(len(fingerprint), 1)
    w.raw(fingerprint)
    w.blob(body)
    return w.sealed()


def unpinned(read: Callable[_P, _T]) -> Callable[_P, _T]:
    """``read``, whose refusal holds no view into the bytes it was given.

    A :class:`~he_fed.exceptions.HEFedError` raised while reading is raised again,
    afresh (a copy: same type, message and attributes), by the wrapper, after it
    has dropped its arguments: the first error's frames hold memoryviews of the
    caller's bytes (and the arguments may be a memoryview the caller made for the
    call), and a caller's ``bytearray`` could not be resized while it handled the
    error (red teams 32 and 34).
    """

    @wraps(read)
    def reading(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return read(*args, **kwargs)
        except HEFedError as exc:
            error = copy.copy(exc)  # args and attributes; not the frames
        del args, kwargs
        try:
            raise error
        finally:  # this frame must not hold its own refusal: a cycle only gc frees
            del error

    return reading


@unpinned
def open_envelope(data: bytes | bytearray | memoryview, kind: Kind | None = None) -> Envelope:
    """Parse and check an envelope.

    Parameters
    ----------
    data : bytes-like
        The bytes to parse.
    kind : Kind, optional
        The kind expected. Another kind raises :class:`MalformedMessage`.

    Returns
    -------
    Envelope

    Raises
    ------
    MalformedMessage
        If ``data`` is not bytes, is truncated, fails its checksum, has another
        format version or holds another kind.
    """
    found, scheme, params, fingerprint, body = _parse(data, kind)
    return Envelope(found, scheme, params, fingerprint, bytes(body))


@unpinned
def open_body(data: bytes | bytearray | memoryview, kind: Kind) -> memoryview:
    """The body of a checked ``kind`` envelope, as a view into ``data`` (no copy).

    For a large message that is read once into objects of its own (a round's
    aggregate, with every contribution's proof): :func:`open_envelope` would
    first copy the whole body. The view keeps ``data`` alive while it lives.

    Raises
    ------
    MalformedMessage
        As :func:`open_envelope`.
    """
    return _parse(data, kind)[4]


def _parse(
    data: bytes | bytearray | memoryview, kind: Kind | None
) -> tuple[Kind, str, str, bytes, memoryview]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedMessage(f"expected bytes, got {type(data).__name__}")
    try:
        view = memoryview(data).cast("B")
    except (TypeError, ValueError) as exc:  # not C-contiguous, or released
        raise MalformedMessage(f"unreadable buffer: {exc}") from None
    if len(view) < len(MAGIC) + _CHECKSUM_BYTES or bytes(view[: len(MAGIC)]) != MAGIC:
        raise MalformedMessage("not he-fed bytes (bad magic)")
    content, tag = view[:-_CHECKSUM_BYTES], view[-_CHECKSUM_BYTES:]
    if _checksum(content) != bytes(tag):
        raise MalformedMessage("checksum mismatch: the bytes are truncated or corrupted")
    r = Reader(content, "envelope")
    r.raw(len(MAGIC))
    version = r.uint(2)
    if version != FORMAT_VERSION:
        raise MalformedMessage(
            f"format version {version} is not supported (this he-fed reads {FORMAT_VERSION})"
        )
    code = r.uint(1)
    try:
        found = Kind(code)
    except ValueError:
        raise MalformedMessage(f"unknown object kind {code}") from None
    if kind is not None and found is not kind:
        raise MalformedMessage(f"expected a {kind.label}, got a {found.label}")
    scheme = r.text(length_bytes=1)
    params = r.text(length_bytes=2)
    fingerprint = bytes(r.raw(r.uint(1)))
    body = r.raw(r.uint(8))
    r.finish()
    return found, scheme, params, fingerprint, body


class Writer:
    """Append typed, length-prefixed fields to a byte buffer."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def raw(self, data: bytes) -> None:
        """Append bytes with no length prefix (the reader must know the size)."""
        self._parts.append(bytes(data))

    def uint(self, value: int, size: int = 8) -> None:
        """Append an unsigned big-endian integer of ``size`` bytes."""
        self._parts.append(int(value).to_bytes(size, "big"))

    def float64(self, value: float) -> None:
        """Append an IEEE-754 double."""
        self._parts.append(struct.pack(">d", value))

    def blob(self, data: bytes | Writer) -> None:
        """Append bytes, or what another writer holds, with a u64 length prefix."""
        if isinstance(data, Writer):
            self.uint(sum(len(part) for part in data._parts), 8)
            self._parts.extend(data._parts)
            return
        self.uint(len(data), 8)
        self._parts.append(bytes(data))

    def text(self, value: str, *, length_bytes: int = 2) -> None:
        """Append UTF-8 text with a length prefix of ``length_bytes`` bytes."""
        encoded = value.encode("utf-8")
        if len(encoded) >= 256**length_bytes:
            raise ValueError(f"text of {len(encoded)} bytes is too long")
        self.uint(len(encoded), length_bytes)
        self._parts.append(encoded)

    def array(self, values: np.ndarray) -> None:
        """Append a 1-D float64 array (u64 count, then big-endian doubles)."""
        arr = np.ascontiguousarray(values, dtype=">f8").ravel()
        self.uint(arr.size, 8)
        self._parts.append(arr.tobytes())

    def getvalue(self) -> bytes:
        """Return everything written so far."""
        return b"".join(self._parts)

    def sealed(self) -> bytes:
        """Everything written so far, then its checksum, joined once."""
        digest = hashlib.blake2b(digest_size=_CHECKSUM_BYTES)
        for part in self._parts:
            digest.update(part)
        return b"".join([*self._parts, digest.digest()])


class Reader:
    """Read the fields a :class:`Writer` wrote, checking every length first.

    Parameters
    ----------
    data : bytes-like
        The bytes to read.
    what : str
        What is being read, for error messages.
    """

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        """Bytes not yet read."""
        return len(self._view) - self._pos

    def raw(self, size: int) -> memoryview:
        """Read exactly ``size`` bytes (a zero-copy view)."""
        if size < 0 or size > self.remaining:
            raise MalformedMessage(
                f"truncated {self._what}: needs {size} more bytes, {self.remaining} left"
            )
        out = self._view[self._pos : self._pos + size]
        self._pos += size
        return out

    def uint(self, size: int = 8) -> int:
        """Read an unsigned big-endian integer of ``size`` bytes."""
        return int.from_bytes(self.raw(size), "big")

    def float64(self) -> float:
        """Read an IEEE-754 double."""
        return float(struct.unpack(">d", self.raw(8))[0])

    def blob(self, max_size: int | None = None) -> bytes:
        """Read u64-length-prefixed bytes, refusing more than ``max_size``."""
        size = self.uint(8)
        if max_size is not None and size > max_size:
            raise MalformedMessage(f"{self._what}: field of {size} bytes exceeds {max_size}")
        return bytes(self.raw(size))

    def text(self, *, length_bytes: int = 2, max_size: int = _MAX_TEXT) -> str:
        """Read length-prefixed UTF-8 text."""
        size = self.uint(length_bytes)
        if size > max_size:
            raise MalformedMessage(f"{self._what}: text of {size} bytes exceeds {max_size}")
        try:
            return bytes(self.raw(size)).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage(f"{self._what}: text is not UTF-8") from None

    def array(self, expected_size: int | None = None) -> np.ndarray:
        """Read a 1-D float64 array, optionally of exactly ``expected_size`` elements."""
        count = self.uint(8)
        if expected_size is not None and count != expected_size:
            raise MalformedMessage(
                f"{self._what}: array of {count} elements, expected {expected_size}"
            )
        if count > self.remaining // 8:
            raise MalformedMessage(f"truncated {self._what}: array of {count} elements")
        return np.frombuffer(self.raw(8 * count), dtype=">f8").astype(np.float64)

    def finish(self) -> None:
        """Check that nothing is left over."""
        if self.remaining:
            raise MalformedMessage(f"{self._what}: {self.remaining} unexpected trailing bytes")


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("parameters must be finite")
        return repr(value)  # shortest round-trip form
    if isinstance(value, (int, str)):
        text = str(value)
        if any(c in text for c in ";="):
            raise ValueError(f"parameter value {text!r} contains ';' or '='")
        return text
    if isinstance(value, (tuple, list)):
        return ",".join(_format_value(v) for v in value)
    raise TypeError(f"cannot encode parameter of type {type(value).__name__}")


def params_to_text(params: Mapping[str, object]) -> str:
    """Canonical ``key=value;...`` text (sorted keys) of scheme parameters."""
    return ";".join(f"{k}={_format_value(params[k])}" for k in sorted(params))


def params_from_text(text: str) -> dict[str, str]:
    """Parse :func:`params_to_text` output into raw strings.

    Raises
    ------
    MalformedMessage
        If the text is not well formed.
    """
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if not sep or not key or key in out:
            raise MalformedMessage(f"malformed parameters {text!r}")
        out[key] = value
    return out
