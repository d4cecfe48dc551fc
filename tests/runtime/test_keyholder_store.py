"""The key holder's state on disk: restarts keep the policy, edits and rollbacks are refused."""

from __future__ import annotations

import errno
import os
import shutil

import numpy as np
import pytest

from he_fed.crypto import wire
from he_fed.exceptions import PolicyViolation, StateError
from he_fed.protocol import (
    Aggregate,
    Aggregator,
    EncryptedAggregate,
    EncryptedUpdate,
    Identity,
    KeyHolder,
    Receipt,
    Task,
    decode,
    encode,
)
from he_fed.runtime import _sealed, keyholder_store
from he_fed.runtime.keyholder_store import KeyHolderStore, parse_content
from tests.conftest import keys_for
from tests.protocol.harness import PLAN, client

SCHEME = "paillier-packed"


def _registered(tmp_path, sizes=(30, 50, 20)):
    """A new federation's store at tmp_path, an aggregator, and its registered clients."""
    keys, identity = keys_for(SCHEME), Identity()
    # The clients' view of the key holder: its public key and identity.
    public_view = KeyHolder(keys, plan=PLAN, identity=identity)
    clients = [client(public_view, f"c{i}", i, n) for i, n in enumerate(sizes)]
    path = tmp_path / keyholder_store.STATE_FILE
    store = KeyHolderStore.create(
        path,
        keys,
        identity,
        plan=PLAN,
        min_clients=2,
        clients={c.client_id: c.verify_key for c in clients},
    )
    aggregator = Aggregator(
        public_view.aggregation_key_bytes(),
        plan=PLAN,
        keyholder=identity.public_bytes,
        allow_insecure=True,
    )
    for c in clients:
        aggregator.register(c.client_id, c.verify_key)
    return keys, identity, path, store, aggregator, clients


def _round(store, aggregator, clients):
    """One training round; returns (ticket, {client: update bytes})."""
    start = aggregator.open_round(store.start_round(Task.TRAIN))
    return start, {c.client_id: c.participate(start).update for c in clients}


def _aggregate(updates, cohort):
    """The sum of ``cohort``'s updates with their receipts, as any aggregator can build it."""
    parsed = [decode(updates[cid], EncryptedUpdate) for cid in cohort]
    key = keys_for(SCHEME).public.aggregation_key()
    vectors = [key.load_vector(u.vector) for u in parsed]
    total = sum(vectors[1:], vectors[0])
    receipts = tuple(
        Receipt(u.client_id, v.commitment(), u.commitment_signature, u.proof, u.binding)
        for u, v in zip(parsed, vectors, strict=True)
    )
    return encode(EncryptedAggregate(parsed[0].round, parsed[0].task, receipts, total.to_bytes()))


def test_a_restarted_key_holder_refuses_a_released_round_with_another_cohort(tmp_path):
    keys, identity, path, store, aggregator, clients = _registered(tmp_path)
    start, updates = _round(store, aggregator, clients)
    everyone = _aggregate(updates, ["c0", "c1", "c2"])
    release = store.decrypt_aggregate(everyone)
    assert decode(release, Aggregate).contributors == 3
    store.close()  # the process ends

    restarted = KeyHolderStore.open(path, keys, identity)
    assert (restarted.keyholder.last_round, restarted.keyholder.released) == (0, 1)
    without_victim = _aggregate(updates, ["c0", "c1"])
    with pytest.raises(PolicyViolation, match="not the open round"):
        restarted.decrypt_aggregate(without_victim)
    # The very aggregate it released is answered with the same release, undecrypted.
    assert restarted.decrypt_aggregate(everyone) == release
    assert restarted.keyholder.released == 1
    # The model chain survived the restart: the next ticket carries the moved model.
    aggregator.apply(release)
    aggregator.open_round(restarted.start_round(Task.TRAIN))
    np.testing.assert_array_equal(aggregator.weights, restarted.keyholder.model.weights)
    restarted.close()


def test_the_state_file_holds_no_secret_and_is_private(tmp_path):
    keys, identity, path, store, _, _ = _registered(tmp_path)
    store.close()
    data = path.read_bytes()
    assert keys.secret.to_bytes() not in data and identity.private_bytes() not in data
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(tmp_path)) == ["keyholder.state", "keyholder.state.lock"]


def test_a_flipped_byte_refuses_to_start(tmp_path):
    keys, identity, path, store, _, _ = _registered(tmp_path)
    store.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match="not readable"):
        KeyHolderStore.open(path, keys, identity)


def test_a_field_changed_and_resealed_without_the_key_refuses_to_start(tmp_path):
    """The attacker rewrites min_clients to 1 and re-seals with a valid checksum."""
    keys, identity, path, store, _, _ = _registered(tmp_path)
    store.close()
    envelope = wire.open_envelope(path.read_bytes(), wire.Kind.KEYHOLDER_STORE)
    content = envelope.body[: -_sealed.TAG_BYTES]
    generation, (state, ticket, releases, last) = parse_content(content)
    inner = wire.open_envelope(state, wire.Kind.KEYHOLDER_STATE)
    # federation, n_features, server_lr, flags, the clients' plan digest: then min_clients
    offset = 16 + 8 + 8 + 1 + 32
    body = bytearray(inner.body)
    assert int.from_bytes(body[offset : offset + 8], "big") == 2
    body[offset : offset + 8] = (1).to_bytes(8, "big")
    edited_state = wire.seal_envelope(
        wire.Kind.KEYHOLDER_STATE, bytes(body), fingerprint=inner.fingerprint
    )
    edited = content.replace(state, edited_state)
    forged_tag = _sealed.derive_key(b"he-fed/keyholder-state/v1", b"a guess")
    path.write_bytes(
        _sealed.seal(
            wire.Kind.KEYHOLDER_STORE, edited, forged_tag, fingerprint=envelope.fingerprint
        )
    )
    with pytest.raises(StateError, match="does not verify"):
        KeyHolderStore.open(path, keys, identity)
    # Another identity (or other keys) cannot open a genuine state either.
    path.write_bytes(
        wire.seal_envelope(wire.Kind.KEYHOLDER_STORE, envelope.body, fingerprint=b"x" * 32)
    )
    with pytest.raises(StateError, match="other keys"):
        KeyHolderStore.open(path, keys, identity)


