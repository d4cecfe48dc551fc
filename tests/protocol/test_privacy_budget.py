"""The key holder enforces the privacy budget, and differencing under DP recovers only noise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from he_fed.crypto import wire
from he_fed.exceptions import (
    ConfigurationError,
    EncodingOverflowError,
    MalformedMessage,
    PolicyViolation,
)
from he_fed.models import LogisticRegressionGD
from he_fed.privacy import clip_update
from he_fed.protocol import Aggregate, Client, KeyHolder, RunPlan, Task, decode
from he_fed.protocol import client as client_module
from he_fed.protocol.normalisers import Normalisers
from he_fed.protocol.receipts import Identity
from tests.protocol.harness import open_round
from tests.protocol.private_harness import N_FEATURES, budget_of, data, private_roles


def _release(keyholder, aggregator, cohort) -> np.ndarray:
    start = open_round(keyholder, aggregator)
    for c in cohort:
        aggregator.add(c.participate(start).update)
    return aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round())).mean


def test_the_key_holder_refuses_the_ticket_past_the_target():
    keyholder, aggregator, clients = private_roles(rounds=2)
    for _ in range(2):
        _release(keyholder, aggregator, clients)
    budget = budget_of(keyholder)
    assert budget.released == 2 and budget.epsilon <= 1.0
    with pytest.raises(PolicyViolation, match=r"privacy budget spent: 2 release\(s\)"):
        keyholder.start_round()  # the aggregator asks for a third round: nothing more
    assert keyholder.released == 2


def test_a_release_past_the_target_is_refused_before_decryption():
    keyholder, aggregator, clients = private_roles(rounds=2)
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    budget_of(keyholder).released = 2  # spent elsewhere while the round was open
    secret = keyholder._keys.secret
    keyholder._keys = dataclasses.replace(keyholder._keys, secret=None)  # no decryption possible
    with pytest.raises(PolicyViolation, match="privacy budget spent"):
        keyholder.decrypt_aggregate(aggregator.finish_round())
    keyholder._keys = dataclasses.replace(keyholder._keys, secret=secret)
    assert keyholder.released == 0 and keyholder.rejected == 0


def test_a_cohort_too_small_is_refused_before_any_charge():
    keyholder, aggregator, clients = private_roles(min_clients=2)
    start = open_round(keyholder, aggregator)
    aggregator.add(clients[0].participate(start).update)
    with pytest.raises(PolicyViolation, match="at least 2"):
        keyholder.decrypt_aggregate(aggregator.finish_round())
    assert budget_of(keyholder).released == 0 and budget_of(keyholder).epsilon == 0.0


def test_statistics_rounds_are_refused_under_a_budget():
    with pytest.raises(ConfigurationError, match="standardize=False"):
        private_roles(plan=RunPlan(n_features=N_FEATURES, standardize=True))
    keyholder, _, _ = private_roles()
    with pytest.raises(PolicyViolation, match="no magnitude"):
        keyholder.start_round(Task.MAGNITUDE)


def test_the_minimum_cohort_is_at_least_the_planned_one():
    keyholder, _, _ = private_roles(min_clients=3)
    keyholder._min_clients = 2
    with pytest.raises(ConfigurationError, match="planned for cohorts of 3"):
        keyholder.start_round()


def test_the_budget_spent_survives_export_and_restore():
    keyholder, aggregator, clients = private_roles(rounds=3)
    _release(keyholder, aggregator, clients)
    identity = keyholder._identity
    restored = KeyHolder.restore(keyholder._keys, identity, keyholder.export_state())
    assert restored.privacy == keyholder.privacy
    assert budget_of(restored).released == 1
    assert budget_of(restored).epsilon == budget_of(keyholder).epsilon
    assert restored.export_state() == keyholder.export_state()


def test_a_format_1_state_is_read_as_a_run_without_budget_and_an_unknown_one_refused():
    keyholder, _, _ = private_roles()
    plain = KeyHolder(keyholder._keys, plan=keyholder.plan, min_clients=2)
    identity = Identity()
    plain._identity = identity
    envelope = wire.open_envelope(plain.export_state(), wire.Kind.KEYHOLDER_STATE)
    unpinned = wire.Writer()
    Normalisers().write_to(unpinned)
    suffix = b"\x00" + unpinned.getvalue()  # no budget, no pinned divisor
    assert envelope.params == "state=4" and envelope.body.endswith(suffix)
    old = wire.seal_envelope(
        wire.Kind.KEYHOLDER_STATE, envelope.body[: -len(suffix)], fingerprint=envelope.fingerprint
    )
    assert KeyHolder.restore(plain._keys, identity, old).privacy is None
    newer = wire.seal_envelope(
        wire.Kind.KEYHOLDER_STATE, envelope.body, params="state=5", fingerprint=envelope.fingerprint
    )
    with pytest.raises(MalformedMessage, match="unknown format"):
        KeyHolder.restore(plain._keys, identity, newer)


def _clipped_local_update(client, weights: np.ndarray, clip: float) -> np.ndarray:
    """A client's clipped update at ``weights``, recomputed in the clear (the attacker's gift)."""
    model = client._model.set_params(max_iter=client._epochs)
    fitted = model.fit(
        client._X, client._y, coef_init=weights[:-1], intercept_init=weights[-1], classes=[0, 1]
    )
    update, _ = clip_update(np.append(fitted.coef_.ravel(), fitted.intercept_) - weights, clip)
    return update


def test_differencing_two_cohorts_under_dp_recovers_only_noise():
    """The attack of test_round_ownership.py, at client level: all clients in round r,
    all but the victim in round r+1, and the difference of the two released sums.

    Without DP it missed the victim's update by 105 %. Here the attacker is even
    given every other client's exact clipped update in both rounds, and what is
    left once they are subtracted is the victim's update plus the two releases'
    noise: exactly noise of the planned size, ``sqrt(2) · z · C`` per value, in
    which the victim's update (norm at most ``C = 1``) is buried.
    """
    scipy_stats = pytest.importorskip("scipy.stats")
    keyholder, aggregator, clients = private_roles(level="client", epsilon=0.5, rounds=2)
    victim, others = clients[0], clients[1:]
    budget = budget_of(keyholder)
    clip, normaliser = budget.mechanism.clip, budget.normaliser
    weights = [np.zeros(N_FEATURES + 1)]
    sums = []
    for cohort in (clients, others):
        sums.append(_release(keyholder, aggregator, cohort) * normaliser)
        weights.append(weights[-1] + keyholder.plan.server_lr * sums[-1] / normaliser)
    truth = _clipped_local_update(victim, weights[0], clip)
    known = [sum(_clipped_local_update(c, w, clip) for c in others) for w in weights[:2]]
    estimate = (sums[0] - known[0]) - (sums[1] - known[1])
    miss = estimate - truth
    scaled = float(miss @ miss) / (2 * budget.mechanism.sum_std**2)
    low, high = scipy_stats.chi2.ppf([1e-9, 1 - 1e-9], df=N_FEATURES + 1)
    assert low < scaled < high  # the miss is the planned noise, no more and no less
    assert np.linalg.norm(miss) > 2 * np.linalg.norm(truth)  # the victim is buried in it
    assert budget.mechanism.noise_multiplier > 10 and budget.epsilon <= 0.5
    with pytest.raises(PolicyViolation, match="privacy budget spent"):
        keyholder.start_round()  # and a third round, to average the noise down, is refused


def test_released_aggregates_are_decoded_from_the_aggregate_message():
    keyholder, aggregator, clients = private_roles()
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    released = decode(keyholder.decrypt_aggregate(aggregator.finish_round()), Aggregate)
    assert released.contributors == 3 and released.mean.shape == (N_FEATURES + 1,)


def test_a_record_level_client_larger_than_the_plan_is_refused_before_any_round(monkeypatch):
    """The plan's range holds ``max_rows`` clipped gradients and the noise; a client
    holding more sends weight 1 but a longer sum. Built, it failed to encrypt in the
    rounds whose gradients align (its data decided whether it answered), so it is
    refused when it is built."""
    keyholder, aggregator, clients = private_roles(sizes=(30, 50, 20))  # max_rows 50
    big = np.tile(data(7, 1)[0], (800, 1)), np.ones(800, dtype=int)  # aligned gradients
    kwargs = dict(
        keyholder=keyholder.identity_bytes,
        model=LogisticRegressionGD(learning_rate=0.5),
        local_epochs=2,
        classes=np.array([0, 1]),
        allow_insecure=True,
        privacy=budget_of(keyholder).mechanism,
    )
    with pytest.raises(EncodingOverflowError, match="client 'big' holds 800 samples: their"):
        Client("big", *big, keyholder.public_key_bytes(), **kwargs)
    Client("fits", *data(8, 50), keyholder.public_key_bytes(), **kwargs)  # max_rows: built

    # Without the refusal it is built, and fails only once a ticket is open.
    monkeypatch.setattr(client_module, "value_range", lambda *args: 0.0)
    late = Client("big", *big, keyholder.public_key_bytes(), **kwargs)
    keyholder.register(late.client_id, late.verify_key)
    aggregator.register(late.client_id, late.verify_key)
    start = open_round(keyholder, aggregator)
    with pytest.raises(EncodingOverflowError, match="exceeds the plan's clip bound"):
        late.participate(start)
