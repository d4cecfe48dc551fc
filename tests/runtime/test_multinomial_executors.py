"""A multinomial model trains alike on every executor: the plan's row count travels."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed import FederatedLogisticRegression
from he_fed.crypto import PackedPaillier
from he_fed.models import LogisticRegressionGD
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime import run_federation
from he_fed.runtime.flower import FlowerExecutor
from tests.runtime.test_flower_nodes import _grid, deployed_grid

LABELS = np.array(["ash", "elm", "oak"])


def _partitions() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(8)
    directions = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.5, -0.5, 0.0]])
    parts = []
    for n in (30, 45, 25):
        X = rng.normal(size=(n, 3))
        parts.append((X, LABELS[np.argmax(X @ directions + 0.3 * rng.normal(size=(n, 3)), 1)]))
    return parts


def _train(federation):
    federation.train(3)
    return federation.aggregator.raw_model()


def test_the_flower_mapping_gives_the_inprocess_weight_matrix_bit_for_bit(tmp_path):
    parts = _partitions()
    setup = FederationSetup.from_partitions(
        parts,
        scheme=PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=8, max_weight=64),
        model=LogisticRegressionGD(learning_rate=0.5, random_state=0),
        local_epochs=2,
        classes=LABELS,
    )
    assert setup.run_plan.n_outputs == 3
    expected_coef, expected_intercept = run_federation("inprocess", setup, parts, _train)
    assert expected_coef.shape == (3, 3) and expected_intercept.shape == (3,)
    for grid in (_grid(parts), deployed_grid(parts, setup, tmp_path)):
        coef, intercept = run_federation(FlowerExecutor(grid, nodes=4), setup, parts, _train)
        np.testing.assert_array_equal(coef, expected_coef)
        np.testing.assert_array_equal(intercept, expected_intercept)


@pytest.mark.parametrize("scheme", ["paillier-packed", "ckks"])
def test_processes_give_the_inprocess_weight_matrix_bit_for_bit(scheme):
    parts = _partitions()
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    groups = np.repeat([0, 1, 2], [len(p[1]) for p in parts])
    fits = {
        name: FederatedLogisticRegression(
            scheme=scheme, key_bits=1024, allow_insecure=True, rounds=3, executor=name, workers=2
        ).fit(X, y, groups=groups)
        for name in ("inprocess", "processes")
    }
    assert fits["processes"].coef_.shape == (3, 3)
    np.testing.assert_array_equal(fits["processes"].coef_, fits["inprocess"].coef_)
    np.testing.assert_array_equal(fits["processes"].intercept_, fits["inprocess"].intercept_)
