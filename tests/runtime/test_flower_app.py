"""The shipped Flower App: its run configuration, its pyproject, and each node's data."""

from __future__ import annotations

import dataclasses
import re
import sys

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from he_fed import ExperimentConfig
from he_fed.data import DatasetWarning, load_dataset
from he_fed.exceptions import ConfigurationError, DatasetError
from he_fed.experiment import experiment_data
from he_fed.runtime.flower.app import (
    RUN_CONFIG,
    config_from_run_config,
    keyholder_policy,
    node_data,
    write_app,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_the_run_config_mirrors_every_experiment_field():
    names = {f.name.replace("_", "-") for f in dataclasses.fields(ExperimentConfig)}
    # Evaluation and server optimizers are left out until the key-holder policy carries them.
    left_out = {"executor", "workers", "validation-split", "validation-every", "early-stopping"}
    left_out |= {"server-optimizer"}
    assert names - left_out <= set(RUN_CONFIG)
    assert not left_out & set(RUN_CONFIG)
    assert config_from_run_config(RUN_CONFIG) == dataclasses.replace(
        ExperimentConfig(), executor="flower"
    )


def test_fedprox_s_prox_mu_reaches_the_clients_plan_and_the_key_holder_s_policy():
    config = config_from_run_config({**RUN_CONFIG, "prox-mu": 0.1})
    assert config.prox_mu == 0.1
    plain, proximal = keyholder_policy({}), keyholder_policy({"prox_mu": 0.1})
    # The clients train only under the plan their key holder's tickets name: a
    # ServerApp asking for another proximal term than the policy's is refused.
    assert proximal.plan.client_plan != plain.plan.client_plan
    assert keyholder_policy({"prox-mu": 0.1}).plan.client_plan == proximal.plan.client_plan


def test_zero_means_unset_and_values_are_typed():
    config = config_from_run_config({**RUN_CONFIG, "lr": 0.25, "batch-size": 16, "clients": 3})
    assert (config.lr, config.batch_size, config.clients, config.samples) == (0.25, 16, 3, None)
    # The Dirichlet concentration is named as in ExperimentConfig (the CLI flag is --alpha).
    assert "alpha" not in RUN_CONFIG
    dirichlet = {**RUN_CONFIG, "partition": "dirichlet", "dirichlet-alpha": 0.1}
    assert config_from_run_config(dirichlet).dirichlet_alpha == 0.1
    with pytest.raises(ConfigurationError, match="dirichlet_alpha=0.1 would be unused"):
        config_from_run_config({**RUN_CONFIG, "dirichlet-alpha": 0.1})  # the partition is iid
    with pytest.raises(ConfigurationError, match="clients='many'"):
        config_from_run_config({**RUN_CONFIG, "clients": "many"})
    # A TOML true became 1 client, 2.7 rounds became 2, inf an OverflowError (an audit).
    for key, raw in (("clients", True), ("rounds", 2.7), ("rounds", float("inf")), ("lr", True)):
        with pytest.raises(ConfigurationError, match=f"run config {key}={raw!r} is not a valid"):
            config_from_run_config({**RUN_CONFIG, key: raw})
    assert config_from_run_config({**RUN_CONFIG, "rounds": 3.0}).rounds == 3


def test_write_app_writes_a_flower_app_pointing_at_he_fed(tmp_path):
    path = write_app(tmp_path / "app", clients=3, key_bits=1024, out="/tmp/r.json")
    project = tomllib.loads(path.read_text())
    flwr = project["tool"]["flwr"]["app"]
    assert flwr["components"] == {
        "serverapp": "he_fed.runtime.flower.app:server",
        "clientapp": "he_fed.runtime.flower.app:client",
    }
    assert flwr["config"]["clients"] == 3 and flwr["config"]["key-bits"] == 1024
    assert set(flwr["config"]) == set(RUN_CONFIG)
    with pytest.raises(ConfigurationError, match="not a run-config key"):
        write_app(tmp_path / "bad", colour="blue")


def _context(node_config: dict, run_config: dict) -> Context:
    return Context(
        run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config=run_config
    )


def test_a_client_node_loads_exactly_the_partition_he_fed_run_deals_it():
    run_config = {**RUN_CONFIG, "clients": 3, "dataset": "wine"}
    config = config_from_run_config(run_config)
    data = experiment_data(config)
    for k in range(3):
        X, y = node_data(_context({"partition-id": k}, run_config))
        rows = data.groups == k
        np.testing.assert_array_equal(X, data.X_train[rows])
        np.testing.assert_array_equal(y, data.y_train[rows])
    assert data.client_ids == ["0", "1", "2"]


def test_a_client_node_can_load_its_own_csv(tmp_path):
    csv = tmp_path / "hospital.csv"
    csv.write_text("a,b,label\n1.0,2.0,0\n3.0,4.5,1\n0.5,0.1,1\n")
    X, y = node_data(_context({"data-path": str(csv), "target": "label"}, RUN_CONFIG))
    np.testing.assert_array_equal(X, [[1.0, 2.0], [3.0, 4.5], [0.5, 0.1]])
    np.testing.assert_array_equal(y, load_dataset(str(csv), target="label").y)
    with pytest.raises(ConfigurationError, match="partition-id"):
        node_data(_context({}, RUN_CONFIG))


def test_a_client_node_reads_its_csv_with_its_own_settings_never_the_runs(tmp_path):
    """Red team 47: the run's ``categorical`` and ``missing`` applied to a node's own
    file, and the ServerApp writes the run configuration: declaring the values of a
    column seen so far made the loader name the next new one, a cell a run. Now only
    the node's own configuration says how its file is read."""
    run_config = {**RUN_CONFIG, "categorical": "ward=A,B,C;sex=f,m", "missing": "drop"}
    config = config_from_run_config(run_config)
    assert config.categorical == ("ward=A,B,C", "sex=f,m") and config.missing == "drop"
    project = tomllib.loads(write_app(tmp_path / "app", **run_config).read_text())
    assert project["tool"]["flwr"]["app"]["config"]["categorical"] == "ward=A,B,C;sex=f,m"
    csv = tmp_path / "ward.csv"
    csv.write_text("age;ward;sex;label\n50;B;m;0\n61;A;f;1\n70;C;;1\n")
    node = {"data-path": str(csv), "target": "label", "delimiter": ";"}
    probe = {**RUN_CONFIG, "categorical": "age=50", "missing": "error", "delimiter": ","}
    with pytest.raises(DatasetError, match="ward"):  # its own settings: ward is text
        node_data(_context(node, probe))
    node.update(categorical="ward=A,B,C;sex=f,m", missing="drop")
    with pytest.warns(DatasetWarning, match="dropped 1 of 3 rows"):
        X, y = node_data(_context(node, probe))
    np.testing.assert_array_equal(X, [[50, 0, 1, 0, 0, 1], [61, 1, 0, 0, 1, 0]])
    assert y.tolist() == ["0", "1"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"clients": 0}, "clients must be a positive integer, got 0"),
        ({"rounds": "abc"}, "run config rounds='abc' is not a valid int"),
        ({"scheme": "nope"}, "unknown scheme 'nope'"),
    ],
)
def test_an_app_whose_run_config_the_server_app_would_refuse_is_not_written(
    tmp_path, setting, message
):
    """he-fed flower-app --set clients=0 wrote it, and flwr run then failed (an audit)."""
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        write_app(tmp_path / "app", **setting)
    assert not (tmp_path / "app" / "pyproject.toml").exists()
