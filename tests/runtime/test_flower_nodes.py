"""The Flower mapping of the roles, on real ClientApp handlers and Flower messages.

The grid here delivers messages in process (tests/runtime/flower_fakes.py);
test_flower_simulation.py and test_flower_deployment.py run the same app on
Flower's simulation engine and on real SuperLink and SuperNode processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tracemalloc

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from he_fed.crypto import PackedPaillier, Paillier, load_public, load_secret, wire
from he_fed.exceptions import ConfigurationError, ExecutorError, MalformedMessage, PolicyViolation
from he_fed.models import LinearRegressionGD, LogisticRegressionGD
from he_fed.protocol import Identity, KeyHolder, Task
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime import run_federation
from he_fed.runtime.flower import (
    FlowerExecutor,
    KeyHolderPolicy,
    make_client_app,
    records,
    roundfile,
)
from he_fed.runtime.flower.policy import admitted_registration
from tests.runtime.flower_fakes import LoopbackGrid

KEYHOLDER = 99


def _partitions(widths=(3, 3, 3)) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(5)
    parts = []
    for n, d in zip((30, 45, 25), widths, strict=True):
        X = rng.normal(size=(n, d))
        parts.append((X, (X @ np.arange(1, d + 1) + rng.normal(size=n) > 0).astype(int)))
    return parts


def _setup(parts, scheme=None) -> FederationSetup:
    return FederationSetup.from_partitions(
        parts,
        scheme=scheme or Paillier(key_bits=1024, allow_insecure=True, max_clients=8, max_weight=64),
        model=LogisticRegressionGD(learning_rate=0.5, random_state=0),
        local_epochs=2,
        classes=np.array([0, 1]),
    )


def _unstandardised(parts) -> FederationSetup:
    return FederationSetup.from_partitions(
        parts,
        scheme=_setup(parts).scheme,
        model=LogisticRegressionGD(),
        standardize=False,
        classes=np.array([0, 1]),
    )


def _grid(parts, **kwargs) -> LoopbackGrid:
    """Nodes as Flower's simulation engine makes them (``num-partitions`` set)."""
    app = make_client_app(lambda context: parts[int(context.node_config["partition-id"])])
    total = len(parts) + 1
    nodes = {10 + k: {"partition-id": k, "num-partitions": total} for k in range(len(parts))}
    nodes[KEYHOLDER] = {"role": "keyholder", "num-partitions": total}
    return LoopbackGrid(app, nodes, **kwargs)


def deployed_grid(parts, setup, tmp_path, *, trusted=False, **kwargs) -> LoopbackGrid:
    """Nodes as a deployment starts them: a key holder with its own policy file,
    identity, secret key and state file, clients that pinned that identity. With
    ``trusted``, each client has an identity file and the policy names them all
    (``trusted-clients``) instead of trusting on first use."""
    identity = Identity()
    (tmp_path / "keyholder.id").write_text(identity.private_bytes().hex())
    (tmp_path / "secret.key").write_bytes(setup.scheme.keygen().secret.to_bytes())
    pin = identity.public_bytes.hex()
    nodes: dict[int, dict] = {
        10 + k: {
            "partition-id": k,
            "keyholder-identity": pin,
            "round-file": str(tmp_path / f"client-{k}.rounds"),
        }
        for k in range(len(parts))
    }
    clients = {f"client-{k}": Identity() for k in range(len(parts))} if trusted else {}
    for k, (name, client) in enumerate(clients.items()):
        (tmp_path / f"{name}.id").write_text(client.private_bytes().hex())
        nodes[10 + k]["identity-file"] = str(tmp_path / f"{name}.id")
    KeyHolderPolicy(
        setup.scheme,
        setup.run_plan,
        setup.min_clients,
        {name: c.public_bytes for name, c in clients.items()} if trusted else None,
        trust_on_first_use=not trusted,
    ).write(tmp_path / "keyholder.json")
    app = make_client_app(lambda context: parts[int(context.node_config["partition-id"])])
    nodes[KEYHOLDER] = {
        "role": "keyholder",
        "policy-file": str(tmp_path / "keyholder.json"),
        "identity-file": str(tmp_path / "keyholder.id"),
        "secret-key-file": str(tmp_path / "secret.key"),
        "state-file": str(tmp_path / "keyholder.state"),
    }
    return LoopbackGrid(app, nodes, **kwargs)


def _train(federation):
    federation.train(3)
    return federation.aggregator.raw_model()


@pytest.mark.parametrize(
    "scheme",
    [
        Paillier(key_bits=1024, allow_insecure=True, max_clients=8, max_weight=64),
        PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=8, max_weight=64),
    ],
    ids=["paillier", "paillier-packed"],
)
def test_the_flower_mapping_gives_the_inprocess_coefficients_bit_for_bit(scheme, tmp_path):
    parts = _partitions()
    setup = _setup(parts, scheme)
    expected_coef, expected_intercept = run_federation("inprocess", setup, parts, _train)
    for grid in (_grid(parts), deployed_grid(parts, setup, tmp_path)):
        coef, intercept = run_federation(FlowerExecutor(grid, nodes=4), setup, parts, _train)
        np.testing.assert_array_equal(coef, expected_coef)
        assert intercept == expected_intercept


def _bytes_values(message: Message) -> list[bytes]:
    if message.has_error():
        return []
    out = []
    for record in message.content.values():
        for value in record.values():
            items = value if isinstance(value, list) else [value]
            out += [v for v in items if isinstance(v, bytes)]
    return out


def test_the_secret_key_stays_in_the_key_holder_node_state():
    parts = _partitions()
    grid = _grid(parts)
    run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, _train)
    kinds = set()
    for message in grid.sent + grid.replies:
        for blob in _bytes_values(message):
            with contextlib.suppress(MalformedMessage):
                kinds.add(wire.open_envelope(blob).kind)
    assert wire.Kind.PUBLIC_KEY in kinds  # (for Paillier the aggregation key is the public key)
    assert wire.Kind.SECRET_KEY not in kinds
    secret = grid.contexts[KEYHOLDER].state["hefed.keyholder"]["secret-key"]
    assert wire.open_envelope(secret).kind is wire.Kind.SECRET_KEY
    for node in (10, 11, 12):
        assert "hefed.keyholder" not in grid.contexts[node].state
        assert "hefed.client" in grid.contexts[node].state


