"""The red team's breaks of threshold decryption (issue 15), performed against the real roles.

The attacker is the aggregator (every update, every relayed byte, what it sends to
whom) plus share holders 1 and 2 of a 3-of-5 council: their shares, their X25519
keys and their signing identities. Holders 3, 4 and 5 are honest and are driven
only through their public methods. Each test asserts the refusal, and that no
single client's update, sample count or statistics can be differenced out.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from he_fed.crypto import PackedPaillier
from he_fed.crypto.threshold import load_partial
from he_fed.exceptions import (
    AggregateRejected,
    ConfigurationError,
    InvalidPartialDecryption,
    InvalidSignature,
    PolicyViolation,
)
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import (
    Aggregate,
    Aggregator,
    EncryptedAggregate,
    EncryptedUpdate,
    Receipt,
    RoundStart,
    RunPlan,
    Task,
    decode,
    encode,
    tasks,
)
from he_fed.protocol.certificate import aggregate_digest, certificate_payload, model_digest
from he_fed.protocol.council import cosignature, merge_signatures, merge_tickets
from he_fed.protocol.decryptor import partial_context
from he_fed.protocol.partial_transport import Sealed, open_sealed, seal
from he_fed.protocol.receipts import ticket_payload
from he_fed.runtime.council import LocalCouncil
from tests.crypto.threshold_fixtures import TEST_ONLY_PRIMES_1024
from tests.protocol.harness import PLAN, bound, client, data
from tests.protocol.test_malicious_clients import Crafting

SCHEME = PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=64, max_weight=128)
SIZES = (30, 50, 20, 40, 25)
COLLUDERS = (1, 2)
IDS = [f"c{i}" for i in range(len(SIZES))]


class _Attack:
    """A 3-of-5 council, five clients, and what the aggregator with holders 1, 2 holds."""

    def __init__(self, plan: RunPlan = PLAN) -> None:
        self.council = LocalCouncil.generate(
            SCHEME, threshold=3, holders=5, plan=plan, primes=TEST_ONLY_PRIMES_1024
        )
        self.h = self.council._holders
        self.plan = plan
        self.aggregator = Aggregator(
            self.council.aggregation_key_bytes(),
            plan=plan,
            keyholder=self.council.identity_bytes,
            allow_insecure=True,
        )
        self.clients = [client(self.council, IDS[i], i, n) for i, n in enumerate(SIZES)]
        for c in self.clients:
            self.council.register(c.client_id, c.verify_key)
            self.aggregator.register(c.client_id, c.verify_key)

    def ticket(self, signers, task=Task.TRAIN) -> bytes:
        return merge_tickets([self.h[i].start_round(task) for i in signers])

    def updates(self, start: bytes, cohort=IDS) -> dict:
        ticket = decode(start, RoundStart)
        key = self.key(ticket.task)
        out = {}
        for c in self.clients:
            if c.client_id not in cohort:
                continue
            u = decode(c.participate(start).update, EncryptedUpdate)
            v = key.load_vector(u.vector, size=self.plan.vector_size(ticket.task))
            out[c.client_id] = (
                v,
                Receipt(u.client_id, v.commitment(), u.commitment_signature, u.proof, u.binding),
            )
        return out

    def key(self, task: Task):
        return tasks.plan_for(self.council.public_key, task)

    def vector(self, data: bytes):
        message = decode(data, EncryptedAggregate)
        return self.key(message.task).load_vector(
            message.vector, size=self.plan.vector_size(message.task)
        )

    def aggregate(self, updates, cohort, round_id, task=Task.TRAIN) -> bytes:
        vectors = [updates[i][0] for i in cohort]
        total = sum(vectors[1:], vectors[0])
        receipts = tuple(updates[i][1] for i in cohort)
        return encode(EncryptedAggregate(round_id, task, receipts, total.to_bytes()))

    def colluders_vouch(self, data: bytes, like: int = 3) -> bytes:
        """Holders 1 and 2 sign any aggregate's certificate payload, under the model
        of holder ``like``'s ticket (which they co-signed, so they know it)."""
        message = decode(data, EncryptedAggregate)
        model = model_digest(message.task, self.h[like].model.ticket_fields(message.task))
        payload = certificate_payload(
            self.h[1].federation, message.round, message.task, aggregate_digest(data), model
        )
        return cosignature({j: self.h[j]._identity.sign(payload) for j in COLLUDERS})

    def colluders_sign_ticket(self, start: bytes) -> bytes:
        """Add holders 1 and 2's signatures to an honest holder's ticket."""
        ticket = decode(start, RoundStart)
        payload = ticket_payload(ticket.signed_bytes())
        own = cosignature({j: self.h[j]._identity.sign(payload) for j in COLLUDERS})
        return encode(
            dataclasses.replace(ticket, signature=merge_signatures([ticket.signature, own]))
        )

    def feed(self, holder: int, data: bytes, sealed_by: dict[int, dict[int, bytes]]) -> list:
        """Colluders' partials on ``data``, sealed to ``holder``, plus what others sealed to it."""
        message = decode(data, EncryptedAggregate)
        context = partial_context(
            self.h[1].federation, message.round, message.task, aggregate_digest(data)
        )
        vector = self.vector(data)
        blobs = [blobs[holder] for blobs in sealed_by.values() if holder in blobs]
        for j in COLLUDERS:
            partial = self.h[j]._share.partial_decrypt(vector, context)
            blobs.append(
                seal(
                    partial.to_bytes(self.h[j]._share.verification),
                    sender=j,
                    sender_key=self.h[j]._exchange,
                    recipient=holder,
                    recipient_key=self.h[holder].exchange_bytes,
                    context=context,
                )
            )
        return blobs


