"""Every share holder enforces the privacy budget itself (issue 15 part 3, with issue 14).

The attacker is the aggregator plus share holders 1 and 2 of a 3-of-5 council (their
shares, X25519 keys and signing identities); holders 3, 4 and 5 are honest and are
driven only through their public methods. Each honest holder has its own budget,
from its own configuration, here for two releases. The attacker routes rounds
around honest holders so that each takes part in fewer releases than were made,
and tries to get a third decryption.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from he_fed.crypto.threshold import load_partial
from he_fed.exceptions import ConfigurationError, InvalidSignature, PolicyViolation
from he_fed.models import LogisticRegressionGD
from he_fed.privacy import PrivacyBudget, private_setup
from he_fed.protocol import (
    Aggregate,
    Client,
    EncryptedAggregate,
    EncryptedUpdate,
    Receipt,
    RoundStart,
    Task,
    decode,
    encode,
    tasks,
)
from he_fed.protocol.certificate import aggregate_digest, certificate_payload, model_digest
from he_fed.protocol.council import cosignature, merge_signatures, merge_tickets
from he_fed.protocol.council_budget import count_certified
from he_fed.protocol.decryptor import partial_context
from he_fed.protocol.partial_transport import Sealed, open_sealed, seal
from he_fed.protocol.receipts import ticket_payload
from he_fed.runtime.council import LocalCouncil
from tests.crypto.threshold_fixtures import TEST_ONLY_PRIMES_1024
from tests.protocol.harness import bound
from tests.protocol.private_harness import N_FEATURES, PLAN, data

SIZES = (30, 50, 20, 40, 25)
IDS = [f"c{i}" for i in range(len(SIZES))]
COLLUDERS = (1, 2)
HONEST = (3, 4, 5)


def _budget(rounds: int, min_cohort: int = 5):
    return private_setup(
        "paillier-packed",
        key_bits=1024,
        allow_insecure=True,
        n_clients=len(SIZES),
        max_rows=max(SIZES),
        size=N_FEATURES + 1,
        target_epsilon=1.0,
        delta=1e-5,
        rounds=rounds,
        level="record",
        clip=1.0,
        min_cohort=min_cohort,
        normaliser=sum(SIZES),
    )


class _Private:
    """A private 3-of-5 council, five noising clients, and what the attacker holds."""

    def __init__(self, rounds: int = 2, min_clients: int = 5, min_cohort: int = 5) -> None:
        scheme, self.budget = _budget(rounds, min_cohort)
        self.council = LocalCouncil.generate(
            scheme,
            threshold=3,
            holders=5,
            plan=bound(PLAN, local_epochs=1, privacy=self.budget.mechanism),
            min_clients=min_clients,
            primes=TEST_ONLY_PRIMES_1024,
            privacy=self.budget,
        )
        self.h = self.council._holders
        self.clients = [
            Client(
                cid,
                *data(i, n),
                self.council.public_key_bytes(),
                keyholder=self.council.identity_bytes,
                model=LogisticRegressionGD(learning_rate=0.5),
                local_epochs=1,
                classes=np.array([0, 1]),
                allow_insecure=True,
                privacy=self.budget.mechanism,
            )
            for i, (cid, n) in enumerate(zip(IDS, SIZES, strict=True))
        ]
        for c in self.clients:
            self.council.register(c.client_id, c.verify_key)
        #: Every aggregate the attacker decrypted (its two partials plus an honest one).
        self.decrypted: list[tuple[int, bytes]] = []

    def ticket(self, signers) -> bytes:
        """The honest ``signers``' tickets with the colluders' signatures added."""
        start = merge_tickets([self.h[i].start_round(Task.TRAIN) for i in signers])
        ticket = decode(start, RoundStart)
        payload = ticket_payload(ticket.signed_bytes())
        own = cosignature({j: self.h[j]._identity.sign(payload) for j in COLLUDERS})
        return encode(
            dataclasses.replace(ticket, signature=merge_signatures([ticket.signature, own]))
        )

    def aggregate(self, start: bytes, cohort=IDS) -> bytes:
        ticket = decode(start, RoundStart)
        key = tasks.plan_for(self.council.public_key, Task.TRAIN)
        vectors, receipts = [], []
        for c in self.clients:
            if c.client_id in cohort:
                u = decode(c.participate(start).update, EncryptedUpdate)
                v = key.load_vector(u.vector, size=PLAN.vector_size(Task.TRAIN))
                vectors.append(v)
                receipts.append(
                    Receipt(u.client_id, v.commitment(), u.commitment_signature, u.proof, u.binding)
                )
        total = sum(vectors[1:], vectors[0])
        return encode(
            EncryptedAggregate(ticket.round, Task.TRAIN, tuple(receipts), total.to_bytes())
        )

    def vector(self, agg: bytes):
        key = tasks.plan_for(self.council.public_key, Task.TRAIN)
        return key.load_vector(
            decode(agg, EncryptedAggregate).vector, size=PLAN.vector_size(Task.TRAIN)
        )

    def context(self, agg: bytes) -> bytes:
        message = decode(agg, EncryptedAggregate)
        return partial_context(
            self.h[1].federation, message.round, message.task, aggregate_digest(agg)
        )

    def colluders_vouch(self, agg: bytes, release: int, like: int) -> bytes:
        """Holders 1 and 2 sign any payload: here under holder ``like``'s model."""
        message = decode(agg, EncryptedAggregate)
        model = model_digest(Task.TRAIN, self.h[like].model.ticket_fields(Task.TRAIN))
        payload = certificate_payload(
            self.h[1].federation, message.round, Task.TRAIN, aggregate_digest(agg), model, release
        )
        return cosignature({j: self.h[j]._identity.sign(payload) for j in COLLUDERS})

    def certify(self, agg: bytes, endorsers, release: int) -> bytes:
        honest = [self.h[i].endorse(agg) for i in endorsers]
        return merge_signatures([*honest, self.colluders_vouch(agg, release, endorsers[0])])

    def partials(self, agg: bytes, certificate: bytes, holders) -> dict[int, dict[int, bytes]]:
        """Honest holders' sealed partials; the attacker decrypts with the one sealed to 1."""
        sealed = {i: self.h[i].partial_decrypt(agg, certificate) for i in holders}
        context, vector = self.context(agg), self.vector(agg)
        vk = self.h[1]._share.verification
        honest = load_partial(
            open_sealed(
                Sealed.from_bytes(sealed[holders[0]][1]),
                self.h[1]._exchange,
                self.h[holders[0]].exchange_bytes,
                context,
            ),
            vk,
        )
        own = [self.h[j]._share.partial_decrypt(vector, context) for j in COLLUDERS]
        result = vk.combine(vector, [*own, honest], context).result
        self.decrypted.append((decode(agg, EncryptedAggregate).round, bytes(str(result), "utf8")))
        return sealed

    def feed(self, holder: int, agg: bytes, sealed: dict[int, dict[int, bytes]]) -> list[bytes]:
        """What the others sealed to ``holder``, plus the colluders' partials sealed to it."""
        context, vector = self.context(agg), self.vector(agg)
        blobs = [b[holder] for b in sealed.values() if holder in b]
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


