"""A Flower setting is enforced or refused, never accepted and ignored.

An audit of every path from a user's setting to a role (a helper agent, stop 42)
found settings that Flower's nodes took and dropped: a privacy budget (the
nodes' policy carries none, so a private run through the public
``run_federation("flower", ...)`` ran its key holder without one), the run
config's ``min-clients`` (the key-holder node used its own without a word),
quoted booleans (``trust-on-first-use='false'`` read as True, since
``bool("false")`` is), and a node's ``trusted-clients`` file that the policy
file's list silently overrode. Each is refused here now.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from he_fed.exceptions import ConfigurationError, PolicyViolation
from he_fed.runtime.flower import records
from he_fed.runtime.flower.app import _default_run_config, config_from_run_config, keyholder_policy
from he_fed.runtime.flower.nodes import _pinned_keyholder
from he_fed.runtime.flower.policy import (
    KeyHolderPolicy,
    admitted_registration,
    with_trusted_clients,
)
from tests.runtime.test_resume import _setup_with

RUN = {"scheme": "paillier", "key-bits": 1024, "allow-insecure": True, "clients": 3, "rounds": 1}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"private": True}, "a privacy budget"),
        ({"server_optimizer": "adam"}, "server_optimizer='adam'"),
        ({"validation_split": 0.2}, "federated evaluation"),
    ],
)
def test_what_a_nodes_policy_cannot_carry_is_refused_before_the_key_holder_is_asked(options, named):
    setup, _ = _setup_with(**options)
    with pytest.raises(ConfigurationError, match=f"on Flower, {named} is not supported yet"):
        records.keyholder_request(setup)
    plain, _ = _setup_with()
    assert records.keyholder_request(plain)["min-clients"] == 2  # the control: asked as before


@pytest.mark.slow
def test_a_private_run_on_a_flower_simulation_is_refused_not_run_without_its_budget():
    """The audit's case, through the public API, refused before any round."""
    from he_fed.runtime import run_federation

    setup, partitions = _setup_with(private=True)
    trained = []
    with pytest.raises(ConfigurationError, match="a privacy budget is not supported yet"):
        run_federation("flower", setup, partitions, lambda f: trained.append(f.train(3)))
    assert trained == []


def test_a_quoted_false_is_refused_not_read_as_true():
    """Flower keeps ``key='false'`` as text, and ``bool("false")`` is True."""
    offered = bytes(range(32))
    node = SimpleNamespace(node_config={"trust-on-first-use": "false"})
    with pytest.raises(ConfigurationError, match="trust-on-first-use must be true or false"):
        _pinned_keyholder(node, offered)  # it used to trust the ServerApp's key holder
    with pytest.raises(ConfigurationError, match="provisioned with"):
        _pinned_keyholder(SimpleNamespace(node_config={"trust-on-first-use": False}), offered)
    assert _pinned_keyholder(SimpleNamespace(node_config={"trust-on-first-use": True}), offered)

    policy = json.loads(keyholder_policy(RUN).to_json())
    for key in ("trust-on-first-use", "standardize"):
        with pytest.raises(ConfigurationError, match=f"{key} must be true or false"):
            KeyHolderPolicy.from_json(json.dumps({**policy, key: "false"}))
    policy_from_file = KeyHolderPolicy.from_json(
        json.dumps({**policy, "trust-on-first-use": False})
    )
    with pytest.raises(PolicyViolation):  # and an untrusted identity is refused, as meant
        admitted_registration(
            {"client-ids": ["evil"], "verify-keys": [b"\1" * 32]}, policy_from_file, "key holder"
        )

    with pytest.raises(ConfigurationError, match="run config standardize must be true or false"):
        config_from_run_config({**_default_run_config(), "standardize": "false"})
    assert (
        config_from_run_config({**_default_run_config(), "standardize": False}).standardize is False
    )


@pytest.mark.parametrize("bad", [2.7, "2", True, 0])
def test_a_policy_files_min_clients_is_a_whole_number_not_rounded(bad):
    policy = json.loads(keyholder_policy(RUN).to_json())
    with pytest.raises(ConfigurationError, match="min-clients"):
        KeyHolderPolicy.from_json(json.dumps({**policy, "min-clients": bad}))


def test_a_nodes_trusted_clients_file_that_disagrees_with_its_policy_is_refused(tmp_path):
    alice, mallory = b"\x0a" * 32, b"\x0b" * 32
    policy = keyholder_policy(RUN, trusted_clients={"alice": alice, "mallory": mallory})
    revoked = tmp_path / "trusted"
    revoked.write_text(f"alice {alice.hex()}\n")  # the operator dropped mallory here
    with pytest.raises(ConfigurationError, match="names other clients or keys"):
        with_trusted_clients(policy, {"trusted-clients": str(revoked)})
    same = tmp_path / "same"
    same.write_text(f"alice {alice.hex()}\nmallory {mallory.hex()}\n")
    assert with_trusted_clients(policy, {"trusted-clients": str(same)}) is policy
    only_file = with_trusted_clients(keyholder_policy(RUN), {"trusted-clients": str(revoked)})
    assert dict(only_file.trusted_clients) == {"alice": alice}


def test_a_run_configs_min_clients_other_than_the_nodes_is_refused():
    """The node's policy decides; a ServerApp that asks for another cohort is told so."""
    setup, _ = _setup_with()  # min_clients=2
    request = records.keyholder_request(setup)
    policy = KeyHolderPolicy(setup.scheme, setup.run_plan, min_clients=2)
    policy.refuse_other(request, "key holder")  # the same: accepted
    policy.refuse_other({**request, "min-clients": 0}, "key holder")  # not asked: the node's
    with pytest.raises(PolicyViolation, match="smallest cohort is its own policy's, 2 clients"):
        policy.refuse_other({**request, "min-clients": 3}, "key holder")
    majority = KeyHolderPolicy(setup.scheme, setup.run_plan, min_clients=None)
    majority.refuse_other({**request, "min-clients": 0}, "key holder")
    with pytest.raises(PolicyViolation, match="a majority of the clients it registers"):
        majority.refuse_other(request, "key holder")