def _ask(grid: LoopbackGrid, node: int, message_type: str, config: dict) -> Message:
    executor = FlowerExecutor(grid, nodes=len(grid.contexts))
    return executor.exchange(message_type, {node: config}, group="test")[node]


def test_a_node_plays_one_role_only():
    parts = _partitions()
    grid = _grid(parts)
    run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, _train)
    keygen = {"scheme": "plain", "params": "", "allow-insecure": False, "min-clients": 2}
    refused = _ask(grid, 10, records.KEYGEN, keygen)
    assert refused.has_error()
    assert refused.error.reason.startswith("PolicyViolation: this node is a client")
    setup = {"client-id": "x", "public-key": b""}
    refused = _ask(grid, KEYHOLDER, records.SETUP, setup)
    assert refused.error.reason.startswith("PolicyViolation: this node is the key holder")
    again = _ask(grid, KEYHOLDER, records.KEYGEN, keygen)
    assert again.error.reason.startswith("ProtocolError: this node already generated")


@pytest.mark.parametrize("sent", [2**27, "aggregate", None], ids=["int", "str", "missing"])
def test_the_key_holder_node_takes_only_bytes_as_an_aggregate(sent):
    """Red team 34: ``bytes(n)`` of an integer is n zero bytes, so a ServerApp that
    sent 2**35 as the aggregate had the key holder's node fill 32 GiB."""
    parts = _partitions()
    grid = _grid(parts)
    run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, lambda f: f.train(1))
    config = {} if sent is None else {"encrypted-aggregate": sent}
    tracemalloc.start()
    try:
        refused = _ask(grid, KEYHOLDER, records.DECRYPT, config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.error.reason.startswith("MalformedMessage: the message's 'encrypted-aggregate'")
    assert peak < 2**24  # 128 MiB of zeros before


def test_blobs_take_bytes_and_lists_of_bytes_only():
    config = ConfigRecord({"one": b"x", "n": 5, "many": [b"a", b"b"], "mixed": [b"a"], "ints": [1]})
    assert records.blob(config, "one") == b"x" and records.blobs(config, "many") == [b"a", b"b"]
    assert records.blobs(config, "absent") == []
    for key in ("n", "many", "absent"):
        with pytest.raises(MalformedMessage, match=f"'{key}' must be bytes"):
            records.blob(config, key)
    for key in ("one", "ints", "n"):
        with pytest.raises(MalformedMessage, match=f"'{key}' must be a list of bytes"):
            records.blobs(config, key)


def test_a_node_started_as_a_client_refuses_to_hold_keys():
    grid = _grid(_partitions())
    grid.contexts[10].node_config["role"] = "client"
    keygen = {"scheme": "plain", "params": "", "allow-insecure": False, "min-clients": 2}
    assert _ask(grid, 10, records.KEYGEN, keygen).error.reason.startswith("PolicyViolation")
    assert "hefed.keyholder" not in grid.contexts[10].state


def test_the_key_holder_node_refuses_a_replayed_round_like_a_local_one():
    parts = _partitions()
    grid = _grid(parts)

    def replay(federation):
        federation.run_round()
        first = next(m for m in grid.sent if m.metadata.message_type == records.DECRYPT)
        aggregate = records.config_of(first)["encrypted-aggregate"]
        with pytest.raises(PolicyViolation, match="not the open round"):
            federation.keyholder.decrypt_aggregate(aggregate)
        return True

    assert run_federation(FlowerExecutor(grid, nodes=4), _unstandardised(parts), parts, replay)


def test_a_silent_client_is_left_out_and_its_round_refused_undecrypted():
    """Without a privacy budget every release comes from the first release's cohort
    (he_fed.protocol.normalisers): a node that stops answering costs the round, named,
    and the next round with everyone is released again."""
    parts = _partitions()
    grid = _grid(parts)
    executor = FlowerExecutor(grid, nodes=4, reply_timeout=0.2)
    federation = executor.connect(dataclasses.replace(_setup(parts), min_clients=2))
    federation.standardize()
    grid.silent.add(11)
    outcome = federation.run_round()
    assert outcome.contributors == ("client-0", "client-2")
    assert "no reply" in outcome.failures["client-1"]
    assert "must come from the federation's cohort" in outcome.skipped
    grid.silent.discard(11)
    assert federation.run_round().skipped is None


class _GarblingGrid(LoopbackGrid):
    """Node 11 answers its round starts with a report that is not one."""

    garble: dict | None = None

    def push_messages(self, messages):
        messages = list(messages)
        ids = super().push_messages(messages)
        for message, message_id in zip(messages, ids, strict=True):
            meant = message.metadata.dst_node_id == 11 and self.garble is not None
            if meant and message.metadata.message_type == records.ROUND:
                self._waiting[message_id] = Message(records.content(self.garble), reply_to=message)
        return ids


@pytest.mark.parametrize("garble", [{"update": 5}, {}], ids=["update-not-bytes", "no-report"])
def test_a_client_that_answers_garbage_is_left_out_and_the_run_goes_on(garble):
    """Red team 35: a malformed round reply raised MalformedMessage out of collect,
    and one client's garbage aborted the whole run."""
    parts = _partitions()
    honest = _grid(parts)
    grid = _GarblingGrid(honest.app, {n: c.node_config for n, c in honest.contexts.items()})
    federation = FlowerExecutor(grid, nodes=4).connect(_setup(parts))
    federation.standardize()
    grid.garble = garble
    outcome = federation.run_round()
    assert outcome.contributors == ("client-0", "client-2")
    assert outcome.failures["client-1"].startswith("MalformedMessage: a client report")
    grid.garble = None
    assert federation.run_round().contributors == ("client-0", "client-1", "client-2")


def test_a_registration_takes_text_ids_and_bytes_keys_only():
    """Red team 35: the key holder's and the share holders' registration
    (admitted_registration) turned integer keys into that many zero bytes before
    checking the policy."""
    setup = _setup(_partitions())
    policy = KeyHolderPolicy(setup.scheme, setup.run_plan, None, trust_on_first_use=True)
    tracemalloc.start()
    try:
        with pytest.raises(MalformedMessage, match="'verify-keys' must be a list of bytes"):
            admitted_registration(
                ConfigRecord({"client-ids": ["a"], "verify-keys": [2**27]}), policy, "key holder"
            )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**24  # 128 MiB of zeros before
    for ids in (5, [5], None):
        config = ConfigRecord({} if ids is None else {"client-ids": ids})
        with pytest.raises(MalformedMessage, match="'client-ids' must be a list of text"):
            admitted_registration(config, policy, "key holder")
    key = Identity().public_bytes
    config = ConfigRecord({"client-ids": ["a"], "verify-keys": [key]})
    assert admitted_registration(config, policy, "key holder") == [("a", key)]


@pytest.mark.parametrize(
    "nodes, message",
    [
        (
            {
                10: {"partition-id": 0},
                11: {"partition-id": 1},
                12: {"partition-id": 2},
                98: {"role": "keyholder"},
                99: {"role": "keyholder"},
            },
            "2 key-holder nodes",
        ),
        (
            {
                10: {"partition-id": 0},
                11: {"partition-id": 0},
                12: {"partition-id": 2},
                99: {"role": "keyholder"},
            },
            r"partition ids \[0, 1\]",
        ),
        (
            {
                10: {"partition-id": 0},
                11: {"partition-id": 1},
                12: {"partition-id": 2},
                13: {"partition-id": 4},
            },
            "0 key-holder nodes",
        ),
    ],
    ids=["two key holders", "a partition twice", "no key holder"],
)
def test_nodes_must_be_one_key_holder_and_one_client_per_partition(nodes, message):
    parts = _partitions()
    grid = LoopbackGrid(make_client_app(lambda c: parts[0]), nodes)
    with pytest.raises(ExecutorError, match=message):
        FlowerExecutor(grid, nodes=len(nodes)).connect(_setup(parts))


def test_in_a_simulation_the_node_after_the_clients_is_the_key_holder():
    parts = _partitions()
    app = make_client_app(lambda context: parts[int(context.node_config["partition-id"])])
    grid = LoopbackGrid(app, {100 + k: {"partition-id": k, "num-partitions": 4} for k in range(4)})
    run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, _train)
    assert "hefed.keyholder" in grid.contexts[103].state


