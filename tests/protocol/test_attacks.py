"""A malicious aggregator tries to make the key holder decrypt less than an aggregate.

Every attack must end in PolicyViolation with nothing decrypted. The aggregator here
is played by the test: it has everything a real aggregator sees (every update's
bytes) and builds the EncryptedAggregate it wants by hand.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from he_fed.exceptions import PolicyViolation
from he_fed.protocol import (
    Aggregate,
    Client,
    EncryptedAggregate,
    EncryptedUpdate,
    Identity,
    Receipt,
    Task,
    decode,
    encode,
)
from he_fed.protocol.client import ClientReport
from he_fed.runtime import Federation
from tests.protocol.harness import local_delta, open_round, roles, signed_update


class Spy:
    """Counts calls to the key holder's decryption."""

    def __init__(self, keyholder, monkeypatch):
        self.calls = 0
        secret = keyholder._keys.secret
        original = secret.decrypt_weighted

        def spy(vector, **options):
            self.calls += 1
            return original(vector, **options)

        monkeypatch.setattr(secret, "decrypt_weighted", spy)


def honest_round(scheme_name, sizes=(30, 50, 20, 40)):
    """Fresh roles, one open round, and every update as the aggregator sees it."""
    keyholder, aggregator, clients = roles(scheme_name, sizes=sizes)
    start = open_round(keyholder, aggregator)
    updates = [decode(c.participate(start).update, EncryptedUpdate) for c in clients]
    key = keyholder.public_key
    vectors = [key.load_vector(u.vector) for u in updates]
    receipts = [
        Receipt(u.client_id, v.commitment(), u.commitment_signature, u.proof, u.binding)
        for u, v in zip(updates, vectors, strict=True)
    ]
    return keyholder, aggregator, clients, start, vectors, receipts


def forged(vector, count: int) -> bytes:
    """The vector's bytes with its contribution count rewritten."""
    copy = vector.key.load_vector(vector.to_bytes())
    copy.count = count
    return copy.to_bytes()


def refused(keyholder, aggregate: EncryptedAggregate, monkeypatch, match: str) -> None:
    spy = Spy(keyholder, monkeypatch)
    with pytest.raises(PolicyViolation, match=match):
        keyholder.decrypt_aggregate(encode(aggregate))
    assert spy.calls == 0, "the key holder decrypted something"


def test_honest_aggregate_is_decrypted(scheme_name, monkeypatch):
    keyholder, aggregator, _, _, vectors, receipts = honest_round(scheme_name)
    message = EncryptedAggregate(
        aggregator.round, Task.TRAIN, tuple(receipts), sum(vectors).to_bytes()
    )
    spy = Spy(keyholder, monkeypatch)
    result = decode(keyholder.decrypt_aggregate(encode(message)), Aggregate)
    assert spy.calls == 1 and result.contributors == 4


@pytest.mark.parametrize("forge_count", [False, True])
def test_forwarding_a_single_ciphertext(scheme_name, monkeypatch, forge_count):
    keyholder, aggregator, _, _, vectors, receipts = honest_round(scheme_name)
    single = forged(vectors[0], 4) if forge_count else vectors[0].to_bytes()
    message = EncryptedAggregate(aggregator.round, Task.TRAIN, tuple(receipts), single)
    match = "not the sum" if forge_count else "carries 4 receipts"
    refused(keyholder, message, monkeypatch, match)
    keyholder, aggregator, _, _, vectors, receipts = honest_round(scheme_name)
    alone = EncryptedAggregate(aggregator.round, Task.TRAIN, (receipts[0],), vectors[0].to_bytes())
    refused(keyholder, alone, monkeypatch, "at least 2")


def test_duplicating_one_client(scheme_name, monkeypatch):
    keyholder, aggregator, _, _, vectors, receipts = honest_round(scheme_name)
    tripled = vectors[0].key.load_vector(forged(vectors[0], 1))
    for _ in range(3):
        tripled = tripled._add(vectors[0], tripled.count + 1)
    data = tripled.to_bytes()
    same_receipt = EncryptedAggregate(aggregator.round, Task.TRAIN, (receipts[0],) * 4, data)
    refused(keyholder, same_receipt, monkeypatch, "more than once")
    others = EncryptedAggregate(aggregator.round, Task.TRAIN, tuple(receipts), data)
    refused(keyholder, others, monkeypatch, "not the sum")


def test_replaying_a_contribution_from_an_old_round(scheme_name, monkeypatch):
    keyholder, aggregator, clients, _, vectors, receipts = honest_round(scheme_name)
    old_round = aggregator.round
    start = open_round(keyholder, aggregator)  # the next round
    fresh = [decode(c.participate(start).update, EncryptedUpdate) for c in clients[1:]]
    key = keyholder.public_key
    fresh_vectors = [key.load_vector(u.vector) for u in fresh]
    fresh_receipts = [
        Receipt(u.client_id, v.commitment(), u.commitment_signature, u.proof, u.binding)
        for u, v in zip(fresh, fresh_vectors, strict=True)
    ]
    # Client c0's contribution from the old round, smuggled into the new one.
    total = sum([vectors[0], *fresh_vectors])
    message = EncryptedAggregate(
        aggregator.round, Task.TRAIN, (receipts[0], *fresh_receipts), total.to_bytes()
    )
    assert aggregator.round == old_round + 1
    refused(keyholder, message, monkeypatch, "not validly signed")
    # And the old round itself closed when the new ticket was signed.
    old = EncryptedAggregate(old_round, Task.TRAIN, tuple(receipts), sum(vectors).to_bytes())
    refused(keyholder, old, monkeypatch, "not the open round")


