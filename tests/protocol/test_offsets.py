"""The aggregator adds a known plaintext to the encrypted sum.

A Paillier ciphertext times ``1 + x·n`` keeps its commitment (``c mod n``) and
decrypts to its message plus ``x``. Red teams used such offsets to steer the
global model, to freeze it (subtracting each round's sum from the next), and then
to difference two cohorts at the frozen model: one client's exact update in 11
releases. Every contribution now also commits to its plaintext slots
(``he_fed.crypto._binding``), and the key holder checks the decrypted sum against
the product of the receipts' commitments before it releases anything.
"""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.exceptions import PolicyViolation
from he_fed.protocol import EncryptedAggregate, Task, decode, encode
from tests.protocol.harness import open_round, roles
from tests.protocol.test_attacks import Spy

SCHEMES = ["paillier", "paillier-packed"]


def honest_aggregate(scheme_name: str):
    keyholder, aggregator, clients = roles(scheme_name, sizes=(30, 50, 20, 40))
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    return keyholder, decode(aggregator.finish_round(), EncryptedAggregate)


def offset(keyholder, message: EncryptedAggregate, index: int, x: int) -> EncryptedAggregate:
    """The aggregate with ``x`` added to the plaintext of ciphertext ``index``."""
    key = keyholder.public_key
    n, nsquare = int(key.n), int(key.nsquare)
    vector = key.load_vector(message.vector)
    vector.ciphertexts[index] = vector.ciphertexts[index] * (1 + x * n) % nsquare
    return EncryptedAggregate(message.round, message.task, message.receipts, vector.to_bytes())


def offsets_for(keyholder, size: int) -> dict[str, tuple[int, int]]:
    """(ciphertext, plaintext offset) for a value, the weight and the blinding."""
    scheme = keyholder.public_key.scheme
    index, shift = scheme.blinding_place(size)
    if scheme.name == "paillier":
        return {"value": (0, 1), "weight": (size, 1), "blinding": (index, 1 << shift)}
    slot = scheme.layout.slot_bits
    return {"value": (0, 1 << slot), "weight": (0, 1), "blinding": (index, 1 << shift)}


@pytest.mark.parametrize("scheme_name", SCHEMES)
@pytest.mark.parametrize("where", ["value", "weight", "blinding"])
def test_an_offset_on_the_sum_is_refused_and_nothing_is_released(scheme_name, where, monkeypatch):
    keyholder, message = honest_aggregate(scheme_name)
    size = keyholder.plan.vector_size(Task.TRAIN)
    index, x = offsets_for(keyholder, size)[where]
    tampered = offset(keyholder, message, index, x)
    # The receipts' commitments still multiply to the tampered aggregate's.
    key = keyholder.public_key
    commitments = [r.commitment for r in message.receipts]
    assert key.sum_commitments(commitments, size) == key.load_vector(tampered.vector).commitment()
    spy = Spy(keyholder, monkeypatch)
    released = keyholder.released
    with pytest.raises(PolicyViolation, match="does not open its contributions' binding"):
        keyholder.decrypt_aggregate(encode(tampered))
    assert spy.calls == 1 and keyholder.released == released  # decrypted, checked, refused
    assert keyholder.rejected == 0  # tampering tells nothing about the plaintext: not counted


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_the_untampered_aggregate_is_released(scheme_name):
    keyholder, message = honest_aggregate(scheme_name)
    released = keyholder.released
    keyholder.decrypt_aggregate(encode(message))
    assert keyholder.released == released + 1


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_freezing_the_model_by_subtracting_the_last_sum_is_refused(scheme_name):
    """The stall attack's step: subtract round r's sum from round r+1's aggregate.

    Here the aggregator even knows round r's exact plaintext sum (the test reads it
    with the key holder's key), which releases rounded to the grid no longer give.
    """
    keyholder, aggregator, clients = roles(scheme_name, sizes=(30, 50, 20, 40))
    key, secret = keyholder.public_key, keyholder._keys.secret
    n, nsquare = int(key.n), int(key.nsquare)
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    first = decode(aggregator.finish_round(), EncryptedAggregate)
    known = secret.raw_decrypt(key.load_vector(first.vector).ciphertexts)
    aggregator.apply(keyholder.decrypt_aggregate(encode(first)))
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    second = decode(aggregator.finish_round(), EncryptedAggregate)
    vector = key.load_vector(second.vector)
    vector.ciphertexts = [
        c * (1 - m * n) % nsquare for c, m in zip(vector.ciphertexts, known, strict=True)
    ]
    frozen = EncryptedAggregate(second.round, second.task, second.receipts, vector.to_bytes())
    with pytest.raises(PolicyViolation, match="binding"):
        keyholder.decrypt_aggregate(encode(frozen))
    assert np.array_equal(aggregator.weights, keyholder.model.weights)