@pytest.mark.parametrize(
    ("plan", "task"),
    [(PLAN, Task.TRAIN), (bound(RunPlan(n_features=3, standardize=True)), Task.MAGNITUDE)],
    ids=["A1-updates", "A6-statistics"],
)
def test_a1_a6_split_view_gets_only_one_aggregate_decrypted_per_round(plan, task):
    attack = _Attack(plan)
    start = attack.ticket((1, 2, 3, 4, 5), task)
    round_id = decode(start, RoundStart).round
    ups = attack.updates(start)
    full = attack.aggregate(ups, IDS, round_id, task)
    without_c0 = attack.aggregate(ups, IDS[1:], round_id, task)
    without_c1 = attack.aggregate(ups, [IDS[0], *IDS[2:]], round_id, task)
    # Each honest holder is shown its own valid cohort and vouches for it, once.
    views = {3: full, 4: without_c0, 5: without_c1}
    vouched = {h: attack.h[h].endorse(view) for h, view in views.items()}
    with pytest.raises(PolicyViolation, match="not the open round"):
        attack.h[3].endorse(without_c0)  # one digest per holder per round
    # The best certificate of each view: the colluders and the one honest holder.
    for h, view in views.items():
        best = merge_signatures([vouched[h], attack.colluders_vouch(view)])
        with pytest.raises(PolicyViolation, match="certified by 3 share holder.*4 of 5"):
            attack.h[h].partial_decrypt(view, best)
        # Another honest holder's signature on another view does not count here.
        other = next(v for k, v in vouched.items() if k != h)
        with pytest.raises(PolicyViolation, match="certified by 0"):
            attack.h[h].partial_decrypt(view, merge_signatures([best, other]))
    # No honest partial exists, so the colluders' two decrypt nothing.
    context = partial_context(attack.h[1].federation, round_id, task, aggregate_digest(without_c0))
    vector = attack.vector(without_c0)
    theirs = [attack.h[j]._share.partial_decrypt(vector, context) for j in COLLUDERS]
    with pytest.raises(InvalidPartialDecryption, match="2 valid partial decryption"):
        attack.h[1]._share.verification.combine(vector, theirs, context)


