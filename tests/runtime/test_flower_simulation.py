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
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False, terminal_width=120)
    assert result.exit_code == 0, result.output
    flower = json.loads(out.read_text())
    inprocess = run_experiment(
        ExperimentConfig(clients=3, rounds=2, key_bits=1024, allow_insecure=True)
    ).to_dict()
    assert flower["final"]["coef"] == inprocess["final"]["coef"]
    assert flower["final"]["intercept"] == inprocess["final"]["intercept"]
    assert flower["setup"]["executor"] == "flower" and flower["totals"]["startup_s"] > 0
    assert [r["contributors"] for r in flower["rounds"]] == [3, 3]
    # The client nodes kept their seconds (red team 44): the summary says so.
    kept = ("train_s", "encrypt_s", "sign_s", "serialize_s")
    assert [flower["totals"][k] for k in kept] == [None] * 4
    assert flower["totals"]["aggregate_s"] > 0
    for phase in ("local training", "encode + encrypt", "commit, sign, prove", "serialize"):
        (line,) = [line for line in result.output.splitlines() if f" {phase} " in line]
        assert "kept by the clients" in line, result.output


def test_targets_that_npy_cannot_hold_without_pickle_are_refused_before_flower_starts():
    X = np.zeros((4, 2))
    parts = [(X, np.array(["a", "b", "a", "b"], dtype=object))] * 2
    setup = FederationSetup.from_partitions(
        parts, scheme=Plain(), model=LogisticRegressionGD(), client_ids=["p", "q"]
    )
    with pytest.raises(ConfigurationError, match="not Python objects"):
        simulate(setup, parts, lambda federation: None)


class _Crash(Exception):
    """Stands for the ServerApp's process dying."""


@pytest.mark.slow  # two Ray simulations; the logic is tested fast in test_flower_resume.py
def test_a_checkpointed_flower_simulation_stopped_mid_run_resumes_to_the_same_coefficients(
    tmp_path,
):
    config = ExperimentConfig(
        clients=3, rounds=3, key_bits=1024, allow_insecure=True, executor="flower", workers=2
    )
    checkpoint = tmp_path / "ck"

    def crash(entry):
        if entry.round == 2:  # round 2 released; the ServerApp dies before recording it
            raise _Crash

    with pytest.raises(_Crash):
        run_experiment(config, progress=crash, checkpoint=checkpoint)
    # The virtual nodes' files, as a deployment's operators would provision them.
    assert sorted(p.name for p in (checkpoint / "keyholder").iterdir()) == [
        "identity",
        "keyholder.state",
        "keyholder.state.lock",
        "policy.json",
        "secret.key",
    ]
    # Each client node keeps its identity and the rounds it answered (red team 52).
    assert sorted(p.name for p in (checkpoint / "clients").iterdir()) == [
        name for k in range(3) for name in (f"{k}.identity", f"{k}.identity.rounds")
    ]
    out = tmp_path / "resumed.json"
    args = ["run", "--executor", "flower", "--workers", "2", "--clients", "3", "--rounds", "3"]
    args += ["--key-bits", "1024", "--allow-insecure", "--checkpoint", str(checkpoint)]
    result = CliRunner().invoke(main, [*args, "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "resumed from round 1 of 3" in result.output
    resumed = json.loads(out.read_text())
    inprocess = run_experiment(
        ExperimentConfig(clients=3, rounds=3, key_bits=1024, allow_insecure=True)
    ).to_dict()
    assert resumed["final"]["coef"] == inprocess["final"]["coef"]  # bit for bit
    assert resumed["final"]["intercept"] == inprocess["final"]["intercept"]
    assert [r["round"] for r in resumed["rounds"]] == [1, 2, 3]
