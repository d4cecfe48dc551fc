"""he-fed run --executor flower: Flower's simulation engine (Ray), in process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from he_fed.cli import main

from he_fed import ExperimentConfig, run_experiment
from he_fed.crypto import Plain
from he_fed.exceptions import ConfigurationError
from he_fed.models import LogisticRegressionGD
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime.flower import simulate


def test_he_fed_run_on_flower_simulation_gives_the_inprocess_coefficients(tmp_path):
    out = tmp_path / "flower.json"
    args = [
        "run",
        "--executor",
        "flower",
        "--workers",
        "2",
        "--clients",
        "3",
        "--rounds",
        "2",
        "--key-bits",
        "1024",
        "--allow-insecure",
        "--json",
        str(out),
        "--quiet",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    flower = json.loads(out.read_text())
    inprocess = run_experiment(
        ExperimentConfig(clients=3, rounds=2, key_bits=1024, allow_insecure=True)
    ).to_dict()
    assert flower["final"]["coef"] == inprocess["final"]["coef"]
    assert flower["final"]["intercept"] == inprocess["final"]["intercept"]
    assert flower["setup"]["executor"] == "flower" and flower["totals"]["startup_s"] > 0
    assert [r["contributors"] for r in flower["rounds"]] == [3, 3]


def test_targets_that_npy_cannot_hold_without_pickle_are_refused_before_flower_starts():
    X = np.zeros((4, 2))
    parts = [(X, np.array(["a", "b", "a", "b"], dtype=object))] * 2
    setup = FederationSetup.from_partitions(
        parts, scheme=Plain(), model=LogisticRegressionGD(), client_ids=["p", "q"]
    )
    with pytest.raises(ConfigurationError, match="not Python objects"):
        simulate(setup, parts, lambda federation: None)