def test_a1_a_quorum_shown_one_view_does_not_certify_a_second():
    attack = _Attack()
    start = attack.ticket((1, 2, 3, 4, 5))
    round_id = decode(start, RoundStart).round
    ups = attack.updates(start)
    full = attack.aggregate(ups, IDS, round_id)
    without_c0 = attack.aggregate(ups, IDS[1:], round_id)
    # Holders 3 and 4 see the full cohort: with 1 and 2 that is a quorum, and it decrypts.
    certificate = merge_signatures(
        [attack.h[3].endorse(full), attack.h[4].endorse(full), attack.colluders_vouch(full)]
    )
    sealed = {h: attack.h[h].partial_decrypt(full, certificate) for h in (3, 4)}
    assert set(sealed[3]) == {1, 2, 4, 5}
    # Holder 5 is shown the cohort without c0: it vouches, but no quorum can follow.
    alone = merge_signatures([attack.h[5].endorse(without_c0), attack.colluders_vouch(without_c0)])
    with pytest.raises(PolicyViolation, match="certified by 3"):
        attack.h[5].partial_decrypt(without_c0, alone)
    # Nor does holder 5 answer the certified full cohort: it vouched for another.
    with pytest.raises(PolicyViolation, match="answers one aggregate of round 0"):
        attack.h[5].partial_decrypt(full, certificate)
    # Holders 3 and 4 answer once: not again, and not another aggregate.
    with pytest.raises(PolicyViolation, match="answers one aggregate"):
        attack.h[3].partial_decrypt(full, certificate)
    # The release is the full cohort's, the same for both.
    releases = {h: attack.h[h].release(attack.feed(h, full, sealed)) for h in (3, 4)}
    assert releases[3] == releases[4]
    assert decode(releases[3], Aggregate).contributors == 5


def test_a3_a_holder_that_vouched_but_got_no_partials_signs_no_ticket_with_a_stale_model():
    attack = _Attack()
    start = attack.ticket((1, 2, 3, 4, 5))
    round_id = decode(start, RoundStart).round
    ups = attack.updates(start)
    full = attack.aggregate(ups, IDS, round_id)
    certificate = merge_signatures(
        [attack.h[h].endorse(full) for h in (3, 4)] + [attack.colluders_vouch(full)]
    )
    sealed = {h: attack.h[h].partial_decrypt(full, certificate) for h in (3, 4)}
    # The colluders combine holder 3's partial with theirs: round 0's sum (allowed).
    # Holder 3 is then starved of partials: it cannot release, and signs nothing.
    with pytest.raises(InvalidPartialDecryption):
        attack.h[3].release([])
    with pytest.raises(PolicyViolation, match="holds no release of it"):
        attack.h[3].start_round(Task.TRAIN)
    # Holder 4 releases and moves on; holder 5 (never shown round 0) is behind.
    attack.h[4].release(attack.feed(4, full, sealed))
    moved, stale = attack.h[4].start_round(Task.TRAIN), attack.h[5].start_round(Task.TRAIN)
    assert decode(moved, RoundStart).weights.tolist() != decode(stale, RoundStart).weights.tolist()
    # The stale model gets the colluders and holder 5 only: three of the four needed.
    frozen = attack.colluders_sign_ticket(stale)
    for victim in attack.clients:
        with pytest.raises(InvalidSignature):
            victim.participate(frozen)
    with pytest.raises(InvalidSignature):
        attack.aggregator.open_round(frozen)
    # With holders 4 and 5 absent, {1, 2, 3} never made a ticket at all (A3 as reported).
    fresh = _Attack()
    three = fresh.colluders_sign_ticket(fresh.h[3].start_round(Task.TRAIN))
    with pytest.raises(InvalidSignature):
        fresh.clients[0].participate(three)


