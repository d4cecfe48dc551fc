"""A restarted ServerApp resumes its Flower federation from its checkpoint.

Every restart here is what a new ``flwr run`` (or a restarted simulation) gives
the ServerApp: a new grid whose nodes have empty node states, under new node ids,
with their disks (the key holder's ``state-file`` and files, the clients'
``identity-file``) and the ServerApp's checkpoint directory kept. The ServerApp
"dies" by an exception at a chosen instruction, its objects dropped as a killed
process drops them. Real processes are in ``test_flower_resume_kill.py`` (slow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from he_fed.exceptions import MalformedMessage, PolicyViolation, StateError
from he_fed.protocol import Identity
from he_fed.runtime import run_federation
from he_fed.runtime import server_checkpoint as serverstate
from he_fed.runtime.flower import FlowerExecutor, KeyHolderPolicy, make_client_app, records
from he_fed.runtime.flower.resume import FlowerResumableRun
from he_fed.runtime.keyholder_store import KeyHolderStore
from tests.conftest import FAST_SCHEMES
from tests.runtime.flower_fakes import LoopbackGrid
from tests.runtime.test_flower_nodes import _partitions, _setup

ROUNDS = 3
#: No dropouts: without a privacy budget a round a client sits out is refused
#: (he_fed.protocol.normalisers), and these tests follow released rounds.
DROPOUT = 0.0
RUN = '{"run": "test"}'


class Crash(Exception):
    """Stands for the ServerApp's process dying."""


