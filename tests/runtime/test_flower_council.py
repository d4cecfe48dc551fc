"""Threshold share holders as Flower nodes, on real ClientApp handlers and Flower messages.

The grid delivers messages in process (tests/runtime/flower_fakes.py), each to a
node with its own node state, so every step rebuilds the holder's Decryptor from
its saved state, as a SuperNode does. test_flower_deployment.py runs the same app
on real SuperLink and SuperNode processes and kills a share-holder node.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from flwr.app import Message
from he_fed.cli import main

from he_fed.crypto import Paillier
from he_fed.crypto.threshold import deal
from he_fed.exceptions import ConfigurationError, MalformedMessage, PolicyViolation, ProtocolError
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import Aggregate, Identity, decode, encode
from he_fed.protocol.council import council_pin
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime import run_federation
from he_fed.runtime.flower import FlowerExecutor, KeyHolderPolicy, make_client_app, records
from he_fed.runtime.flower.sharenode import exchange_payload
from tests.crypto.threshold_fixtures import TEST_ONLY_PRIMES_1024
from tests.runtime.flower_fakes import LoopbackGrid

SCHEME = Paillier(key_bits=1024, allow_insecure=True, max_clients=8, max_weight=64)
HOLDER = 50  # node id of share holder i is HOLDER + i


def _partitions() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(5)
    parts = []
    for n in (30, 45, 25):
        X = rng.normal(size=(n, 3))
        parts.append((X, (X @ np.arange(1, 4) + rng.normal(size=n) > 0).astype(int)))
    return parts


def _setup(parts, scheme, threshold=None) -> FederationSetup:
    return FederationSetup.from_partitions(
        parts,
        scheme=scheme,
        model=LogisticRegressionGD(learning_rate=0.5, random_state=0),
        local_epochs=2,
        classes=np.array([0, 1]),
        threshold=threshold,
    )


def _app(parts):
    return make_client_app(lambda context: parts[int(context.node_config["partition-id"])])


def _simulated_grid(parts, holders=5, **kwargs) -> LoopbackGrid:
    """Nodes as Flower's simulation engine makes them: clients, then the share holders."""
    total = len(parts) + holders
    nodes = {10 + p: {"partition-id": p, "num-partitions": total} for p in range(total)}
    return LoopbackGrid(_app(parts), nodes, **kwargs)


def _model_after_three_rounds(federation):
    federation.train(3)
    return federation.aggregator.raw_model()


def _train(federation):
    outcomes = federation.train(3)
    coef, intercept = federation.aggregator.raw_model()
    return coef, intercept, outcomes, federation.keyholder


def test_simulated_share_holder_nodes_train_the_single_key_holders_model():
    parts = _partitions()
    coef, intercept = run_federation(
        "inprocess", _setup(parts, SCHEME), parts, _model_after_three_rounds
    )
    grid = _simulated_grid(parts)
    shared = _setup(parts, SCHEME, (3, 5))
    got, got_intercept, outcomes, council = run_federation(
        FlowerExecutor(grid, nodes=8), shared, parts, _train
    )
    np.testing.assert_array_equal(got, coef)
    assert got_intercept == intercept
    assert [o.shares for o in outcomes if o.shares is not None] == [((1, 2, 3), ())] * 3
    assert council.absent == set() and council.quorum == 4
    # Each holder's step crossed as a Flower message to its own node.
    steps = [m.metadata.message_type for m in grid.sent if "share" in m.metadata.message_type]
    for step in ("setup", "join", "register", "ticket", "endorse", "partial", "release"):
        assert f"train.hefed_share_{step}" in steps


def test_a_silent_share_holder_node_is_absent_and_the_rounds_complete():
    parts = _partitions()
    reference = run_federation("inprocess", _setup(parts, SCHEME), parts, _model_after_three_rounds)
    grid = _simulated_grid(parts)
    executor = FlowerExecutor(grid, nodes=8, reply_timeout=0.5)  # a silent node: absent at once
    setup = _setup(parts, SCHEME, (3, 5))

    def kill_holder_two_after_round_one(federation):
        first = federation.train(1)
        grid.silent.add(10 + len(parts) + 1)  # share holder 2's node stops answering
        return first + federation.train(2), federation.keyholder, federation.aggregator

    outcomes, council, aggregator = run_federation(
        executor, setup, parts, kill_holder_two_after_round_one
    )
    assert council.absent == {2}
    assert [o.skipped for o in outcomes] == [None, None, None]
    assert [o.shares for o in outcomes] == [((1, 2, 3), ()), ((1, 3, 4), ()), ((1, 3, 4), ())]
    # Exact Paillier: the same model whichever three shares combined it.
    coef, intercept = aggregator.raw_model()
    np.testing.assert_array_equal(coef, reference[0])
    assert intercept == reference[1]


