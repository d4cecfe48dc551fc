"""Roles rebuilt from plain data behave exactly like the originals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from he_fed.crypto import Paillier
from he_fed.exceptions import (
    ConfigurationError,
    DatasetError,
    InsecureParameters,
    KeyMismatchError,
    MalformedMessage,
    PolicyViolation,
)
from he_fed.models import LinearRegressionGD, LogisticRegressionGD
from he_fed.privacy import clipped_gradient_mean
from he_fed.protocol import (
    Aggregate,
    Client,
    EncryptedAggregate,
    EncryptedUpdate,
    Identity,
    KeyHolder,
    Receipt,
    RoundStart,
    RunPlan,
    Task,
    decode,
    encode,
)
from he_fed.protocol.receipts import ticket_payload
from he_fed.protocol.setup import build_client
from he_fed.protocol.spec import ClientPlan, scheme_from_config, scheme_to_config, ticket_plan
from tests.conftest import FAST_SCHEMES, keys_for
from tests.protocol.harness import signed_update

_KEYHOLDER = Identity()


def _ticket(round_id: int, task: Task, weights, center, scale, key, plan: bytes = b"") -> bytes:
    """A round start for ``key`` signed by the test's key holder identity, naming the
    clients' plan ``plan`` under the key's encoding plan, as a key holder does."""
    signed_plan = ticket_plan(plan, key.scheme)
    unsigned = RoundStart(
        bytes(16), round_id, task, key.fingerprint, weights, center, scale, signed_plan
    )
    signature = _KEYHOLDER.sign(ticket_payload(unsigned.signed_bytes()))
    return encode(dataclasses.replace(unsigned, signature=signature))


def _client(public: bytes, **kwargs) -> Client:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(25, 4))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegressionGD(learning_rate=0.3, batch_size=5, random_state=7)
    return Client(
        "c",
        X,
        y,
        public,
        keyholder=_KEYHOLDER.public_bytes,
        model=model,
        local_epochs=3,
        classes=np.array([0, 1]),
        allow_insecure=True,
        **kwargs,
    )


def test_a_client_rebuilt_from_its_spec_sends_the_same_update():
    keys = keys_for("paillier")
    original = _client(keys.public.to_bytes())
    rebuilt = build_client(original.spec())
    plan = original.spec().plan.digest()
    assert build_client(rebuilt.spec()).spec().plan.digest() == plan
    start = _ticket(0, Task.TRAIN, np.full(5, 0.1), np.zeros(4), np.ones(4), keys.public, plan)
    sums = []
    for client in (original, rebuilt):
        update = decode(client.participate(start).update, EncryptedUpdate)
        sums.append(keys.secret.decrypt_weighted(keys.public.load_vector(update.vector)))
    np.testing.assert_array_equal(sums[0].total, sums[1].total)
    assert sums[0].weight == sums[1].weight == 25


def test_a_client_trains_only_under_the_plan_its_key_holder_s_ticket_names():
    """Red team 40: a relay that gives one client another recipe than the rest (the
    others at a learning rate of 1e-300) would release that client's update alone.
    A client answers only a ticket naming its own plan's digest, which the key
    holder's run plan fixes for the whole federation."""
    keys = keys_for("paillier")
    client = _client(keys.public.to_bytes())
    mine = client.spec().plan.digest()
    starved = ClientPlan(
        LogisticRegressionGD(learning_rate=1e-300, batch_size=5, random_state=7),
        local_epochs=3,
        classes=np.array([0, 1]),
        allow_insecure=True,
    ).digest()
    fields = (Task.TRAIN, np.full(5, 0.1), np.zeros(4), np.ones(4), keys.public)
    for round_id, other in enumerate((b"", starved)):
        with pytest.raises(PolicyViolation, match="another training plan"):
            client.participate(_ticket(round_id, *fields, other))
    assert client.last_round == -1  # refused before it counted as an attempt
    assert client.participate(_ticket(0, *fields, mine)).round == 0
    # Red team 42: the very key (one fingerprint) under another encoding plan. A clip
    # of 2**64 would encode the client's update to zero while its weight counted.
    for changed in (dict(clip=2.0**64), dict(max_clients=1), dict(precision_bits=40)):
        other = _client(keys.public.with_plan(**changed).to_bytes())
        assert other.spec().plan.digest() == mine
        with pytest.raises(PolicyViolation, match="another training plan or encoding plan"):
            other.participate(_ticket(0, *fields, mine))
    # Any change of the recipe is another digest.
    assert (
        len({mine, starved, dataclasses.replace(client.spec().plan, local_epochs=4).digest()}) == 3
    )