def _spent(attack: _Private) -> dict[int, int]:
    return {i: attack.h[i].privacy.released for i in HONEST}


def test_routing_rounds_around_honest_holders_gets_no_more_releases_than_one_budget():
    attack = _Private(rounds=2)
    h = attack.h
    assert not h[3].privacy.exhausted and h[3].privacy.epsilon_after(3) > 1.0  # two, not three
    assert h[3].privacy is not h[4].privacy is not attack.budget  # each holder's own
    # Round 0: holders 3 and 4 vouch (release number 1) and answer; holder 5 is left out.
    start0 = attack.ticket(HONEST)
    agg0 = attack.aggregate(start0)
    cert0 = attack.certify(agg0, (3, 4), release=1)
    sealed0 = attack.partials(agg0, cert0, (3, 4))
    for i in (3, 4):
        h[i].release(attack.feed(i, agg0, sealed0))
    assert _spent(attack) == {3: 1, 4: 1, 5: 0}
    # Holder 5's model is behind, so the attacker must show it round 0 to use it in
    # round 1: it counts release 1 before it computes anything, then catches up.
    h[5].partial_decrypt(agg0, cert0)
    assert _spent(attack)[5] == 1
    h[5].release(attack.feed(5, agg0, sealed0))
    # Round 1: holders 4 and 5 vouch (release 2); holder 3 signs the ticket but is left out.
    start1 = attack.ticket(HONEST)
    agg1 = attack.aggregate(start1)
    cert1 = attack.certify(agg1, (4, 5), release=2)
    sealed1 = attack.partials(agg1, cert1, (4, 5))
    for i in (4, 5):
        h[i].release(attack.feed(i, agg1, sealed1))
    assert _spent(attack) == {3: 1, 4: 2, 5: 2}
    # Each honest holder vouched for only one release, yet two were made. Round 2:
    # holders 4 and 5 sign no ticket (the budget is theirs), and holder 3 alone
    # with the colluders is three signatures of the four a ticket needs.
    for i in (4, 5):
        with pytest.raises(PolicyViolation, match=r"privacy budget spent: 2 release\(s\)"):
            h[i].start_round(Task.TRAIN)
    lone = attack.ticket((3,))  # holder 3, at 1 release and a stale model, still signs
    for c in attack.clients:
        with pytest.raises(InvalidSignature):
            c.participate(lone)
    assert len(attack.decrypted) == 2 and len(set(attack.decrypted)) == 2


