"""Evaluation, server optimizers and FedProx give the same run in worker processes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_wine

from he_fed import FederatedLogisticRegression
from he_fed.exceptions import ConfigurationError

X, Y = load_wine(return_X_y=True)
GROUPS = np.arange(len(Y)) % 3
OPTIONS = dict(
    scheme="paillier-packed",
    key_bits=1024,
    allow_insecure=True,
    validation_split=0.2,
    early_stopping=2,
    rounds=6,
    server_optimizer="adam",
    server_lr=0.1,
    prox_mu=0.1,
)


@pytest.mark.slow
def test_worker_processes_give_the_inprocess_model_and_validation_losses_bit_for_bit():
    runs = [
        FederatedLogisticRegression(executor=executor, workers=2, **OPTIONS).fit(
            X, Y, groups=GROUPS
        )
        for executor in ("inprocess", "processes")
    ]
    assert np.array_equal(runs[0].coef_, runs[1].coef_)
    losses = [[r.validation_loss for r in run.history_] for run in runs]
    assert losses[0] == losses[1]
    assert runs[0].setup_["best_round"] == runs[1].setup_["best_round"]


def test_the_flower_executor_refuses_what_its_key_holder_policy_cannot_carry():
    est = FederatedLogisticRegression(executor="flower", scheme="plain", validation_split=0.2)
    with pytest.raises(ConfigurationError, match="Flower key-holder policy"):
        est.fit(X, Y, groups=GROUPS)