def test_too_few_nodes_is_an_executor_error_after_the_timeout():
    grid = _grid(_partitions())
    with pytest.raises(ExecutorError, match="only 4 of 5 Flower nodes"):
        FlowerExecutor(grid, nodes=5, start_timeout=0.3).start()


def test_a_client_with_other_features_fails_its_first_round_and_says_only_that():
    """Its data is not read before a ticket (red team 51), so a width that does not
    fit shows at the first round; the node's log says which width."""
    parts = _partitions(widths=(3, 4, 3))
    setup = dataclasses.replace(_unstandardised(_partitions()), min_clients=2)
    grid = _grid(parts)
    (outcome,) = run_federation(FlowerExecutor(grid, nodes=4), setup, parts, lambda f: f.train(1))
    assert outcome.failures == {
        "client-1": "ConfigurationError: this client could not answer the round under the "
        "federation's plan (its node's log says why)"
    }
    assert outcome.contributors == ("client-0", "client-2")


def test_client_nodes_sign_and_the_key_holder_node_learns_their_identities():
    parts = _partitions()
    grid = _grid(parts)
    run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, _train)
    state = grid.contexts[KEYHOLDER].state["hefed.keyholder"]
    keys = load_secret(bytes(state["secret-key"]), allow_insecure=True)
    holder = KeyHolder.restore(
        keys, Identity.from_private_bytes(bytes(state["identity"])), bytes(state["state"])
    )
    registry = holder.registered_clients()
    for node in (10, 11, 12):
        client = grid.contexts[node].state["hefed.client"]
        identity = Identity.from_private_bytes(bytes(client["signing-key"]))
        assert bytes(registry[client["client-id"]]) == identity.public_bytes
    # the private keys never travel: no message carries one
    keys = {bytes(grid.contexts[n].state["hefed.client"]["signing-key"]) for n in (10, 11, 12)}
    for message in grid.sent + grid.replies:
        assert not keys & set(_bytes_values(message))


def test_a_key_holder_node_with_trusted_clients_refuses_other_identities(tmp_path):
    parts = _partitions()
    grid = _grid(parts)
    trusted = tmp_path / "clients.txt"
    trusted.write_text("client-0 " + "00" * 32 + "\n")  # not the identities the nodes make
    grid.contexts[KEYHOLDER].node_config["trusted-clients"] = str(trusted)
    with pytest.raises(PolicyViolation, match="not registered with the identity"):
        run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, _train)


def test_a_key_holder_node_accepts_the_identities_it_was_provisioned_with(tmp_path):
    parts = _partitions()
    grid = _grid(parts)
    identities = {f"client-{k}": Identity() for k in range(3)}
    lines = []
    for k, (client_id, identity) in enumerate(identities.items()):
        path = tmp_path / f"{client_id}.key"
        path.write_text(identity.private_bytes().hex())
        grid.contexts[10 + k].node_config["identity-file"] = str(path)
        lines.append(f"{client_id} {identity.public_bytes.hex()}")
    (tmp_path / "clients.txt").write_text("\n".join(lines) + "\n")
    grid.contexts[KEYHOLDER].node_config["trusted-clients"] = str(tmp_path / "clients.txt")
    coef, _ = run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, _train)
    assert np.isfinite(coef).all()


