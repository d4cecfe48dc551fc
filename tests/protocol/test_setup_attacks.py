"""Authenticated setup: the aggregator cannot configure the key holder or the clients.

Performed in process against the roles, and against the real Flower node handlers
(a key-holder node and client nodes started as in a deployment), with the test
playing the ServerApp, which is the aggregator.
"""

from __future__ import annotations

import dataclasses
import tempfile

import numpy as np
import pytest

from he_fed.crypto import Paillier
from he_fed.exceptions import (
    ConfigurationError,
    InvalidSignature,
    KeyMismatchError,
    PolicyViolation,
    ProtocolError,
)
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import (
    EncryptedAggregate,
    EncryptedUpdate,
    Identity,
    KeyHolder,
    Receipt,
    RoundStart,
    decode,
    encode,
)
from he_fed.protocol.receipts import ticket_payload
from he_fed.protocol.spec import FederationSetup, scheme_to_config
from he_fed.runtime.flower import FlowerExecutor, KeyHolderPolicy, make_client_app, records
from tests.conftest import FAST_SCHEMES, keys_for
from tests.protocol.harness import PLAN, client, open_round, roles, signed_update
from tests.runtime.flower_fakes import LoopbackGrid

# -- in process -------------------------------------------------------------------


def test_a_client_answers_only_tickets_of_the_key_holder_it_pinned():
    keyholder, aggregator, clients = roles("paillier")
    start = decode(open_round(keyholder, aggregator), RoundStart)
    mallory = Identity()  # the aggregator's own signing key
    forged = dataclasses.replace(
        start, round=start.round + 1, signature=mallory.sign(ticket_payload(start.signed_bytes()))
    )
    unsigned = dataclasses.replace(start, round=start.round + 1, signature=bytes(64))
    for bad in (forged, unsigned):
        with pytest.raises(InvalidSignature, match="not signed by the key holder"):
            clients[0].participate(encode(bad))
    # A ticket re-signed by the aggregator for a model of its choosing fails the same way.
    chosen = dataclasses.replace(start, weights=np.full(start.weights.size, 3.0))
    resigned = dataclasses.replace(
        chosen, signature=mallory.sign(ticket_payload(chosen.signed_bytes()))
    )
    with pytest.raises(InvalidSignature):
        clients[1].participate(encode(resigned))


def test_a_client_never_encrypts_under_the_aggregators_own_key():
    """The aggregator hands a client its own public key: the client refuses every
    ticket, since the key holder's tickets name another key, and the aggregator
    cannot sign tickets naming its own."""
    keyholder, aggregator, _ = roles("paillier")
    own = FAST_SCHEMES["paillier"].keygen()  # the aggregator's keys
    victim = client(keyholder, "c0", 0, 30, public_key=own.public.to_bytes())
    start = open_round(keyholder, aggregator)
    with pytest.raises(KeyMismatchError, match="names another public key"):
        victim.participate(start)
    ticket = decode(start, RoundStart)
    own_ticket = dataclasses.replace(ticket, fingerprint=own.public.fingerprint)
    signed = dataclasses.replace(
        own_ticket, signature=Identity().sign(ticket_payload(own_ticket.signed_bytes()))
    )
    with pytest.raises(InvalidSignature):
        victim.participate(encode(signed))


def test_the_registry_is_fixed_at_setup_so_a_ghost_cannot_join():
    """Without a fixed registry: register a ghost, submit victim + ghost's Enc(0),
    and read the victim's update in the release."""
    keyholder, aggregator, clients = roles("paillier", sizes=(30, 50, 20))
    start = open_round(keyholder, aggregator)  # the first ticket fixes the registry
    ghost = Identity()
    with pytest.raises(PolicyViolation, match="fixed at setup"):
        keyholder.register("ghost", ghost.public_bytes)
    # Forging the ghost's receipt anyway: its signature does not verify.
    victim = decode(clients[0].participate(start).update, EncryptedUpdate)
    key = keyholder.public_key
    zero = key.encrypt(np.zeros(4), weight=1)
    ghost_client = client(keyholder, "ghost", 5, 10)
    ghost_client._identity = ghost
    ghost_update = decode(signed_update(ghost_client, start, zero), EncryptedUpdate)
    vectors = [key.load_vector(victim.vector), zero]
    receipts = (
        Receipt(
            "c0", vectors[0].commitment(), victim.commitment_signature, victim.proof, victim.binding
        ),
        Receipt(
            "ghost",
            zero.commitment(),
            ghost_update.commitment_signature,
            ghost_update.proof,
            ghost_update.binding,
        ),
    )
    message = EncryptedAggregate(victim.round, victim.task, receipts, sum(vectors).to_bytes())
    with pytest.raises(PolicyViolation, match="'ghost' is not validly signed"):
        keyholder.decrypt_aggregate(encode(message))


