"""Reading TenSEAL's serialized CKKS vectors ourselves, before TenSEAL does, and
wrapping SEAL ciphertexts in that format.

Two jobs need the raw ciphertext polynomials, which TenSEAL does not expose:

* **Validation.** Every field is checked against the context we expect (parameter
  id, ring dimension, number of primes, scale, two polynomials, every coefficient
  below its prime) and every length is bounded before anything is decompressed, so
  hostile bytes are refused with :class:`MalformedMessage` instead of reaching SEAL.
* **Commitments.** A CKKS ciphertext is a pair ``(c0, c1)`` with
  ``c0 + c1·s ≈ m``. With public-key encryption ``c1 = pk1·u + e1`` does not depend
  on the message at all, and it adds exactly as the ciphertext does. So the ``c1``
  polynomials of the contributions are a commitment that lets the key holder check
  that an aggregate is exactly their sum before it decrypts anything, while
  revealing nothing about any client's update (see :mod:`he_fed.protocol.receipts`).

Layout, as written by TenSEAL 0.3 / SEAL 4.x::

    CKKSVectorProto (protobuf): 1 sizes (packed uint32), 2 ciphertext (bytes), 3 scale (double)
    SEAL header (16 bytes): magic 0xA15E, header size 16, version major/minor,
                            compression (0 none, 1 zlib, 2 zstd), reserved, total size
    Ciphertext (after decompression): parms_id (4 × u64), is_ntt_form (u8), size (u64),
        poly_modulus_degree (u64), coeff_modulus_size (u64), scale (f64),
        correction_factor (u64), then a DynArray: SEAL header, count (u64), u64 coefficients

The coefficients are ``size × coeff_modulus_size × N`` little-endian words: each
polynomial is its RNS limbs one after the other, each below its prime.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from he_fed.exceptions import KeyMismatchError, MalformedMessage

__all__ = ["SealCiphertext", "parse_ckks_vector", "write_ckks_vector"]

_SEAL_MAGIC = 0xA15E
_HEADER = struct.Struct("<HBBBBHQ")
_CIPHERTEXT_FIXED = struct.Struct("<4QBQQQdQ")


@dataclass(frozen=True, eq=False)
class SealCiphertext:
    """One parsed CKKS ciphertext.

    Attributes
    ----------
    values : int
        How many slots the vector uses.
    c0, c1 : ndarray of shape (limbs, N), dtype uint64
        The two polynomials (NTT form), one row per data prime.
    """

    values: int
    c0: np.ndarray
    c1: np.ndarray


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise MalformedMessage("ckks vector: bad protobuf varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _proto_fields(data: bytes) -> dict[int, list[bytes | int | float]]:
    fields: dict[int, list[bytes | int | float]] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
            fields.setdefault(number, []).append(value)
        elif wire_type == 1:
            if pos + 8 > len(data):
                raise MalformedMessage("ckks vector: truncated protobuf field")
            fields.setdefault(number, []).append(struct.unpack_from("<d", data, pos)[0])
            pos += 8
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if length > len(data) - pos:
                raise MalformedMessage("ckks vector: protobuf field longer than the data")
            fields.setdefault(number, []).append(data[pos : pos + length])
            pos += length
        else:
            raise MalformedMessage(f"ckks vector: unexpected protobuf wire type {wire_type}")
    return fields


def _write_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def write_ckks_vector(ciphertext: bytes, values: int, scale: float) -> bytes:
    """The ``CKKSVectorProto`` TenSEAL reads, around one SEAL ciphertext.

    ``values`` is the number of CKKS slots in use (TenSEAL's size field).
    """
    sizes = _write_varint(values)
    return b"".join(
        (
            b"\x0a",
            _write_varint(len(sizes)),
            sizes,  # field 1, length-delimited
            b"\x12",
            _write_varint(len(ciphertext)),
            ciphertext,  # field 2
            b"\x19",
            struct.pack("<d", scale),  # field 3, 64-bit
        )
    )


def _seal_header(data: bytes, what: str) -> tuple[int, int]:
    if len(data) < _HEADER.size:
        raise MalformedMessage(f"ckks {what}: truncated SEAL header")
    magic, size, major, _, compression, _, total = _HEADER.unpack_from(data)
    if magic != _SEAL_MAGIC or size != _HEADER.size or major != 4:
        raise MalformedMessage(f"ckks {what}: not a SEAL 4 serialization")
    if total != len(data):
        raise MalformedMessage(
            f"ckks {what}: SEAL header claims {total} bytes, {len(data)} present"
        )
    return compression, total


def _decompress(compression: int, payload: bytes, expected: int) -> bytes:
    """Decompress to at most ``expected`` bytes, never allocating more."""
    try:
        if compression == 0:
            out = payload
        elif compression == 1:
            d = zlib.decompressobj()
            out = d.decompress(payload, expected + 1)
        elif compression == 2:
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload))
            out = reader.read(expected + 1)
        else:
            raise MalformedMessage(f"ckks ciphertext: unknown compression {compression}")
    except MalformedMessage:
        raise
    except Exception:
        raise MalformedMessage("ckks ciphertext: corrupt compressed data") from None
    if len(out) > expected or len(out) < _CIPHERTEXT_FIXED.size:
        raise MalformedMessage("ckks ciphertext: decompressed size is wrong")
    return out


def parse_ckks_vector(
    blob: bytes,
    *,
    poly_modulus_degree: int,
    primes: list[int],
    parms_id: tuple[int, int, int, int],
    scale: float,
    max_values: int,
) -> SealCiphertext:
    """Parse and fully validate one serialized TenSEAL CKKS vector.

    Parameters
    ----------
    blob : bytes
        ``CKKSVector.serialize()`` output.
    poly_modulus_degree : int
        Expected ring dimension ``N``.
    primes : list of int
        Expected data primes (all but the special prime).
    parms_id : tuple of 4 int
        Expected SEAL parameter id of the data level.
    scale : float
        Expected encoding scale.
    max_values : int
        Most slots the vector may use.

    Raises
    ------
    KeyMismatchError
        If it is a well-formed ciphertext under another level or scale.
    MalformedMessage
        On any other deviation.
    """
    fields = _proto_fields(blob)
    if set(fields) - {1, 2, 3} or len(fields.get(2, [])) != 1 or len(fields.get(1, [])) != 1:
        raise MalformedMessage("ckks vector: unexpected layout")
    sizes_field, ciphertext, scale_field = fields[1][0], fields[2][0], fields.get(3, [None])[0]
    if not isinstance(sizes_field, bytes) or not isinstance(ciphertext, bytes):
        raise MalformedMessage("ckks vector: unexpected field types")
    values, end = _varint(sizes_field, 0)
    if end != len(sizes_field) or not 1 <= values <= max_values:
        raise MalformedMessage("ckks vector: bad size")
    if not isinstance(scale_field, float):
        raise MalformedMessage("ckks vector: no scale")
    compression, _ = _seal_header(ciphertext, "ciphertext")
    n, limbs = poly_modulus_degree, len(primes)
    words = 2 * limbs * n
    expected = _CIPHERTEXT_FIXED.size + _HEADER.size + 8 + 8 * words
    body = _decompress(compression, ciphertext[_HEADER.size :], expected)
    fixed = _CIPHERTEXT_FIXED.unpack_from(body)
    pid, ntt, size, degree, count, ct_scale, correction = fixed[:4], *fixed[4:]
    if tuple(pid) != tuple(parms_id):
        raise KeyMismatchError("ckks ciphertext is not at the context's first data level")
    if ct_scale != scale:
        raise KeyMismatchError(
            f"ckks ciphertext was encoded at scale {ct_scale:.6g}; this plan uses {scale:.6g}"
        )
    if ntt != 1 or size != 2 or degree != n or count != limbs or correction != 1:
        raise MalformedMessage("ckks ciphertext: its form differs from a fresh ciphertext")
    if len(body) != expected:
        raise MalformedMessage("ckks ciphertext: decompressed size is wrong")
    inner = body[_CIPHERTEXT_FIXED.size :]
    inner_compression, _ = _seal_header(inner, "coefficients")
    if inner_compression != 0 or struct.unpack_from("<Q", inner, _HEADER.size)[0] != words:
        raise MalformedMessage("ckks ciphertext: unexpected coefficient array")
    coeffs = np.frombuffer(inner, dtype="<u8", offset=_HEADER.size + 8).reshape(2, limbs, n)
    bounds = np.array(primes, dtype=np.uint64).reshape(1, limbs, 1)
    if np.any(coeffs >= bounds):
        raise MalformedMessage("ckks ciphertext: a coefficient is not reduced modulo its prime")
    return SealCiphertext(values, coeffs[0].astype(np.uint64), coeffs[1].astype(np.uint64))
