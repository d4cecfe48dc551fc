"""Rounds belong to the key holder: the aggregator's differencing attacks, performed.

The aggregator here holds only what a real one holds: the aggregation key, every
message, and the key holder's public API (``start_round``, ``decrypt_aggregate``).
Before tickets it could send the same round start twice (to everyone, then to
everyone but a victim) and subtract the two released means to read the victim's
update exactly (2.8e-17 error on Paillier); re-run the statistics rounds with
chosen cohorts; and read sample counts from released total weights and refusal
texts.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from he_fed.crypto.paillier import PaillierVector
from he_fed.exceptions import PolicyViolation, ProtocolError
from he_fed.protocol import Aggregate, EncryptedAggregate, RoundStart, RunPlan, Task, decode, encode
from he_fed.protocol.normalisers import Normalisers
from he_fed.protocol.receipts import ticket_payload
from tests.protocol.harness import N_FEATURES, local_delta, open_round, roles

SIZES = (30, 50, 20, 40)


def test_a_replayed_round_start_is_answered_once_and_decrypted_once():
    keyholder, aggregator, clients = roles("paillier", sizes=SIZES)
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    everyone = aggregator.finish_round()
    released = decode(keyholder.decrypt_aggregate(everyone), Aggregate)
    # The same ticket again, to everyone but the victim c0: every client refuses.
    for c in clients[1:]:
        with pytest.raises(ProtocolError, match="already answered"):
            c.participate(start)
    # Nor can the aggregator get the round decrypted twice, whatever it sends.
    with pytest.raises(PolicyViolation, match="at most once"):
        keyholder.decrypt_aggregate(everyone)
    # Its best is the next ticket, which carries the model the release moved.
    following = decode(keyholder.start_round(), RoundStart)
    np.testing.assert_array_equal(following.weights, released.mean)
    assert not np.array_equal(following.weights, decode(start, RoundStart).weights)


def test_differencing_consecutive_rounds_no_longer_gives_the_victim_exactly(monkeypatch):
    """The attacker's best: all clients in round r, all but the victim in round r+1.

    A key holder without a privacy budget refuses the second cohort before decrypting:
    every release of a federation comes from the cohort of its first
    (``he_fed/protocol/normalisers.py``; a colluding client that steers the model
    makes such differences exact, ``test_weight_leak.py``). Tickets alone, with that
    check patched out, leave the difference of the two releases missing the
    victim's update by far more than before, because round r+1 starts from the
    model round r moved; what remains then is inference across rounds from models
    that differ, which differential privacy bounds (a private run pins no cohort).
    """
    keyholder, aggregator, clients = roles("paillier", sizes=SIZES)
    victim, others = clients[0], clients[1:]
    weights = np.zeros(N_FEATURES + 1)
    truth = local_delta(victim, weights)

    def release(cohort) -> np.ndarray:
        start = open_round(keyholder, aggregator)
        for c in cohort:
            aggregator.add(c.participate(start).update)
        plain = keyholder.decrypt_aggregate(aggregator.finish_round())
        return aggregator.apply(plain).mean

    first = release(clients)
    with pytest.raises(PolicyViolation, match="federation's cohort"):
        release(others)
    monkeypatch.setattr(Normalisers, "check", lambda self, task, contributors: None)
    second = release(others)
    # Every release divides by the first one's total weight.
    estimate = sum(SIZES) * (first - second) / SIZES[0]
    error = np.max(np.abs(estimate - truth)) / np.max(np.abs(truth))
    assert round(error, 2) == 1.05  # tickets alone; before tickets: 2.8e-17


def test_released_aggregates_carry_no_total_weight():
    keyholder, aggregator, clients = roles("plain", sizes=SIZES)
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    plain = keyholder.decrypt_aggregate(aggregator.finish_round())
    released = decode(plain, Aggregate)
    assert not hasattr(released, "total_weight")
    assert sum(SIZES).to_bytes(8, "big") not in plain
    assert released.contributors == 4


@pytest.mark.parametrize("task", [Task.MAGNITUDE, Task.MOMENTS])
def test_statistics_are_released_once_per_federation(task):
    plan = RunPlan(n_features=N_FEATURES, standardize=True)
    keyholder, aggregator, clients = roles("plain", sizes=SIZES, plan=plan)
    for step in (Task.MAGNITUDE, Task.MOMENTS):
        start = open_round(keyholder, aggregator, step)
        for c in clients:
            aggregator.add(c.participate(start).update)
        aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    # Re-running a statistics round with a chosen cohort (to difference it) fails.
    with pytest.raises(PolicyViolation, match="run once"):
        keyholder.start_round(task)


def test_a_statistics_round_is_answered_once_even_if_it_was_not_released():
    """A key holder that re-asks for statistics (say, with a pre-scale of its choosing,
    to probe one client's data) gets nothing from clients that answered already."""
    plan = RunPlan(n_features=N_FEATURES, standardize=True)
    keyholder, aggregator, clients = roles("plain", sizes=SIZES, plan=plan, min_clients=3)
    start = open_round(keyholder, aggregator, Task.MAGNITUDE)
    for c in clients[:2]:  # too small a cohort: refused, nothing released
        aggregator.add(c.participate(start).update)
    with pytest.raises(PolicyViolation, match="at least 3"):
        keyholder.decrypt_aggregate(aggregator.finish_round())
    again = open_round(keyholder, aggregator, Task.MAGNITUDE)  # the key holder may ask ...
    for c in clients[:2]:  # ... but those who answered do not answer again
        with pytest.raises(ProtocolError, match="statistics once"):
            c.participate(again)
    for c in clients[2:]:
        aggregator.add(c.participate(again).update)
    with pytest.raises(PolicyViolation, match="at least 3"):
        keyholder.decrypt_aggregate(aggregator.finish_round())
    assert keyholder.released == 0


def test_tasks_follow_their_order():
    plan = RunPlan(n_features=N_FEATURES, standardize=True)
    keyholder, _, _ = roles("plain", sizes=SIZES, plan=plan)
    with pytest.raises(ProtocolError, match="before training"):
        keyholder.start_round(Task.TRAIN)
    with pytest.raises(ProtocolError, match="magnitude round must come before"):
        keyholder.start_round(Task.MOMENTS)
    unstandardised, _, _ = roles("plain", sizes=SIZES)
    with pytest.raises(PolicyViolation, match="does not standardise"):
        unstandardised.start_round(Task.MAGNITUDE)


def test_refusals_after_decryption_reveal_no_decrypted_value():
    """The old attack: tamper with the weight so that decryption is refused, and read
    the decrypted weight (a cohort's sample count) in the refusal's text."""
    keyholder, aggregator, clients = roles("paillier", sizes=SIZES)
    texts = []
    for pair in ((0, 1), (0, 2), (1, 2)):
        start = open_round(keyholder, aggregator)
        for i in pair:
            aggregator.add(clients[i].participate(start).update)
        message = decode(aggregator.finish_round(), EncryptedAggregate)
        key = keyholder.public_key
        vector = key.load_vector(message.vector)
        # Multiplying by (1 + x·n) adds x to the weight and keeps the commitment.
        n2 = int(key.nsquare)
        shifted = list(vector.ciphertexts)
        shifted[-1] = shifted[-1] * (1 + 10**9 * int(key.n)) % n2
        tampered = PaillierVector(key, shifted, vector.size, vector.count)
        forged = EncryptedAggregate(
            message.round, message.task, message.receipts, tampered.to_bytes()
        )
        with pytest.raises(PolicyViolation) as refused:
            keyholder.decrypt_aggregate(encode(forged))
        texts.append(str(refused.value))
        # The attempt used up its round: the honest sum is refused afterwards too.
        with pytest.raises(PolicyViolation, match="not the open round"):
            keyholder.decrypt_aggregate(encode(message))
    weights = {SIZES[0] + SIZES[1], SIZES[0] + SIZES[2], SIZES[1] + SIZES[2]}
    for text in texts:
        numbers = {int(v) for v in re.findall(r"\d+", text)}
        assert not numbers & {w + 10**9 for w in weights} and not numbers & weights
    assert keyholder.released == 0


def test_the_default_minimum_cohort_is_a_majority():
    keyholder, _, _ = roles("plain", sizes=(10, 10, 10, 10, 10), min_clients=None)
    assert keyholder.min_clients == 3
    keyholder, _, _ = roles("plain", sizes=(10, 10), min_clients=None)
    assert keyholder.min_clients == 2


def test_the_aggregator_refuses_a_ticket_whose_model_ignores_the_releases():
    """A key holder that freezes the model (never applying what it released) would get
    sums of changing cohorts under one model; the aggregator follows the same model
    chain and refuses to forward such a ticket."""
    keyholder, aggregator, clients = roles("paillier", sizes=SIZES)
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    frozen = decode(keyholder.start_round(), RoundStart)
    first = decode(start, RoundStart)
    frozen = dataclasses.replace(frozen, weights=first.weights)
    resigned = dataclasses.replace(
        frozen, signature=keyholder._identity.sign(ticket_payload(frozen.signed_bytes()))
    )
    with pytest.raises(PolicyViolation, match="another model"):
        aggregator.open_round(encode(resigned))


def test_moments_are_clamped_so_answering_never_depends_on_the_data():
    plan = RunPlan(n_features=N_FEATURES, standardize=True)
    keyholder, aggregator, clients = roles("plain", sizes=SIZES, plan=plan)
    start = open_round(keyholder, aggregator, Task.MAGNITUDE)
    for c in clients:
        aggregator.add(c.participate(start).update)
    aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    clients[0]._columns = clients[0]._columns * 1e6  # a spread far beyond the plan
    start = open_round(keyholder, aggregator, Task.MOMENTS)
    reports = [c.participate(start) for c in clients]  # every client answers
    assert reports[0].clipped > 0 and all(r.clipped == 0 for r in reports[1:])