def test_a_left_out_holder_counts_the_release_before_it_helps_with_the_next():
    """Holder 3 misses round 1's release; shown its certificate, it counts release 2
    and then signs nothing more, so no honest pair with budget left remains."""
    attack = _Private(rounds=2)
    h = attack.h
    agg0 = attack.aggregate(attack.ticket(HONEST))
    cert0 = attack.certify(agg0, (3, 4, 5), release=1)
    sealed0 = attack.partials(agg0, cert0, (3, 4, 5))
    for i in HONEST:
        h[i].release(attack.feed(i, agg0, sealed0))
    agg1 = attack.aggregate(attack.ticket(HONEST))
    cert1 = attack.certify(agg1, (4, 5), release=2)
    sealed1 = attack.partials(agg1, cert1, (4, 5))
    # The colluders cannot pass round 1 off to holder 3 as a release it already
    # counted: their signatures on number 1 are not a certificate of number 2.
    with pytest.raises(PolicyViolation, match="certified by 0"):
        h[3].partial_decrypt(agg1, attack.colluders_vouch(agg1, 1, like=3))
    # Shown the real certificate it counts release 2, then answers (2 is within target).
    h[3].partial_decrypt(agg1, cert1)
    assert h[3].privacy.released == 2
    h[3].release(attack.feed(3, agg1, sealed1))
    with pytest.raises(PolicyViolation, match="privacy budget spent"):
        h[3].start_round(Task.TRAIN)
    assert len(attack.decrypted) == 2


def test_a_holder_with_a_stricter_budget_of_its_own_counts_others_releases_and_stops():
    """Holder 5 is configured for one release, holders 3 and 4 for two. Left out of
    round 0, holder 5 counts it when it catches up, and then signs nothing more."""
    attack = _Private(rounds=2)
    h = attack.h
    _, strict = _budget(rounds=1)
    h[5]._privacy = strict  # holder 5's own configuration, before the first ticket
    agg0 = attack.aggregate(attack.ticket(HONEST))
    cert0 = attack.certify(agg0, (3, 4), release=1)
    sealed0 = attack.partials(agg0, cert0, (3, 4))
    for i in (3, 4):
        h[i].release(attack.feed(i, agg0, sealed0))
    h[5].partial_decrypt(agg0, cert0)
    h[5].release(attack.feed(5, agg0, sealed0))
    assert strict.released == 1
    with pytest.raises(PolicyViolation, match=r"privacy budget spent: 1 release\(s\)"):
        h[5].start_round(Task.TRAIN)
    attack.ticket((3, 4))  # the others still have budget; they and the colluders go on


def test_a_certified_release_past_the_target_is_counted_though_refused():
    _, budget = _budget(rounds=1)
    count_certified(budget, 1, holder=5)
    with pytest.raises(PolicyViolation, match="holder 5 counted certified release 2"):
        count_certified(budget, 2, holder=5)
    assert budget.released == 2  # the others may have decrypted it without this holder
    count_certified(None, 7, holder=5)  # no budget: nothing to count


def test_every_holder_refuses_to_vouch_past_its_budget_before_signing():
    attack = _Private(rounds=1)
    h = attack.h
    start = attack.ticket(HONEST)
    agg = attack.aggregate(start)
    for i in HONEST:
        h[i].privacy.released = 1  # spent while the round was open
        with pytest.raises(PolicyViolation, match="privacy budget spent: 1 release"):
            h[i].endorse(agg)
        assert h[i].privacy.released == 1


