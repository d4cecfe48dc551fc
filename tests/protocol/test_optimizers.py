"""Server optimizers: exact steps, pure functions of the releases, in both roles' state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from he_fed.crypto import wire
from he_fed.exceptions import ConfigurationError, PolicyViolation
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import Aggregator, KeyHolder, RunPlan
from he_fed.protocol.optimizers import OptimizerState, server_step
from tests.protocol.harness import N_FEATURES, open_round, roles


def _two_steps(name: str, lr: float = 0.5) -> np.ndarray:
    state = OptimizerState.initial(name, 1)
    weights = np.zeros(1)
    for delta in (np.array([1.0]), np.array([-0.5])):
        weights, state = server_step(name, lr, weights, delta, state)
    return weights


def test_each_optimizer_takes_the_step_of_its_paper():
    assert _two_steps("avg")[0] == 0.5 * 1.0 + 0.5 * -0.5
    # FedAvgM: m1 = 1, m2 = 0.9 - 0.5 = 0.4.
    assert _two_steps("avgm")[0] == pytest.approx(0.5 * 1.0 + 0.5 * 0.4, abs=1e-15)
    # FedAdam: m = 0.1, then 0.09 - 0.05; v from tau^2 = 1e-6.
    m1, v1 = 0.1, 0.99e-6 + 0.01
    m2, v2 = 0.9 * m1 - 0.05, 0.99 * v1 + 0.01 * 0.25
    adam = 0.5 * m1 / (math.sqrt(v1) + 1e-3) + 0.5 * m2 / (math.sqrt(v2) + 1e-3)
    assert _two_steps("adam")[0] == pytest.approx(adam, abs=1e-15)
    # FedYogi: v grows by (1 - b2) d^2 while v < d^2, and shrinks by it once v > d^2.
    y1 = 1e-6 + 0.01
    y2 = y1 + 0.01 * 0.25  # y1 = 0.010001 < 0.25
    yogi = 0.5 * m1 / (math.sqrt(y1) + 1e-3) + 0.5 * m2 / (math.sqrt(y2) + 1e-3)
    assert _two_steps("yogi")[0] == pytest.approx(yogi, abs=1e-15)


def test_an_unknown_optimizer_is_refused_by_the_plan_and_its_bytes():
    with pytest.raises(ConfigurationError, match="unknown server optimizer 'sgd'"):
        RunPlan(n_features=2, server_optimizer="sgd")
    for name in ("avgm", "adam", "yogi"):
        w = wire.Writer()
        plan = RunPlan(n_features=2, server_optimizer=name, evaluation="regression")
        plan.write_to(w)
        assert RunPlan.read_from(wire.Reader(w.getvalue(), "plan"), "plan") == plan


@pytest.mark.parametrize("name", ["avgm", "adam", "yogi"])
def test_both_roles_follow_the_optimizer_and_save_its_moments(name):
    plan = RunPlan(n_features=N_FEATURES, standardize=False, server_optimizer=name, server_lr=0.1)
    keyholder, aggregator, clients = roles("plain", plan=plan)
    for _ in range(3):
        start = open_round(keyholder, aggregator)  # the aggregator checks the ticket's model
        for c in clients:
            aggregator.add(c.participate(start).update)
        aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    assert np.array_equal(keyholder.model.weights, aggregator.model.weights)
    assert np.array_equal(keyholder.model.optimizer.first, aggregator.model.optimizer.first)
    state = keyholder.export_state()
    again = KeyHolder.restore(keyholder._keys, keyholder._identity, state)
    assert np.array_equal(again.model.optimizer.second, keyholder.model.optimizer.second)
    assert again.export_state() == state
    saved = aggregator.export_state()
    back = Aggregator.restore(keyholder.aggregation_key_bytes(), saved, allow_insecure=True)
    assert back.export_state() == saved


def test_the_aggregator_refuses_a_ticket_moved_by_another_optimizer():
    avg = RunPlan(n_features=N_FEATURES, standardize=False, server_lr=0.1)
    adam = RunPlan(n_features=N_FEATURES, standardize=False, server_lr=0.1, server_optimizer="adam")
    keyholder, _, clients = roles("plain", plan=avg)
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(),
        plan=adam,
        keyholder=keyholder.identity_bytes,
        allow_insecure=True,
    )
    for c in clients:
        aggregator.register(c.client_id, c.verify_key)
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    with pytest.raises(PolicyViolation, match="another model"):
        open_round(keyholder, aggregator)


def test_fedprox_pulls_each_step_back_to_the_start_by_lr_mu():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    w0, b0 = np.array([0.3, -0.2, 0.1]), 0.05
    options = dict(learning_rate=0.5, classes=[0, 1])
    fit = options.pop("classes")

    def run(mu: float, epochs: int, coef, intercept) -> LogisticRegressionGD:
        model = LogisticRegressionGD(max_iter=epochs, prox_mu=mu, **options)
        return model.fit(X, y, coef_init=coef, intercept_init=intercept, classes=fit)

    # At the start the proximal gradient is zero: one epoch is plain gradient descent.
    first = run(2.0, 1, w0, b0)
    assert np.array_equal(first.coef_, run(0.0, 1, w0, b0).coef_)
    # The second epoch is plain descent from there, pulled back by lr * mu * (w1 - w0).
    w1, b1 = first.coef_.ravel(), float(first.intercept_[0])
    plain = run(0.0, 1, w1, b1)
    prox = run(2.0, 2, w0, b0)
    np.testing.assert_allclose(prox.coef_.ravel(), plain.coef_.ravel() - 0.5 * 2.0 * (w1 - w0))
    assert float(prox.intercept_[0]) == pytest.approx(
        float(plain.intercept_[0]) - 0.5 * 2.0 * (b1 - b0), abs=1e-12
    )
