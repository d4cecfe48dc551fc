"""The ServerApp carries on when the key-holder node dies and comes back as a new node.

On the real node handlers and the real FlowerExecutor (a loopback grid): the
key-holder node handles a ticket or a decryption, saves its state file, and dies
before its reply leaves (the worst moment: the decision made and saved, the
answer lost). It comes back under a new node id with the same node config and an
empty node state, as a SuperNode restarted without an authentication key does.
The real processes are in ``test_flower_kill.py`` (slow).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from uuid import uuid4

import numpy as np
import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode

from he_fed.exceptions import ExecutorError, PolicyViolation
from he_fed.protocol import (
    Aggregate,
    EncryptedAggregate,
    Identity,
    Release,
    RoundStart,
    decode,
    encode,
)
from he_fed.runtime import run_federation
from he_fed.runtime.flower import FlowerExecutor, records, rejoin
from he_fed.runtime.keyholder_store import KeyHolderStore
from tests.runtime.flower_fakes import LoopbackGrid
from tests.runtime.test_flower_nodes import KEYHOLDER, _partitions, _setup
from tests.runtime.test_flower_statefile import _grid, _provisioned

ROUNDS = 3


class _DyingKeyHolder(LoopbackGrid):
    """A grid whose key-holder node dies after handling the chosen messages.

    ``deaths`` lists ``(message type, how many of that type came before)``. The
    node handles that message (its state file is saved), its reply is lost, and
    the node is silent from then on; a new node with the same node config and an
    empty node state joins under the next free id.
    """

    def __init__(
        self, grid: LoopbackGrid, deaths: Iterable[tuple[str, int]], *, same_id: bool = False
    ) -> None:
        self.__dict__.update(grid.__dict__)
        self.deaths = set(deaths)
        self.same_id = same_id
        self.keyholder = KEYHOLDER
        self.seen: dict[str, int] = {}
        self.restarts: list[int] = []
        self.lost_replies: list[Message] = []

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            node, kind = message.metadata.dst_node_id, message.metadata.message_type
            if node != self.keyholder or kind not in (records.TICKET, records.DECRYPT):
                ids.extend(super().push_messages([message]))
                continue
            count = self.seen.get(kind, 0)
            self.seen[kind] = count + 1
            if (kind, count) not in self.deaths:
                ids.extend(super().push_messages([message]))
                continue
            message.metadata.__dict__["_message_id"] = str(uuid4())
            self.sent.append(message)
            ids.append(message.metadata.message_id)
            self.lost_replies.append(self.app(message=message, context=self.contexts[node]))
            if self.same_id:  # what the SuperLink answers once it stops hearing the node
                gone = Error(ErrorCode.NODE_UNAVAILABLE, "node unavailable")
                self._waiting[message.metadata.message_id] = Message(gone, reply_to=message)
            self._restart()
        return ids

    def _restart(self) -> None:
        old = self.contexts[self.keyholder]
        if not self.same_id:  # a SuperNode without an authentication key
            self.silent.add(self.keyholder)
            self.keyholder = max(self.contexts) + 1
        self.restarts.append(self.keyholder)
        self.contexts[self.keyholder] = Context(
            run_id=old.run_id,
            node_id=self.keyholder,
            node_config=dict(old.node_config),
            state=RecordDict(),
            run_config=dict(old.run_config),
        )


def _train(federation):
    federation.train(ROUNDS)
    return federation.aggregator.raw_model()


def _released(tmp_path, keys, identity) -> list[int]:
    with KeyHolderStore.open(tmp_path / "keyholder.state", keys, identity) as store:
        return [r.round for r in store.releases]


def _executor(grid) -> FlowerExecutor:
    return FlowerExecutor(grid, nodes=4, reply_timeout=0.05, start_timeout=5)


def test_a_key_holder_lost_after_saving_a_release_is_asked_again_on_its_new_node(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    keys, identity, node = _provisioned(tmp_path, setup)
    expected = run_federation("inprocess", setup, parts, _train)
    # Dies after saving the releases of the moments round and of train rounds 1 and 3.
    grid = _DyingKeyHolder(
        _grid(parts, node), [(records.DECRYPT, 1), (records.DECRYPT, 2), (records.DECRYPT, 4)]
    )
    coef, intercept = run_federation(_executor(grid), setup, parts, _train)
    np.testing.assert_array_equal(coef, expected[0])
    assert intercept == expected[1]
    assert grid.restarts == [KEYHOLDER + 1, KEYHOLDER + 2, KEYHOLDER + 3]
    # Each lost release was answered again with the same bytes, not decrypted twice:
    # the store holds one release per round, and the rounds are the uninterrupted ones.
    assert _released(tmp_path, keys, identity) == [0, 1, 2, 3, 4]
    answered = [
        records.config_of(r)["release"]
        for r in grid.replies
        if r.metadata.message_type == records.DECRYPT
    ]
    assert len(answered) == 5
    assert all(records.config_of(lost)["release"] in answered for lost in grid.lost_replies)


def test_a_ticket_lost_with_its_node_is_redone_under_the_next_round_id(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    keys, identity, node = _provisioned(tmp_path, setup)
    expected = run_federation("inprocess", setup, parts, _train)
    # Dies after signing and saving the magnitude round's ticket and the fourth ticket
    # it is asked for (train round 1, after the repeat of the first).
    grid = _DyingKeyHolder(_grid(parts, node), [(records.TICKET, 0), (records.TICKET, 3)])
    coef, intercept = run_federation(_executor(grid), setup, parts, _train)
    np.testing.assert_array_equal(coef, expected[0])
    assert intercept == expected[1]
    # Rounds 0 and 3 were ticketed and lost: never released, redone as 1 and 4.
    assert _released(tmp_path, keys, identity) == [1, 2, 4, 5, 6]


def test_a_key_holder_that_never_comes_back_is_an_executor_error(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    grid = _grid(parts, node)

    def lose_the_key_holder(federation):
        federation.standardize()
        grid.silent.add(KEYHOLDER)
        federation.train(1)

    executor = FlowerExecutor(grid, nodes=4, reply_timeout=0.05, start_timeout=1)
    with pytest.raises(ExecutorError, match="no key-holder node came back within 1 s"):
        run_federation(executor, setup, parts, lose_the_key_holder)


def test_an_authenticated_node_that_keeps_its_id_is_asked_again_after_node_unavailable(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    keys, identity, node = _provisioned(tmp_path, setup)
    expected = run_federation("inprocess", setup, parts, _train)
    # The SuperLink answers NODE_UNAVAILABLE; the node comes back under the same id.
    grid = _DyingKeyHolder(
        _grid(parts, node), [(records.TICKET, 2), (records.DECRYPT, 3)], same_id=True
    )
    coef, intercept = run_federation(_executor(grid), setup, parts, _train)
    np.testing.assert_array_equal(coef, expected[0])
    assert intercept == expected[1]
    assert grid.restarts == [KEYHOLDER, KEYHOLDER]
    assert _released(tmp_path, keys, identity) == [0, 1, 3, 4, 5]


def test_a_refusal_is_raised_at_once_never_asked_again(tmp_path):
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    grid = _grid(parts, node)
    seen = {}

    def replay(federation):
        federation.standardize()
        # The magnitude round's aggregate, shown again after the moments round.
        seen["aggregate"] = [m for m in grid.sent if m.metadata.message_type == records.DECRYPT][0]
        sent = len(grid.sent)
        with pytest.raises(PolicyViolation, match="round 0 .* is not the open round"):
            federation.keyholder.decrypt_aggregate(
                records.config_of(seen["aggregate"])["encrypted-aggregate"]
            )
        seen["after"] = grid.sent[sent:]
        return True

    assert run_federation(_executor(grid), setup, parts, replay)
    # One request, to the key holder's node, and no search for another key holder.
    assert [(m.metadata.dst_node_id, m.metadata.message_type) for m in seen["after"]] == [
        (KEYHOLDER, records.DECRYPT)
    ]


def _federation_of(grid: LoopbackGrid) -> bytes:
    """The federation id, which every ticket sent to a client carries."""
    ticket = next(m for m in grid.sent if m.metadata.message_type == records.ROUND)
    return decode(records.config_of(ticket)["round-start"], RoundStart).federation


def _genuine_releases(grid: LoopbackGrid) -> list[bytes]:
    return [
        records.config_of(r)["release"]
        for r in grid.replies
        if r.metadata.message_type == records.DECRYPT and records.CONFIG in r.content
    ]


def _forged_mean(grid: LoopbackGrid, request: bytes) -> bytes:
    """A mean of the forger's choosing for the round asked, signed by its own identity."""
    asked = decode(request, EncryptedAggregate)
    width = _partitions()[0][0].shape[1] + 1  # the coefficients and the intercept
    forged = encode(Aggregate(asked.round, asked.task, np.full(width, 100.0), 3))
    return Release.sign(Identity(), _federation_of(grid), forged).to_bytes()


