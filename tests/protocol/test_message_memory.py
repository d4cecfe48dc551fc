"""A round's aggregate, with every contribution's proof, is copied once each way.

At 10,000 clients a statistics round's proofs take 1.1 GB, so every copy counts:
encoding used to join the body, then the envelope, then append the checksum
(three copies), and decoding copied the body before reading the receipts out of
it (two). Now each side makes the one copy it must: the bytes sent, or the
receipts read.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from he_fed.crypto import load_public, load_secret, wire
from he_fed.exceptions import AggregateRejected, HEFedError, MalformedMessage
from he_fed.models import LinearRegressionGD
from he_fed.protocol import EncryptedAggregate, decode, encode
from he_fed.protocol.messages import Receipt, Task
from he_fed.runtime import Federation
from tests.conftest import FAST_SCHEMES, keys_for

RECEIPTS, PROOF_BYTES = 200, 50_000  # 10 MB of proofs


def _aggregate() -> EncryptedAggregate:
    receipts = tuple(
        Receipt(f"c{i}", bytes(512), bytes(64), bytes([i % 251]) * PROOF_BYTES, b"")
        for i in range(RECEIPTS)
    )
    return EncryptedAggregate(3, Task.TRAIN, receipts, bytes(1024))


def _peak(work: Callable[[], Any]) -> tuple[Any, int]:
    """What ``work`` returns, and the most memory it held at once beyond its start."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = work()
        return out, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_an_aggregate_is_copied_once_when_encoded_and_once_when_decoded():
    message = _aggregate()
    proofs = RECEIPTS * PROOF_BYTES
    data, encoding = _peak(lambda: encode(message))
    assert proofs < len(data) < proofs * 1.05
    assert encoding < 1.1 * len(data)  # three copies before
    decoded, decoding = _peak(lambda: decode(data, EncryptedAggregate))
    assert decoded == message
    assert decoding < 1.1 * len(data)  # two copies before


def test_a_writer_is_sealed_as_its_joined_bytes_and_read_back_as_a_view():
    w = wire.Writer()
    w.uint(7)
    w.blob(b"x" * 1000)
    w.text("receipts")
    sealed = wire.seal_envelope(wire.Kind.ENCRYPTED_AGGREGATE, w, fingerprint=b"\x02" * 32)
    assert sealed == wire.seal_envelope(
        wire.Kind.ENCRYPTED_AGGREGATE, w.getvalue(), fingerprint=b"\x02" * 32
    )
    body = wire.open_body(sealed, wire.Kind.ENCRYPTED_AGGREGATE)
    assert body.obj is sealed and body == w.getvalue()
    assert wire.open_envelope(sealed).body == w.getvalue()


@pytest.mark.parametrize("as_view", [False, True], ids=["bytearray", "view-for-the-call"])
def test_a_refused_message_leaves_the_callers_buffer_free(as_view):
    """Red team 32: the refusal's frames held views into the bytes, so a caller's
    bytearray could not be resized while it handled the error; red team 34: nor
    when the caller passed a memoryview of it made for the call."""
    w = wire.Writer()
    w.uint(1)
    w.text("nope", length_bytes=1)
    data = bytearray(wire.seal_envelope(wire.Kind.ENCRYPTED_AGGREGATE, w))
    with pytest.raises(MalformedMessage, match="unknown task 'nope'") as refused:
        decode(memoryview(data) if as_view else data, EncryptedAggregate)
    assert type(refused.value) is MalformedMessage
    data.clear()  # BufferError while the error's frames held a view
    assert data == bytearray()


def test_a_decoded_message_shares_no_memory_with_the_bytes_it_came_from():
    """Decode reads through a view now: a sender that keeps its buffer and rewrites
    it once the message is checked (a round's receipts, say) changes nothing read."""
    data = bytearray(encode(_aggregate()))
    decoded = decode(data, EncryptedAggregate)
    data[:] = bytes(len(data))
    assert decoded == _aggregate()
    assert all(type(r.proof) is bytes and type(r.commitment) is bytes for r in decoded.receipts)


def _refusals() -> dict[str, tuple[Callable[[Any], Any], bytes]]:
    """Each public reader of bytes, and bytes it refuses (some not MalformedMessage)."""
    parts = [(np.arange(8.0).reshape(4, 2) + i, np.arange(4.0)) for i in range(3)]
    federation = Federation.create(parts, scheme=FAST_SCHEMES["plain"], model=LinearRegressionGD())
    keys = keys_for("paillier")
    garbage = b"HEFD" + bytes(60)
    return {
        "load_public": (load_public, keys.secret.to_bytes()),  # SecretMaterialError
        "load_secret": (load_secret, keys.public.to_bytes()),
        "Aggregator.add": (federation.aggregator.add, garbage),
        "KeyHolder.decrypt_aggregate": (federation.keyholder.decrypt_aggregate, garbage),
    }


@pytest.mark.parametrize(
    "reader", ["load_public", "load_secret", "Aggregator.add", "KeyHolder.decrypt_aggregate"]
)
def test_every_reader_of_bytes_leaves_a_view_made_for_the_call_free(reader):
    """Red team 35: these four kept the caller's memoryview alive in their refusal's
    frames, so the caller's bytearray could not be resized while it handled it."""
    read, refused = _refusals()[reader]
    data = bytearray(refused)
    gc.disable()  # a reference cycle would hold the view until a collection
    try:
        with pytest.raises(HEFedError) as shown:
            read(memoryview(data))
        data.clear()  # BufferError while the refusal's frames held the view
    finally:
        gc.enable()
    assert data == bytearray() and str(shown.value)


def test_a_refusal_raised_afresh_keeps_its_type_message_and_attributes():
    @wire.unpinned
    def refuse(data: memoryview) -> None:
        raise AggregateRejected("off the grid", off_grid=True)

    with pytest.raises(AggregateRejected, match="^off the grid$") as shown:
        refuse(memoryview(b"x"))
    assert shown.value.off_grid is True
