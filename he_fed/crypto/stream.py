"""Streamed bytes: one object written frame by frame, never as one giant buffer.

An envelope (:mod:`he_fed.crypto.wire`) must be held whole in memory to be written
or checked. A million-value encrypted update is better written one ciphertext at a
time, so a *stream* carries the same header fields followed by frames::

    magic        4 bytes   b"HEFS"
    version      u16       wire.FORMAT_VERSION
    kind         u8        wire.Kind, as in an envelope
    scheme       u8 len + ASCII
    params       u16 len + UTF-8
    fingerprint  u8 len + bytes
    tag          16 bytes  running BLAKE2b over everything above
    frame ...    u32 length (1 .. the reader's limit), payload, 16-byte running tag
    end          u32 0, 16-byte running tag

All integers are big-endian. Each tag is the BLAKE2b digest of every byte of the
stream before it, so:

* the reader checks a frame *before* handing it to a parser (no garbled byte ever
  reaches TenSEAL);
* a frame that is garbled, dropped, reordered, replayed or spliced in from another
  stream breaks the chain;
* a stream cut short lacks its end frame, and is refused as truncated.

Every length is checked against a limit before anything is read: header fields
against fixed limits, each frame against a limit the caller derives from the
scheme's parameters. Payloads are read in pieces of at most 1 MiB, so memory grows
with the bytes actually received, never with a claimed length. The reader consumes
exactly one stream, so several can follow one another on a connection or in a
file. As with envelopes, the tags catch corruption, not forgery: anyone can
recompute them.

An encrypted vector streams as its header, a 16-byte shape frame (u64 length,
u64 contribution count) and then its payload frames: one per ciphertext for CKKS,
one in all for the schemes whose vectors are a single buffer anyway. The keys
write and read them (``EncryptedVector.write_to``, ``AggregationKey.read_vector_from``),
because only they know their payloads; this module knows frames, not schemes.

Readers raise only :class:`~he_fed.exceptions.MalformedMessage` (and, for
vectors, what :meth:`~he_fed.crypto.AggregationKey.load_vector` raises).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import BinaryIO

from he_fed.crypto.wire import FORMAT_VERSION, Kind, Writer
from he_fed.exceptions import MalformedMessage

__all__ = [
    "STREAM_MAGIC",
    "FrameReader",
    "FrameWriter",
    "Header",
]

STREAM_MAGIC = b"HEFS"
_TAG_BYTES = 16
_MAX_FINGERPRINT = 64  # as in an envelope
_MAX_TEXT = 4096  # as in an envelope
#: Largest frame a stream can describe (its length is a u32).
_MAX_FRAME = 2**32 - 1
#: Streams are read in pieces of at most this many bytes.
_READ_PIECE = 1 << 20


@dataclass(frozen=True)
class Header:
    """The header of a stream: an envelope's fields, without a body."""

    kind: Kind
    scheme: str
    params: str
    fingerprint: bytes


class FrameWriter:
    """Write one stream of frames to a binary file object.

    Parameters
    ----------
    stream : binary file object
        Where to write; only its ``write`` method is used.
    kind : Kind
        What the stream holds.
    scheme, params, fingerprint
        Header fields, as in :func:`he_fed.crypto.wire.seal_envelope`.

    Examples
    --------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> writer = FrameWriter(buffer, Kind.VECTOR, scheme="ckks")
    >>> writer.write(b"first")
    >>> writer.write(b"second")
    >>> writer.close() == len(buffer.getvalue())
    True
    >>> _ = buffer.seek(0)
    >>> reader = FrameReader(buffer, Kind.VECTOR)
    >>> reader.header.scheme, reader.read(16), reader.read(16)
    ('ckks', b'first', b'second')
    >>> reader.finish()
    """

    def __init__(
        self,
        stream: BinaryIO,
        kind: Kind,
        *,
        scheme: str = "",
        params: str = "",
        fingerprint: bytes = b"",
    ) -> None:
        if len(fingerprint) > _MAX_FINGERPRINT:
            raise ValueError("fingerprint must be at most 64 bytes")
        self._stream = stream
        self._hash = hashlib.blake2b(digest_size=_TAG_BYTES)
        self._written = 0
        self._closed = False
        w = Writer()
        w.raw(STREAM_MAGIC)
        w.uint(FORMAT_VERSION, 2)
        w.uint(int(kind), 1)
        w.text(scheme, length_bytes=1)
        w.text(params, length_bytes=2)
        w.uint(len(fingerprint), 1)
        w.raw(fingerprint)
        self._emit(w.getvalue())
        self._emit_tag()

    def _emit(self, data: bytes) -> None:
        self._hash.update(data)
        self._stream.write(data)
        self._written += len(data)

    def _emit_tag(self) -> None:
        tag = self._hash.copy().digest()
        self._stream.write(tag)
        self._written += len(tag)

    def write(self, payload: bytes) -> None:
        """Append one frame of 1 to 2**32 - 1 bytes."""
        if self._closed:
            raise ValueError("the stream is closed")
        if not 0 < len(payload) <= _MAX_FRAME:
            raise ValueError(f"a frame holds 1 to {_MAX_FRAME} bytes, got {len(payload)}")
        self._emit(len(payload).to_bytes(4, "big"))
        self._emit(bytes(payload))
        self._emit_tag()

    def close(self) -> int:
        """Write the end frame; return the number of bytes the stream took in all."""
        if not self._closed:
            self._emit((0).to_bytes(4, "big"))
            self._emit_tag()
            self._closed = True
        return self._written