def test_the_key_holders_policy_is_set_only_by_its_own_constructor():
    keyholder = KeyHolder(keys_for("plain"), plan=PLAN, min_clients=3)
    # Nothing on the key holder takes a policy from bytes it is sent: its only
    # inputs are tickets it asks for and aggregates to decrypt.
    public = {name for name in dir(keyholder) if not name.startswith("_")}
    assert not {"set_policy", "configure", "min_clients_from"} & public
    with pytest.raises(AttributeError):
        keyholder.min_clients = 1  # type: ignore[misc]


# -- on Flower node handlers, deployed --------------------------------------------

KEYHOLDER = 99


def _parts():
    rng = np.random.default_rng(5)
    out = []
    for n in (30, 45, 25):
        X = rng.normal(size=(n, 3))
        out.append((X, (X @ [1.0, 2.0, 3.0] + rng.normal(size=n) > 0).astype(int)))
    return out


def _setup(parts, **kwargs) -> FederationSetup:
    scheme = kwargs.pop(
        "scheme", Paillier(key_bits=1024, allow_insecure=True, max_clients=8, max_weight=64)
    )
    return FederationSetup.from_partitions(
        parts,
        scheme=scheme,
        model=LogisticRegressionGD(learning_rate=0.5, random_state=0),
        classes=np.array([0, 1]),
        **kwargs,
    )


def _deployed(parts, tmp_path, *, policy: KeyHolderPolicy | None, pin: bool = True):
    """A key-holder node with its own identity, secret key and state file (and policy
    file, if given); client nodes that pinned that identity (if ``pin``)."""
    identity = Identity()
    (tmp_path / "kh.id").write_text(identity.private_bytes().hex())
    scheme = _setup(parts).scheme if policy is None else policy.scheme
    (tmp_path / "kh.key").write_bytes(scheme.keygen().secret.to_bytes())
    # each call new nodes' disks: the state of an earlier call is not this one's
    disk = tempfile.mkdtemp(dir=tmp_path)
    keyholder_config = {
        "role": "keyholder",
        "identity-file": str(tmp_path / "kh.id"),
        "secret-key-file": str(tmp_path / "kh.key"),
        "state-file": disk + "/kh.state",
    }
    if policy is not None:
        keyholder_config["policy-file"] = str(policy.write(tmp_path / "kh.json"))
    nodes: dict[int, dict] = {
        10 + k: {
            "partition-id": k,
            "round-file": f"{disk}/client-{k}.rounds",
            **({"keyholder-identity": identity.public_bytes.hex()} if pin else {}),
        }
        for k in range(len(parts))
    }
    nodes[KEYHOLDER] = keyholder_config
    app = make_client_app(lambda context: parts[int(context.node_config["partition-id"])])
    return LoopbackGrid(app, nodes), identity


def test_a_deployed_key_holder_node_takes_no_policy_from_the_server_app(tmp_path):
    parts = _parts()
    grid, _ = _deployed(parts, tmp_path, policy=None)
    with pytest.raises(ConfigurationError, match="needs policy-file"):
        FlowerExecutor(grid, nodes=4).connect(_setup(parts))
    assert "hefed.keyholder" not in grid.contexts[KEYHOLDER].state


@pytest.mark.parametrize(
    "asked",
    [
        {"scheme": Paillier(key_bits=512, allow_insecure=True, max_clients=8, max_weight=64)},
        {"server_lr": 1e-3},
        {"standardize": False},
    ],
    ids=["a 512-bit key", "a tiny server step", "no standardisation"],
)
def test_a_server_app_asking_for_another_policy_is_refused(tmp_path, asked):
    parts = _parts()
    policy = KeyHolderPolicy.for_simulation(_setup(parts, min_clients=3))
    policy = dataclasses.replace(policy, trust_on_first_use=True)
    grid, _ = _deployed(parts, tmp_path, policy=policy)
    with pytest.raises(PolicyViolation, match="its own"):
        FlowerExecutor(grid, nodes=4).connect(_setup(parts, **asked))
    assert "hefed.keyholder" not in grid.contexts[KEYHOLDER].state


def test_the_node_policy_holds_whatever_the_server_app_believes(tmp_path):
    """The node enforces min_clients=3 from its file: a ServerApp that asks for 1 is
    refused (it used to be answered with the node's 3, and one that asked for more
    than the node's was answered with the node's fewer, without a word), and one
    that asks nothing and then believes 2 still gets 3."""
    parts = _parts()
    policy = KeyHolderPolicy.for_simulation(_setup(parts, min_clients=3))
    policy = dataclasses.replace(policy, trust_on_first_use=True)
    grid, _ = _deployed(parts, tmp_path, policy=policy)
    with pytest.raises(PolicyViolation, match="smallest cohort is its own policy's, 3 clients"):
        FlowerExecutor(grid, nodes=4).connect(_setup(parts, min_clients=1))
    grid, _ = _deployed(parts, tmp_path, policy=policy)
    federation = FlowerExecutor(grid, nodes=4).connect(_setup(parts, min_clients=None))
    assert federation.keyholder.min_clients == 3  # what the node reports
    federation.standardize()
    federation.keyholder.min_clients = 2  # the ServerApp lies to itself
    outcome = federation.run_round(participants=["client-0", "client-1"])
    assert outcome.skipped and "at least 3" in outcome.skipped


