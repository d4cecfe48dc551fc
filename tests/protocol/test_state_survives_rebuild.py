"""A key holder and a share holder rebuilt from their saved state are the same objects.

A Flower node rebuilds its role from saved bytes for every message. Red team 55
found a share holder whose rebuild dropped one attribute, the cohort its first
release pinned, so a defence that held in process was off on every deployed
council. These tests compare every attribute of the original and the rebuilt
object (:mod:`tests.protocol.same_state`) at each point of a run, so that an
attribute a later change forgets to save or to restore fails here, not in a red
team's hands.
"""

from __future__ import annotations

import pytest

from he_fed.exceptions import AggregateRejected
from he_fed.protocol import Aggregator, KeyHolder, RunPlan, Task, encode
from he_fed.protocol.council import merge_signatures, merge_tickets
from he_fed.protocol.decryptor_state import export_decryptor_state, restore_decryptor
from he_fed.runtime.council import LocalCouncil
from tests.conftest import keys_for
from tests.crypto.threshold_fixtures import TEST_ONLY_PRIMES_1024
from tests.protocol.harness import PLAN, bound, client, open_round, roles
from tests.protocol.private_harness import private_roles
from tests.protocol.same_state import differences
from tests.protocol.test_offsets import honest_aggregate, offset, offsets_for
from tests.protocol.test_threshold_roles import SCHEME, SIZES


def _same_after_rebuild(holder: KeyHolder) -> None:
    state = holder.export_state()
    rebuilt = KeyHolder.restore(holder._keys, holder._identity, state)
    assert differences(holder, rebuilt) == []
    assert rebuilt.export_state() == state


def _round(keyholder, aggregator, clients, task: Task = Task.TRAIN) -> None:
    start = open_round(keyholder, aggregator, task)
    for c in clients:
        aggregator.add(c.participate(start).update)
    aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))


def test_the_comparison_sees_a_pinned_cohort_that_a_rebuild_dropped():
    """The check itself: red team 55's bug, put back by hand, is a difference."""
    keyholder, aggregator, clients = roles("plain")
    _round(keyholder, aggregator, clients)
    rebuilt = KeyHolder.restore(keyholder._keys, keyholder._identity, keyholder.export_state())
    rebuilt._divisors = type(rebuilt._divisors)()
    found = differences(keyholder, rebuilt)
    assert found and all(d.startswith("._divisors") for d in found)


@pytest.mark.parametrize("scheme", ["plain", "paillier-packed"])
def test_a_key_holder_is_rebuilt_whole_at_every_step_of_a_run(scheme):
    plan = bound(
        RunPlan(n_features=3, server_optimizer="adam", evaluation="classification"),
        validation_split=0.25,
    )
    keyholder = KeyHolder(keys_for(scheme), plan=plan, min_clients=2, max_rejections=5)
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(),
        plan=plan,
        keyholder=keyholder.identity_bytes,
        allow_insecure=True,
    )
    clients = [client(keyholder, f"c{i}", i, n, validation_split=0.25) for i, n in enumerate(SIZES)]
    for c in clients:
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    _same_after_rebuild(keyholder)
    for task in (Task.MAGNITUDE, Task.MOMENTS, Task.TRAIN, Task.EVALUATE, Task.TRAIN):
        _round(keyholder, aggregator, clients, task)
        _same_after_rebuild(keyholder)
    open_round(keyholder, aggregator)  # a ticket signed, its round open
    _same_after_rebuild(keyholder)
    assert keyholder.last_round == 5 and keyholder._max_rejections == 5


def test_a_key_holder_with_a_privacy_budget_is_rebuilt_whole():
    keyholder, aggregator, clients = private_roles(rounds=3)
    for _ in range(2):
        _round(keyholder, aggregator, clients)
        _same_after_rebuild(keyholder)
    assert keyholder.privacy.released == 2


def test_a_key_holder_that_fixes_its_minimum_cohort_at_the_first_ticket_is_rebuilt_whole():
    keyholder, aggregator, _ = roles("plain", min_clients=None)
    _same_after_rebuild(keyholder)
    open_round(keyholder, aggregator)
    _same_after_rebuild(keyholder)


def test_a_key_holder_that_refused_an_aggregate_is_rebuilt_whole():
    """The refusal count, which retires the key after ``max_rejections``, survives."""
    keyholder, message = honest_aggregate("paillier-packed")
    tampered = offset(
        keyholder, message, *offsets_for(keyholder, keyholder.plan.vector_size(Task.TRAIN))["value"]
    )
    with pytest.raises(AggregateRejected):
        keyholder.decrypt_aggregate(encode(tampered))
    assert keyholder._rejected == 1
    _same_after_rebuild(keyholder)


def _rebuilt(holder):
    return restore_decryptor(
        holder._share,
        exchange=holder._exchange,
        peers=holder._peers,
        council=holder.council,
        identity=holder._identity,
        state=export_decryptor_state(holder),
    )


def _council_same_after_rebuild(holders) -> None:
    for holder in holders:
        rebuilt = _rebuilt(holder)
        assert differences(holder, rebuilt) == [], holder.index
        assert export_decryptor_state(rebuilt) == export_decryptor_state(holder)


def test_every_share_holder_is_rebuilt_whole_at_every_step_of_a_round():
    council = LocalCouncil.generate(
        SCHEME, threshold=3, holders=5, plan=PLAN, min_clients=2, primes=TEST_ONLY_PRIMES_1024
    )
    holders = council._holders
    aggregator = Aggregator(
        council.aggregation_key_bytes(),
        plan=PLAN,
        keyholder=council.identity_bytes,
        allow_insecure=True,
    )
    clients = [client(council, f"c{i}", i, n) for i, n in enumerate(SIZES)]
    for c in clients:
        council.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    _council_same_after_rebuild(holders.values())
    _round(council, aggregator, clients)  # the first release pins the cohort
    _council_same_after_rebuild(holders.values())
    # A round step by step: tickets, endorsements, partials, then a partial release.
    start = aggregator.open_round(
        merge_tickets([h.start_round(Task.TRAIN) for h in holders.values()])
    )
    _council_same_after_rebuild(holders.values())
    for c in clients:
        aggregator.add(c.participate(start).update)
    aggregate = aggregator.finish_round()
    certificate = merge_signatures([h.endorse(aggregate) for h in holders.values()])
    _council_same_after_rebuild(holders.values())
    sealed = {i: holders[i].partial_decrypt(aggregate, certificate) for i in (1, 2, 3)}
    _council_same_after_rebuild(holders.values())
    for i in (1, 2, 3):
        holders[i].release([b for s in sealed.values() for j, b in s.items() if j == i])
    _council_same_after_rebuild(holders.values())  # 4 and 5 still hold the round open
    assert all(h._divisors.divisor(Task.TRAIN) == sum(SIZES) for h in holders.values())