def _replayed_release(grid: LoopbackGrid, request: bytes) -> bytes:
    """The real key holder's release of the round before, with its genuine signature."""
    asked = decode(request, EncryptedAggregate).round
    return [r for r in _genuine_releases(grid) if Release.from_bytes(r).message().round < asked][-1]


def _forged_reply(message: Message, release: bytes) -> Message:
    # "aggregate" too, which the node answered with before releases were signed.
    aggregate = Release.from_bytes(release).aggregate
    return records.reply(message, {"release": release, "aggregate": aggregate})


class _Impostor(_DyingKeyHolder):
    """The key-holder node dies at a decryption, and a node that says
    ``role='keyholder'`` joins first; the key holder comes back after it, or not.

    The impostor holds what any node can see (the federation id of the tickets the
    clients were sent, the releases the key holder sent before): it answers a
    proof with its own signature, a decryption with ``forge`` and a ticket with a
    refusal that would stop training.
    """

    def __init__(self, grid: LoopbackGrid, death: int, forge, *, comes_back: bool) -> None:
        super().__init__(grid, [(records.DECRYPT, death)])
        self.forge, self.comes_back = forge, comes_back
        self.impostor: int | None = None
        self.impostor_saw: list[str] = []

    def _restart(self) -> None:
        self.impostor = max(self.contexts) + 1
        self.contexts[self.impostor] = Context(
            run_id=1,
            node_id=self.impostor,
            node_config={"role": "keyholder"},
            state=RecordDict(),
            run_config={},
        )
        if self.comes_back:
            super()._restart()
        else:
            self.silent.add(self.keyholder)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            kind = message.metadata.message_type
            if message.metadata.dst_node_id != self.impostor or kind == records.HELLO:
                ids.extend(super().push_messages([message]))
                continue
            self.impostor_saw.append(kind)
            message.metadata.__dict__["_message_id"] = str(uuid4())
            config = records.config_of(message)
            if kind == records.PROVE:
                challenge = records.identity_challenge(config["nonce"])
                reply = records.reply(message, {"signature": Identity().sign(challenge)})
            elif kind == records.DECRYPT:
                reply = _forged_reply(message, self.forge(self, config["encrypted-aggregate"]))
            else:
                reply = Message(Error(0, "PolicyViolation: the key is retired"), reply_to=message)
            self.sent.append(message)
            ids.append(message.metadata.message_id)
            self._waiting[message.metadata.message_id] = reply
        return ids


