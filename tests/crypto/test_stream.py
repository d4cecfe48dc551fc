"""Streamed vectors: frame by frame, checked before parsing, bounded before reading."""

from __future__ import annotations

import hashlib
import io
import tracemalloc

import numpy as np
import pytest

from he_fed.crypto import wire
from he_fed.crypto.stream import STREAM_MAGIC, FrameReader, FrameWriter
from he_fed.exceptions import (
    ConfigurationError,
    EncodingOverflowError,
    KeyMismatchError,
    MalformedMessage,
    ShapeMismatchError,
)
from tests.conftest import FAST_SCHEMES, keys_for


def _stream(vector) -> bytes:
    buffer = io.BytesIO()
    written = vector.write_to(buffer)
    assert written == len(buffer.getvalue())
    return buffer.getvalue()


def _frames(*payloads: bytes, close: bool = True) -> bytes:
    buffer = io.BytesIO()
    writer = FrameWriter(buffer, wire.Kind.VECTOR, scheme="test", params="a=1")
    for payload in payloads:
        writer.write(payload)
    if close:
        writer.close()
    return buffer.getvalue()


def test_every_scheme_streams_a_weighted_sum_and_reads_it_back(scheme_name, keys, rng):
    xs = [rng.uniform(-1, 1, size=9) for _ in range(3)]
    aggregation = keys.public.aggregation_key()
    loaded = [
        aggregation.read_vector_from(io.BytesIO(_stream(keys.public.encrypt(x, weight=w))), size=9)
        for x, w in zip(xs, (2, 5, 1), strict=True)
    ]
    total = keys.public.read_vector_from(io.BytesIO(_stream(sum(loaded))))
    result = keys.secret.decrypt_weighted(total)
    assert (result.weight, result.count) == (8, 3)
    expected = 2 * xs[0] + 5 * xs[1] + xs[2]
    np.testing.assert_allclose(result.total, expected, atol=1e-4 * 8)


def test_encrypt_to_streams_a_fresh_contribution_and_refuses_before_writing(keys, rng):
    x = rng.uniform(-1, 1, size=11)
    buffer = io.BytesIO()
    written = keys.public.encrypt_to(buffer, x, weight=3)
    assert written == len(buffer.getvalue())
    buffer.seek(0)
    result = keys.secret.decrypt_weighted(keys.public.read_vector_from(buffer, size=11))
    assert (result.weight, result.count) == (3, 1)
    np.testing.assert_allclose(result.total, 3 * x, atol=1e-3)
    refused = io.BytesIO()
    with pytest.raises(EncodingOverflowError):
        keys.public.encrypt_to(refused, np.full(3, 2 * keys.public.scheme.clip))
    assert refused.getvalue() == b""


def test_a_streamed_contribution_has_no_binding_to_offer_a_round(scheme_name, keys, rng):
    buffer = io.BytesIO()
    keys.public.encrypt_to(buffer, rng.uniform(-1, 1, size=5), weight=2)
    buffer.seek(0)
    vector = keys.public.read_vector_from(buffer, size=5)
    if scheme_name == "plain":  # binds nothing: its commitment is its values
        assert (vector.binding(), vector.prove_commitment(b"round")) == (b"", b"")
        return
    with pytest.raises(ConfigurationError, match="fresh from encrypt"):
        vector.binding()
    with pytest.raises(ConfigurationError):
        vector.prove_commitment(b"round")


def test_a_ckks_stream_has_one_frame_per_ciphertext_and_the_envelopes_payload(rng):
    keys = keys_for("ckks")
    slots = keys.public.scheme.values_per_ciphertext
    vector = keys.public.encrypt(rng.uniform(-1, 1, size=2 * slots))  # 3 ciphertexts
    reader = FrameReader(io.BytesIO(_stream(vector)), wire.Kind.VECTOR)
    assert reader.header.params == keys.public.scheme.params_text()
    assert reader.header.fingerprint == keys.public.fingerprint
    shape = reader.read(16)
    frames = [reader.read(1 << 20) for _ in range(3)]
    reader.finish()
    assert int.from_bytes(shape[:8], "big") == 2 * slots
    assert frames == vector.blobs()


def test_streams_follow_one_another_and_each_read_takes_exactly_its_own(keys, rng):
    vectors = [keys.public.encrypt(rng.uniform(-1, 1, size=4)) for _ in range(3)]
    buffer = io.BytesIO(b"".join(_stream(v) for v in vectors) + b"tail")
    loaded = [keys.public.read_vector_from(buffer, size=4) for _ in range(3)]
    assert buffer.read() == b"tail"
    assert keys.secret.decrypt_weighted(sum(loaded)).count == 3