def test_two_silent_holders_of_five_leave_no_quorum_and_the_round_says_so():
    parts = _partitions()
    grid = _simulated_grid(parts)

    def kill_two(federation):
        grid.silent.update({10 + len(parts) + 3, 10 + len(parts) + 4})
        return federation.train(1)

    with pytest.raises(ProtocolError, match="a quorum of 4 of 5; at most 1 absent"):
        run_federation(
            FlowerExecutor(grid, nodes=8, reply_timeout=0.5),
            _setup(parts, SCHEME, (3, 5)),
            parts,
            kill_two,
        )


class _LoneReleaser(LoopbackGrid):
    """At the last round's release, holder 1 answers with an aggregate of its own
    choosing and, with ``others_silent``, the other holders' releases are lost."""

    def __init__(self, grid, holder_nodes, *, at, others_silent):
        self.__dict__.update(grid.__dict__)
        self.holder_nodes, self.at, self.others_silent = holder_nodes, at, others_silent
        self.releases = 0
        self.forged = None

    def push_messages(self, messages):
        messages = list(messages)
        ids = super().push_messages(messages)
        releases = [m for m in messages if m.metadata.message_type.endswith("share_release")]
        if releases:
            self.releases += 1
        if not releases or self.releases != self.at:
            return ids
        for message in releases:
            node = message.metadata.dst_node_id
            if node == self.holder_nodes[0]:
                answer = records.config_of(self._waiting[message.metadata.message_id])
                honest = decode(answer["aggregate"], Aggregate)
                self.forged = honest.mean + 100.0
                forged = Aggregate(honest.round, honest.task, self.forged, honest.contributors)
                answer["aggregate"] = encode(forged)
            elif self.others_silent:
                del self._waiting[message.metadata.message_id]
        return ids


@pytest.mark.parametrize("others_silent", [True, False], ids=["alone", "disagreeing"])
def test_one_share_holder_cannot_set_the_model_by_its_release(others_silent):
    parts = _partitions()
    setup = _setup(parts, SCHEME, (3, 5))
    fewer = run_federation(
        "inprocess", _setup(parts, SCHEME), parts, lambda f: (f.train(2), f.aggregator.raw_model())
    )[1]
    # How many releases the run has: the last one is forged.
    holder_nodes = [10 + len(parts) + i for i in range(5)]
    # Two statistics rounds and three training rounds: the fifth release is the last
    # round's (the outcomes below check that it was).
    grid = _LoneReleaser(_simulated_grid(parts), holder_nodes, at=5, others_silent=others_silent)
    coef, intercept, outcomes, _ = run_federation(
        FlowerExecutor(grid, nodes=8, reply_timeout=0.5), setup, parts, _train
    )
    assert grid.forged is not None
    assert [o.skipped is not None for o in outcomes] == [False, False, True]
    expected = "1 share holder(s) answered release, 3 are needed" if others_silent else "different"
    assert expected in outcomes[-1].skipped
    np.testing.assert_array_equal(coef, fewer[0])
    assert intercept == fewer[1]


class _GarblingHolder(LoopbackGrid):
    """Share holder 1's first answer to one step carries other values."""

    def __init__(self, grid, node, step, values):
        self.__dict__.update(grid.__dict__)
        self.node, self.step, self.values = node, step, values
        self.garbled = False

    def push_messages(self, messages):
        messages = list(messages)
        ids = super().push_messages(messages)
        for message, message_id in zip(messages, ids, strict=True):
            kind = message.metadata.message_type
            if self.garbled or message.metadata.dst_node_id != self.node:
                continue
            if kind == f"train.hefed_share_{self.step}" and message_id in self._waiting:
                records.config_of(self._waiting[message_id]).update(self.values)
                self.garbled = True
        return ids


