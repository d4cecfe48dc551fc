"""A key-holder node with a ``state-file`` survives a restart, on the real node handlers.

A restart is what Flower does to a SuperNode that crashes or is redeployed: the
node keeps its disk, and its node state (``context.state``) is empty. Here it also
keeps its id, as an authenticated SuperNode does; one that comes back under a new
id is in ``test_flower_rejoin.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import RecordDict

from he_fed.exceptions import ConfigurationError, HEFedError, StateError
from he_fed.protocol import Aggregator, Identity
from he_fed.runtime import run_federation
from he_fed.runtime.flower import FlowerExecutor, KeyHolderPolicy, make_client_app, records
from he_fed.runtime.keyholder_store import KeyHolderStore
from tests.runtime.flower_fakes import LoopbackGrid
from tests.runtime.test_flower_nodes import KEYHOLDER, _ask, _partitions, _setup

ROUNDS = 3


def _provisioned(tmp_path, setup):
    """The key holder's files: secret key, identity, policy; and where its state goes."""
    keys, identity = setup.scheme.keygen(), Identity()
    (tmp_path / "secret.key").write_bytes(keys.secret.to_bytes())
    (tmp_path / "keyholder.id").write_text(identity.private_bytes().hex())
    policy = KeyHolderPolicy(setup.scheme, setup.run_plan, None, trust_on_first_use=True)
    policy.write(tmp_path / "keyholder.json")
    return (
        keys,
        identity,
        {
            "role": "keyholder",
            "policy-file": str(tmp_path / "keyholder.json"),
            "identity-file": str(tmp_path / "keyholder.id"),
            "secret-key-file": str(tmp_path / "secret.key"),
            "state-file": str(tmp_path / "keyholder.state"),
        },
    )


def _grid(parts, node_config):
    app = make_client_app(lambda context: parts[int(context.node_config["partition-id"])])
    pin = Identity.from_private_bytes(
        bytes.fromhex(Path(node_config["identity-file"]).read_text())
    ).public_bytes.hex()
    folder = Path(node_config["identity-file"]).parent
    nodes = {
        10 + k: {
            "partition-id": k,
            "keyholder-identity": pin,
            "round-file": str(folder / f"client-{k}.rounds"),
        }
        for k in range(len(parts))
    }
    nodes[KEYHOLDER] = node_config
    return LoopbackGrid(app, nodes)


def _restart(grid):
    grid.contexts[KEYHOLDER].state = RecordDict()