def test_a_node_whose_minimum_is_a_majority_refuses_a_run_config_that_names_one(tmp_path):
    """A policy without min-clients (``--provision``'s default) decrypts cohorts of a
    majority of the clients it registers: a ServerApp that asks for 3 is refused, and
    one that asks for 2 where the majority (of three: all three, red team 45) is of
    a node config's trusted-clients file (read before the request is checked; a
    review found it read after, and the check skipped)."""
    parts = _parts()
    policy = dataclasses.replace(
        KeyHolderPolicy.for_simulation(_setup(parts)), trust_on_first_use=True
    )
    assert policy.min_clients is None
    grid, _ = _deployed(parts, tmp_path, policy=policy)
    with pytest.raises(
        PolicyViolation, match="a majority of the clients it registers; .* asks for 3"
    ):
        FlowerExecutor(grid, nodes=4).connect(_setup(parts, min_clients=3))
    grid, _ = _deployed(
        parts, tmp_path, policy=dataclasses.replace(policy, trust_on_first_use=False)
    )
    listed = tmp_path / "trusted"
    listed.write_text("".join(f"client-{k} {Identity().public_bytes.hex()}\n" for k in range(3)))
    grid.contexts[KEYHOLDER].node_config["trusted-clients"] = str(listed)
    with pytest.raises(PolicyViolation, match="its own policy's, 3 clients; .* asks for 2"):
        FlowerExecutor(grid, nodes=4).connect(_setup(parts, min_clients=2))


def test_registration_happens_once_and_only_as_the_policy_allows(tmp_path):
    parts = _parts()
    setup = _setup(parts)
    strict = KeyHolderPolicy(setup.scheme, setup.run_plan, None, trust_on_first_use=False)
    grid, _ = _deployed(parts, tmp_path, policy=strict)
    with pytest.raises(PolicyViolation, match="does not trust on first use"):
        FlowerExecutor(grid, nodes=4).connect(setup)
    lenient = dataclasses.replace(strict, trust_on_first_use=True)
    grid, _ = _deployed(parts, tmp_path, policy=lenient)
    executor = FlowerExecutor(grid, nodes=4)
    executor.connect(setup)
    ghost = {"client-ids": ["ghost"], "verify-keys": [Identity().public_bytes]}
    with pytest.raises(ProtocolError, match="register once"):
        executor.ask(KEYHOLDER, records.REGISTER, ghost)


def test_a_deployed_client_node_pins_the_key_holder(tmp_path):
    parts = _parts()
    setup = _setup(parts)
    policy = dataclasses.replace(KeyHolderPolicy.for_simulation(setup), trust_on_first_use=True)
    grid, _ = _deployed(parts, tmp_path, policy=policy, pin=False)
    with pytest.raises(ConfigurationError, match="provisioned with"):
        FlowerExecutor(grid, nodes=4).connect(setup)
    # A client that pinned another identity refuses the setup naming this one.
    grid, _ = _deployed(parts, tmp_path, policy=policy)
    grid.contexts[10].node_config["keyholder-identity"] = Identity().public_bytes.hex()
    with pytest.raises(PolicyViolation, match="other than the one this node pinned"):
        FlowerExecutor(grid, nodes=4).connect(setup)


def test_a_client_node_refuses_a_ticket_the_key_holder_did_not_sign(tmp_path):
    parts = _parts()
    setup = _setup(parts)
    policy = dataclasses.replace(KeyHolderPolicy.for_simulation(setup), trust_on_first_use=True)
    grid, _ = _deployed(parts, tmp_path, policy=policy)
    executor = FlowerExecutor(grid, nodes=4)
    federation = executor.connect(setup)
    federation.standardize()
    ticket = decode(federation.keyholder.start_round("train"), RoundStart)
    chosen = dataclasses.replace(ticket, round=ticket.round + 7, weights=np.full(4, 5.0))
    forged = dataclasses.replace(
        chosen, signature=Identity().sign(ticket_payload(chosen.signed_bytes()))
    )
    with pytest.raises(InvalidSignature, match="not signed by the key holder"):
        executor.ask(10, records.ROUND, {"round-start": encode(forged)})


def test_policy_files_round_trip_and_refuse_garbage(tmp_path):
    setup = _setup(_parts(), min_clients=2)
    trusted = {"client-0": Identity().public_bytes}
    policy = KeyHolderPolicy(setup.scheme, setup.run_plan, 2, trusted, False)
    back = KeyHolderPolicy.read(policy.write(tmp_path / "p.json"))
    assert back == policy and back.trusted_clients == trusted
    (tmp_path / "bad.json").write_text('{"he-fed-keyholder-policy": 1, "scheme": {}}')
    with pytest.raises(ConfigurationError):
        KeyHolderPolicy.read(tmp_path / "bad.json")
    assert scheme_to_config(back.scheme) == scheme_to_config(setup.scheme)