@pytest.mark.parametrize(
    ("step", "values"),
    [
        ("setup", {"index": "x"}),
        ("register", {"min-clients": "2"}),
        ("ticket", {"ticket": 2**40}),  # bytes(2**40) would be 1 TiB
        ("endorse", {"endorsement": "abc"}),
        ("partial", {"recipients": [1]}),  # one recipient, several sealed partials
        ("release", {"used": "x"}),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v),
)
def test_a_share_holders_answer_of_the_wrong_types_is_a_malformed_message(step, values):
    """Red team 39: these raised MemoryError, TypeError, KeyError or ValueError. Each
    is now a MalformedMessage: at setup and at a ticket it ends the run; later it
    skips the round, which in the statistics rounds ends the run too."""
    parts = _partitions()
    holder_one = 10 + len(parts)
    grid = _GarblingHolder(_simulated_grid(parts), holder_one, step, values)
    executor = FlowerExecutor(grid, nodes=8, reply_timeout=0.5)
    setup = _setup(parts, SCHEME, (3, 5))
    expected = MalformedMessage if step in ("setup", "register", "ticket") else PolicyViolation
    with pytest.raises(expected, match="the message's '[a-z-]+' must be|need one recipient each"):
        run_federation(executor, setup, parts, _train)
    assert grid.garbled


def deployed_grid(parts, setup, tmp_path, *, dual=False, **kwargs):
    """Share holders started with their own share file, policy, identity and council pin.

    With ``dual``, client ``p`` also holds share ``p + 1`` (a hospital that trains
    and holds a share); the other holders are nodes of their own.
    """
    keys = deal(SCHEME, threshold=3, holders=5, primes=TEST_ONLY_PRIMES_1024)
    identities = {i: Identity() for i in range(1, 6)}
    pin = council_pin(3, [identities[i].public_bytes for i in range(1, 6)])
    (tmp_path / "council.pin").write_text(pin.hex())
    KeyHolderPolicy(setup.scheme, setup.run_plan, setup.min_clients, trust_on_first_use=True).write(
        tmp_path / "holder.json"
    )
    holders = {}
    for share in keys.shares:
        i = share.index
        (tmp_path / f"share-{i}.key").write_bytes(share.to_bytes())
        (tmp_path / f"holder{i}.id").write_text(identities[i].private_bytes().hex())
        holders[i] = {
            "share-file": str(tmp_path / f"share-{i}.key"),
            "policy-file": str(tmp_path / "holder.json"),
            "identity-file": str(tmp_path / f"holder{i}.id"),
            "council-file": str(tmp_path / "council.pin"),
            "federation-file": str(tmp_path / f"holder-{i}.federation"),
        }
    nodes = {
        10 + p: {
            "partition-id": p,
            "keyholder-identity": pin.hex(),
            "round-file": str(tmp_path / f"client-{p}.rounds"),
        }
        for p in range(len(parts))
    }
    for i, config in holders.items():
        if dual and i <= len(parts):
            nodes[10 + i - 1].update(config)
        else:
            nodes[HOLDER + i] = config
    return LoopbackGrid(_app(parts), nodes, **kwargs), keys


@pytest.mark.parametrize("dual", [False, True], ids=["own-nodes", "clients-hold-shares"])
def test_deployed_share_holders_use_their_own_files_and_train_the_same_model(dual, tmp_path):
    parts = _partitions()
    coef, intercept = run_federation(
        "inprocess", _setup(parts, SCHEME), parts, _model_after_three_rounds
    )
    setup = _setup(parts, SCHEME, (3, 5))
    grid, _ = deployed_grid(parts, setup, tmp_path, dual=dual)
    got, got_intercept, outcomes, _ = run_federation(
        FlowerExecutor(grid, nodes=len(grid.contexts)), setup, parts, _train
    )
    np.testing.assert_array_equal(got, coef)
    assert got_intercept == intercept
    # No share travelled: the ServerApp sent none of the share files' bytes.
    shares = [(tmp_path / f"share-{i}.key").read_bytes() for i in range(1, 6)]
    for message in grid.sent:
        values = (
            message.content[records.CONFIG].values() if records.CONFIG in message.content else []
        )
        assert not any(isinstance(v, bytes) and v in shares for v in values)
        assert "share" not in (message.content.get(records.CONFIG, {}))


