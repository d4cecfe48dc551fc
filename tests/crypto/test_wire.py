"""The envelope format: versioned, checksummed, bounded before any allocation."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from he_fed.crypto import wire
from he_fed.exceptions import MalformedMessage


def _envelope(body: bytes = b"payload") -> bytes:
    return wire.seal_envelope(
        wire.Kind.VECTOR, body, scheme="paillier", params="a=1;b=2.5", fingerprint=b"\x01" * 32
    )


def test_round_trip_keeps_every_header_field():
    env = wire.open_envelope(_envelope(), wire.Kind.VECTOR)
    assert (env.kind, env.scheme, env.params, env.fingerprint, env.body) == (
        wire.Kind.VECTOR,
        "paillier",
        "a=1;b=2.5",
        b"\x01" * 32,
        b"payload",
    )


def test_wrong_kind_version_magic_and_type_are_refused():
    data = _envelope()
    with pytest.raises(MalformedMessage, match="expected a public key"):
        wire.open_envelope(data, wire.Kind.PUBLIC_KEY)
    with pytest.raises(MalformedMessage, match="bad magic"):
        wire.open_envelope(b"XXXX" + data[4:])
    with pytest.raises(MalformedMessage, match="expected bytes"):
        wire.open_envelope("text")  # type: ignore[arg-type]
    # A future version, with a valid checksum, is refused by its version.
    head = data[:-16]
    future = head[:4] + (wire.FORMAT_VERSION + 1).to_bytes(2, "big") + head[6:]
    future += wire._checksum(future)
    with pytest.raises(MalformedMessage, match=f"format version {wire.FORMAT_VERSION + 1}"):
        wire.open_envelope(future)


@pytest.mark.parametrize("open_", [wire.open_envelope, wire.open_body])
@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda b: b.__setitem__(0, 0x58), "bad magic"),
        (lambda b: b.__setitem__(-1, b[-1] ^ 1), "checksum mismatch"),
        (lambda b: b.__setitem__(5, b[5] + 1), "format version"),
    ],
    ids=["magic", "checksum", "version"],
)
@pytest.mark.parametrize("as_view", [False, True], ids=["bytearray", "view-for-the-call"])
def test_a_refused_envelope_leaves_the_callers_buffer_free(open_, spoil, message, as_view):
    """Red team 32: the refusal's frames held a view of the bytes, so the caller's
    bytearray could not be resized (BufferError) while it handled the error; red
    team 34: nor when the caller passed a memoryview of it made for the call."""
    data = bytearray(_envelope())
    spoil(data)
    if message == "format version":  # a valid checksum, so the version is what fails
        data[-16:] = wire._checksum(bytes(data[:-16]))
    with pytest.raises(MalformedMessage, match=message) as refused:
        open_(memoryview(data) if as_view else data, wire.Kind.PUBLIC_KEY)
    assert type(refused.value) is MalformedMessage  # its traceback lives on here
    data.clear()
    assert data == bytearray()


def test_a_buffer_that_cannot_be_read_as_bytes_is_a_malformed_message():
    data = _envelope()
    strided = memoryview(bytearray(data * 2))[::2]  # not contiguous
    with pytest.raises(MalformedMessage, match="unreadable buffer"):
        wire.open_envelope(strided)
    released = memoryview(data)
    released.release()
    with pytest.raises(MalformedMessage, match="unreadable buffer"):
        wire.open_envelope(released)


def test_a_header_claiming_ten_gigabytes_is_refused_without_allocating():
    w = wire.Writer()
    w.raw(wire.MAGIC)
    w.uint(wire.FORMAT_VERSION, 2)
    w.uint(int(wire.Kind.VECTOR), 1)
    w.text("", length_bytes=1)
    w.text("", length_bytes=2)
    w.uint(0, 1)
    w.uint(10 * 2**30, 8)  # body length: 10 GiB, with 4 bytes behind it
    w.raw(b"tiny")
    head = w.getvalue()
    data = head + wire._checksum(head)
    tracemalloc.start()
    with pytest.raises(MalformedMessage, match="truncated"):
        wire.open_envelope(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


def test_reader_checks_counts_against_what_is_present():
    w = wire.Writer()
    w.uint(2**40)  # an array that claims 2**40 doubles
    with pytest.raises(MalformedMessage, match="truncated"):
        wire.Reader(w.getvalue(), "test").array()
    r = wire.Reader(b"\x00" * 9, "test")
    r.uint()
    with pytest.raises(MalformedMessage, match="trailing"):
        r.finish()


def test_arrays_and_text_round_trip():
    w = wire.Writer()
    w.array(np.array([1.5, -2.0, np.pi]))
    w.text("héllo")
    w.float64(0.1)
    r = wire.Reader(w.getvalue(), "test")
    np.testing.assert_array_equal(r.array(3), [1.5, -2.0, np.pi])
    assert r.text() == "héllo"
    assert r.float64() == 0.1
    r.finish()


def test_params_text_is_canonical_and_strict():
    text = wire.params_to_text({"b": 2.5, "a": 1, "c": (60, 49), "d": True})
    assert text == "a=1;b=2.5;c=60,49;d=1"
    assert wire.params_from_text(text) == {"a": "1", "b": "2.5", "c": "60,49", "d": "1"}
    for bad in ("a", "a=1;a=2", "=1"):
        with pytest.raises(MalformedMessage):
            wire.params_from_text(bad)