def test_class_labels_are_hashed_as_typed_and_a_client_holds_only_its_plan_s_labels():
    """Red team 41: with ``"0","1"`` hashed as ``0.0, 1.0``, a relay gave the other
    clients text labels under the honest digest; FedSGD trained their integer labels
    as no class, so their sums were zero and the release was the victim's alone."""
    model = LogisticRegressionGD(random_state=7)
    spellings = ([0, 1], [0.0, 1.0], [False, True], ["0", "1"])
    digests = {ClientPlan(model, classes=np.array(c)).digest() for c in spellings}
    assert len(digests) == len(spellings)
    public = keys_for("paillier").public.to_bytes()
    with pytest.raises(ConfigurationError, match=r"labels 0, 1, not among .*\['0', '1'\]"):
        Client("a", np.zeros((4, 2)), np.array([0, 1, 1, 0]), public, keyholder=bytes(32),
               model=model, classes=np.array(["0", "1"]), allow_insecure=True)  # fmt: skip
    with pytest.raises(ConfigurationError, match="labels outside the classes"):
        clipped_gradient_mean(
            model, np.zeros((4, 2)), np.array([0, 1, 1, 0]), np.zeros(3), 0.1, 1.0,
            np.array(["0", "1"]),
        )  # fmt: skip
    # A number's spellings are one label to the gradients, as to the estimator.
    X, y, weights = np.arange(8.0).reshape(4, 2), np.array([0, 1, 1, 1]), np.zeros(3)
    as_floats, _ = clipped_gradient_mean(model, X, y, weights, 0.1, 10.0, np.array([0.0, 1.0]))
    as_ints, _ = clipped_gradient_mean(model, X, y, weights, 0.1, 10.0, np.array([0, 1]))
    assert np.any(as_ints) and np.array_equal(as_floats, as_ints)


