"""The reported model of a private fit: the mean of the last half of the round models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from he_fed.cli import main

from he_fed._private_fit import PrivateFit, tail_average
from he_fed.exceptions import ConfigurationError
from he_fed.experiment import ExperimentConfig, experiment_data
from he_fed.federated import FederatedLogisticRegression


def test_tail_average_takes_the_last_half_rounding_down_and_at_least_one():
    iterates = [np.array([float(k), -2.0 * k]) for k in range(1, 6)]  # 5 rounds: last 2
    assert tail_average(iterates).tolist() == [4.5, -9.0]
    assert tail_average(iterates[:4]).tolist() == [3.5, -7.0]  # 4 rounds: last 2
    assert tail_average(iterates[:1]).tolist() == [1.0, -2.0]  # 1 round: itself
    with pytest.raises(ConfigurationError, match="no released model to average"):
        tail_average([])


def test_a_private_fit_reports_the_average_and_keeps_each_round_model():
    X = np.array([[0.0, 2.0], [4.0, 6.0], [2.0, 4.0], [4.0, 2.0]])
    y = np.array([0, 1, 1, 0])
    est = FederatedLogisticRegression(
        dp_epsilon=1.0,
        feature_bounds=(np.array([0.0, 2.0]), np.array([4.0, 6.0])),
        key_bits=1024,
        allow_insecure=True,
    )
    plan = PrivateFit.plan(est, [(X[:2], y[:2]), (X[2:], y[2:])], regression=False, n_outputs=1)
    assert plan.partitions[0][0].tolist() == [[-1.0, -1.0], [1.0, 1.0]]
    rounds = [np.array([2.0, 4.0, 1.0]), np.array([4.0, 8.0, 3.0]), np.array([6.0, 0.0, 5.0])]
    assert [plan.observe(w)[0].tolist() for w in rounds] == [[1.0, 2.0], [2.0, 4.0], [3.0, 0.0]]
    coef, intercept = plan.final_model()  # the last 1 of 3: (6, 0, 5) on [-1, 1]
    assert coef.tolist() == [3.0, 0.0] and intercept == 5.0 - 3.0 * 2.0
    plan.observe(np.array([8.0, 4.0, 7.0]))  # the last 2 of 4: (7, 2, 6)
    coef, intercept = plan.final_model()
    assert coef.tolist() == [3.5, 1.0] and intercept == 6.0 - 3.5 * 2.0 - 1.0 * 4.0


def test_he_fed_run_reports_the_accuracy_of_the_model_it_writes(tmp_path):
    out = tmp_path / "dp.json"
    flags = ["--dp-epsilon", "1", "--rounds", "4", "--key-bits", "1024", "--allow-insecure"]
    result = CliRunner().invoke(main, ["run", *flags, "--quiet", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    split = experiment_data(ExperimentConfig())
    coef, intercept = np.asarray(data["final"]["coef"]), data["final"]["intercept"]
    predicted = (split.X_test @ coef + intercept > 0).astype(int)
    assert data["final"]["metric"] == float(np.mean(predicted == split.y_test))