def test_a_second_run_against_the_same_holders_is_refused_at_setup(tmp_path):
    """The fourth red team's break: a new ``flwr run`` met holders that had forgotten
    the last one, answered round 0 again from the same start without client 3, and
    the two releases differenced client 3's exact update. Now each holder claims its
    federation-file at its first setup and refuses another federation."""
    parts = _partitions()
    setup = _setup(parts, SCHEME, (3, 5))
    grid, _ = deployed_grid(parts, setup, tmp_path)
    run_federation(FlowerExecutor(grid, nodes=len(grid.contexts)), setup, parts, _train)
    for i in range(1, 6):
        marker = (tmp_path / f"holder-{i}.federation").read_text()
        assert marker.startswith("he-fed share-holder federation v1\n")
        assert f"share {i} of key " in marker
    # Run 2: the same nodes' files, fresh node state (a new run), client 3 left out.
    nodes = {
        node: dict(context.node_config)
        for node, context in grid.contexts.items()
        if context.node_config.get("partition-id") != len(parts) - 1
    }
    fewer = parts[:-1]
    second = LoopbackGrid(_app(parts), nodes)
    with pytest.raises(PolicyViolation, match="already served a federation"):
        run_federation(
            FlowerExecutor(second, nodes=len(nodes)), _setup(fewer, SCHEME, (3, 5)), fewer, _train
        )
    # No holder of the second run got as far as a ticket.
    assert not any("hefed_share_ticket" in m.metadata.message_type for m in second.sent)


def test_a_deployed_holder_without_a_federation_file_is_refused(tmp_path):
    parts = _partitions()
    setup = _setup(parts, SCHEME, (3, 5))
    grid, _ = deployed_grid(parts, setup, tmp_path)
    for context in grid.contexts.values():
        context.node_config.pop("federation-file", None)
    with pytest.raises(ConfigurationError, match="federation-file"):
        run_federation(FlowerExecutor(grid, nodes=len(grid.contexts)), setup, parts, _train)


def _reply(grid, node, step, config) -> Message:
    message = Message(records.content(config), node, f"train.hefed_share_{step}")
    grid.push_messages([message])
    return grid.replies[-1]


def _set_up(grid, setup):
    request = {**records.keyholder_request(setup), "min-clients": 0}
    return {i: records.config_of(_reply(grid, HOLDER + i, "setup", request)) for i in range(1, 6)}


def test_a_holder_refuses_an_exchange_key_its_pinned_holder_did_not_sign(tmp_path):
    """The aggregator swaps holder 2's exchange key for its own, to read what is sealed to it."""
    parts = _partitions()
    setup = _setup(parts, SCHEME, (3, 5))
    grid, _ = deployed_grid(parts, setup, tmp_path)
    answers = _set_up(grid, setup)
    pin = bytes.fromhex((tmp_path / "council.pin").read_text())
    exchanges = [bytes(answers[i]["exchange"]) for i in range(1, 6)]
    signatures = [bytes(answers[i]["exchange-signature"]) for i in range(1, 6)]
    mine = Identity()
    exchanges[1] = bytes(32 * [7])
    signatures[1] = mine.sign(exchange_payload(2, exchanges[1]))
    join = {"council": pin, "exchanges": exchanges, "exchange-signatures": signatures}
    reply = _reply(grid, HOLDER + 1, "join", join)
    assert reply.has_error()
    with pytest.raises(PolicyViolation, match="holder 2's exchange key is not signed"):
        records.raise_remote(reply.error.reason, "holder 1")
    # Nor may it name a council of its own: the node checks its pinned one.
    other = council_pin(3, [Identity().public_bytes for _ in range(5)])
    reply = _reply(grid, HOLDER + 3, "join", {**join, "council": other})
    with pytest.raises(PolicyViolation, match="council other than this node's pin"):
        records.raise_remote(reply.error.reason, "holder 3")


