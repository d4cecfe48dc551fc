"""The aggregator and one colluding client try to isolate another client in one round.

The attack (found by a red team): the colluder signs a *rogue* commitment, the
commitment of a ciphertext whose plaintext the attackers know divided by the other
honest receipts' commitments. The receipts' product then equals the commitment of
"victim + known ciphertext", so the key holder's sum check passes for an aggregate
that holds only the victim's update, listed with a full cohort of receipts.

What stops it: every receipt carries a proof of knowledge of its commitment's
randomness (``he_fed.crypto._commitment_proof``), and the colluder cannot know the
discrete logarithm of a commitment that divides by the others'.

On CKKS (the tests at the end) the colluder can sign a rogue ``c1`` with no proof
to stop it; the binding commitments and the proof of knowledge of their openings
(``he_fed.crypto._opening_proof``) are what refuse it.
"""

from __future__ import annotations

import dataclasses

import gmpy2
import numpy as np
import pytest

from he_fed.crypto import _binding, load_public
from he_fed.exceptions import (
    AggregateRejected,
    HEFedError,
    InvalidSignature,
    MalformedMessage,
    PolicyViolation,
)
from he_fed.protocol import (
    EncryptedAggregate,
    EncryptedUpdate,
    Receipt,
    RoundStart,
    Task,
    decode,
    encode,
)
from he_fed.protocol.receipts import (
    commitment_payload,
    commitments_digest,
    contribution_payloads,
)
from tests.protocol.harness import open_round, roles
from tests.protocol.test_attacks import Spy

SCHEMES = ["paillier", "paillier-packed"]


def divided(binding: bytes, others: list[bytes]) -> bytes:
    """``binding`` over the product of ``others``, part by part: a rogue binding commitment
    (the plaintext's commitment and the weight's) that cancels theirs."""
    product = _binding.product(others, parts=2)
    assert product is not None
    out = b""
    for at in (0, _binding.WIDTH):
        part = slice(at, at + _binding.WIDTH)
        inverse = gmpy2.invert(int.from_bytes(product[part], "big"), _binding.P)
        value = int.from_bytes(binding[part], "big") * int(inverse) % _binding.P
        out += value.to_bytes(_binding.WIDTH, "big")
    return out


def residues(vector) -> list[int]:
    n = int(vector.key.n)
    return [int(c) % n for c in vector.ciphertexts]


def colluder_fields(ticket: RoundStart, key) -> dict:
    """What the colluder c1's payloads name: this round of training, under ``key``."""
    return dict(
        federation=ticket.federation,
        round=ticket.round,
        task=Task.TRAIN,
        client_id="c1",
        fingerprint=key.fingerprint,
    )


