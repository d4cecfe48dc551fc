"""The file workflow's formats: identities, the federation file, releases and role states."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from he_fed.crypto import wire
from he_fed.exceptions import (
    ConfigurationError,
    HEFedError,
    InvalidSignature,
    KeyMismatchError,
    MalformedMessage,
    StateError,
)
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import Aggregate, Aggregator, ClientPlan, Identity, RunPlan, Task, encode
from he_fed.runtime.files import (
    ClientState,
    FederationFile,
    Release,
    load_aggregator,
    read_client_state,
    read_signing_key,
    read_verify_key,
    save_aggregator,
    save_client_state,
    signing_key_bytes,
    verify_key_bytes,
)
from he_fed.runtime.files.describe import KINDS, describe_file
from tests.conftest import keys_for

FEDERATION = bytes(range(16))
CLIENT_PLAN = ClientPlan(
    model=LogisticRegressionGD(learning_rate=0.25, batch_size=8, random_state=3),
    local_epochs=2,
    classes=np.array(["no", "yes"]),
)
PLAN = RunPlan(n_features=2, server_lr=0.5, client_plan=CLIENT_PLAN.digest())


def _federation(identity: Identity, **changes: object) -> FederationFile:
    keys = keys_for("paillier-packed")
    options: dict[str, object] = dict(
        federation=FEDERATION,
        key=keys.public,
        plan=PLAN,
        client_plan=CLIENT_PLAN,
        min_clients=2,
        clients={"a": Identity().public_bytes, "b": Identity().public_bytes},
    )
    options.update(changes)
    return FederationFile.sign(identity, **options)  # type: ignore[arg-type]


def test_identity_files_round_trip_and_keep_the_private_half_out_of_the_public_one():
    me = Identity()
    private, public = (
        signing_key_bytes("hospital-a", me),
        verify_key_bytes("hospital-a", me.public_bytes),
    )
    name, again = read_signing_key(private)
    assert (name, again.private_bytes()) == ("hospital-a", me.private_bytes())
    assert read_verify_key(public) == ("hospital-a", me.public_bytes)
    assert me.private_bytes() not in public
    with pytest.raises(MalformedMessage, match="expected a signing key"):
        read_signing_key(public)
    with pytest.raises(ConfigurationError, match="not a name"):
        signing_key_bytes("../etc", me)
    forged = wire.seal_envelope(
        wire.Kind.VERIFY_KEY,
        wire.open_envelope(public).body,
        fingerprint=Identity().public_bytes,
    )
    with pytest.raises(MalformedMessage, match="does not match its header"):
        read_verify_key(forged)


def test_the_federation_file_carries_the_plan_and_its_signature_binds_every_field():
    keyholder = Identity()
    signed = _federation(keyholder)
    read = FederationFile.from_bytes(signed.to_bytes())
    assert (read.federation, read.keyholder, read.plan, read.min_clients) == (
        FEDERATION,
        keyholder.public_bytes,
        PLAN,
        2,
    )
    assert read.clients == signed.clients
    assert read.client_plan.to_config() == signed.client_plan.to_config()
    assert read.client_plan.model.get_params() == signed.client_plan.model.get_params()
    np.testing.assert_array_equal(read.client_plan.classes, ["no", "yes"])

    # An aggregator that adds its own client, or lowers the cohort, and re-signs
    # with its own identity: the signer is no longer the pinned key holder.
    ghost = {**signed.clients, "ghost": Identity().public_bytes}
    rogue = _federation(Identity(), clients=ghost)
    assert FederationFile.from_bytes(rogue.to_bytes()).keyholder != keyholder.public_bytes
    # Without re-signing, the key holder's signature no longer verifies.
    edited = dataclasses.replace(signed, min_clients=1)
    with pytest.raises(InvalidSignature):
        FederationFile.from_bytes(edited.to_bytes())
    shuffled = dataclasses.replace(signed, keyholder=Identity().public_bytes)
    with pytest.raises(InvalidSignature):
        FederationFile.from_bytes(shuffled.to_bytes())
    # The run plan names the clients' plan: a key holder cannot sign one plan into
    # its tickets and another into the file, and a file that does is refused.
    faster = dataclasses.replace(CLIENT_PLAN, local_epochs=3)
    with pytest.raises(ConfigurationError, match="another clients' plan"):
        _federation(keyholder, client_plan=faster)
    split = dataclasses.replace(signed, client_plan=faster)
    resigned = dataclasses.replace(
        split, signature=keyholder.sign(b"he-fed/federation/v1" + split._signed_bytes())
    )
    with pytest.raises(MalformedMessage, match="names another clients' plan"):
        FederationFile.from_bytes(resigned.to_bytes())


def test_a_release_verifies_only_for_its_key_holder_and_federation():
    keyholder = Identity()
    aggregate = encode(Aggregate(3, Task.TRAIN, np.array([0.5, -1.0, 2.0]), 3))
    release = Release.from_bytes(Release.sign(keyholder, FEDERATION, aggregate).to_bytes())
    assert release.verified(keyholder.public_bytes, FEDERATION).round == 3
    with pytest.raises(InvalidSignature):
        release.verified(Identity().public_bytes, FEDERATION)
    with pytest.raises(InvalidSignature):
        release.verified(keyholder.public_bytes, bytes(16))
    other = encode(Aggregate(3, Task.TRAIN, np.array([0.5, -1.0, 2.5]), 3))
    with pytest.raises(InvalidSignature):
        dataclasses.replace(release, aggregate=other).verified(keyholder.public_bytes, FEDERATION)


def test_a_client_state_is_sealed_under_its_own_identity(tmp_path):
    me, pin = Identity(), Identity().public_bytes
    path = tmp_path / "a.state"
    saved = save_client_state(path, ClientState("a", pin, FEDERATION, 4, 3), me)
    assert saved.generation == 1
    assert read_client_state(path.read_bytes(), me, what="state") == saved
    with pytest.raises(StateError, match="does not verify|other keys"):
        read_client_state(path.read_bytes(), Identity(), what="state")
    envelope = wire.open_envelope(path.read_bytes())
    content = bytearray(envelope.body)
    content[-33] ^= 1  # the phase, re-sealed with a valid checksum
    edited = wire.seal_envelope(envelope.kind, bytes(content), fingerprint=envelope.fingerprint)
    with pytest.raises(StateError, match="does not verify"):
        read_client_state(edited, me, what="state")


def test_the_aggregator_resumes_its_model_chain_from_its_state(tmp_path):
    keys = keys_for("paillier-packed")
    pin = Identity().public_bytes
    aggregator = Aggregator(
        keys.public.aggregation_key(),
        plan=PLAN,
        keyholder=pin,
        clients={"a": Identity().public_bytes},
    )
    aggregator.model.weights = np.array([0.25, -0.5, 1.0])
    aggregator.model.center, aggregator.model.scale = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    path = tmp_path / "aggregator.state"
    save_aggregator(path, aggregator)
    resumed = load_aggregator(path, keys.public.aggregation_key(), allow_insecure=True)
    assert resumed is not None and resumed.export_state() == aggregator.export_state()
    assert resumed.keyholder == pin
    np.testing.assert_array_equal(resumed.weights, [0.25, -0.5, 1.0])
    other = keys_for("paillier").public.aggregation_key()
    with pytest.raises(StateError, match="another key"):
        load_aggregator(path, other, allow_insecure=True)
    assert load_aggregator(tmp_path / "none", other, allow_insecure=True) is None
    with pytest.raises(KeyMismatchError):
        Aggregator.restore(other, path.read_bytes(), allow_insecure=True)


def _samples() -> list[bytes]:
    me = Identity()
    keys = keys_for("paillier-packed")
    aggregator = Aggregator(keys.public.aggregation_key(), plan=PLAN, keyholder=me.public_bytes)
    aggregate = encode(Aggregate(0, Task.MAGNITUDE, np.array([1.0, 2.0]), 2))
    client_state = ClientState("a", me.public_bytes, FEDERATION, 2, 3).to_content()
    return [
        signing_key_bytes("a", me),
        verify_key_bytes("a", me.public_bytes),
        _federation(me).to_bytes(),
        Release.sign(me, FEDERATION, aggregate).to_bytes(),
        aggregator.export_state(),
        wire.seal_envelope(wire.Kind.CLIENT_STATE, client_state + bytes(32)),
    ]


_SAMPLES = _samples()


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.tuples(st.sampled_from(_SAMPLES), st.integers(0, 1 << 16), st.integers(1, 255)))
def test_every_loader_refuses_mutated_files_with_an_hefed_error(data):
    """A byte changed, and the envelope re-sealed with a valid checksum, reaches every parser."""
    sample, at, flip = data
    envelope = wire.open_envelope(sample)
    body = bytearray(envelope.body)
    body[at % len(body)] ^= flip
    mutated = wire.seal_envelope(
        envelope.kind,
        bytes(body),
        scheme=envelope.scheme,
        params=envelope.params,
        fingerprint=envelope.fingerprint,
    )
    keys = keys_for("paillier-packed")
    loaders = [
        read_signing_key,
        read_verify_key,
        FederationFile.from_bytes,
        lambda b: Release.from_bytes(b).message(),
        lambda b: Aggregator.restore(keys.public.aggregation_key(), b),
        lambda b: read_client_state(b, Identity(), what="state"),
        *(lambda b, kind=kind: describe_file(kind, b) for kind in KINDS),
    ]
    for load in loaders:
        with contextlib.suppress(HEFedError):
            load(mutated)
