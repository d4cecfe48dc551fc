"""Red team 11: a colluding client steers a fixed cohort's rounds and inverts their sums.

Open, performed as a strict expected failure. The aggregator and one colluding client
of the largest weight (128, against an honest total of 80) keep one cohort, as the key
holder requires, and use the statistics rounds and the model instead:

1. the magnitude round, the first release, gets the clip at weight 128 from the
   colluder: every column's pre-scale becomes ``2^48``, so the honest moments fall
   below the moments grid, and the release gives the pinned total ``W_0``;
2. the moments round is then the colluder's alone: it makes column 0 a near-constant
   ``-Z`` for every row and the others negligible, so an honest update depends only on
   the client's row count and positive count (and the public model);
3. each training round the colluder steers the logit ``b − Z·w_0`` to a value of its
   choosing (a proven contribution moves a coordinate by up to ``128 · clip / W_0``);
   two local epochs make each client's update nonlinear in its own positive fraction,
   so the release, a sum over two honest clients, is not a function of their pooled
   data;
4. every pair ``{(n_1, p_1), (n_2, p_2)}`` with ``n_1 + n_2`` the honest total is
   tested against every round; one survives.

The two honest clients' row and positive counts come out exactly, as an unordered
pair, with no refusal (Paillier, packed Paillier and CKKS in the red team's runs).
Nothing here needs a second cohort. What would stop it: a private run (noise on
every release), or bounds on one client's influence on the statistics rounds and on
the model (its weight against the cohort's, robust statistics); neither is built.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from he_fed.protocol import Aggregator, KeyHolder, RunPlan, Task, tasks
from tests.conftest import keys_for
from tests.protocol.harness import client, open_round, signed_update

ETA, EPOCHS, ALPHA, CLIP, Z, WEIGHT = 0.5, 2, 1e-4, 4.0, 3.0, 128
SIZES = {"victim": 30, "alice": 50, "bob": 20, "colluder": 10}


def _delta(w0, b, n, positives):
    """An honest client's update (``w_0``, ``b``) once column 0 is ``-Z`` for every row."""
    mean_y, w, bias = positives / n, w0, b
    for _ in range(EPOCHS):
        residual = expit(bias - Z * w) - mean_y
        w, bias = w - ETA * (-Z * residual + ALPHA * w), bias - ETA * residual
    return np.clip(w - w0, -CLIP, CLIP), np.clip(bias - b, -CLIP, CLIP)


@pytest.mark.xfail(
    strict=True,
    reason="open (red team 11): a colluder that dictates the statistics and steers the "
    "model inverts a fixed cohort's sums into each honest client's counts",
)
def test_a_colluder_steering_a_fixed_cohort_does_not_get_each_clients_counts():
    plan = RunPlan(n_features=3, standardize=True)
    keyholder = KeyHolder(keys_for("paillier"), plan=plan)  # default policy: 3 of 4
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(),
        plan=plan,
        keyholder=keyholder.identity_bytes,
        allow_insecure=True,
    )
    clients = {
        name: client(keyholder, name, 11 + i, n, local_epochs=EPOCHS)
        for i, (name, n) in enumerate(SIZES.items())
    }
    for c in clients.values():
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    honest, colluder = [clients["victim"], clients["alice"]], clients["colluder"]

    def release(task: Task, values: np.ndarray) -> np.ndarray:
        start = open_round(keyholder, aggregator, task)
        for c in honest:
            aggregator.add(c.participate(start).update)
        key = tasks.plan_for(colluder._key, task)
        vector = key.encrypt(np.asarray(values, dtype=np.float64), weight=WEIGHT)
        aggregator.add(signed_update(colluder, start, vector))
        return aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round())).mean

    total = round(WEIGHT / release(Task.MAGNITUDE, np.ones(3))[0])  # the pinned W_0
    honest_total = total - WEIGHT
    variance, k = 1e-6, total / WEIGHT
    m1 = Z * np.sqrt(variance)
    release(Task.MOMENTS, np.array([m1 * k, 0, 0, (m1 * m1 + variance) * k, 1e-12 * k, 1e-12 * k]))
    rng = np.random.default_rng(0)
    observed = []
    for _ in range(12):
        w0, b = aggregator.weights[0], aggregator.weights[-1]
        hw, hb = _delta(w0, b, honest_total, honest_total / 2)
        values = np.zeros(4)
        step = plan.server_lr
        values[0] = np.clip(((0 - w0) * total / step - honest_total * hw) / WEIGHT, -3.99, 3.99)
        target = rng.uniform(-2.5, 2.5)  # aim the logit b - Z·w_0 there, w_0 at 0
        values[-1] = np.clip(
            ((target - b) * total / step - honest_total * hb) / WEIGHT, -3.99, 3.99
        )
        sums = release(Task.TRAIN, values) * total - WEIGHT * values  # the honest sums
        observed.append((w0, b, sums[0], sums[-1]))
    observed = np.array(observed)
    sums = np.concatenate([observed[:, 2], observed[:, 3]])
    table = {
        n: n
        * np.concatenate(
            _delta(observed[None, :, 0], observed[None, :, 1], n, np.arange(n + 1)[:, None]), axis=1
        )
        for n in range(1, honest_total)
    }
    best = min(
        (float(np.abs(table[n][i] + table[honest_total - n][j] - sums).max()), n, i, j)
        for n in range(1, honest_total // 2 + 1)
        for i in range(n + 1)
        for j in range(honest_total - n + 1)
    )
    truth = {(c.n_samples, int(c._y.sum())) for c in honest}
    assert keyholder.rejected == 0
    assert {(best[1], best[2]), (honest_total - best[1], best[3])} != truth