def test_a_restarted_key_holder_node_loses_no_round_and_releases_none_twice(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    keys, identity, node = _provisioned(tmp_path, setup)

    def train(federation):
        federation.train(ROUNDS)
        return federation.aggregator.raw_model()

    def restarting(federation):
        federation.standardize()
        for _ in range(ROUNDS):
            _restart(grid)  # before every ticket: the node rebuilds itself from disk
            outcome = federation.run_round()
            assert outcome.skipped is None
            _restart(grid)  # between a ticket and its decryption
        return federation.aggregator.raw_model()

    expected = run_federation("inprocess", setup, parts, train)
    grid = _grid(parts, node)
    coef, intercept = run_federation(FlowerExecutor(grid, nodes=4), setup, parts, restarting)
    np.testing.assert_array_equal(coef, expected[0])
    assert intercept == expected[1]
    with KeyHolderStore.open(tmp_path / "keyholder.state", keys, identity) as store:
        assert [r.round for r in store.releases] == [0, 1, 2, 3, 4]


def test_a_restarted_key_holder_node_refuses_a_released_round_with_another_cohort(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    grid = _grid(parts, node)
    forged = {}

    def one_round(federation):
        federation.standardize()
        before = federation.aggregator.export_state()
        federation.run_round()
        # The aggregator's operator keeps the round's ticket and updates, and sums
        # another cohort (two of the three clients) for the round already released.
        ticket = records.config_of(
            [m for m in grid.sent if m.metadata.message_type == records.ROUND][-1]
        )["round-start"]
        updates = [
            records.config_of(r)["update"]
            for r in grid.replies
            if r.metadata.message_type == records.ROUND
        ][-3:]
        other = Aggregator.restore(
            federation.keyholder.aggregation_key_bytes(), before, allow_insecure=True
        )
        other.open_round(ticket)
        for update in updates[:2]:
            other.add(update)
        forged["aggregate"] = other.finish_round()
        return True

    assert run_federation(FlowerExecutor(grid, nodes=4), setup, parts, one_round)
    _restart(grid)
    refused = _ask(grid, KEYHOLDER, records.DECRYPT, {"encrypted-aggregate": forged["aggregate"]})
    assert refused.error.reason.startswith("PolicyViolation: round 2 (train) is not the open round")


def test_an_edited_or_rolled_back_state_file_stops_the_node(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    grid = _grid(parts, node)
    path = tmp_path / "keyholder.state"
    kept = {}

    def two_rounds(federation):
        federation.standardize()
        kept["old"] = path.read_bytes()
        federation.run_round()
        return True

    assert run_federation(FlowerExecutor(grid, nodes=4), setup, parts, two_rounds)
    ticket = {"task": "train"}
    # Rolled back while the node runs: the file is not what the node holds in memory.
    newest = path.read_bytes()
    path.write_bytes(kept["old"])
    refused = _ask(grid, KEYHOLDER, records.TICKET, ticket)
    assert refused.error.reason.startswith("StateError: state-file")
    assert "rolled back or replaced" in refused.error.reason
    # Edited, then the node restarts: it does not start on a state that does not verify.
    edited = bytearray(newest)
    edited[-40] ^= 1
    path.write_bytes(bytes(edited))
    _restart(grid)
    refused = _ask(grid, KEYHOLDER, records.TICKET, ticket)
    assert refused.error.reason.startswith(f"StateError: the key holder state {path} is not")


@pytest.mark.parametrize("missing", ["secret-key-file", "identity-file"])
def test_a_state_file_needs_keys_that_outlive_the_node(tmp_path, missing):
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    del node[missing]
    grid = _grid(parts, {**node, "identity-file": str(tmp_path / "keyholder.id")})
    if missing == "identity-file":
        grid.contexts[KEYHOLDER].node_config.pop("identity-file")
    with pytest.raises(HEFedError, match=f"needs {missing}"):
        run_federation(FlowerExecutor(grid, nodes=4), setup, parts, lambda f: f.train(1))


def test_a_node_never_starts_a_second_federation_over_its_state_file(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    assert run_federation(FlowerExecutor(_grid(parts, node), nodes=4), setup, parts, bool)
    with pytest.raises(HEFedError, match="holds a federation this node ran"):
        run_federation(FlowerExecutor(_grid(parts, node), nodes=4), setup, parts, bool)


def test_a_second_run_against_the_same_key_holder_is_refused_at_keygen(tmp_path):
    """The red team's break on share holders, against the single key holder: the
    ServerApp runs a second ``flwr run`` (fresh node state, the same node config)
    from the same start with client 2 left out, to difference client 2's update out
    of two releases of round 0. The node's state-file remembers the first run."""
    parts = _partitions()
    setup = _setup(parts)
    keys, identity, node = _provisioned(tmp_path, setup)
    grid = _grid(parts, node)
    kept = {}

    def released(federation):
        kept["key"] = federation.keyholder.aggregation_key_bytes()
        kept["before"] = federation.aggregator.export_state()  # the same start, for run 2
        federation.standardize()  # rounds 0 and 1, decrypted and released
        return True

    assert run_federation(FlowerExecutor(grid, nodes=4), setup, parts, released)
    first = [m for m in grid.sent if m.metadata.message_type == records.ROUND][0]
    ticket = records.config_of(first)["round-start"]
    updates = {  # round 0's update of each client but the victim (node 12)
        r.metadata.src_node_id: records.config_of(r)["update"]
        for r in reversed(grid.replies)
        if r.metadata.message_type == records.ROUND and r.metadata.src_node_id != 12
    }
    # Run 2: the same node configs, fresh node states, client 2 left out.
    fewer = parts[:-1]
    configs = {n: dict(c.node_config) for n, c in grid.contexts.items() if n != 12}
    second = LoopbackGrid(
        make_client_app(lambda c: fewer[int(c.node_config["partition-id"])]), configs
    )
    with pytest.raises(StateError, match="holds a federation this node ran"):
        run_federation(FlowerExecutor(second, nodes=3), _setup(fewer), fewer, released)
    sent = [m.metadata.message_type for m in second.sent]
    assert sent.count(records.KEYGEN) == 1
    assert records.TICKET not in sent and records.DECRYPT not in sent  # no ticket, no release
    assert "hefed.keyholder" not in second.contexts[KEYHOLDER].state
    # Bypassing keygen, the ServerApp sums round 0 again without client 2: the node
    # rebuilds itself from its state-file and refuses to decrypt a released round.
    other = Aggregator.restore(kept["key"], kept["before"], allow_insecure=True)
    other.open_round(ticket)
    for update in updates.values():
        other.add(update)
    forged = {"encrypted-aggregate": other.finish_round()}
    refused = _ask(second, KEYHOLDER, records.DECRYPT, forged)
    assert refused.error.reason.startswith("PolicyViolation: round 0 (")
    assert "is not the open round" in refused.error.reason
    with KeyHolderStore.open(tmp_path / "keyholder.state", keys, identity) as store:
        assert [r.round for r in store.releases] == [0, 1]  # each released once, by run 1


def test_a_deployed_key_holder_node_without_a_state_file_is_refused_at_keygen(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    del node["state-file"]
    grid = _grid(parts, node)
    with pytest.raises(ConfigurationError, match='start it with --node-config "state-file='):
        run_federation(FlowerExecutor(grid, nodes=4), setup, parts, lambda f: f.train(1))
    assert "hefed.keyholder" not in grid.contexts[KEYHOLDER].state
    sent = [m.metadata.message_type for m in grid.sent]
    assert records.TICKET not in sent and records.DECRYPT not in sent
    assert not (tmp_path / "keyholder.state").exists()


def test_a_restarted_node_keeps_its_trusted_clients_and_a_refused_registration_changes_nothing(
    tmp_path,
):
    """A red team (stop 42), as the ServerApp: a node whose policy trusts on first use
    and whose node config names trusted clients registered nobody, was restarted and
    reopened, and rebuilt its policy from the policy file alone: a ghost identity then
    passed the registration check and stayed in the node's memory (the state file,
    made once, then stopped the node until it restarted again)."""
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)  # trust on first use, no list in the policy
    listed = tmp_path / "trusted"
    listed.write_text("".join(f"client-{k} {Identity().public_bytes.hex()}\n" for k in range(3)))
    node["trusted-clients"] = str(listed)
    grid = _grid(parts, node)
    request = records.keyholder_request(setup)
    assert not _ask(grid, KEYHOLDER, records.KEYGEN, request).has_error()
    empty = {"client-ids": [], "verify-keys": []}
    assert not _ask(grid, KEYHOLDER, records.REGISTER, empty).has_error()  # the file, 0 clients
    _restart(grid)
    assert not _ask(grid, KEYHOLDER, records.REOPEN, request).has_error()
    ghost = {"client-ids": ["ghost"], "verify-keys": [Identity().public_bytes]}
    refused = _ask(grid, KEYHOLDER, records.REGISTER, ghost)
    assert refused.error.reason.startswith("PolicyViolation"), refused.error.reason
    # A registration the state file refuses leaves the node's memory as it was.
    listed_again = {"client-ids": ["client-0"], "verify-keys": [Identity().public_bytes]}
    grid.contexts[KEYHOLDER].node_config["trusted-clients"] = ""  # the check passes now
    _restart(grid)
    assert not _ask(grid, KEYHOLDER, records.REOPEN, request).has_error()
    refused = _ask(grid, KEYHOLDER, records.REGISTER, listed_again)
    assert refused.error.reason.startswith("StateError"), refused.error.reason
    ticket = _ask(grid, KEYHOLDER, records.TICKET, {"task": "magnitude"})
    assert "StateError" not in (ticket.error.reason if ticket.has_error() else "")