@pytest.mark.parametrize("forge", [_forged_mean, _replayed_release], ids=["forged", "replayed"])
def test_a_node_that_only_says_it_is_the_key_holder_is_never_asked(tmp_path, forge):
    """Red team 35's impostor joins when the key holder is silent at the last
    decryption, after which no ticket would catch a forged release."""
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    fewer = run_federation("inprocess", setup, parts, lambda f: _train_rounds(f, ROUNDS - 1))
    # Two statistics rounds and three training rounds: dies at the fifth decryption.
    grid = _Impostor(_grid(parts, node), 4, forge, comes_back=False)
    coef, intercept, skipped = run_federation(
        _executor(grid), setup, parts, lambda f: _train_rounds(f, ROUNDS)
    )
    # It was asked to prove it is the key holder, once, and then nothing: the last
    # round is skipped (no key holder came back) and the model is the one of the
    # rounds before, bit for bit.
    assert grid.impostor is not None and grid.impostor_saw == [records.PROVE]
    assert skipped == [False] * (ROUNDS - 1) + [True]
    np.testing.assert_array_equal(coef, fewer[0])
    assert intercept == fewer[1]


@pytest.mark.parametrize(
    ("death", "released"),
    [((records.DECRYPT, 4), [0, 1, 2, 3, 4]), ((records.TICKET, 2), [0, 1, 3, 4, 5])],
    ids=["decryption", "ticket"],
)
def test_the_key_holder_is_found_again_past_an_impostor_that_joined_first(
    tmp_path, death, released
):
    parts = _partitions()
    setup = _setup(parts)
    keys, identity, node = _provisioned(tmp_path, setup)
    expected = run_federation("inprocess", setup, parts, _train)
    grid = _Impostor(_grid(parts, node), 4, _forged_mean, comes_back=True)
    grid.deaths = {death}
    coef, intercept = run_federation(_executor(grid), setup, parts, _train)
    np.testing.assert_array_equal(coef, expected[0])
    assert intercept == expected[1]
    # The impostor, the lower node id, was asked first, and only to prove itself.
    assert grid.impostor_saw == [records.PROVE]
    assert grid.restarts == [grid.impostor + 1]
    assert _released(tmp_path, keys, identity) == released