@pytest.mark.parametrize("scheme_name", ["plain", "ckks"])
def test_truncated_streams_raise_malformed_at_every_cut(scheme_name):
    keys = keys_for(scheme_name)
    data = _stream(keys.public.encrypt(np.ones(5)))
    for cut in sorted({0, 1, 4, 20, 50, len(data) // 2, len(data) - 17, len(data) - 1}):
        with pytest.raises(MalformedMessage):
            keys.public.read_vector_from(io.BytesIO(data[:cut]))


@pytest.mark.parametrize("scheme_name", ["plain", "paillier-packed", "ckks"])
def test_garbled_streams_raise_malformed_before_any_parser_sees_them(scheme_name, rng):
    keys = keys_for(scheme_name)
    data = _stream(keys.public.encrypt(np.ones(5)))
    positions = [*range(0, 80, 3), *rng.integers(0, len(data), size=40).tolist(), len(data) - 1]
    for pos in positions:
        garbled = bytearray(data)
        garbled[pos] ^= 1 + int(rng.integers(255))
        with pytest.raises(MalformedMessage):
            keys.public.read_vector_from(io.BytesIO(bytes(garbled)))


def test_reordered_spliced_dropped_or_extra_frames_break_the_chain():
    data = _frames(b"one", b"two")
    head, frame = 34, 4 + 3 + 16  # header and tag; then each 3-byte frame
    swapped = data[:head] + data[head + frame : head + 2 * frame] + data[head : head + frame]
    with pytest.raises(MalformedMessage, match="checksum mismatch in the frame 0"):
        FrameReader(io.BytesIO(swapped + data[head + 2 * frame :])).read(16)
    other = io.BytesIO()
    writer = FrameWriter(other, wire.Kind.VECTOR, scheme="test", params="a=2")
    writer.write(b"one")
    spliced = data[:head] + other.getvalue()[head : head + frame] + data[head + frame :]
    with pytest.raises(MalformedMessage, match="checksum mismatch in the frame 0"):
        FrameReader(io.BytesIO(spliced)).read(16)
    reader = FrameReader(io.BytesIO(_frames(b"one")))
    reader.read(16)
    with pytest.raises(MalformedMessage, match="ends after 1 frame"):
        reader.read(16)
    reader = FrameReader(io.BytesIO(_frames(b"one", b"two")))
    reader.read(16)
    with pytest.raises(MalformedMessage, match="unexpected frame"):
        reader.finish()


def test_a_frame_claiming_four_gigabytes_is_refused_before_reading():
    head = _frames(close=False)
    claim = (2**32 - 1).to_bytes(4, "big") + b"tiny"
    tracemalloc.start()
    with pytest.raises(MalformedMessage, match="exceeds the limit"):
        FrameReader(io.BytesIO(head + claim)).read(1 << 20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


def test_an_oversized_ckks_chunk_frame_is_refused_by_the_plans_limit():
    keys = keys_for("ckks")
    buffer = io.BytesIO()
    scheme = keys.public.scheme
    writer = FrameWriter(
        buffer,
        wire.Kind.VECTOR,
        scheme=scheme.name,
        params=scheme.params_text(),
        fingerprint=keys.public.fingerprint,
    )
    writer.write((3).to_bytes(8, "big") + (1).to_bytes(8, "big"))
    writer.write(b"\x00" * (keys.public._chunk_bound + 1))
    writer.close()
    with pytest.raises(MalformedMessage, match="exceeds the limit"):
        keys.public.read_vector_from(io.BytesIO(buffer.getvalue()))


def test_stream_headers_are_checked_like_envelopes(keys):
    vector = keys.public.encrypt(np.ones(3))
    with pytest.raises(ShapeMismatchError):
        keys.public.read_vector_from(io.BytesIO(_stream(vector)), size=4)
    other = keys_for("plain" if keys.public.scheme.name != "plain" else "ckks")
    with pytest.raises(KeyMismatchError, match="scheme"):
        keys.public.read_vector_from(io.BytesIO(_stream(other.public.encrypt(np.ones(3)))))
    wider = keys.public.with_plan(clip=8.0)
    with pytest.raises(KeyMismatchError, match="plan"):
        keys.public.read_vector_from(io.BytesIO(_stream(wider.encrypt(np.ones(3)))))


def test_envelopes_and_streams_are_not_mistaken_for_one_another(keys):
    vector = keys.public.encrypt(np.ones(3))
    assert _stream(vector)[:4] == STREAM_MAGIC
    with pytest.raises(MalformedMessage, match="bad magic"):
        keys.public.read_vector_from(io.BytesIO(vector.to_bytes()))
    with pytest.raises(MalformedMessage, match="bad magic"):
        keys.public.load_vector(_stream(vector))


def test_stream_header_kind_and_version_are_checked():
    data = _frames(b"x")
    with pytest.raises(MalformedMessage, match="expected a public key"):
        FrameReader(io.BytesIO(data), wire.Kind.PUBLIC_KEY)
    garbled = data[:4] + (wire.FORMAT_VERSION + 1).to_bytes(2, "big") + data[6:]
    with pytest.raises(MalformedMessage, match="checksum"):  # the header tag covers it
        FrameReader(io.BytesIO(garbled))
    head = garbled[:18]  # a future version with a valid tag is refused by its version
    future = head + hashlib.blake2b(head, digest_size=16).digest() + data[34:]
    with pytest.raises(MalformedMessage, match=f"format version {wire.FORMAT_VERSION + 1}"):
        FrameReader(io.BytesIO(future))
    with pytest.raises(ValueError, match="1 to"):
        FrameWriter(io.BytesIO(), wire.Kind.VECTOR).write(b"")


@pytest.mark.parametrize("name", sorted(FAST_SCHEMES))
def test_payload_bounds_cover_what_each_scheme_writes(name):
    keys = keys_for(name)
    for size in (1, 77, 300):
        vector = keys.public.encrypt(np.ones(size))
        assert len(vector._payload()) <= keys.public._payload_bound(size)
        assert keys.public.read_vector_from(io.BytesIO(_stream(vector))).size == size


@pytest.mark.parametrize("module", ["he_fed.crypto.stream", "he_fed.crypto.ckks_budget"])
def test_the_docstring_examples_run(module):
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(module))
    assert tried > 0 and failures == 0
