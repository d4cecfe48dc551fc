"""Three clients: the smallest federation a colluding client cannot cut down to one victim.

Red team 45: with the minimum cohort a majority of three (two), the aggregator left
the third client's update out of the first release, as a dropout, and its colluding
client's contribution beside the victim's fixed the cohort. Every release was then
the victim's alone plus what the colluder knew it sent: its row count, each
column's RMS, mean and second moment, and every training update, exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.exceptions import PolicyViolation
from he_fed.protocol import Aggregator, KeyHolder, RunPlan, Task, tasks
from he_fed.protocol.keyholder import majority
from tests.conftest import FAST_SCHEMES, keys_for
from tests.protocol.harness import N_FEATURES, bound, client, open_round, signed_update


def test_the_default_cohort_is_all_three_of_three_and_a_majority_of_more():
    assert [majority(n) for n in range(1, 8)] == [2, 2, 3, 3, 3, 4, 4]


@pytest.mark.parametrize("scheme", FAST_SCHEMES)
def test_an_aggregator_and_one_colluder_cannot_cut_three_clients_down_to_the_victim(scheme):
    plan = bound(RunPlan(n_features=N_FEATURES, standardize=True))
    keyholder = KeyHolder(keys_for(scheme), plan=plan)  # the default policy
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(),
        plan=plan,
        keyholder=keyholder.identity_bytes,
        allow_insecure=True,
    )
    victim, third, colluder = (
        client(keyholder, name, seed, rows)
        for name, seed, rows in (("victim", 1, 37), ("third", 2, 50), ("colluder", 3, 10))
    )
    for c in (victim, third, colluder):
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    start = open_round(keyholder, aggregator, Task.MAGNITUDE)
    aggregator.add(victim.participate(start).update)  # the third's is "lost"
    key = tasks.plan_for(colluder._key, Task.MAGNITUDE)
    crafted = key.encrypt(np.eye(N_FEATURES)[0], weight=key.scheme.max_weight)
    aggregator.add(signed_update(colluder, start, crafted))
    with pytest.raises(PolicyViolation, match="3"):
        keyholder.decrypt_aggregate(aggregator.finish_round())
    assert keyholder.min_clients == 3 and keyholder.released == 0