def test_a_node_that_says_the_model_diverged_is_not_believed():
    """Red team 39: a share holder refusing with TrainingDiverged ended the whole run in
    the model's name; only the aggregator can find its own model diverged."""
    from he_fed.exceptions import ProtocolError, TrainingDiverged

    with pytest.raises(ProtocolError, match="share holder 1 claims the model diverged") as info:
        records.raise_remote("TrainingDiverged: weights are NaN", "share holder 1")
    assert not isinstance(info.value, TrainingDiverged)
    with pytest.raises(PolicyViolation, match="share holder 1: no"):
        records.raise_remote("PolicyViolation: no", "share holder 1")


def _keygen_request(parts, **changes) -> dict:
    return _changed(records.keyholder_request(_setup(parts)), changes)


def _changed(request: dict, changes: dict) -> dict:
    """``request`` with each of ``changes`` set, or removed where it is ``_MISSING``."""
    for key, value in changes.items():
        request.pop(key) if value is _MISSING else request.__setitem__(key, value)
    return request


class _Missing:
    def __repr__(self) -> str:  # a test id must not vary between processes (xdist)
        return "missing"


_MISSING = _Missing()
#: What a ServerApp sent that a node read with int(), float(), bool() or a subscript:
#: each raised KeyError, ValueError or OverflowError in the node's process, or was
#: taken silently ("no" as a boolean is True). Now each is a typed refusal.
_BAD_KEYGEN = [
    ({"n-features": "abc"}, "MalformedMessage: the message's 'n-features' must be an integer"),
    ({"server-lr": "x"}, "MalformedMessage: the message's 'server-lr' must be a finite number"),
    ({"server-lr": float("nan")}, "MalformedMessage: the message's 'server-lr' must be a finite"),
    ({"standardize": "no"}, "MalformedMessage: the message's 'standardize' must be a boolean"),
    ({"n-outputs": _MISSING}, "MalformedMessage: the message's 'n-outputs' must be an integer"),
    ({"min-clients": _MISSING}, "MalformedMessage: the message's 'min-clients' must be an integer"),
    (
        {"min-clients": 2**70},
        "ConfigurationError: min_clients must be an integer in [1, max_clients",
    ),
    (
        {"allow-insecure": "no"},  # bool("no") is True: an opt-in to weak keys
        "MalformedMessage: a scheme's params must be text and its allow-insecure a boolean",
    ),
    ({"client-plan": _MISSING}, "MalformedMessage: the message's 'client-plan' must be bytes"),
    ({"client-plan": b"short"}, "ConfigurationError: client_plan is a 32-byte SHA-256 digest"),
    (  # a simulated key holder built a model of n-features weights (red team 40)
        {"n-features": 2**62},
        "ConfigurationError: a plan of 1 x 4611686018427387905 weights is over the 16,777,216",
    ),
]


@pytest.mark.parametrize("changes, reason", _BAD_KEYGEN, ids=[str(c) for c, _ in _BAD_KEYGEN])
def test_a_key_holder_node_refuses_a_keygen_of_the_wrong_types(changes, reason):
    parts = _partitions()
    grid = _grid(parts)
    refused = _ask(grid, KEYHOLDER, records.KEYGEN, _keygen_request(parts, **changes))
    assert refused.error.reason.startswith(reason)
    assert "hefed.keyholder" not in grid.contexts[KEYHOLDER].state
    answer = _ask(grid, KEYHOLDER, records.KEYGEN, _keygen_request(parts))
    assert not answer.has_error()  # the refusal left the node as it was


#: A client plan that was taken at setup and failed only at a training round, in
#: scikit-learn or NumPy, or that asked a client for unbounded work.
_BAD_PLANS = [
    ({"client-id": 5}, "MalformedMessage: the message's 'client-id' must be text, not int"),
    ({"client-id": _MISSING}, "MalformedMessage: the message's 'client-id' must be text"),
    (
        {"plan.local-epochs": 10**9},
        "MalformedMessage: local-epochs must be an integer in [1, 10000]",
    ),
    ({"plan.local-epochs": "2"}, "MalformedMessage: not a client plan: 'local-epochs' must be int"),
    (
        {"plan.allow-insecure": "no"},
        "MalformedMessage: not a client plan: 'allow-insecure' must be",
    ),
    ({"plan.classes": list(range(5000))}, "MalformedMessage: not a client plan: classes must be"),
    ({"plan.classes": [0, 0]}, "MalformedMessage: not a client plan: classes must be distinct"),
    ({"plan.param.learning_rate": "abc"}, "MalformedMessage: not a client plan: learning_rate"),
    ({"plan.param.random_state": "seed"}, "MalformedMessage: not a client plan: random_state"),
    # Red team 40: taken at setup, then a ValueError at the round, or read as True.
    ({"plan.param.random_state": -1}, "MalformedMessage: not a client plan: random_state"),
    ({"client-id": "a" * 70_000}, "ConfigurationError: a client id is a non-empty string of"),
    ({"plan.param.fit_intercept": "no"}, "MalformedMessage: not a client plan: fit_intercept"),
    ({"plan.param.shuffle": "no"}, "MalformedMessage: not a client plan: shuffle must be a bool"),
    ({"plan.validation-split": "0.5"}, "MalformedMessage: not a client plan: 'validation-split'"),
    (
        {
            "plan.dp-level": "record",
            "plan.dp-clip": 1.0,
            "plan.dp-noise-multiplier": 1.0,
            "plan.dp-min-cohort": 1,
            "plan.dp-size": float("inf"),
            "plan.dp-step": 0.1,
        },
        "MalformedMessage: not a client plan: cannot convert float infinity to integer",
    ),
]


@pytest.mark.parametrize("changes, reason", _BAD_PLANS, ids=[str(c)[:40] for c, _ in _BAD_PLANS])
def test_a_client_node_refuses_a_setup_of_the_wrong_types_or_an_unbounded_plan(changes, reason):
    parts = _partitions()
    grid = _grid(parts)
    run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, lambda f: f.train(1))
    request = dict(
        records.config_of(next(m for m in grid.sent if m.metadata.message_type == records.SETUP))
    )
    fresh = _grid(parts)
    refused = _ask(fresh, 10, records.SETUP, _changed(request, changes))
    assert refused.error.reason.startswith(reason)
    assert "hefed.client" not in fresh.contexts[10].state