def aggregate_with(ticket: RoundStart, vectors, updates, rogue: Receipt, ciphertext: bytes):
    """The aggregate message of a full cohort: c0, the colluder's ``rogue`` receipt, c2, c3."""
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
    receipts = (honest[0], rogue, *honest[1:])
    return EncryptedAggregate(ticket.round, Task.TRAIN, receipts, ciphertext)


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
    payload = commitment_payload(
        **colluder_fields(ticket, key),
        commitment_digest=commitments_digest(rogue_commitment, known.binding()),
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
    isolated = vectors["c0"] + known
    isolated.count = 4  # the aggregator writes any count; the key holder checks it
    message = aggregate_with(ticket, vectors, updates, receipt, isolated.to_bytes())
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


class _TwoFaced(bytes):
    """Bytes whose buffer is ``shown`` while every slice comes from ``real`` (red team 13)."""

    _real: bytes

    def __new__(cls, shown: bytes, real: bytes) -> _TwoFaced:
        assert len(shown) == len(real)
        made = super().__new__(cls, shown)
        made._real = bytes(real)
        return made

    def __getitem__(self, item):  # type: ignore[override]
        return self._real[item]


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_a_verdict_planted_through_the_public_verifier_admits_no_rogue_receipt(
    scheme_name, monkeypatch
):
    """Red team 13 against a per-process memo of proof verdicts (since removed).

    The aggregator calls the public verifier of its own key on two-faced bytes: a
    rogue receipt (a ciphertext, commitment and binding that cancel c2 and c3) in the
    buffer, the colluder's genuine contribution in the slices. With verdicts shared
    between roles, the True it got was remembered for the rogue receipt, and the key
    holder released the victim's update alone. The key holder checks every receipt
    itself: refused before decryption.
    """
    keyholder, aggregator, clients = roles(scheme_name, sizes=(30, 50, 20, 40), min_clients=None)
    start = open_round(keyholder, aggregator)
    ticket = decode(start, RoundStart)
    updates = {
        c.client_id: decode(c.participate(start).update, EncryptedUpdate)
        for c in clients
        if c.client_id != "c1"
    }
    key = load_public(keyholder.aggregation_key_bytes(), allow_insecure=True)  # the aggregator's
    vectors = {cid: key.load_vector(u.vector) for cid, u in updates.items()}
    size, n2 = vectors["c0"].size, int(key.n) ** 2
    pairs = zip(vectors["c2"].ciphertexts, vectors["c3"].ciphertexts, strict=True)
    cancel = [gmpy2.invert(int(a) * int(b) % n2, n2) for a, b in pairs]  # Enc(-(x2 + x3))
    rogue = vectors["c0"].__class__(key, cancel, size, 1)
    rogue_binding = divided(
        (1).to_bytes(_binding.WIDTH, "big") * 2, [updates["c2"].binding, updates["c3"].binding]
    )
    _, alone = contribution_payloads(
        **colluder_fields(ticket, key),
        vector=rogue.to_bytes(),
        commitment=rogue.commitment(),
        binding=rogue_binding,
    )
    colluder = clients[1]
    genuine = colluder._key.encrypt(np.zeros(size), weight=1)
    proof = genuine.prove_commitment(alone)
    planted = key.verify_commitment_proof(
        _TwoFaced(rogue.commitment(), genuine.commitment()),
        proof,
        size,
        alone,
        binding=_TwoFaced(rogue_binding, genuine.binding()),
    )
    assert planted, "the checker read the genuine contribution"
    assert not key.verify_commitment_proof(
        rogue.commitment(), proof, size, alone, binding=rogue_binding
    )
    receipt = Receipt(
        "c1", rogue.commitment(), colluder._identity.sign(alone), proof, rogue_binding
    )
    isolated = vectors["c0"] + vectors["c2"] + vectors["c3"] + rogue  # Enc(x0), weight 30
    isolated.count = 4
    message = aggregate_with(ticket, vectors, updates, receipt, isolated.to_bytes())
    commitments = [r.commitment for r in message.receipts]
    assert key.sum_commitments(commitments, size) == isolated.commitment()  # the sums match
    spy = Spy(keyholder, monkeypatch)
    with pytest.raises(PolicyViolation, match="'c1' is not validly signed and proven"):
        keyholder.decrypt_aggregate(encode(message))
    assert spy.calls == 0, "the key holder decrypted the isolated update"


# --- CKKS: a rogue c1 and a rogue binding commitment ------------------------------------
#
# CKKS has no proof that a c1 is well formed, so the colluder can sign
# c1_c = c1_x - c1_2 - c1_3 and the receipts' c1 add up to the aggregate "victim +
# known ciphertext". What stops it is the binding: either the colluder signs the
# binding it can prove (B_x), and the plaintext v + x does not open the receipts'
# product, or it signs B_c = B_x / (B_2 · B_3), which it cannot prove an opening of.


def _ckks_rogue_c1(key, known, vectors) -> bytes:
    primes = np.array(key.scheme.primes[:-1], dtype=np.uint64).reshape(1, -1, 1)
    shape = (len(known.parts), primes.size, key.scheme.poly_modulus_degree)

    def c1(vector) -> np.ndarray:
        return np.frombuffer(vector.commitment(), dtype="<u8").reshape(shape).astype(object)

    rogue = (c1(known) - c1(vectors["c2"]) - c1(vectors["c3"])) % primes.astype(object)
    return rogue.astype("<u8").tobytes()


def ckks_attack(*, prove_rogue_binding: bool):
    """Victim c0, colluder c1, honest c2 and c3; the colluder's receipt has a rogue c1.

    With ``prove_rogue_binding`` it signs ``B_c = B_x / (B_2 · B_3)`` with the proof
    it can make (for ``B_x``); otherwise it signs ``B_x`` itself, with its valid proof.
    """
    keyholder, aggregator, clients = roles("ckks", sizes=(30, 50, 20, 40), min_clients=None)
    start = open_round(keyholder, aggregator)
    ticket = decode(start, RoundStart)
    updates = {c.client_id: decode(c.participate(start).update, EncryptedUpdate) for c in clients}
    key = keyholder.public_key
    size = keyholder.plan.vector_size(Task.TRAIN)
    vectors = {cid: key.load_vector(u.vector, size=size) for cid, u in updates.items()}
    known = key.encrypt(np.zeros(size), weight=3)  # the total weight passes for four
    rogue_c1 = _ckks_rogue_c1(key, known, vectors)
    binding = known.binding()
    if prove_rogue_binding:
        binding = divided(binding, [updates["c2"].binding, updates["c3"].binding])
    payload = commitment_payload(
        **colluder_fields(ticket, key), commitment_digest=commitments_digest(rogue_c1, binding)
    )
    receipt = Receipt(
        "c1", rogue_c1, clients[1]._identity.sign(payload), known.prove_commitment(payload), binding
    )
    isolated = vectors["c0"] + known
    isolated.count = 4  # the aggregator writes any count; the key holder checks it
    message = aggregate_with(ticket, vectors, updates, receipt, isolated.to_bytes())
    return keyholder, key, message, isolated, known, updates


def test_a_rogue_c1_with_a_rogue_binding_passes_both_sums_but_not_the_proof(monkeypatch):
    keyholder, key, message, isolated, _, updates = ckks_attack(prove_rogue_binding=True)
    size = isolated.size
    # Without the proof the attack would work: c1 and the bindings both add up, and
    # the victim's update alone (plus a known zero) opens the receipts' bindings.
    assert key.sum_commitments([r.commitment for r in message.receipts], size) == (
        isolated.commitment()
    )
    combined = key.sum_bindings([r.binding for r in message.receipts])
    secret = keyholder._keys.secret
    alone = secret.decrypt_weighted(isolated, binding=combined)
    victim = secret.decrypt_weighted(key.load_vector(updates["c0"].vector, size=size))
    np.testing.assert_array_equal(alone.units, victim.units)  # the victim's update, exactly
    spy = Spy(keyholder, monkeypatch)
    with pytest.raises(PolicyViolation, match="'c1' is not validly signed and proven"):
        keyholder.decrypt_aggregate(encode(message))
    assert spy.calls == 0, "the key holder decrypted the isolated update"
    assert keyholder.released == 0


def test_a_rogue_c1_with_the_colluders_own_binding_is_refused_after_decryption(monkeypatch):
    keyholder, key, message, isolated, _, _ = ckks_attack(prove_rogue_binding=False)
    # Every receipt verifies and c1 adds up: only the binding check is left.
    assert key.sum_commitments([r.commitment for r in message.receipts], isolated.size) == (
        isolated.commitment()
    )
    spy = Spy(keyholder, monkeypatch)
    with pytest.raises(AggregateRejected, match="nothing was released"):
        keyholder.decrypt_aggregate(encode(message))
    assert spy.calls == 1 and keyholder.released == 0 and keyholder.rejected == 1


def test_the_ckks_colluder_fails_with_any_proof_it_can_borrow(monkeypatch):
    keyholder, _, message, _, _, updates = ckks_attack(prove_rogue_binding=True)
    for proof in (updates["c2"].proof, updates["c1"].proof, b"", b"\x00" * 64):
        receipts = list(message.receipts)
        receipts[1] = dataclasses.replace(receipts[1], proof=proof)
        forged = dataclasses.replace(message, receipts=tuple(receipts))
        spy = Spy(keyholder, monkeypatch)
        with pytest.raises(PolicyViolation, match="'c1' is not validly signed and proven"):
            keyholder.decrypt_aggregate(encode(forged))
        assert spy.calls == 0
        keyholder, _, message, _, _, updates = ckks_attack(prove_rogue_binding=True)


def test_a_ckks_proof_from_another_context_fails():
    keyholder, aggregator, clients = roles("ckks")
    start = open_round(keyholder, aggregator)
    update = decode(clients[0].participate(start).update, EncryptedUpdate)
    key = load_public(keyholder.aggregation_key_bytes())
    size = keyholder.plan.vector_size(Task.TRAIN)
    commitment = key.load_vector(update.vector, size=size).commitment()
    ticket = decode(start, RoundStart)
    fields = dict(
        federation=ticket.federation,
        round=ticket.round,
        task=Task.TRAIN,
        client_id="c0",
        fingerprint=key.fingerprint,
        commitment_digest=commitments_digest(commitment, update.binding),
    )
    payload = commitment_payload(**fields)
    verify = key.verify_commitment_proof
    assert verify(commitment, update.proof, size, payload, binding=update.binding)
    for changed in (
        dict(client_id="c1"),
        dict(round=ticket.round + 1),
        dict(task=Task.EVALUATE),
        dict(federation=bytes(16)),
    ):
        other = commitment_payload(**{**fields, **changed})
        assert not verify(commitment, update.proof, size, other, binding=update.binding)
    another = decode(clients[1].participate(start).update, EncryptedUpdate)
    assert not verify(commitment, update.proof, size, payload, binding=another.binding)


@pytest.mark.parametrize(
    "change",
    ["proof-truncated", "proof-flipped", "proof-empty", "proof-long", "binding", "binding-size"],
)
def test_malformed_ckks_proofs_and_bindings_are_typed_refusals_at_the_aggregator(change):
    keyholder, aggregator, clients = roles("ckks")
    start = open_round(keyholder, aggregator)
    good = decode(clients[0].participate(start).update, EncryptedUpdate)
    proof, binding = bytearray(good.proof), bytearray(good.binding)
    if change == "proof-truncated":
        proof = proof[:-1]
    elif change == "proof-flipped":
        proof[-1] ^= 1
    elif change == "proof-empty":
        proof = bytearray()
    elif change == "proof-long":
        proof += bytes(len(good.vector) + 8192)
    elif change == "binding":
        binding[-1] ^= 1
    else:
        binding = binding[:-1]
    bad = dataclasses.replace(good, proof=bytes(proof), binding=bytes(binding))
    with pytest.raises(HEFedError) as refused:
        aggregator.add(encode(bad))
    assert isinstance(refused.value, (InvalidSignature, MalformedMessage))
    assert "\n" not in str(refused.value)
    aggregator.add(encode(good))  # the genuine update still counts
    assert aggregator.contributors == ("c0",)


def test_the_aggregator_drops_a_ckks_update_with_a_rogue_binding_on_arrival():
    """The colluder sends its known ciphertext with the rogue ``B_c`` as an update.

    Both signatures are valid (it signs what it likes); the proof it can make is for
    ``B_x``, which the aggregator checks against the signed ``B_c`` and refuses,
    before the update reaches any sum.
    """
    keyholder, aggregator, clients = roles("ckks", sizes=(30, 50, 20, 40), min_clients=None)
    start = open_round(keyholder, aggregator)
    ticket = decode(start, RoundStart)
    honest = [decode(c.participate(start).update, EncryptedUpdate) for c in clients[2:]]
    for update in honest:
        aggregator.add(encode(update))
    key = keyholder.public_key
    known = key.encrypt(np.zeros(keyholder.plan.vector_size(Task.TRAIN)), weight=3)
    rogue = divided(known.binding(), [u.binding for u in honest])
    vector = known.to_bytes()
    whole, alone = contribution_payloads(
        federation=ticket.federation,
        round=ticket.round,
        task=Task.TRAIN,
        client_id="c1",
        fingerprint=key.fingerprint,
        vector=vector,
        commitment=known.commitment(),
        binding=rogue,
    )
    identity = clients[1]._identity
    update = EncryptedUpdate(
        ticket.round,
        Task.TRAIN,
        "c1",
        vector,
        identity.sign(whole),
        identity.sign(alone),
        known.prove_commitment(alone),  # the proof it can make: for B_x
        rogue,
    )
    with pytest.raises(InvalidSignature, match="'c1' does not prove its commitment"):
        aggregator.add(encode(update))
    assert aggregator.contributors == ("c2", "c3")