class CrashingGrid(LoopbackGrid):
    """A grid whose ServerApp dies as it sends the ``n``-th exchange of one message type."""

    def __init__(self, *args, crash_at=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_at = crash_at  # (message type, n), or None
        self.count: dict[str, int] = {}

    def push_messages(self, messages):
        messages = list(messages)
        for kind in {m.metadata.message_type for m in messages}:
            self.count[kind] = self.count.get(kind, 0) + 1
            if self.crash_at == (kind, self.count[kind]):
                raise Crash
        return super().push_messages(messages)


class RewritingGrid(CrashingGrid):
    """A grid whose key-holder node's replies of one type carry other values.

    ``rewrites`` maps a message type to the values its replies carry instead (a
    value of ``None`` removes the key): what a node that says it is the key
    holder, or a relay, can answer.
    """

    def __init__(self, *args, rewrites=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rewrites = rewrites or {}

    def pull_messages(self, message_ids):
        replies = super().pull_messages(message_ids)
        for reply in replies:
            for key, value in self.rewrites.get(reply.metadata.message_type, {}).items():
                config = records.config_of(reply)
                if value is None:
                    del config[key]
                else:
                    config[key] = value
        return replies


def _node_disks(tmp_path, setup, n_clients):
    """What each node's operator provisioned: the key holder's files, the clients' identities."""
    keys, identity = setup.scheme.keygen(), Identity()
    (tmp_path / "secret.key").write_bytes(keys.secret.to_bytes())
    (tmp_path / "keyholder.id").write_text(identity.private_bytes().hex())
    KeyHolderPolicy(setup.scheme, setup.run_plan, setup.min_clients, trust_on_first_use=True).write(
        tmp_path / "keyholder.json"
    )
    pin = identity.public_bytes.hex()
    nodes = {}
    for k in range(n_clients):
        (tmp_path / f"client{k}.id").write_text(Identity().private_bytes().hex())
        nodes[k] = {
            "partition-id": k,
            "keyholder-identity": pin,
            "identity-file": str(tmp_path / f"client{k}.id"),
        }
    nodes[n_clients] = {
        "role": "keyholder",
        "policy-file": str(tmp_path / "keyholder.json"),
        "identity-file": str(tmp_path / "keyholder.id"),
        "secret-key-file": str(tmp_path / "secret.key"),
        "state-file": str(tmp_path / "keyholder.state"),
    }
    return keys, identity, nodes


class Deployment:
    """The nodes' disks, and a new Flower run over them at each :meth:`run`."""

    def __init__(self, tmp_path, parts, setup):
        self.parts, self.setup = parts, setup
        self.checkpoint = tmp_path / "checkpoint"
        self.keys, self.identity, self.nodes = _node_disks(tmp_path, setup, len(parts))
        self.state = tmp_path / "keyholder.state"
        self.runs = 0
        self.history: list[dict] = []

    def run(self, crash_at=None, crash_in_round=None, rewrites=None):
        """One ServerApp run; its history, or None if it crashed."""
        self.runs += 1
        app = make_client_app(lambda context: self.parts[int(context.node_config["partition-id"])])
        # A new run: fresh node states; node ids as a restarted SuperNode gets them.
        configs = {100 * self.runs + k: dict(c) for k, c in self.nodes.items()}
        grid = RewritingGrid(app, configs, crash_at=crash_at, rewrites=rewrites)
        executor = FlowerExecutor(grid, nodes=len(self.parts) + 1)

        def on_round(outcome):
            if crash_in_round == outcome.round:  # released, not yet recorded
                raise Crash
            return {"round": outcome.round, "contributors": list(outcome.contributors)}

        try:
            with FlowerResumableRun.open(self.checkpoint, RUN, self.setup, executor) as run:
                history = run.train(ROUNDS, dropout=DROPOUT, random_state=0, on_round=on_round)
                return history, run.federation.aggregator.raw_model()
        except Crash:
            return None

    def releases(self):
        with KeyHolderStore.open(self.state, self.keys, self.identity) as store:
            return [r.round for r in store.releases]


@pytest.fixture(scope="module")
def parts():
    return _partitions()


@pytest.fixture(scope="module")
def setup(parts):
    return _setup(parts, FAST_SCHEMES["paillier-packed"])


@pytest.fixture(scope="module")
def reference(parts, setup):
    """The uninterrupted run, in process: its coefficients and each round's contributors."""

    def train(federation):
        outcomes = federation.train(ROUNDS, dropout=DROPOUT, random_state=0)
        return [sorted(o.contributors) for o in outcomes], federation.aggregator.raw_model()

    return run_federation("inprocess", setup, parts, train)


def _check(result, reference):
    history, (coef, intercept) = result
    contributors, (expected_coef, expected_intercept) = reference
    np.testing.assert_array_equal(coef, expected_coef)  # bit for bit
    assert intercept == expected_intercept
    assert [sorted(h["contributors"]) for h in history] == contributors
    return [h["round"] for h in history]


def test_an_uninterrupted_checkpointed_flower_run_gives_the_in_process_coefficients(
    tmp_path, parts, setup, reference
):
    deployment = Deployment(tmp_path, parts, setup)
    assert _check(deployment.run(), reference) == [2, 3, 4]
    assert deployment.releases() == [0, 1, 2, 3, 4]


def test_a_restarted_server_app_resumes_after_its_last_completed_round(
    tmp_path, parts, setup, reference
):
    deployment = Deployment(tmp_path, parts, setup)
    # Dies as it sends train round 2's (ticket 3's) round start: ticket 3 was signed, never used.
    assert deployment.run(crash_at=(records.ROUND, 4)) is None
    assert serverstate.read(deployment.checkpoint).round_done == 2
    # Redone under round id 4; the key holder never decrypts round 3.
    assert _check(deployment.run(), reference) == [2, 4, 5]
    assert deployment.releases() == [0, 1, 2, 4, 5]


def test_a_round_journaled_but_never_decrypted_is_redone_under_a_new_round_id(
    tmp_path, parts, setup, reference
):
    deployment = Deployment(tmp_path, parts, setup)
    # Dies as it sends train round 1's aggregate: journaled, the key holder never saw it.
    assert deployment.run(crash_at=(records.DECRYPT, 3)) is None
    assert serverstate.read(deployment.checkpoint).pending is not None
    assert _check(deployment.run(), reference) == [3, 4, 5]
    assert deployment.releases() == [0, 1, 3, 4, 5]


def test_a_round_released_but_not_recorded_is_completed_from_the_journal(
    tmp_path, parts, setup, reference
):
    deployment = Deployment(tmp_path, parts, setup)
    # Dies after the key holder released round 3, before the checkpoint recorded it.
    assert deployment.run(crash_in_round=3) is None
    assert deployment.releases() == [0, 1, 2, 3]
    # Completed from the journal with the release the key holder saved: no new one.
    assert _check(deployment.run(), reference) == [2, 3, 4]
    assert deployment.releases() == [0, 1, 2, 3, 4]


def test_three_crashes_in_a_row_still_give_every_round_once(tmp_path, parts, setup, reference):
    deployment = Deployment(tmp_path, parts, setup)
    assert deployment.run(crash_at=(records.TICKET, 2)) is None  # during standardisation
    assert deployment.run(crash_in_round=2) is None
    assert deployment.run(crash_at=(records.DECRYPT, 1)) is None
    rounds = _check(deployment.run(), reference)
    assert len(rounds) == ROUNDS == len(set(rounds))
    released = deployment.releases()
    assert len(released) == len(set(released)) == 2 + ROUNDS


def test_a_client_back_with_another_identity_is_refused(tmp_path, parts, setup):
    deployment = Deployment(tmp_path, parts, setup)
    assert deployment.run(crash_in_round=2) is None
    Path(deployment.nodes[0]["identity-file"]).write_text(Identity().private_bytes().hex())
    with pytest.raises(StateError, match="client 'client-0' came back with another identity"):
        deployment.run()


def test_a_checkpoint_older_than_the_key_holder_is_refused(tmp_path, parts, setup):
    deployment = Deployment(tmp_path, parts, setup)
    assert deployment.run(crash_in_round=2) is None
    old = (deployment.checkpoint / serverstate.SERVER_FILE).read_bytes()
    deployment.run(crash_in_round=3)
    deployment.run(crash_in_round=4)  # rounds 2 and 3 completed from the journal, 4 released
    (deployment.checkpoint / serverstate.SERVER_FILE).write_bytes(old)
    with pytest.raises(StateError, match=r"released round\(s\) \[2, 3, 4\]"):
        deployment.run()


def test_a_key_holder_without_a_state_file_cannot_be_reopened(tmp_path, parts, setup):
    deployment = Deployment(tmp_path, parts, setup)
    assert deployment.run(crash_in_round=2) is None
    del deployment.nodes[len(parts)]["state-file"]
    with pytest.raises(Exception, match="no state-file"):
        deployment.run()


def test_the_key_holder_reopens_only_its_own_policy(tmp_path, parts, setup):
    deployment = Deployment(tmp_path, parts, setup)
    assert deployment.run(crash_in_round=2) is None
    other = _setup(parts, FAST_SCHEMES["paillier"])
    deployment.setup = other
    with pytest.raises(PolicyViolation, match="asked to reopen"):
        deployment.run()


def test_a_key_holder_that_reopens_with_another_identity_is_refused(tmp_path, parts, setup):
    """Red team 38: a node that said it was the key holder while the real one was away
    at the restart answered the reopen with its own identity, then signed a release."""
    deployment = Deployment(tmp_path, parts, setup)
    assert deployment.run(crash_in_round=2) is None
    other = Identity().public_bytes
    with pytest.raises(StateError, match="is not the key holder the ServerApp's checkpoint pinned"):
        deployment.run(rewrites={records.REOPEN: {"identity": other}})
    # The key holder itself, back, resumes as before.
    assert len(deployment.run()[0]) == ROUNDS


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        (records.REOPEN, {"public-key": 2**40}),  # bytes(2**40) would be 1 TiB
        (records.REOPEN, {"identity": None}),
        (records.REOPEN, {"client-ids": ["client-0"]}),  # one id, three keys
        (records.REOPEN, {"verify-keys": [1, 2, 3]}),
        (records.REOPEN, {"released": ["2"]}),
        (records.REOPEN, {"last-round": "3"}),
        (records.REOPEN, {"min-clients": 2.5}),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={v[k]!r}" for k in v),
)
def test_a_reopen_answer_of_the_wrong_types_is_a_malformed_message(
    tmp_path, parts, setup, kind, values
):
    """Red team 38: these raised MemoryError, KeyError, ValueError or TypeError."""
    deployment = Deployment(tmp_path, parts, setup)
    assert deployment.run(crash_in_round=2) is None
    with pytest.raises(MalformedMessage):
        deployment.run(rewrites={kind: values})


@pytest.mark.parametrize(
    "values",
    [
        {"public-key": 2**40},
        {"aggregation-key": "key"},
        {"identity": None},
    ],
    ids=lambda v: ",".join(f"{k}={v[k]!r}" for k in v),
)
def test_a_keygen_answer_of_the_wrong_types_is_a_malformed_message(tmp_path, parts, setup, values):
    deployment = Deployment(tmp_path, parts, setup)
    with pytest.raises(MalformedMessage):
        deployment.run(rewrites={records.KEYGEN: values})


@pytest.mark.parametrize("verify_key", ["three", 3, [b"k"]], ids=repr)
def test_a_client_setup_answer_of_the_wrong_types_is_a_malformed_message(
    tmp_path, parts, setup, verify_key
):
    deployment = Deployment(tmp_path, parts, setup)
    with pytest.raises(MalformedMessage, match="'verify-key' must be bytes"):
        deployment.run(rewrites={records.SETUP: {"verify-key": verify_key}})


def test_a_node_that_reopens_with_the_key_holders_public_identity_must_sign_with_it(
    tmp_path, parts, setup
):
    """Red team 39: the identity is public, so an impostor at a restart answered the
    reopen with it, and stopped training for good with a refusal in its name."""
    deployment = Deployment(tmp_path, parts, setup)
    assert deployment.run(crash_in_round=2) is None
    forged = Identity().sign(records.identity_challenge(bytes(records.NONCE_BYTES)))
    with pytest.raises(StateError, match="cannot sign with it; it is not the key holder"):
        deployment.run(rewrites={records.PROVE: {"signature": forged}})
    assert len(deployment.run()[0]) == ROUNDS