@pytest.mark.parametrize(
    "message_type, config, reason",
    [
        (records.TICKET, {}, "MalformedMessage: the message's 'task' must be text"),
        (records.TICKET, {"task": "bogus"}, "MalformedMessage: no task is called 'bogus'"),
        (
            records.TICKET,
            {"task": 3},
            "MalformedMessage: the message's 'task' must be text, not int",
        ),
        (records.ROUND, {}, "MalformedMessage: the message's 'round-start' must be bytes"),
    ],
    ids=["ticket-missing", "ticket-bogus", "ticket-int", "round-start-missing"],
)
def test_a_set_up_node_refuses_a_request_of_the_wrong_types(message_type, config, reason):
    parts = _partitions()
    grid = _grid(parts)
    run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, lambda f: f.train(1))
    node = KEYHOLDER if message_type == records.TICKET else 10
    assert _ask(grid, node, message_type, config).error.reason.startswith(reason)


def test_a_client_node_set_up_once_refuses_a_second_setup_and_answers_each_round_once():
    """Red team 40: a second ``hefed_setup`` reset the node's rounds and phase, so the
    ServerApp had it answer a round again with a validly signed update (and could
    change its plan mid-run)."""
    parts = _partitions()
    grid = _grid(parts)

    def again(federation):
        start = federation.aggregator.open_round(federation.keyholder.start_round(Task.TRAIN))
        first = _ask(grid, 10, records.ROUND, {"round-start": start})
        assert not first.has_error()
        request = dict(
            records.config_of(
                next(
                    m
                    for m in grid.sent
                    if m.metadata.message_type == records.SETUP and m.metadata.dst_node_id == 10
                )
            )
        )
        refused = _ask(grid, 10, records.SETUP, request)
        assert refused.error.reason.startswith("ProtocolError: this node is already set up")
        replay = _ask(grid, 10, records.ROUND, {"round-start": start})
        return replay.error.reason

    reason = run_federation(FlowerExecutor(grid, nodes=4), _unstandardised(parts), parts, again)
    assert reason.startswith("ProtocolError: client 'client-0' already answered round")


def test_a_client_node_checks_its_data_only_against_a_plan_its_key_holder_signed():
    """Red teams 43 and 44: a setup checked the data against whatever plan and key
    the ServerApp sent, and a refusal said so (its reason even named the data:
    ``max_weight=1`` got "holds 30 samples", wrong classes every label). A fresh run
    gave one more bit each time. Now a setup checks only the key and the plan; the
    data meets them after a ticket the key holder signed for that very plan and key,
    so a probe whose plan the data fits and one it does not get the same answer."""
    parts = _partitions()
    grid = _grid(parts)
    run_federation(FlowerExecutor(grid, nodes=4), _setup(parts), parts, lambda f: f.train(1))
    sent = [m for m in grid.sent if m.metadata.dst_node_id == 10]
    honest = dict(
        records.config_of(next(m for m in sent if m.metadata.message_type == records.SETUP))
    )
    ticket = bytes(
        records.config_of(next(m for m in sent if m.metadata.message_type == records.ROUND))[
            "round-start"
        ]
    )
    key = load_public(bytes(honest["public-key"]), allow_insecure=True)
    rows = len(parts[0][0])
    probes = {
        "too few rows": {"public-key": key.with_plan(max_weight=rows - 1).to_bytes()},
        "enough rows": {"public-key": key.with_plan(max_weight=rows).to_bytes()},
        "wrong classes": {"plan.classes": [-1e300, -2e300]},
        "right classes": {"plan.classes": [1, 0]},
    }
    answers = {}
    for name, changes in probes.items():
        fresh = _grid(parts)  # a new run: the node's state starts empty
        assert not _ask(fresh, 10, records.SETUP, _changed(dict(honest), changes)).has_error()
        answers[name] = _ask(fresh, 10, records.ROUND, {"round-start": ticket}).error.reason
    assert set(answers.values()) == {
        "PolicyViolation: client 'client-0': the key holder's ticket names another training "
        "plan or encoding plan than this client's; it trains only under the plans the key "
        "holder names"
    }
    fresh = _grid(parts)  # the honest setup: the same ticket is answered
    assert not _ask(fresh, 10, records.SETUP, dict(honest)).has_error()
    assert not _ask(fresh, 10, records.ROUND, {"round-start": ticket}).has_error()


_UNREADABLE = "ConfigurationError: this node cannot read its data (its node's log says why)"


def _first_round_failures(node_data, node: dict, run_config: dict) -> dict[str, str]:
    """The failures of a first round in which client 0 reads its data with ``node_data``
    and ``node`` as its node config (the node reads nothing before a ticket)."""
    parts = _partitions()
    app = make_client_app(
        lambda c: node_data(c) if c.node_id == 10 else parts[int(c.node_config["partition-id"])]
    )
    nodes = {10 + k: {"partition-id": k, "num-partitions": 4} for k in range(3)}
    nodes[10] = {"partition-id": 0, "num-partitions": 4, **node}
    nodes[KEYHOLDER] = {"role": "keyholder", "num-partitions": 4}
    grid = LoopbackGrid(app, nodes, run_config=run_config)
    setup = dataclasses.replace(_unstandardised(parts), min_clients=2)
    (outcome,) = run_federation(FlowerExecutor(grid, nodes=4), setup, parts, lambda f: f.train(1))
    assert outcome.contributors == ("client-1", "client-2")
    return outcome.failures


def test_a_client_node_that_cannot_read_its_file_keeps_why_to_itself(tmp_path):
    """Red team 47: a loader refusal travelled back verbatim, naming the file, the
    line, the column and the cell. (Its settings are now the node's own.)"""
    from he_fed.runtime.flower.app import RUN_CONFIG, node_data

    csv = tmp_path / "ward.csv"
    csv.write_text("age,ward,label\n50,B,0\n61,A,1\n")  # ward is text, declared nowhere
    node = {"data-path": str(csv), "target": "label"}
    assert _first_round_failures(node_data, node, RUN_CONFIG) == {"client-0": _UNREADABLE}