def test_every_holder_enforces_the_mechanisms_minimum_cohort():
    """The noise is planned for cohorts of 5: a council told 4, or a cohort of 4, is refused."""
    with pytest.raises(ConfigurationError, match="planned for cohorts of 5"):
        _Private(min_clients=4).council.start_round(Task.TRAIN)
    attack = _Private(min_clients=4, min_cohort=4)
    for i in HONEST:  # each holder's own rule, not the driver's
        attack.h[i]._min_clients = 3
        with pytest.raises(ConfigurationError, match="planned for cohorts of 4"):
            attack.h[i].start_round(Task.TRAIN)
        attack.h[i]._min_clients = 4
    start = attack.ticket(HONEST)
    small = attack.aggregate(start, cohort=IDS[:3])
    for i in HONEST:
        with pytest.raises(PolicyViolation, match="at least 4"):
            attack.h[i].endorse(small)
        assert attack.h[i].privacy.released == 0


def test_the_council_releases_the_noisy_mean_and_reports_its_spend():
    attack = _Private(rounds=2)
    council = attack.council
    for expected in (1, 2):
        start = council.start_round(Task.TRAIN)
        aggregate = attack.aggregate(start)
        release = decode(council.decrypt_aggregate(aggregate), Aggregate)
        assert release.contributors == 5 and np.isfinite(release.mean).all()
        assert attack.budget.released == expected  # the run's report follows the holders
        assert {d.privacy.released for d in attack.h.values()} == {expected}
    with pytest.raises(PolicyViolation, match=r"privacy budget spent: 2 release\(s\)"):
        council.start_round(Task.TRAIN)
    assert isinstance(attack.budget, PrivacyBudget) and attack.budget.released == 2


def test_an_absent_holder_counts_the_releases_it_missed_when_it_returns():
    """Holder 5 misses two releases; on return it replays them (counting each
    from its certificate), joins the third, and refuses the fourth with the others."""
    attack = _Private(rounds=3)
    council = attack.council
    council.absent = {5}
    for _ in range(2):
        council.decrypt_aggregate(attack.aggregate(council.start_round(Task.TRAIN)))
    assert attack.h[5].privacy.released == 0 and attack.h[4].privacy.released == 2
    council.absent = {1}
    council.decrypt_aggregate(attack.aggregate(council.start_round(Task.TRAIN)))
    assert council.last_partials[0] == (2, 3, 4)
    assert {i: d.privacy.released for i, d in attack.h.items()} == {1: 2, 2: 3, 3: 3, 4: 3, 5: 3}
    assert attack.budget.released == 3
    council.absent = set()
    with pytest.raises(PolicyViolation, match=r"privacy budget spent: 3 release\(s\)"):
        council.start_round(Task.TRAIN)


def test_a_holder_rebuilt_from_its_saved_state_keeps_its_budget_and_release_number():
    """A Flower share-holder node rebuilds its Decryptor from bytes for every message:
    the budget spent and a vouched release's number must survive that."""
    attack = _Private(rounds=2)
    h = attack.h
    agg0 = attack.aggregate(attack.ticket(HONEST))
    cert0 = attack.certify(agg0, (3, 4, 5), release=1)
    sealed0 = attack.partials(agg0, cert0, (3, 4, 5))
    for i in HONEST:
        h[i].release(attack.feed(i, agg0, sealed0))
    agg1 = attack.aggregate(attack.ticket(HONEST))
    vouched = h[3].endorse(agg1)  # release 2, charged before signing

    from tests.protocol.test_state_survives_rebuild import _rebuilt as rebuilt

    again = rebuilt(h[3])
    assert again.privacy.released == h[3].privacy.released == 2
    assert again._pending is not None and again._pending.release == 2
    assert rebuilt(h[4]).privacy.released == 1
    # The rebuilt holder answers the round it vouched for, then refuses as the
    # original would: its budget is spent.
    others = [h[i].endorse(agg1) for i in (4, 5)]
    cert1 = merge_signatures([vouched, *others, attack.colluders_vouch(agg1, 2, like=3)])
    sealed1 = attack.partials(agg1, cert1, (4, 5))
    again.partial_decrypt(agg1, cert1)
    again.release(attack.feed(3, agg1, sealed1))
    with pytest.raises(PolicyViolation, match="privacy budget spent"):
        rebuilt(again).start_round(Task.TRAIN)