def test_a4_no_release_after_the_next_ticket_and_no_two_tickets_for_one_round():
    attack = _Attack()
    start = attack.ticket((1, 2, 3, 4, 5))
    ups = attack.updates(start)
    round0 = attack.aggregate(ups, IDS, 0)
    # Part 1: holder 3 vouches and answers round 0 but gets no partials: it cannot
    # move on to round 1, so no release of round 0 can come after its next ticket.
    certificate = merge_signatures(
        [attack.h[h].endorse(round0) for h in (3, 4)] + [attack.colluders_vouch(round0)]
    )
    sealed = {h: attack.h[h].partial_decrypt(round0, certificate) for h in (3, 4)}
    with pytest.raises(PolicyViolation, match="signs no later ticket"):
        attack.h[3].start_round(Task.TRAIN)
    # Holder 5 never saw round 0: it signs round 1, then round 0's certified
    # aggregate is refused, so it cannot partially decrypt or release it late.
    ticket_5 = attack.h[5].start_round(Task.TRAIN)
    with pytest.raises(PolicyViolation, match="not the open round"):
        attack.h[5].partial_decrypt(round0, certificate)
    with pytest.raises(PolicyViolation, match="no aggregate this holder"):
        attack.h[5].release(attack.feed(5, round0, sealed))
    # Part 2: the chains of 4 (released round 0) and 5 (did not) differ; the
    # colluders co-sign both round-1 tickets, and neither model reaches a quorum.
    attack.h[4].release(attack.feed(4, round0, sealed))
    ticket_4 = attack.h[4].start_round(Task.TRAIN)
    a, b = attack.colluders_sign_ticket(ticket_4), attack.colluders_sign_ticket(ticket_5)
    assert decode(a, RoundStart).round == decode(b, RoundStart).round == 1
    assert decode(a, RoundStart).weights.tolist() != decode(b, RoundStart).weights.tolist()
    for forked in (a, b):
        with pytest.raises(InvalidSignature):
            attack.clients[0].participate(forked)
    # Holder 3 releases round 0 late; it now signs round 1 with holder 4's model:
    # a quorum {1, 2, 3, 4} agrees, and there is exactly one valid round-1 ticket.
    attack.h[3].release(attack.feed(3, round0, sealed))
    agreed = merge_tickets([attack.colluders_sign_ticket(ticket_4), attack.h[3].start_round()])
    assert decode(agreed, RoundStart).signed_bytes() == decode(a, RoundStart).signed_bytes()
    assert attack.clients[0].participate(agreed).update


def test_a2_the_aggregator_with_one_holder_learns_the_exact_total_weight_not_one_update():
    """What the README's threat model states: exact sums and ``W``, never a single update."""
    attack = _Attack()
    start = attack.ticket((1, 2, 3, 4, 5))
    ups = attack.updates(start)
    data = attack.aggregate(ups, IDS, 0)
    certificate = merge_signatures([attack.h[h].endorse(data) for h in range(1, 6)])
    sealed = {h: attack.h[h].partial_decrypt(data, certificate) for h in range(1, 6)}
    context = partial_context(attack.h[1].federation, 0, Task.TRAIN, aggregate_digest(data))
    # Holder 1 opens what holders 3 and 4 sealed to it, as the protocol intends.
    vk = attack.h[1]._share.verification
    partials = [
        load_partial(
            open_sealed(
                Sealed.from_bytes(sealed[h][1]),
                attack.h[1]._exchange,
                attack.h[h].exchange_bytes,
                context,
            ),
            vk,
        )
        for h in (3, 4)
    ]
    vector = attack.vector(data)
    own = attack.h[1]._share.partial_decrypt(vector, context)
    exact = vk.combine(vector, [own, *partials], context).result
    assert (exact.weight, exact.count) == (sum(SIZES), 5)
    # ... hence c0's sample count from a later round without it (a dropout): the
    # statement in README and DESIGN, not a break. No single update: the A1 tests.