def test_a_partition_node_reads_no_file_the_run_configuration_names(tmp_path):
    """Red team 48: a partition-id node loaded whatever dataset the run configuration
    (the ServerApp's) named, a CSV on the node's disk too, and sklearn's refusal of
    ``test-size=0.999`` travelled back with the file's row count."""
    from he_fed.runtime.flower.app import RUN_CONFIG, node_data

    csv = tmp_path / "private.csv"
    csv.write_text("age,label\n" + "".join(f"{20 + k},{k % 2}\n" for k in range(37)))
    run_config = {**RUN_CONFIG, "dataset": str(csv), "target": "age", "model": "linear"}
    node = {"partition-id": 0, "num-partitions": 4}
    assert _first_round_failures(node_data, node, run_config) == {"client-0": _UNREADABLE}
    context = Context(
        run_id=1, node_id=10, node_config=node, state=RecordDict(), run_config=run_config
    )
    with pytest.raises(ConfigurationError, match="built-in dataset"):
        node_data(context)


def _text_labels(X, y):
    return X, np.array(["secretA"] * len(y))


def _diverging(X, y):
    return X * 1e4, y


@pytest.mark.parametrize("private", [_text_labels, _diverging], ids=["text-label", "divergence"])
def test_a_client_node_s_round_refusal_names_nothing_of_its_data(private, caplog):
    """Red team 49: after a valid ticket, a round's errors travelled back with their
    text: a regression plan over text labels gave numpy's words with a label (or
    the labels' width), and divergence named the epoch, which bounds the largest
    eigenvalue of the client's XᵀX/n. Now anything but a refusal of the ticket
    itself says one fixed sentence, and the node's log keeps why."""
    parts = _partitions()
    secret = private(*parts[0])
    setup = FederationSetup.from_partitions(
        parts, scheme=_setup(parts).scheme, standardize=False, min_clients=2,
        model=LinearRegressionGD(learning_rate=1.0), local_epochs=60,
    )  # fmt: skip
    app = make_client_app(
        lambda c: (
            secret
            if c.node_config["partition-id"] == 0
            else parts[int(c.node_config["partition-id"])]
        )
    )
    nodes = {10 + k: {"partition-id": k, "num-partitions": 4} for k in range(3)}
    nodes[KEYHOLDER] = {"role": "keyholder", "num-partitions": 4}
    (outcome,) = run_federation(
        FlowerExecutor(LoopbackGrid(app, nodes), nodes=4), setup, parts, lambda f: f.train(1)
    )
    assert outcome.failures == {
        "client-0": "ConfigurationError: this client could not answer the round under the "
        "federation's plan (its node's log says why)"
    }
    assert outcome.contributors == ("client-1", "client-2")
    why = "<U7" if private is _text_labels else "diverged at epoch"  # "secretA"'s width
    assert why in caplog.text  # the node itself still knows


def test_a_client_node_reads_its_data_only_for_a_fresh_ticket_of_its_key_holder():
    """Red team 51: a client node read its data before it checked a round start, and
    built its client from it before it refused a replayed one, so the time to refuse
    grew with its rows (a CSV's 10 to 13 us per row; 40 ns per row in memory), a
    probe the ServerApp could repeat at will. It now reads nothing at setup, nor for
    a garbled or a replayed round start."""
    parts = _partitions()
    reads: list[int] = []

    def data(context):
        reads.append(int(context.node_config["partition-id"]))
        return parts[reads[-1]]

    grid = _grid(parts)
    grid.app = make_client_app(data)
    executor = FlowerExecutor(grid, nodes=4)
    federation = executor.connect(_unstandardised(parts))
    assert reads == []  # set up without reading

    def refusal(config: dict) -> str:
        (reply,) = [_ask(grid, 10, records.ROUND, config)]
        assert reply.has_error()
        return reply.error.reason

    assert refusal({"round-start": b"\x00garbage"}).startswith("MalformedMessage")
    federation.run_round()
    assert sorted(reads) == [0, 1, 2]
    (ticket,) = [
        records.blob(records.config_of(m), "round-start")
        for m in grid.sent
        if m.metadata.message_type == records.ROUND and m.metadata.dst_node_id == 10
    ][1:]  # the key holder's, after the garbage
    replayed = refusal({"round-start": ticket})
    assert replayed.startswith("ProtocolError: client 'client-0' already answered round")
    assert sorted(reads) == [0, 1, 2]  # neither refusal read the data


def test_a_server_app_cannot_register_only_a_victim_and_a_colluder(tmp_path):
    """Red team 46: the key holder admitted any subset of its trusted clients, and its
    default minimum cohort was a majority of those registered. Registering only a
    victim and a colluder of three made every release the victim's beside what the
    colluder sent. The default is now a majority of the trusted clients."""
    parts = _partitions()
    setup = _unstandardised(parts)
    grid = deployed_grid(parts, setup, tmp_path, trusted=True)
    assert KeyHolderPolicy.read(tmp_path / "keyholder.json").cohort == 3
    honest_push = grid.push_messages

    def push(messages):
        messages = list(messages)
        for m in messages:
            if m.metadata.message_type == records.REGISTER:
                config = records.config_of(m)
                pairs = list(zip(config["client-ids"], config["verify-keys"], strict=True))[:2]
                config["client-ids"] = [c for c, _ in pairs]
                config["verify-keys"] = [k for _, k in pairs]
        return honest_push(messages)

    grid.push_messages = push
    with pytest.raises(
        ConfigurationError,
        match="2 client.s. registered, but the key holder decrypts cohorts of at least 3",
    ):
        run_federation(FlowerExecutor(grid, nodes=4), setup, parts, lambda f: f.train(1))


