"""Poisson-sampled private rounds through the real roles: the key holder's and each share
holder's budget, the release's divisor, the persisted state, and a client whose sample
is empty."""

from __future__ import annotations

import dataclasses
import struct
from fractions import Fraction

import numpy as np
import pytest

from he_fed.crypto import wire
from he_fed.exceptions import PolicyViolation
from he_fed.privacy import DPMechanism, PrivacyBudget
from he_fed.privacy._sampled import best_round_delta
from he_fed.protocol import KeyHolder
from he_fed.protocol.council_budget import count_certified, vouch
from he_fed.protocol.normalisers import Normalisers
from he_fed.protocol.release import normalised_sum
from tests.protocol.harness import open_round
from tests.protocol.private_harness import budget_of, private_roles


def _release(keyholder, aggregator, cohort) -> np.ndarray:
    start = open_round(keyholder, aggregator)
    for c in cohort:
        aggregator.add(c.participate(start).update)
    return aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round())).mean


def test_the_key_holder_charges_sampled_releases_and_refuses_past_the_target():
    keyholder, aggregator, clients = private_roles(rounds=2, sampling_rate=0.5)
    budget = budget_of(keyholder)
    assert budget.sampled and budget.mechanism.sampling_rate == 0.5
    assert budget.divisor == 50  # the expected batch: q · (30 + 50 + 20)
    assert all(c._privacy.sampling_rate == 0.5 for c in clients)
    for _ in range(2):
        _release(keyholder, aggregator, clients)
    assert budget.released == 2 and budget.epsilon <= 1.0
    with pytest.raises(PolicyViolation, match=r"privacy budget spent: 2 release\(s\)"):
        keyholder.start_round()
    assert keyholder.released == 2


def test_a_client_whose_sample_is_empty_still_adds_its_noise_share():
    keyholder, aggregator, clients = private_roles(rounds=2, sampling_rate=0.5)
    empty = dataclasses.replace(clients[0]._privacy)
    # Below the least rate a plan accepts (1e-6), so that the sample is empty for sure.
    object.__setattr__(empty, "sampling_rate", 2.0**-80)
    assert len(empty.sample(clients[0]._X, clients[0]._y)[0]) == 0  # fails w.p. 2**-74
    clients[0]._privacy = empty
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    released = aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    assert released.contributors == 3 and np.all(np.isfinite(released.mean))
    assert budget_of(keyholder).released == 1


def test_the_release_divides_by_the_expected_batch_exactly():
    units = np.array([3, -7, 10**15 + 1], dtype=object)
    assert normalised_sum(units, Fraction(1, 2) * 10, 0.25).tolist() == [
        0.15,
        -0.35,
        (10**15 + 1) / 20,
    ]
    assert (
        normalised_sum(units, 5, 0.25).tolist() == normalised_sum(units, Fraction(5), 0.25).tolist()
    )


def test_a_sampled_budget_survives_export_and_restore():
    keyholder, aggregator, clients = private_roles(rounds=3, sampling_rate=0.5)
    _release(keyholder, aggregator, clients)
    restored = KeyHolder.restore(keyholder._keys, keyholder._identity, keyholder.export_state())
    assert restored.privacy == keyholder.privacy
    assert budget_of(restored).round_delta == budget_of(keyholder).round_delta > 0
    assert budget_of(restored).epsilon == budget_of(keyholder).epsilon
    assert restored.export_state() == keyholder.export_state()


def test_a_format_2_state_reads_as_an_unsampled_budget():
    """A state written before sampling: no ``q`` after the mechanism, no ``round_delta``."""
    keyholder, aggregator, clients = private_roles(rounds=3)
    _release(keyholder, aggregator, clients)
    envelope = wire.open_envelope(keyholder.export_state(), wire.Kind.KEYHOLDER_STATE)
    unpinned = wire.Writer()
    Normalisers().write_to(unpinned)  # a private run pins no divisor
    assert envelope.body.endswith(unpinned.getvalue())
    body = envelope.body[: -len(unpinned.getvalue())]
    # The budget ends the rest: ...size, q, target, delta, normaliser, released, round_delta.
    assert body[-48:-40] == wire_float(1.0) and body[-8:] == wire_float(0.0)
    old = wire.seal_envelope(
        wire.Kind.KEYHOLDER_STATE,
        body[:-48] + body[-40:-8],
        params="state=2",
        fingerprint=envelope.fingerprint,
    )
    restored = KeyHolder.restore(keyholder._keys, keyholder._identity, old)
    assert restored.privacy == keyholder.privacy and not budget_of(restored).sampled
    assert restored.export_state() == keyholder.export_state()


def wire_float(value: float) -> bytes:
    return struct.pack(">d", value)


def test_each_share_holder_counts_sampled_releases_with_the_sampled_accountant():
    mechanism = DPMechanism("record", 1.0, 18.09, 5, 31, 2.0**-23, 0.1)
    delta0 = best_round_delta(mechanism.rho, 0.1, 20, 1e-5)
    holder = PrivacyBudget(mechanism, 0.4, 1e-5, 426, 0, delta0)
    assert [vouch(holder) for _ in range(3)] == [1, 2, 3]
    count_certified(holder, 22, holder=3)  # releases made without this holder
    assert holder.released == 22
    with pytest.raises(PolicyViolation, match="counted certified release 23"):
        count_certified(holder, 23, holder=3)
    assert holder.released == 23
    with pytest.raises(PolicyViolation, match="privacy budget spent"):
        vouch(holder)
