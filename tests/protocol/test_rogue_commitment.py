"""The aggregator and one colluding client try to isolate another client in one round.

The attack (found by a red team): the colluder signs a *rogue* commitment, the
commitment of a ciphertext whose plaintext the attackers know divided by the other
honest receipts' commitments. The receipts' product then equals the commitment of
"victim + known ciphertext", so the key holder's sum check passes for an aggregate
that holds only the victim's update, listed with a full cohort of receipts.

What stops it: every receipt carries a proof of knowledge of its commitment's
randomness (``he_fed.crypto._commitment_proof``), and the colluder cannot know the
discrete logarithm of a commitment that divides by the others'.
"""

from __future__ import annotations

import dataclasses

import gmpy2
import numpy as np
import pytest

from he_fed.exceptions import InvalidSignature, PolicyViolation
from he_fed.protocol import (
    EncryptedAggregate,
    EncryptedUpdate,
    Receipt,
    RoundStart,
    Task,
    decode,
    encode,
)
from he_fed.protocol.receipts import commitment_payload, commitments_digest
from tests.protocol.harness import open_round, roles
from tests.protocol.test_attacks import Spy

SCHEMES = ["paillier", "paillier-packed"]


def residues(vector) -> list[int]:
    n = int(vector.key.n)
    return [int(c) % n for c in vector.ciphertexts]


def attack(scheme_name: str):
    """Victim c0, colluder c1, honest c2 and c3; a majority (3 of 4) is required."""
    keyholder, aggregator, clients = roles(scheme_name, sizes=(30, 50, 20, 40), min_clients=None)
    assert keyholder.min_clients == 3
    start = open_round(keyholder, aggregator)
    ticket = decode(start, RoundStart)
    updates = {c.client_id: decode(c.participate(start).update, EncryptedUpdate) for c in clients}
    key = keyholder.public_key
    n = int(key.n)
    vectors = {cid: key.load_vector(u.vector) for cid, u in updates.items()}
    # The attackers' known plaintext: zeros with weight 3, so that the total weight
    # passes the range check for four contributions.
    known = key.encrypt(np.zeros(vectors["c0"].size), weight=3)
    rogue = []
    for i, r in enumerate(residues(known)):
        others = residues(vectors["c2"])[i] * residues(vectors["c3"])[i] % n
        rogue.append(r * int(gmpy2.invert(others, n)) % n)
    width = (n.bit_length() + 7) // 8
    rogue_commitment = b"".join(r.to_bytes(width, "big") for r in rogue)
    fields = dict(
        federation=ticket.federation,
        round=ticket.round,
        task=Task.TRAIN,
        client_id="c1",
        fingerprint=key.fingerprint,
    )
    payload = commitment_payload(
        **fields, commitment_digest=commitments_digest(rogue_commitment, known.binding())
    )
    colluder = clients[1]
    # The colluder's best proof: the one it can make, for the known ciphertext.
    receipt = Receipt(
        "c1",
        rogue_commitment,
        colluder._identity.sign(payload),
        known.prove_commitment(payload),
        known.binding(),
    )
    honest = [
        Receipt(
            cid,
            vectors[cid].commitment(),
            updates[cid].commitment_signature,
            updates[cid].proof,
            updates[cid].binding,
        )
        for cid in ("c0", "c2", "c3")
    ]
    isolated = vectors["c0"] + known
    isolated.count = 4  # the aggregator writes any count; the key holder checks it
    message = EncryptedAggregate(
        ticket.round, Task.TRAIN, (honest[0], receipt, *honest[1:]), isolated.to_bytes()
    )
    return keyholder, aggregator, key, message, isolated, known, updates


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_a_rogue_commitment_passes_the_sum_check_but_not_the_proof(scheme_name, monkeypatch):
    keyholder, _, key, message, isolated, _, _ = attack(scheme_name)
    # Without the proofs the attack would work: the receipts' commitments multiply
    # to the commitment of an aggregate that holds the victim's update alone.
    commitments = [r.commitment for r in message.receipts]
    assert key.sum_commitments(commitments, isolated.size) == isolated.commitment()
    spy = Spy(keyholder, monkeypatch)
    with pytest.raises(PolicyViolation, match="'c1' is not validly signed and proven"):
        keyholder.decrypt_aggregate(encode(message))
    assert spy.calls == 0, "the key holder decrypted the isolated update"


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_the_colluders_receipt_fails_with_any_proof_it_can_borrow(scheme_name, monkeypatch):
    keyholder, _, _, message, _, _, updates = attack(scheme_name)
    # Nor does copying an honest client's proof (bound to that client's payload), or
    # sending none, get the colluder's receipt through.
    for proof in (updates["c2"].proof, updates["c1"].proof, b""):
        receipts = list(message.receipts)
        receipts[1] = dataclasses.replace(receipts[1], proof=proof)
        forged = dataclasses.replace(message, receipts=tuple(receipts))
        spy = Spy(keyholder, monkeypatch)
        with pytest.raises(PolicyViolation, match="'c1' is not validly signed and proven"):
            keyholder.decrypt_aggregate(encode(forged))
        assert spy.calls == 0
        # Each refusal past the signatures uses up the round: open the next one.
        keyholder, _, _, message, _, _, updates = attack(scheme_name)


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_the_aggregator_refuses_an_update_whose_proof_fails(scheme_name):
    keyholder, aggregator, clients = roles(scheme_name)
    start = open_round(keyholder, aggregator)
    good = decode(clients[0].participate(start).update, EncryptedUpdate)
    other = decode(clients[1].participate(start).update, EncryptedUpdate)
    bad = dataclasses.replace(good, proof=other.proof)
    with pytest.raises(InvalidSignature, match="'c0' does not prove its commitment"):
        aggregator.add(encode(bad))
    aggregator.add(encode(good))  # the genuine update still counts
    assert aggregator.contributors == ("c0",)
