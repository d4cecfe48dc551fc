"""Threshold share holders: tickets from a quorum of n, releases equal to one key holder's, attacks.

The aggregator is played by the test with only what it holds (every update, every
relayed byte); colluding share holders add their own shares, nothing more.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from he_fed.crypto import KeyPair, PackedPaillier
from he_fed.crypto._paillier_keys import PaillierSecretKey
from he_fed.crypto.threshold import PartialDecryption
from he_fed.exceptions import (
    InvalidPartialDecryption,
    InvalidSignature,
    PolicyViolation,
    ProtocolError,
)
from he_fed.protocol import (
    Aggregate,
    Aggregator,
    EncryptedAggregate,
    EncryptedUpdate,
    Identity,
    KeyHolder,
    Receipt,
    RoundStart,
    Task,
    decode,
    encode,
)
from he_fed.protocol.certificate import aggregate_digest
from he_fed.protocol.council import merge_signatures, merge_tickets
from he_fed.protocol.decryptor import Decryptor, partial_context
from he_fed.protocol.partial_transport import ExchangeKey, Sealed, open_sealed, seal
from he_fed.protocol.receipts import commitment_payload
from he_fed.runtime.council import LocalCouncil
from tests.crypto.threshold_fixtures import TEST_ONLY_PRIMES_1024
from tests.protocol.harness import PLAN, client

SCHEME = PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=64, max_weight=128)
SIZES = (30, 50, 20, 40)


def _council() -> LocalCouncil:
    return LocalCouncil.generate(
        SCHEME, threshold=3, holders=5, plan=PLAN, min_clients=2, primes=TEST_ONLY_PRIMES_1024
    )


def _wire(holder):
    aggregator = Aggregator(
        holder.aggregation_key_bytes(),
        plan=PLAN,
        keyholder=holder.identity_bytes,
        allow_insecure=True,
    )
    clients = [client(holder, f"c{i}", i, n) for i, n in enumerate(SIZES)]
    for c in clients:
        holder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    return aggregator, clients


def _round(holder, aggregator, clients) -> bytes:
    start = aggregator.open_round(holder.start_round(Task.TRAIN))
    for c in clients:
        aggregator.add(c.participate(start).update)
    release = holder.decrypt_aggregate(aggregator.finish_round())
    aggregator.apply(release)
    return release


def _updates(council, aggregator, clients):
    start = aggregator.open_round(council.start_round(Task.TRAIN))
    updates = [decode(c.participate(start).update, EncryptedUpdate) for c in clients]
    key = council.public_key
    vectors = [key.load_vector(u.vector) for u in updates]
    receipts = [
        Receipt(u.client_id, v.commitment(), u.commitment_signature, u.proof, u.binding)
        for u, v in zip(updates, vectors, strict=True)
    ]
    return start, vectors, receipts


def test_three_of_five_release_exactly_what_one_key_holder_releases():
    council = _council()
    aggregator, clients = _wire(council)
    # Test-only: the fixture primes make the single key of the same modulus.
    single = KeyHolder(
        KeyPair(council.public_key, PaillierSecretKey(council.public_key, *TEST_ONLY_PRIMES_1024)),
        plan=PLAN,
        min_clients=2,
    )
    single_aggregator, single_clients = _wire(single)
    for _ in range(2):
        ours = decode(_round(council, aggregator, clients), Aggregate)
        theirs = decode(_round(single, single_aggregator, single_clients), Aggregate)
        assert ours.mean.tolist() == theirs.mean.tolist()
        assert ours.contributors == theirs.contributors == 4
    assert council.last_partials == ((1, 2, 3), ())


def test_a_ticket_needs_a_quorum_of_four_holders_signatures_not_three():
    council = _council()
    assert (council.quorum, council.tolerated_absences) == (4, 1)
    aggregator, clients = _wire(council)
    tickets = [council._holders[i].start_round(Task.TRAIN) for i in (1, 2, 3, 4)]
    three = merge_tickets(tickets[:3])
    with pytest.raises(InvalidSignature):
        aggregator.open_round(three)
    with pytest.raises(InvalidSignature):
        clients[0].participate(three)
    outsider = Identity()
    forged = decode(three, RoundStart)
    extra = bytes([5]) + outsider.sign(b"anything")
    with pytest.raises(InvalidSignature):
        aggregator.open_round(
            encode(dataclasses.replace(forged, signature=forged.signature + extra))
        )
    start = aggregator.open_round(merge_tickets(tickets))
    assert clients[0].participate(start).update


def test_the_aggregator_with_two_colluding_holders_gets_no_single_update():
    council = _council()
    aggregator, clients = _wire(council)
    start, vectors, receipts = _updates(council, aggregator, clients)
    ticket = decode(start, RoundStart)
    honest = [council._holders[i] for i in (3, 4, 5)]
    computed = []
    for holder in honest:
        original = holder._share.partial_decrypt
        holder._share = dataclasses.replace(holder._share)  # a copy we can spy on
        object.__setattr__(
            holder._share,
            "partial_decrypt",
            lambda *a, _o=original, **k: computed.append(1) or _o(*a, **k),
        )
    victim = vectors[0]
    # 1. The victim's ciphertext as the aggregate, with everyone's receipts.
    alone = victim.key.load_vector(victim.to_bytes())
    alone.count = 4
    attempts = [
        EncryptedAggregate(ticket.round, Task.TRAIN, tuple(receipts), alone.to_bytes()),
        # 2. with its own receipt only
        EncryptedAggregate(ticket.round, Task.TRAIN, (receipts[0],), victim.to_bytes()),
        # 3. with receipts the aggregator forged for the others
        EncryptedAggregate(
            ticket.round,
            Task.TRAIN,
            (receipts[0],)
            + tuple(
                dataclasses.replace(
                    r,
                    commitment=victim.commitment(),
                    signature=Identity().sign(
                        commitment_payload(
                            federation=ticket.federation,
                            round=ticket.round,
                            task=Task.TRAIN,
                            client_id=r.client_id,
                            fingerprint=victim.key.fingerprint,
                            commitment_digest=b"",
                        )
                    ),
                )
                for r in receipts[1:]
            ),
            alone.to_bytes(),
        ),
    ]
    for attempt in attempts:
        for holder in honest:
            holder._open = (ticket.round, Task.TRAIN)  # as if each attempt came first
            with pytest.raises(PolicyViolation):
                holder.endorse(encode(attempt))
    assert computed == [], "an honest holder computed a partial decryption"
    honest_sum = sum(vectors[1:], vectors[0])
    fair = encode(
        EncryptedAggregate(ticket.round, Task.TRAIN, tuple(receipts), honest_sum.to_bytes())
    )
    for holder in honest:
        holder._open = (ticket.round, Task.TRAIN)
    certificate = merge_signatures(council._holders[i].endorse(fair) for i in (1, 2, 3, 4))
    assert set(honest[0].partial_decrypt(fair, certificate)) == {1, 2, 4, 5}
    assert computed == [1]  # the spy counts: the honest aggregate gets its partial
    # What the colluders can do with their own two shares: nothing decrypts.
    context = partial_context(
        ticket.federation, ticket.round, Task.TRAIN, aggregate_digest(b"victim")
    )
    theirs = [council._holders[i]._share.partial_decrypt(victim, context) for i in (1, 2)]
    vk = council._holders[1]._share.verification
    with pytest.raises(InvalidPartialDecryption, match="2 valid partial decryption"):
        vk.combine(victim, theirs, context)


def test_a_bad_partial_is_named_only_when_its_holder_sealed_it():
    council = _council()
    aggregator, clients = _wire(council)
    start, vectors, receipts = _updates(council, aggregator, clients)
    ticket = decode(start, RoundStart)
    total = sum(vectors[1:], vectors[0])
    message = encode(
        EncryptedAggregate(ticket.round, Task.TRAIN, tuple(receipts), total.to_bytes())
    )
    holders = [council._holders[i] for i in range(1, 6)]
    certificate = merge_signatures(holder.endorse(message) for holder in holders)
    sealed: dict[int, list[bytes]] = {}
    for holder in holders:
        for recipient, blob in holder.partial_decrypt(message, certificate).items():
            sealed.setdefault(recipient, []).append(blob)
    context = partial_context(
        ticket.federation, ticket.round, Task.TRAIN, aggregate_digest(message)
    )
    # The relay holds every sealed blob, and no key that opens one.
    relay = ExchangeKey()
    for blobs in sealed.values():
        for blob in blobs:
            with pytest.raises(Exception, match="does not open"):
                envelope = Sealed.from_bytes(blob)
                open_sealed(envelope, relay, holders[envelope.sender - 1].exchange_bytes, context)
    vk = holders[0]._share.verification
    proof_bytes = len(holders[0]._share.partial_decrypt(total, context).proofs[0])
    fake = PartialDecryption(
        2,
        tuple(int(c) for c in total.ciphertexts),
        tuple(b"\1" * proof_bytes for _ in total.ciphertexts),
    ).to_bytes(vk)

    def forged(holder: Decryptor, key: ExchangeKey) -> list[bytes]:
        """What holder 2 and the relay sent ``holder``: the others' partials, and junk "from 2"."""
        blobs = [b for b in sealed[holder.index] if Sealed.from_bytes(b).sender != 2]
        junk = seal(
            fake,
            sender=2,
            sender_key=key,
            recipient=holder.index,
            recipient_key=holder.exchange_bytes,
            context=context,
        )
        return [*blobs, junk]

    # The red team's framing: the relay seals junk to holders 3 and 4 under holder
    # 2's index, with a key of its own. It does not open, so it names nobody.
    releases = [holder.release(forged(holder, relay)) for holder in holders[2:4]]
    for holder in holders[2:4]:
        assert holder.last_partials[1] == ()
        assert 2 not in holder.last_partials[0]
    # Holder 2 itself seals the same junk to holder 5 with its own key: only it can
    # have made that, so it is named, and the round still completes from the others.
    releases.append(holders[4].release(forged(holders[4], holders[1]._exchange)))
    assert holders[4].last_partials[1] == (2,)
    assert 2 not in holders[4].last_partials[0]
    assert len(set(releases)) == 1
    assert decode(releases[0], Aggregate).contributors == 4


