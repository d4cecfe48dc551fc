"""A multinomial plan: the weights are a matrix, one row per class, flattened row by row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from he_fed.crypto import wire
from he_fed.exceptions import ConfigurationError, MalformedMessage
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import Aggregator, KeyHolder, RunPlan, Task, decode
from he_fed.protocol.messages import FEDERATION_ID_BYTES, RoundStart
from he_fed.protocol.tasks import to_raw
from tests.conftest import keys_for
from tests.protocol.harness import N_FEATURES, bound, client, open_round

CLASSES = np.array([0, 1, 2])
PLAN3 = bound(RunPlan(n_features=N_FEATURES, standardize=False, n_outputs=3), classes=CLASSES)


def _three_class_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    y = np.argmax(X @ np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.5, -0.5, 0.0]]), axis=1)
    return X, y


def _roles(scheme_name: str, sizes=(30, 50, 20)):
    keyholder = KeyHolder(keys_for(scheme_name), plan=PLAN3, min_clients=2)
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(),
        plan=PLAN3,
        keyholder=keyholder.identity_bytes,
        allow_insecure=True,
    )
    clients = []
    for i, n in enumerate(sizes):
        c = client(keyholder, f"c{i}", i, n, classes=CLASSES)
        c._X, c._y = _three_class_data(i, n)
        c._columns = c._X
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
        clients.append(c)
    return keyholder, aggregator, clients


def _local_delta(c, weights: np.ndarray) -> np.ndarray:
    matrix = weights.reshape(3, N_FEATURES + 1)
    model = LogisticRegressionGD(learning_rate=0.5, max_iter=2).fit(
        c._X, c._y, coef_init=matrix[:, :-1], intercept_init=matrix[:, -1], classes=CLASSES
    )
    return np.column_stack([model.coef_, model.intercept_]).ravel() - weights


def test_the_plan_counts_rows_and_refuses_impossible_ones():
    assert PLAN3.n_weights == PLAN3.vector_size(Task.TRAIN) == 3 * (N_FEATURES + 1)
    assert RunPlan(n_features=N_FEATURES).vector_size(Task.TRAIN) == N_FEATURES + 1
    assert PLAN3.vector_size(Task.MOMENTS) == 2 * N_FEATURES  # statistics do not change
    with pytest.raises(ConfigurationError, match="two classes take one row"):
        RunPlan(n_features=3, n_outputs=2)
    with pytest.raises(ConfigurationError, match="n_outputs"):
        RunPlan(n_features=3, n_outputs=0)
    with pytest.raises(ConfigurationError, match="n_outputs"):
        RunPlan(n_features=3, n_outputs=4097)
    with pytest.raises(ConfigurationError, match="no target to standardise"):
        RunPlan(n_features=3, standardize_target=True, n_outputs=3)


@pytest.mark.parametrize("scheme_name", ["plain", "paillier", "paillier-packed", "ckks"])
def test_a_round_releases_the_weighted_mean_of_the_clients_weight_matrices(scheme_name):
    keyholder, aggregator, clients = _roles(scheme_name)
    start = open_round(keyholder, aggregator)
    assert decode(start, RoundStart).weights.size == 12
    for c in clients:
        aggregator.add(c.participate(start).update)
    aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    expected = np.average(
        [_local_delta(c, np.zeros(12)) for c in clients], axis=0, weights=[30, 50, 20]
    )
    # Each value is rounded to the plan's step before encryption (packed Paillier:
    # 1.2e-4, CKKS: 2**-15, Paillier: 4.3e-19), and the released mean to the same
    # step: off by at most one step.
    quantizer = getattr(keys_for(scheme_name).public.scheme, "quantizer", None)
    tolerance = 1e-12 if quantizer is None else quantizer.step + 1e-12
    np.testing.assert_allclose(aggregator.weights, expected, atol=tolerance, rtol=0)
    np.testing.assert_array_equal(keyholder.model.weights, aggregator.weights)
    coef, intercept = aggregator.raw_model()
    assert coef.shape == (3, N_FEATURES) and intercept.shape == (3,)
    np.testing.assert_array_equal(coef, aggregator.weights.reshape(3, 4)[:, :3])


def test_raw_weights_undo_the_standardisation_row_by_row():
    weights = np.arange(12, dtype=np.float64)
    center, scale = np.array([1.0, -2.0, 0.5]), np.array([2.0, 4.0, 0.5])
    coef, intercept = to_raw(weights, center, scale, 3)
    X = np.array([[0.3, 1.1, -0.7], [2.0, 0.0, 1.0]])
    matrix = weights.reshape(3, 4)
    on_standardised = ((X - center) / scale) @ matrix[:, :3].T + matrix[:, 3]
    np.testing.assert_allclose(X @ coef.T + intercept, on_standardised, rtol=1e-13)


def test_a_client_with_three_classes_refuses_a_one_row_ticket():
    plan = bound(RunPlan(n_features=N_FEATURES, standardize=False), classes=CLASSES)
    keyholder = KeyHolder(keys_for("plain"), plan=plan, min_clients=1)
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(), plan=plan, keyholder=keyholder.identity_bytes
    )
    c = client(keyholder, "c0", 0, 20, classes=CLASSES)
    keyholder.register(c.client_id, c.verify_key)
    with pytest.raises(ConfigurationError, match="weight vector of 4, not 12"):
        c.participate(open_round(keyholder, aggregator))


def _plan_bytes(state: bytes) -> bytes:
    body = wire.open_envelope(state, wire.Kind.KEYHOLDER_STATE).body
    return bytes(body[FEDERATION_ID_BYTES : FEDERATION_ID_BYTES + 8 + 8 + 1 + 4])


def test_the_key_holder_state_carries_the_row_count_and_one_row_states_keep_their_bytes():
    keys = keys_for("plain")
    one = KeyHolder(keys, plan=RunPlan(n_features=N_FEATURES, standardize=False))
    three = KeyHolder(keys, plan=PLAN3)
    # n_features (u64), server_lr (f64), flags; bit 2 of the flags: a u32 row count follows.
    assert _plan_bytes(one.export_state())[16] == 0
    assert _plan_bytes(one.export_state())[17:] == (0).to_bytes(8, "big")[:4]  # min_clients
    # Bit 5: the clients' plan digest follows the row count.
    assert _plan_bytes(three.export_state())[16:] == bytes([4 | 32, 0, 0, 0, 3])
    restored = KeyHolder.restore(keys, three._identity, three.export_state())
    assert restored.plan == PLAN3 and restored.model.weights.shape == (12,)
    assert restored.export_state() == three.export_state()


@pytest.mark.parametrize(
    ("flags", "count", "message"),
    [
        (4, 1, "one-row plan written with a row count"),
        (4, 2, "two classes"),
        (8, None, "server optimizer"),
        (64, None, "flags"),
    ],
)
def test_a_key_holder_state_with_a_forged_row_count_is_refused(flags, count, message):
    keys = keys_for("plain")
    holder = KeyHolder(keys, plan=RunPlan(n_features=N_FEATURES, standardize=False))
    body = bytearray(wire.open_envelope(holder.export_state(), wire.Kind.KEYHOLDER_STATE).body)
    at = FEDERATION_ID_BYTES + 16
    body[at] = flags
    if count is not None:
        body[at + 1 : at + 1] = count.to_bytes(4, "big")
    forged = wire.seal_envelope(
        wire.Kind.KEYHOLDER_STATE, bytes(body), fingerprint=keys.public.fingerprint
    )
    with pytest.raises(MalformedMessage, match=message):
        KeyHolder.restore(keys, holder._identity, forged)


def test_policy_files_carry_the_row_count_and_version_one_files_mean_one_row():
    from he_fed.runtime.flower.policy import KeyHolderPolicy

    policy = KeyHolderPolicy(keys_for("plain").public.scheme, PLAN3, 2)
    data = json.loads(policy.to_json())
    assert data["he-fed-keyholder-policy"] == 4 and data["n-outputs"] == 3
    assert data["client-plan"] == PLAN3.client_plan.hex()
    assert KeyHolderPolicy.from_json(policy.to_json()) == policy
    old = {k: v for k, v in data.items() if k not in ("n-outputs", "client-plan", "max-tickets")}
    old["he-fed-keyholder-policy"] = 1
    one = KeyHolderPolicy.from_json(json.dumps(old))
    assert one.plan.n_outputs == 1 and one.plan.client_plan == b""
    # A policy that names no clients' plan starts no federation.
    with pytest.raises(ConfigurationError, match="names no clients' training plan"):
        one.refuse_other({}, "key holder")
    with pytest.raises(ConfigurationError, match="version 1 or 2 or 3 or 4"):
        KeyHolderPolicy.from_json(json.dumps({**data, "he-fed-keyholder-policy": 5}))
    with pytest.raises(ConfigurationError, match="n-outputs"):
        KeyHolderPolicy.from_json(json.dumps({k: v for k, v in data.items() if k != "n-outputs"}))


def test_the_aggregator_state_carries_the_row_count_and_the_weight_matrix():
    keyholder, aggregator, clients = _roles("plain")
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    state = aggregator.export_state()
    restored = Aggregator.restore(keyholder.aggregation_key_bytes(), state, allow_insecure=True)
    assert restored.plan == PLAN3
    np.testing.assert_array_equal(restored.weights, aggregator.weights)
    assert restored.export_state() == state