def test_a_forged_signature(scheme_name, monkeypatch):
    keyholder, aggregator, _, _, vectors, receipts = honest_round(scheme_name)
    mallory = Identity()
    bad_sig = dataclasses.replace(receipts[1], signature=mallory.sign(b"anything" * 8))
    zeroed = dataclasses.replace(receipts[2], signature=bytes(64))
    for index, bad in ((1, bad_sig), (2, zeroed)):
        changed = list(receipts)
        changed[index] = bad
        message = EncryptedAggregate(
            aggregator.round, Task.TRAIN, tuple(changed), sum(vectors).to_bytes()
        )
        refused(keyholder, message, monkeypatch, "not validly signed")


def test_an_aggregate_that_does_not_match_its_receipts(scheme_name, monkeypatch):
    keyholder, aggregator, _, _, vectors, receipts = honest_round(scheme_name)
    # Claiming a receipt whose commitment belongs to another contribution fails
    # its signature (the commitment is signed).
    wrong = list(receipts)
    wrong[3] = dataclasses.replace(receipts[3], commitment=vectors[0].commitment())
    message = EncryptedAggregate(
        aggregator.round, Task.TRAIN, tuple(wrong), sum(vectors).to_bytes()
    )
    refused(keyholder, message, monkeypatch, "not validly signed")
    # Swapping client c3's ciphertext for one the aggregator made itself.
    own = keyholder.public_key.encrypt(np.zeros(vectors[0].size), weight=40)
    swapped = vectors[0] + vectors[1] + vectors[2] + own
    message = EncryptedAggregate(aggregator.round, Task.TRAIN, tuple(receipts), swapped.to_bytes())
    refused(keyholder, message, monkeypatch, "not the sum")


def test_receipts_signed_for_another_task_are_refused(monkeypatch):
    keyholder, aggregator, _, _, vectors, receipts = honest_round("plain")
    # Signatures made for the training task must not verify for another task.
    message = EncryptedAggregate(
        aggregator.round, Task.MAGNITUDE, tuple(receipts), sum(vectors).to_bytes()
    )
    refused(keyholder, message, monkeypatch, "not the open round")


class Malicious(Client):
    """A registered client that sends something other than a valid update."""

    behaviour = "garbage"

    def participate(self, message: bytes) -> ClientReport:
        honest = super().participate(message)
        if self.behaviour == "garbage":
            data = b"\x00" * 200
        elif self.behaviour == "corrupt":
            raw = bytearray(honest.update)
            raw[len(raw) // 2] ^= 0x55
            data = bytes(raw)
        elif self.behaviour == "wrong-shape":
            vector = self._key.encrypt(np.zeros(2), weight=self.n_samples)
            data = signed_update(self, message, vector)
        elif self.behaviour == "wrong-key":
            other = type(self._key.scheme).keygen(self._key.scheme).public
            vector = other.encrypt(np.zeros(4), weight=self.n_samples)
            data = signed_update(self, message, vector)
        else:  # "forged": a valid-looking update under another client's name
            update = decode(honest.update, EncryptedUpdate)
            data = encode(dataclasses.replace(update, client_id="c0"))
        return dataclasses.replace(honest, update=data)


@pytest.mark.parametrize(
    "behaviour", ["garbage", "corrupt", "wrong-shape", "wrong-key", "forged", "silent"]
)
def test_one_malicious_client_among_five_leaves_the_honest_average(behaviour):
    keyholder, aggregator, honest = roles("paillier-packed", sizes=(30, 50, 20, 40))
    X, y = np.random.default_rng(4).normal(size=(25, 3)), np.arange(25) % 2
    bad = Malicious(
        "c4",
        X,
        y,
        keyholder.public_key_bytes(),
        keyholder=keyholder.identity_bytes,
        model=honest[0]._model,
        local_epochs=2,
        classes=np.array([0, 1]),
        allow_insecure=True,
    )
    bad.behaviour = behaviour
    keyholder.register("c4", bad.verify_key)
    aggregator.register("c4", bad.verify_key)
    federation = Federation(keyholder, aggregator, [*honest, bad])
    participants = None if behaviour != "silent" else [c.client_id for c in honest]
    outcome = federation.run_round(participants=participants)
    assert outcome.contributors == ("c0", "c1", "c2", "c3")
    assert outcome.skipped is None
    expected = np.average(
        [local_delta(c, np.zeros(4)) for c in honest], axis=0, weights=[30, 50, 20, 40]
    )
    np.testing.assert_allclose(aggregator.weights, expected, atol=1e-4)  # 16-bit packing