def test_a_deployed_holder_takes_no_share_policy_or_council_from_the_serverapp(tmp_path):
    parts = _partitions()
    setup = _setup(parts, SCHEME, (3, 5))
    keys = deal(SCHEME, threshold=3, holders=5, primes=TEST_ONLY_PRIMES_1024)
    KeyHolderPolicy(setup.scheme, setup.run_plan, None, trust_on_first_use=True).write(
        tmp_path / "p.json"
    )
    grid = LoopbackGrid(
        _app(parts),
        {
            HOLDER + 1: {"role": "shareholder"},
            HOLDER + 2: {"role": "shareholder", "policy-file": str(tmp_path / "p.json")},
        },
    )
    request = {
        **records.keyholder_request(setup),
        "min-clients": 0,
        "share": keys.shares[0].to_bytes(),
    }
    for node, text in ((HOLDER + 1, "policy-file"), (HOLDER + 2, "share-file")):
        reply = _reply(grid, node, "setup", request)
        with pytest.raises(ConfigurationError, match=text):
            records.raise_remote(reply.error.reason, "holder")
    # The single key holder's keygen is refused on a node that holds a share.
    message = Message(records.content({}), HOLDER + 2, records.KEYGEN)
    grid.push_messages([message])
    with pytest.raises(PolicyViolation, match="holds a threshold share"):
        records.raise_remote(grid.replies[-1].error.reason, "holder")


@pytest.mark.slow
def test_he_fed_run_threshold_on_the_flower_simulation_trains_the_single_key_holders_model(
    tmp_path,
):
    """``he-fed run --threshold 3/5 --executor flower``: Ray, eight virtual nodes.

    Unstandardised: the two statistics rounds doubled its 393 s, and the council's
    statistics rounds run in test_flower_council_deployment.py.
    """
    args = ["run", "--rounds", "2", "--key-bits", "1024", "--allow-insecure", "--quiet"]
    args += ["--no-standardize"]
    results = {}
    for name, extra in (("single", []), ("flower", ["--threshold", "3/5", "--executor", "flower"])):
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(main, [*args, "--json", str(out), *extra])
        assert result.exit_code == 0, result.output
        results[name] = json.loads(out.read_text())
    flower, single = results["flower"], results["single"]
    assert flower["final"]["coef"] == single["final"]["coef"]
    assert flower["final"]["intercept"] == single["final"]["intercept"]
    assert flower["setup"]["executor"] == "flower"
    assert flower["setup"]["council"]["absent"] == []
    assert [r["shares"] for r in flower["rounds"]] == [{"used": [1, 2, 3], "refused": []}] * 2
    assert "shares" not in single["rounds"][0]


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"task": "bogus"}, "MalformedMessage: no task is called 'bogus'"),
        ({}, "MalformedMessage: the message's 'task' must be text"),
    ],
    ids=["bogus", "missing"],
)
def test_a_share_holder_node_refuses_a_ticket_request_of_the_wrong_types(config, reason):
    """A task the ServerApp named wrongly raised ValueError or KeyError in the node."""
    parts = _partitions()
    grid = _simulated_grid(parts)
    run_federation(
        FlowerExecutor(grid, nodes=8), _setup(parts, SCHEME, (3, 5)), parts, lambda f: f.train(1)
    )
    holder = 10 + len(parts)
    executor = FlowerExecutor(grid, nodes=len(grid.contexts))
    answer = executor.exchange("train.hefed_share_ticket", {holder: config}, group="test")[holder]
    assert answer.error.reason.startswith(reason)


@pytest.mark.parametrize("deployed", [True, False], ids=["deployed", "simulated"])
def test_a_share_holder_node_with_trusted_clients_refuses_other_identities(tmp_path, deployed):
    """Red team 56: share holders ignored ``trusted-clients`` in their node config, so
    one whose policy trusts on first use took the identities the ServerApp registered."""
    parts = _partitions()
    setup = _setup(parts, SCHEME, (3, 5))
    grid = deployed_grid(parts, setup, tmp_path)[0] if deployed else _simulated_grid(parts)
    trusted = tmp_path / "clients.txt"
    trusted.write_text("client-0 " + "00" * 32 + "\n")  # not the identities the nodes make
    holder = next(
        n
        for n, c in grid.contexts.items()
        if "partition-id" not in c.node_config or c.node_config["partition-id"] >= len(parts)
    )
    grid.contexts[holder].node_config["trusted-clients"] = str(trusted)
    with pytest.raises(PolicyViolation, match="not registered with the identity"):
        run_federation(FlowerExecutor(grid, nodes=len(grid.contexts)), setup, parts, _train)