def test_a_client_node_s_round_reply_carries_no_count_or_time_of_its_data():
    """Red team 43: each round reply carried the client's own clipped count in the
    clear, which the ServerApp matched to the client's data alone (85 of 85). Red
    team 44: its seconds per phase too, and training time grows with the rows
    (median 2.2, 3.5 and 18 ms at 500, 5,000 and 50,000). A reply now carries the
    update and the round, and no number."""
    parts = _partitions()
    grid = _grid(parts)
    (outcome,) = run_federation(
        FlowerExecutor(grid, nodes=4), _setup(parts), parts, lambda f: f.train(1)
    )
    rounds = [r for r in grid.replies if r.metadata.message_type == records.ROUND]
    assert len(rounds) >= 3 and not any(r.has_error() for r in rounds)
    assert all(records.metrics_of(r) == {} for r in rounds)
    assert all(set(records.config_of(r)) == {"update", "round"} for r in rounds)
    assert outcome.clipped is None and len(outcome.contributors) == 3
    kept = {"train": None, "encrypt": None, "sign": None, "serialize": None}
    assert {phase: outcome.timings[phase] for phase in kept} == kept
    assert outcome.timings["aggregate"] > 0 and outcome.timings["decrypt"] > 0


def test_a_registration_refuses_an_id_no_update_could_carry():
    """Red team 40: a 70,000-character id was registered, and the key holder's node
    then failed to write its own state (a ValueError from the wire)."""
    parts = _partitions()
    grid = _grid(parts)
    assert not _ask(grid, KEYHOLDER, records.KEYGEN, _keygen_request(parts)).has_error()
    config = {"client-ids": ["a" * 70_000], "verify-keys": [Identity().public_bytes]}
    refused = _ask(grid, KEYHOLDER, records.REGISTER, config)
    assert refused.error.reason.startswith("ConfigurationError: a client id is a non-empty")
    fits = {"client-ids": ["é" * 128], "verify-keys": [Identity().public_bytes]}  # 256 bytes
    assert not _ask(grid, KEYHOLDER, records.REGISTER, fits).has_error()


@pytest.mark.parametrize(
    ("field", "value", "epochs"),
    [
        ("param.learning_rate", 1e-300, 2),
        # FedProx's term, now a run-config key: a huge one pins every other client's
        # model to the ticket's, so their updates would be zero too.
        ("param.prox_mu", 1e12, 2),
        # Red team 41: labels that read as the honest ones. Under FedSGD (one epoch)
        # a label matching no class trained as "no class", zeroing the others' sums.
        ("classes", [0.0, 1.0], 1),
        ("classes", [False, True], 2),
        ("classes", ["0", "1"], 1),
        # Red team 42: the very key (one fingerprint) under a clip of 2**64, whose
        # grid encodes every update to zero while its weight still counts.
        ("public-key", 2.0**64, 2),
    ],
)
def test_a_server_app_cannot_single_out_a_client_through_its_plan(tmp_path, field, value, epochs):
    """Red team 40, goal 1: the other clients train at a learning rate of 1e-300, so
    their updates would encode to zero while still counting towards ``min_clients``,
    and the release would be the victim's update times ``n_A / N``. Red team 41 did
    the same with class labels that compare unequal to the clients' own. Now every
    ticket names the digest of the key holder's clients' plan, labels hashed as
    typed, and a client refuses labels that are not its data's. Red team 42 sent the
    others the key under a clip of 2**64: a ticket's plan digest covers the key
    holder's own encoding plan too. The starved clients refuse, the cohort is below
    the key holder's minimum, and nothing is released."""
    parts = _partitions()
    setup = FederationSetup.from_partitions(
        parts,
        scheme=_setup(parts).scheme,
        model=LogisticRegressionGD(learning_rate=0.5, random_state=0),
        local_epochs=epochs,
        classes=np.array([0, 1]),
        standardize=False,
        min_clients=3,
    )
    grid = deployed_grid(parts, setup, tmp_path)
    honest_push = grid.push_messages

    def push(messages):
        messages = list(messages)
        for m in messages:
            if m.metadata.message_type != records.SETUP or m.metadata.dst_node_id == 10:
                continue
            config = records.config_of(m)
            if field == "public-key":
                key = load_public(bytes(config[field]), allow_insecure=True)
                config[field] = key.with_plan(clip=value).to_bytes()
            else:
                config[f"plan.{field}"] = value
        return honest_push(messages)

    grid.push_messages = push

    def one_round(federation):
        (outcome,) = federation.train(1)
        return outcome, federation.aggregator.raw_model()

    outcome, (coef, intercept) = run_federation(
        FlowerExecutor(grid, nodes=4), setup, parts, one_round
    )
    assert len(outcome.failures) == 2
    assert all("another training plan or encoding" in r for r in outcome.failures.values())
    assert outcome.skipped is not None and len(outcome.contributors) < 3
    assert not np.any(coef) and not intercept  # the model never moved: nothing released
    X, y = parts[0]
    alone = LogisticRegressionGD(learning_rate=0.5, random_state=0, max_iter=epochs)
    alone.fit(X, y, coef_init=np.zeros(3), intercept_init=0.0, classes=np.array([0, 1]))
    victim = np.append(np.ravel(alone.coef_), alone.intercept_)
    released = np.append(np.ravel(coef), intercept) * sum(len(p[0]) for p in parts) / len(X)
    assert not np.allclose(released, victim, atol=1e-9)


class _Clock:
    """A monotonic clock that ticks 0.1 s per reading and records each sleep."""

    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def monotonic(self) -> float:
        self.now += 0.1
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 9))
        self.now += seconds