class FrameReader:
    """Read one stream written by :class:`FrameWriter`, checking each frame before use.

    Parameters
    ----------
    stream : binary file object
        Where to read from; only its ``read`` method is used, and exactly the
        stream's bytes are consumed.
    kind : Kind, optional
        The kind expected. Another kind raises :class:`MalformedMessage`.

    Attributes
    ----------
    header : Header
        The stream's header, already checked against its tag.

    Raises
    ------
    MalformedMessage
        If the header is truncated, garbled, or of another format version or kind.
    """

    def __init__(self, stream: BinaryIO, kind: Kind | None = None) -> None:
        self._stream = stream
        self._hash = hashlib.blake2b(digest_size=_TAG_BYTES)
        self._frames = 0
        self._ended = False
        if self._read(len(STREAM_MAGIC)) != STREAM_MAGIC:
            raise MalformedMessage("not an he-fed stream (bad magic)")
        version = int.from_bytes(self._read(2), "big")
        code = self._read(1)[0]
        scheme = self._text(1)
        params = self._text(2)
        fingerprint = self._read(self._read(1)[0])
        self._check_tag("stream header")
        if version != FORMAT_VERSION:
            raise MalformedMessage(
                f"format version {version} is not supported (this he-fed reads {FORMAT_VERSION})"
            )
        try:
            found = Kind(code)
        except ValueError:
            raise MalformedMessage(f"unknown object kind {code}") from None
        if kind is not None and found is not kind:
            raise MalformedMessage(f"expected a {kind.label}, got a {found.label}")
        if len(fingerprint) > _MAX_FINGERPRINT:
            raise MalformedMessage(f"stream fingerprint of {len(fingerprint)} bytes")
        self.header = Header(found, scheme, params, fingerprint)

    def _read(self, size: int, *, hashed: bool = True) -> bytes:
        parts = []
        left = size
        while left:
            piece = self._stream.read(min(left, _READ_PIECE))
            if not piece:
                raise MalformedMessage(f"truncated stream: {left} of {size} bytes missing")
            parts.append(piece)
            left -= len(piece)
        data = b"".join(parts)
        if hashed:
            self._hash.update(data)
        return data

    def _text(self, length_bytes: int) -> str:
        size = int.from_bytes(self._read(length_bytes), "big")
        if size > _MAX_TEXT:
            raise MalformedMessage(f"stream header text of {size} bytes exceeds {_MAX_TEXT}")
        try:
            return self._read(size).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("stream header text is not UTF-8") from None

    def _check_tag(self, what: str) -> None:
        if self._read(_TAG_BYTES, hashed=False) != self._hash.copy().digest():
            raise MalformedMessage(f"checksum mismatch in the {what}: garbled or out of order")

    def read(self, max_size: int) -> bytes:
        """Read the next frame, refusing one longer than ``max_size`` before reading it.

        Raises
        ------
        MalformedMessage
            If the stream ends or is truncated, the frame is too long, or its tag
            does not match.
        """
        if self._ended:
            raise MalformedMessage("the stream has ended")
        size = int.from_bytes(self._read(4), "big")
        if size == 0:
            self._check_tag("end frame")
            self._ended = True
            raise MalformedMessage(f"the stream ends after {self._frames} frame(s); more expected")
        if size > max_size:
            raise MalformedMessage(f"stream frame of {size} bytes exceeds the limit of {max_size}")
        payload = self._read(size)
        self._check_tag(f"frame {self._frames}")
        self._frames += 1
        return payload

    def finish(self) -> None:
        """Read the end frame; raise :class:`MalformedMessage` if another frame follows."""
        if self._ended:
            return
        size = int.from_bytes(self._read(4), "big")
        if size != 0:
            raise MalformedMessage(f"unexpected frame after the {self._frames} expected")
        self._check_tag("end frame")
        self._ended = True