def test_a3_a_model_whose_aggregate_was_combined_and_refused_is_not_answered_again():
    """A colluding client makes the sum out of range: the colluders saw it combined.

    With the model unchanged, a second round under it, without the victim, would
    difference out the victim's update; no honest holder signs that ticket, and the
    round driver stops (``Federation`` stops training on this ``PolicyViolation``).
    """
    attack = _Attack()
    bad = Crafting(
        "bad",
        *data(9, 20),
        attack.council.public_key_bytes(),
        keyholder=attack.council.identity_bytes,
        model=LogisticRegressionGD(learning_rate=0.5),
        local_epochs=2,
        classes=np.array([0, 1]),
        allow_insecure=True,
    )
    bad.committed_to_zeros = True  # every proof verifies; only the sum can be refused
    attack.council.register(bad.client_id, bad.verify_key)
    attack.aggregator.register(bad.client_id, bad.verify_key)
    start = attack.aggregator.open_round(attack.council.start_round(Task.TRAIN))
    for c in [*attack.clients, bad]:
        attack.aggregator.add(c.participate(start).update)
    with pytest.raises(AggregateRejected):
        attack.council.decrypt_aggregate(attack.aggregator.finish_round())
    with pytest.raises(PolicyViolation, match="already combined a train aggregate"):
        attack.council.start_round(Task.TRAIN)
    for h in (3, 4, 5):
        with pytest.raises(PolicyViolation, match="each model is answered by one"):
            attack.h[h].start_round(Task.TRAIN)


def test_a_share_holder_refuses_a_council_pin_that_does_not_name_it():
    from he_fed.protocol import Decryptor, Identity
    from he_fed.protocol.council import council_pin
    from he_fed.protocol.partial_transport import ExchangeKey

    attack = _Attack()
    holder = attack.h[3]
    others = [Identity().public_bytes for _ in range(5)]
    for pin in (council_pin(3, others), council_pin(2, [*others[:4], b"\0" * 32])):
        with pytest.raises(ConfigurationError, match="council pin must name 5 holders, t=3"):
            Decryptor(
                holder._share,
                exchange=ExchangeKey(),
                peers={},
                council=pin,
                identity=holder._identity,
                plan=PLAN,
            )


def test_a_holder_left_behind_cannot_answer_a_round_computed_under_another_model():
    """Second red team: the aggregator keeps holder 5 out of round 0, so holder 5's
    own round-1 ticket carries the old model; it was then made to decrypt and release
    the round-1 aggregate that clients computed under the quorum's newer model, and
    its chain forked from the council's. The certificate now names the model."""
    attack = _Attack()
    h = attack.h
    start0 = attack.ticket((1, 2, 3, 4, 5))
    round0 = attack.aggregate(attack.updates(start0), IDS, 0)
    certificate0 = merge_signatures(
        [h[3].endorse(round0), h[4].endorse(round0), attack.colluders_vouch(round0)]
    )
    sealed0 = {i: h[i].partial_decrypt(round0, certificate0) for i in (3, 4)}
    for i in (3, 4):
        h[i].release(attack.feed(i, round0, sealed0))
    stale = h[5].model.weights.copy()
    assert not np.array_equal(stale, h[3].model.weights)  # holder 5 missed the release
    # The quorum {1, 2, 3, 4} tickets round 1 with the new model; holder 5 signs its own.
    start1 = merge_tickets(
        [attack.colluders_sign_ticket(h[3].start_round(Task.TRAIN)), h[4].start_round(Task.TRAIN)]
    )
    assert np.array_equal(decode(h[5].start_round(Task.TRAIN), RoundStart).weights, stale)
    round1 = attack.aggregate(attack.updates(start1), IDS, 1)
    certificate1 = merge_signatures(
        [h[3].endorse(round1), h[4].endorse(round1), attack.colluders_vouch(round1)]
    )
    with pytest.raises(PolicyViolation, match="certified by 0 share holder"):
        h[5].partial_decrypt(round1, certificate1)
    # Under its stale model only it and the colluders vouch: three, not a quorum.
    stale_view = merge_signatures([h[5].endorse(round1), attack.colluders_vouch(round1, like=5)])
    with pytest.raises(PolicyViolation, match="certified by 3 share holder"):
        h[5].partial_decrypt(round1, stale_view)
    assert np.array_equal(h[5].model.weights, stale)  # nothing was applied to its chain