def test_an_older_copy_is_caught_when_a_newer_round_is_shown(tmp_path):
    keys, identity, path, store, aggregator, clients = _registered(tmp_path)
    start, updates = _round(store, aggregator, clients)
    aggregator.apply(store.decrypt_aggregate(_aggregate(updates, ["c0", "c1"])))
    shutil.copy(path, tmp_path / "old")  # round 0 released, no round 1 yet
    start, updates = _round(store, aggregator, clients)
    newer = _aggregate(updates, ["c0", "c1", "c2"])
    store.close()
    shutil.copy(tmp_path / "old", path)  # rolled back
    rolled_back = KeyHolderStore.open(path, keys, identity)
    assert rolled_back.keyholder.last_round == 0
    with pytest.raises(StateError, match="rolled back"):
        rolled_back.decrypt_aggregate(newer)
    assert rolled_back.keyholder.released == 1
    rolled_back.close()


def test_a_second_process_cannot_open_the_state(tmp_path):
    keys, identity, path, store, _, _ = _registered(tmp_path)
    with pytest.raises(StateError, match="another process"):
        KeyHolderStore.open(path, keys, identity)
    store.close()
    KeyHolderStore.open(path, keys, identity).close()


def test_a_state_replaced_behind_its_back_is_not_overwritten(tmp_path):
    keys, identity, path, store, aggregator, clients = _registered(tmp_path)
    old = path.read_bytes()
    store.start_round(Task.TRAIN)
    path.write_bytes(old)  # someone swapped the file while the store was open
    with pytest.raises(StateError, match="changed since it was loaded"):
        store.start_round(Task.TRAIN)
    assert path.read_bytes() == old
    store.close()


def test_the_save_comes_before_the_release(tmp_path, monkeypatch):
    """A failed write releases nothing, and the round is neither lost nor released twice."""
    keys, identity, path, store, aggregator, clients = _registered(tmp_path)
    start, updates = _round(store, aggregator, clients)
    everyone = _aggregate(updates, ["c0", "c1", "c2"])
    on_disk = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keyholder_store, "write_atomic", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.decrypt_aggregate(everyone)  # decrypted in memory, never returned
    assert path.read_bytes() == on_disk
    with pytest.raises(StateError, match="reopen it from disk"):
        store.decrypt_aggregate(everyone)
    store.close()
    monkeypatch.undo()

    reopened = KeyHolderStore.open(path, keys, identity)
    assert (reopened.keyholder.last_round, reopened.keyholder.released) == (0, 0)
    release = reopened.decrypt_aggregate(everyone)  # the round was not lost
    assert decode(release, Aggregate).contributors == 3
    assert reopened.keyholder.released == 1
    without_victim = _aggregate(updates, ["c0", "c1"])
    with pytest.raises(PolicyViolation, match="not the open round"):
        reopened.decrypt_aggregate(without_victim)  # nor released twice
    assert [r.round for r in reopened.releases] == [0]
    reopened.close()


def test_a_ticket_that_could_not_be_saved_never_leaves(tmp_path, monkeypatch):
    keys, identity, path, store, aggregator, clients = _registered(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keyholder_store, "write_atomic", disk_full)
    with pytest.raises(OSError):
        store.start_round(Task.TRAIN)
    store.close()
    monkeypatch.undo()
    reopened = KeyHolderStore.open(path, keys, identity)
    assert reopened.keyholder.last_round == -1
    ticket = reopened.start_round(Task.TRAIN)
    assert reopened.last_ticket == ticket and reopened.generation == 2
    reopened.close()


def test_a_refusal_that_used_up_the_round_is_saved_before_it_is_raised(tmp_path):
    keys, identity, path, store, aggregator, clients = _registered(tmp_path)
    start, updates = _round(store, aggregator, clients)
    alone = _aggregate(updates, ["c0"])  # below the minimum cohort
    with pytest.raises(PolicyViolation, match="at least 2"):
        store.decrypt_aggregate(alone)
    store.close()
    reopened = KeyHolderStore.open(path, keys, identity)
    with pytest.raises(PolicyViolation, match="not the open round"):
        reopened.decrypt_aggregate(_aggregate(updates, ["c0", "c1"]))
    reopened.close()


def test_create_refuses_to_replace_a_federation(tmp_path):
    keys, identity, path, store, _, _ = _registered(tmp_path)
    store.close()
    with pytest.raises(StateError, match="exists"):
        KeyHolderStore.create(path, keys, identity, plan=PLAN)
    with pytest.raises(StateError, match="no key holder state"):
        KeyHolderStore.open(tmp_path / "missing.state", keys, identity)


def test_every_scheme_reopens_its_state_and_only_with_its_own_secrets(tmp_path, scheme_name):
    keys, identity = keys_for(scheme_name), Identity()
    path = tmp_path / "keyholder.state"
    KeyHolderStore.create(path, keys, identity, plan=PLAN, min_clients=1).close()
    with KeyHolderStore.open(path, keys, identity) as store:
        assert store.generation == 1 and store.keyholder.last_round == -1
    with pytest.raises(StateError, match="does not verify"):
        KeyHolderStore.open(path, keys, Identity())