def test_a_client_node_pads_every_round_it_works_on_to_its_own_floor(monkeypatch):
    """Red teams 50 to 52: a round's time grows with the client's rows, and the
    ServerApp times every reply. A node started with ``round-floor-s`` takes at
    least that long on each round after a valid ticket, answered or failed; one
    without pads nothing, and a refused ticket is not padded (nothing was read)."""
    from he_fed.runtime.flower import discretion

    clock = _Clock()
    monkeypatch.setattr(discretion, "time", clock)
    parts = _partitions()
    broken = (np.full_like(parts[1][0], np.nan), parts[1][1])  # does not fit: NaN
    app = make_client_app(
        lambda c: broken if c.node_id == 11 else parts[int(c.node_config["partition-id"])]
    )
    nodes = {10 + k: {"partition-id": k, "num-partitions": 4} for k in range(3)}
    nodes[10]["round-floor-s"] = nodes[11]["round-floor-s"] = 5
    nodes[KEYHOLDER] = {"role": "keyholder", "num-partitions": 4}
    grid = LoopbackGrid(app, nodes, run_config={"round-floor-s": 0})  # not the run's
    setup = dataclasses.replace(_unstandardised(parts), min_clients=2)
    executor = FlowerExecutor(grid, nodes=4)
    (outcome,) = run_federation(executor, setup, parts, lambda f: f.train(1))
    assert outcome.contributors == ("client-0", "client-2") and set(outcome.failures) == {
        "client-1"
    }
    assert clock.slept == [4.9, 4.9]  # 5 s less one tick: nodes 10 and 11, not 12
    refused = _ask(grid, 10, records.ROUND, {"round-start": b"\x00garbage"})
    assert refused.has_error() and clock.slept == [4.9, 4.9]


def test_a_round_over_its_floor_is_logged_and_a_floor_must_be_seconds(monkeypatch, caplog):
    from he_fed.runtime.flower import discretion

    clock = _Clock()
    monkeypatch.setattr(discretion, "time", clock)
    with discretion.padded(0.05):
        pass
    assert clock.slept == [] and "over this node's round-floor-s of 0.050 s" in caplog.text
    assert discretion.round_floor({}) == 0.0 and discretion.round_floor({"round-floor-s": 2}) == 2
    for bad in (-1, float("nan"), "5"):
        with pytest.raises(ConfigurationError, match="round-floor-s"):
            discretion.round_floor({"round-floor-s": bad})


def _rounds_grid(parts, folder, reads: list[int]) -> LoopbackGrid:
    """A run whose client 0 keeps a round-file in ``folder`` and client 1 an
    identity-file (so ``<identity-file>.rounds``); ``reads`` logs each data read."""

    def data(context):
        reads.append(int(context.node_config["partition-id"]))
        return parts[reads[-1]]

    grid = _grid(parts)
    grid.app = make_client_app(data)
    (folder / "c1.id").write_text(Identity().private_bytes().hex())
    grid.contexts[10].node_config["round-file"] = str(folder / "c0.rounds")
    grid.contexts[11].node_config["identity-file"] = str(folder / "c1.id")
    return grid


def test_a_client_node_answers_a_ticket_once_across_runs_with_its_round_file(tmp_path):
    """Red team 52: a client node kept the rounds it answered only in its run's state,
    which every ``flwr run`` starts empty, so tickets harvested in one run were fresh
    again in the next, each a timing sample of its rows, with no key holder needed.
    With a round file (its own, or beside its identity-file) a replay in a new run is
    refused before the data is read; a node with neither answers it, as before."""
    parts, reads = _partitions(), []
    grid = _rounds_grid(parts, tmp_path, reads)
    run_federation(FlowerExecutor(grid, nodes=4), _unstandardised(parts), parts, _train)
    assert sorted(reads) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    saved = json.loads((tmp_path / "c0.rounds").read_text())
    assert {k: saved[k] for k in ("format", "version")} == roundfile.FORMAT
    assert list(saved["federations"].values()) == [[2, 3]]  # rounds 0 to 2, training
    assert (tmp_path / "c1.id.rounds").read_text() == (tmp_path / "c0.rounds").read_text()
    for node in (10, 11, 12):  # the ServerApp replays each node's first ticket in a new run
        sent = [m for m in grid.sent if m.metadata.dst_node_id == node]
        setup, ticket = (
            dict(records.config_of(next(m for m in sent if m.metadata.message_type == kind)))
            for kind in (records.SETUP, records.ROUND)
        )
        fresh = _rounds_grid(parts, tmp_path, reads)  # a new run: its state starts empty
        assert not _ask(fresh, node, records.SETUP, setup).has_error()
        answer = _ask(fresh, node, records.ROUND, ticket)
        if node == 12:  # no round file: answered again (the open row in DESIGN)
            assert not answer.has_error() and reads.count(2) == 4
        else:
            assert answer.error.reason.startswith(
                f"ProtocolError: client 'client-{node - 10}' already answered round 2"
            )
    assert sorted(reads) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]


@pytest.mark.parametrize(
    "text",
    ["not json", '{"format": "he-fed/client-rounds", "version": 2, "federations": {}}',
     '{"format": "he-fed/client-rounds", "version": 1, "federations": {"ab": [1, true]}}'],
    ids=["garbled", "version-2", "bool"],
)  # fmt: skip
def test_a_round_file_that_cannot_be_trusted_stops_the_node_s_rounds(tmp_path, text):
    parts, reads = _partitions(), []
    grid = _rounds_grid(parts, tmp_path, reads)
    (tmp_path / "c0.rounds").write_text(text)
    (outcome,) = run_federation(
        FlowerExecutor(grid, nodes=4),
        dataclasses.replace(_unstandardised(parts), min_clients=2),
        parts,
        lambda f: f.train(1),
    )
    assert outcome.failures["client-0"].startswith("StateError: this client node's round-file")
    assert 0 not in reads and outcome.contributors == ("client-1", "client-2")


def test_a_deployed_client_node_without_a_round_file_is_refused_at_setup():
    """Red team 53: the client nodes README and ``he-fed flower-app --provision``
    started had neither file, so they answered old tickets in every new run."""
    grid = _grid(_partitions())
    grid.contexts[10].node_config = {"partition-id": 0, "trust-on-first-use": True}  # deployed
    setup = {"client-id": "c", "public-key": b"x", "keyholder-identity": bytes(32)}
    reason = _ask(grid, 10, records.SETUP, setup)
    assert reason.error.reason.startswith(
        "ConfigurationError: a client node records the federation it serves"
    )
    assert "round-file=" in reason.error.reason and "hefed.client" not in grid.contexts[10].state