class _TamperingRelay(LoopbackGrid):
    """A relay (a SuperLink) that rewrites the key holder's last release on its way."""

    def __init__(self, grid: LoopbackGrid, last: int, forge) -> None:
        self.__dict__.update(grid.__dict__)
        self.last, self.forge, self.decryptions = last, forge, 0

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = super().push_messages(messages)
        for message in messages:
            if message.metadata.message_type == records.DECRYPT:
                self.decryptions += 1
                if self.decryptions == self.last:
                    request = records.config_of(message)["encrypted-aggregate"]
                    forged = self.forge(self, request)
                    self._waiting[message.metadata.message_id] = _forged_reply(message, forged)
        return ids


@pytest.mark.parametrize("forge", [_forged_mean, _replayed_release], ids=["forged", "replayed"])
def test_a_release_changed_on_its_way_is_not_applied(tmp_path, forge):
    """The signature, not the node that answered, vouches for a release."""
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    fewer = run_federation("inprocess", setup, parts, lambda f: _train_rounds(f, ROUNDS - 1))
    grid = _TamperingRelay(_grid(parts, node), 5, forge)
    coef, intercept, skipped = run_federation(
        _executor(grid), setup, parts, lambda f: _train_rounds(f, ROUNDS)
    )
    # The last round is skipped, and the model is the one of the rounds before, bit
    # for bit.
    assert grid.decryptions == 5
    assert skipped == [False] * (ROUNDS - 1) + [True]
    np.testing.assert_array_equal(coef, fewer[0])
    assert intercept == fewer[1]


def _train_rounds(federation, rounds):
    outcomes = federation.train(rounds)
    coef, intercept = federation.aggregator.raw_model()
    return coef, intercept, [o.skipped is not None for o in outcomes]


class _Claimants(LoopbackGrid):
    """Nodes that say ``role='keyholder'`` and never answer a proof."""

    def __init__(self, grid: LoopbackGrid) -> None:
        self.__dict__.update(grid.__dict__)
        self.claimants: set[int] = set()
        self.prove_exchanges = 0

    def join(self, claimants: int) -> None:
        first = max(self.contexts) + 1
        self.claimants = set(range(first, first + claimants))
        for node in self.claimants:
            self.contexts[node] = Context(
                run_id=1,
                node_id=node,
                node_config={"role": "keyholder"},
                state=RecordDict(),
                run_config={},
            )

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        messages = list(messages)
        if any(m.metadata.message_type == records.PROVE for m in messages):
            self.prove_exchanges += 1
        ids = []
        for message in messages:
            if message.metadata.dst_node_id in self.claimants and (
                message.metadata.message_type == records.PROVE
            ):
                message.metadata.__dict__["_message_id"] = str(uuid4())
                self.sent.append(message)
                ids.append(message.metadata.message_id)  # and no reply, ever
                continue
            ids.extend(super().push_messages([message]))
        return ids


def test_nodes_that_never_answer_a_proof_cannot_stretch_the_search(tmp_path):
    """Red team 39: each claimant's proof was awaited reply_timeout in turn, past the
    deadline; with the default of 900 s, three claimants held the search 45 minutes."""
    parts = _partitions()
    setup = _setup(parts)
    _, _, node = _provisioned(tmp_path, setup)
    grid = _Claimants(_grid(parts, node))
    executor = FlowerExecutor(grid, nodes=4, reply_timeout=900, start_timeout=1)
    executor.start()
    grid.silent.add(KEYHOLDER)
    grid.join(claimants=3)
    outcome: dict[str, BaseException] = {}

    def search() -> None:
        identity = Identity().public_bytes
        try:
            rejoin.find_keyholder(executor, KEYHOLDER, time.monotonic() + 1, identity)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=search, daemon=True)
    thread.start()
    thread.join(timeout=120)  # a hang guard for a 1 s search, not a speed check
    assert not thread.is_alive(), "the search outlived its deadline"
    assert isinstance(outcome.get("error"), ExecutorError)
    # The three claimants were asked to prove themselves together, once each.
    assert grid.prove_exchanges == 1