@pytest.mark.parametrize(
    ("column", "value", "classes", "named"),
    [
        (1, np.nan, None, r"NaN or infinite values in column\(s\) \[1\]"),
        (
            0,
            1e200,
            None,
            r"column\(s\) \[0\] whose squares overflow a double \(values up to 1e\+200\)",
        ),
        ("y", -1e160, None, r"column\(s\) \['target'\] whose squares overflow"),
    ],
)
def test_features_or_a_regression_target_whose_squares_overflow_are_refused_by_the_client(
    column, value, classes, named
):
    """Before, a column holding ``1e200`` standardised its squares to inf, the client's
    gradient descent diverged every round, and the fit ended with zero coefficients."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 2)), rng.normal(size=20)
    if column == "y":
        y[3] = value
    else:
        X[3, column] = value
    public = keys_for("paillier").public.to_bytes()
    with pytest.raises(DatasetError, match=named):
        Client("a", X, y, public, keyholder=bytes(32), model=LinearRegressionGD(),
               classes=classes, allow_insecure=True)  # fmt: skip
    # Just inside: the squares are finite, so the client is built.
    X[3] = np.sqrt(np.finfo(float).max / 40)
    Client("a", X, np.where(np.abs(y) > 1e100, 0.0, y), public, keyholder=bytes(32),
           model=LinearRegressionGD(), allow_insecure=True)  # fmt: skip


def test_a_client_plan_travels_as_primitives_and_comes_back_equal():
    plan = _client(keys_for("plain").public.to_bytes()).spec().plan
    config = plan.to_config()
    for value in config.values():
        items = value if isinstance(value, list) else [value]
        assert all(isinstance(v, (bool, int, float, str)) for v in items)
    back = ClientPlan.from_config(config)
    assert back.model.get_params() == plan.model.get_params()
    assert type(back.model) is LogisticRegressionGD
    assert (back.local_epochs, back.allow_insecure) == (3, True)
    np.testing.assert_array_equal(back.classes, [0, 1])
    linear = ClientPlan(LinearRegressionGD(tol=None), standardize_target=True)
    assert ClientPlan.from_config(linear.to_config()).model.get_params()["tol"] is None


def test_a_model_that_cannot_travel_as_plain_data_is_refused():
    plan = ClientPlan(LogisticRegressionGD(random_state=np.random.RandomState(0)))
    with pytest.raises(ConfigurationError, match="random_state"):
        plan.to_config()
    with pytest.raises(MalformedMessage, match="not a client plan"):
        ClientPlan.from_config({"model": "tree", "local-epochs": 1})


@pytest.mark.parametrize("name", sorted(FAST_SCHEMES))
def test_a_scheme_travels_as_primitives(name):
    scheme = FAST_SCHEMES[name]
    assert scheme_from_config(scheme_to_config(scheme)) == scheme


def test_an_insecure_scheme_needs_its_opt_in_on_the_other_side():
    config = scheme_to_config(Paillier(key_bits=1024, allow_insecure=True))
    config["allow-insecure"] = False
    with pytest.raises(InsecureParameters):
        scheme_from_config(config)


def test_a_restored_key_holder_keeps_its_secret_its_registry_and_its_policy():
    keys = keys_for("paillier")
    identity, mine = Identity(), Identity()
    clients = {"c": identity.public_bytes, "d": Identity().public_bytes}
    plan = RunPlan(n_features=1, standardize=False)
    keyholder = KeyHolder(keys, plan=plan, min_clients=1, clients=clients, identity=mine)
    signer = Client(
        "c",
        np.zeros((4, 1)),
        np.zeros(4),
        keys.public,
        keyholder=mine.public_bytes,
        model=LogisticRegressionGD(),
        allow_insecure=True,
    )
    signer._identity = identity

    def aggregate(start: bytes) -> bytes:
        vector = keys.public.encrypt(np.array([0.5, -0.25]), weight=4)
        update = decode(signed_update(signer, start, vector), EncryptedUpdate)
        receipt = Receipt(
            "c", vector.commitment(), update.commitment_signature, update.proof, update.binding
        )
        return encode(EncryptedAggregate(update.round, Task.TRAIN, (receipt,), update.vector))

    first = keyholder.start_round()
    keyholder.decrypt_aggregate(aggregate(first))
    second = keyholder.start_round()
    state = keyholder.export_state()
    assert keys.secret.to_bytes() not in state and mine.private_bytes() not in state
    restored = KeyHolder.restore(keys, mine, state)
    assert restored.export_state() == state
    assert (restored.last_round, restored.min_clients, restored.released) == (1, 1, 1)
    assert restored.registered_clients() == clients
    with pytest.raises(PolicyViolation, match="not the open round"):
        restored.decrypt_aggregate(aggregate(first))
    with pytest.raises(PolicyViolation, match="fixed at setup"):
        restored.register("ghost", Identity().public_bytes)
    answer = decode(restored.decrypt_aggregate(aggregate(second)), Aggregate)
    np.testing.assert_array_equal(answer.mean, [0.5, -0.25])
    np.testing.assert_array_equal(restored.model.weights, [1.0, -0.5])  # both releases
    with pytest.raises(KeyMismatchError):
        KeyHolder.restore(keys_for("paillier-packed"), mine, state)