def test_one_absent_holder_is_tolerated_and_catches_up_but_not_two():
    council = _council()
    aggregator, clients = _wire(council)
    council.absent = {5}
    _round(council, aggregator, clients)
    assert council.last_partials == ((1, 2, 3), ())
    council.absent = {1}
    release = decode(_round(council, aggregator, clients), Aggregate)
    assert council.last_partials == ((2, 3, 4), ())
    assert release.contributors == 4
    # Every holder's model chain agrees, the one that missed a round included.
    weights = {tuple(h.model.weights.tolist()) for h in council._holders.values() if h.index > 1}
    assert len(weights) == 1
    council.absent = {4, 5}  # n - t = 2 absences were enough before the quorum: no longer
    with pytest.raises(ProtocolError, match="3 share holder.*quorum of 4 of 5.*at most 1"):
        council.start_round(Task.TRAIN)
    assert np.all(np.isfinite(release.mean))


def test_a_federation_round_reports_which_shares_took_part():
    from he_fed.models import LogisticRegressionGD
    from he_fed.protocol.spec import FederationSetup
    from he_fed.runtime import Federation
    from tests.protocol.harness import data

    partitions = [data(i, n) for i, n in enumerate(SIZES)]
    setup = FederationSetup.from_partitions(
        partitions,
        scheme=SCHEME,
        model=LogisticRegressionGD(learning_rate=0.5),
        classes=np.array([0, 1]),
        standardize=False,
        threshold=(3, 5),
    )
    federation = Federation.from_setup(setup, partitions)
    federation.keyholder.absent = {2}
    outcome = federation.run_round()
    assert outcome.skipped is None and outcome.shares == ((1, 3, 4), ())


def test_no_holder_partially_decrypts_an_aggregate_of_another_cohort():
    """One cohort per federation holds on a council too (he_fed.protocol.normalisers):
    every holder refuses a second cohort before it computes a partial, so no
    coalition of the aggregator and fewer than t holders gets its sum either."""
    council = _council()
    aggregator, clients = _wire(council)
    _round(council, aggregator, clients)
    with pytest.raises(PolicyViolation, match="federation's cohort"):
        _round(council, aggregator, clients[1:])
    assert all(d._pending is None for d in council._holders.values())
    decode(_round(council, aggregator, clients), Aggregate)  # the full cohort goes on
