"""The three roles: what each may hold, and what each refuses."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from he_fed.crypto import CKKS, Paillier, Plain
from he_fed.exceptions import (
    ConfigurationError,
    InvalidSignature,
    KeyMismatchError,
    MalformedMessage,
    PolicyViolation,
    ProtocolError,
    SecretMaterialError,
    ShapeMismatchError,
)
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import (
    Aggregate,
    Aggregator,
    Client,
    EncryptedAggregate,
    KeyHolder,
    decode,
    encode,
    tasks,
)
from he_fed.runtime import Federation
from tests.conftest import FAST_SCHEMES, keys_for
from tests.protocol.harness import (
    N_FEATURES,
    PLAN,
    client,
    data,
    local_delta,
    open_round,
    roles,
    signed_update,
)


def test_weighted_average_with_one_client_dropped(scheme_name):
    keyholder, aggregator, clients = roles(scheme_name)
    start = open_round(keyholder, aggregator)
    present = [clients[0], clients[2]]  # client c1 drops out
    for c in present:
        aggregator.add(c.participate(start).update)
    result = decode(keyholder.decrypt_aggregate(aggregator.finish_round()), Aggregate)
    deltas = [local_delta(c, np.zeros(N_FEATURES + 1)) for c in present]
    expected = np.average(deltas, axis=0, weights=[30, 20])
    assert result.contributors == 2
    # Packed Paillier's 16-bit step at clip 4 is 1.2e-4; CKKS's grid step is 2**-15 here.
    atol = {"plain": 1e-15, "paillier": 1e-12, "paillier-packed": 1e-4, "ckks": 2e-5}[scheme_name]
    np.testing.assert_allclose(result.mean, expected, rtol=0, atol=atol)
    np.testing.assert_allclose(keyholder.model.weights, expected, atol=atol)
    aggregator.apply(encode(result))
    np.testing.assert_allclose(aggregator.weights, expected, atol=atol)


def test_aggregator_refuses_secret_material(scheme_name):
    keys = keys_for(scheme_name)
    for secret in (keys, keys.secret):
        with pytest.raises(SecretMaterialError):
            Aggregator(secret, plan=PLAN, keyholder=bytes(32))  # type: ignore[arg-type]


def test_aggregator_holds_only_the_least_public_material():
    keyholder = KeyHolder(keys_for("ckks"), plan=PLAN)
    aggregator = Aggregator(
        keyholder.public_key_bytes(), plan=PLAN, keyholder=keyholder.identity_bytes
    )
    assert not aggregator.key.context.has_public_key()
    assert not aggregator.key.context.is_private()


def test_nothing_the_aggregator_receives_contains_the_secret_key():
    keys = keys_for("paillier")
    keyholder, aggregator, clients = roles("paillier")
    received = [keyholder.aggregation_key_bytes()]
    start = open_round(keyholder, aggregator)
    received += [c.participate(start).update for c in clients]
    secret = keys.secret._crt
    for value in (int(secret.p), int(secret.q), *(int(v) for v in secret._pre[4:])):
        needle = value.to_bytes((value.bit_length() + 7) // 8, "big")
        assert all(needle not in blob for blob in received)


def test_a_garbage_update_is_refused_and_loses_nothing(scheme_name):
    keyholder, aggregator, clients = roles(scheme_name)
    start = open_round(keyholder, aggregator)
    aggregator.add(clients[0].participate(start).update)
    good = clients[1].participate(start).update
    garbled = bytearray(good)
    garbled[len(garbled) // 2] ^= 0xFF
    with pytest.raises(MalformedMessage):
        aggregator.add(bytes(garbled))
    aggregator.add(good)
    result = decode(keyholder.decrypt_aggregate(aggregator.finish_round()), Aggregate)
    assert result.contributors == 2


def test_contributors_keep_arrival_order_and_a_refused_duplicate_changes_nothing():
    keyholder, aggregator, clients = roles("plain")
    start = open_round(keyholder, aggregator)
    updates = [c.participate(start).update for c in clients]
    for update in reversed(updates):
        aggregator.add(update)
    with pytest.raises(ProtocolError, match="already contributed"):
        aggregator.add(updates[1])
    assert aggregator.contributors == ("c2", "c1", "c0")
    message = decode(aggregator.finish_round(), EncryptedAggregate)
    assert message.contributors == ("c2", "c1", "c0")
    released = keyholder.decrypt_aggregate(encode(message))
    assert aggregator.apply(released).contributors == 3
    open_round(keyholder, aggregator)
    assert aggregator.contributors == ()


def test_wrong_round_duplicate_wrong_key_and_wrong_shape_are_refused(scheme_name):
    keyholder, aggregator, clients = roles(scheme_name)
    stale = open_round(keyholder, aggregator)
    start = open_round(keyholder, aggregator)
    with pytest.raises(ProtocolError, match="round"):
        aggregator.add(clients[0].participate(stale).update)
    update = clients[0].participate(start).update
    aggregator.add(update)
    with pytest.raises(ProtocolError, match="already contributed"):
        aggregator.add(update)
    stranger = FAST_SCHEMES[scheme_name].keygen().public.to_bytes()
    wrong_key = client(keyholder, "c1", 1, 50, public_key=stranger, identity=clients[1]._identity)
    with pytest.raises(KeyMismatchError):  # the client itself refuses a ticket for another key
        wrong_key.participate(start)
    forced = FAST_SCHEMES[scheme_name].keygen().public.encrypt(np.zeros(N_FEATURES + 1), weight=3)
    with pytest.raises(KeyMismatchError):  # and the aggregator refuses such a vector
        aggregator.add(signed_update(clients[1], start, forced))
    short = keyholder.public_key.encrypt(np.zeros(N_FEATURES), weight=3)
    with pytest.raises(ShapeMismatchError):
        aggregator.add(signed_update(clients[2], start, short))
    assert aggregator.contributors == ("c0",)


def test_unregistered_or_impersonating_senders_are_refused():
    keyholder, aggregator, clients = roles("paillier")
    start = open_round(keyholder, aggregator)
    intruder = client(keyholder, "mallory", 9, 20)
    with pytest.raises(InvalidSignature, match="not registered"):
        aggregator.add(intruder.participate(start).update)
    impostor = client(keyholder, "c1", 9, 20)
    with pytest.raises(InvalidSignature, match="bad signature"):
        aggregator.add(impostor.participate(start).update)
    assert aggregator.contributors == ()


def test_keyholder_enforces_min_clients_and_once_per_round(scheme_name):
    keyholder, aggregator, clients = roles(scheme_name, min_clients=2)
    start = open_round(keyholder, aggregator)
    opened = aggregator.export_state()
    lone_update = clients[0].participate(start).update
    aggregator.add(lone_update)
    lone = aggregator.finish_round()
    with pytest.raises(PolicyViolation, match="at least 2"):
        keyholder.decrypt_aggregate(lone)
    # The aggregator sent its sum: it keeps the contributors' ids, not their proofs.
    assert aggregator.contributors == ("c0",)
    for closed in (lambda: aggregator.add(lone_update), aggregator.finish_round):
        with pytest.raises(ProtocolError, match="already sent to the key holder"):
            closed()
    # The refused attempt used up the round: a bigger cohort for it is refused too,
    # even from an aggregator that sums the round afresh.
    again = Aggregator.restore(aggregator.key, opened, allow_insecure=True)
    again.add(lone_update)
    again.add(clients[1].participate(start).update)
    pair = again.finish_round()
    with pytest.raises(PolicyViolation, match="not the open round"):
        keyholder.decrypt_aggregate(pair)
    start = open_round(keyholder, aggregator)
    for c in clients[:2]:
        aggregator.add(c.participate(start).update)
    pair = aggregator.finish_round()
    keyholder.decrypt_aggregate(pair)
    with pytest.raises(PolicyViolation, match="at most once"):
        keyholder.decrypt_aggregate(pair)


def test_clients_never_hold_secrets_and_need_an_encrypting_key():
    keys = keys_for("ckks")
    X, y = data(0, 10)
    with pytest.raises(SecretMaterialError):
        Client("c", X, y, keys.secret, keyholder=bytes(32), model=LogisticRegressionGD())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="encrypt"):
        Client(
            "c",
            X,
            y,
            keys.public.aggregation_key().to_bytes(),
            keyholder=bytes(32),
            model=LogisticRegressionGD(),
        )


def test_federated_standardisation_matches_central_statistics(scheme_name):
    rng = np.random.default_rng(7)
    # Features on wildly different scales, spread unevenly over clients.
    X = rng.normal(size=(300, 4)) * [1e-3, 1.0, 250.0, 4e4] + [5e-3, -2.0, 900.0, 1e5]
    y = (rng.random(300) > 0.5).astype(int)
    parts = [(X[i::3], y[i::3]) for i in range(3)]
    scheme = FAST_SCHEMES[scheme_name].with_plan(max_clients=3, max_weight=128)
    federation = Federation.create(
        parts, scheme=scheme, model=LogisticRegressionGD(), classes=np.array([0, 1])
    )
    federation.standardize()
    # Statistics plans: 64-bit (paillier) and 40-bit (packed) fixed point; CKKS's grid
    # for the moments is 2**-62, in three digits per value (measured 1e-14, as plain).
    rtol = {"plain": 1e-12, "paillier": 1e-9, "paillier-packed": 1e-7, "ckks": 1e-12}[scheme_name]
    np.testing.assert_allclose(federation.aggregator.center, X.mean(axis=0), rtol=rtol)
    np.testing.assert_allclose(federation.aggregator.scale, X.std(axis=0), rtol=rtol)


def _standardised(scheme, parts):
    federation = Federation.create(
        parts, scheme=scheme, model=LogisticRegressionGD(), classes=np.array([0, 1])
    )
    federation.standardize()
    return federation.aggregator


def test_a_feature_with_a_tiny_spread_is_standardised_by_ckks_from_exact_sums():
    """Mean 1000 and standard deviation 0.01, beside a standard normal feature.

    Pre-scaled by 1024, the variance is 1e-10 of the second moment, so ``m2 - m1**2``
    cancels 33 of a double's 53 bits. CKKS's moments plan (a 2**-62 grid here, in
    three digits) holds every moment exactly and sums them exactly: the statistics
    are those of the exact weighted sums, bit for bit, whose mean is rounded once to
    the release's grid. What remains is the protocol's
    own arithmetic in doubles (the clients' sums of squares, the subtraction), which
    the plain scheme shares: an ulp of ``m2`` is 1.1e-6 of the variance here, and
    both schemes measure 0.6e-6 to 5.6e-6 on the scale over seeds 0 to 5.
    """
    rng = np.random.default_rng(0)
    X = np.column_stack([1000 + 0.01 * rng.normal(size=300), rng.normal(size=300)])
    y = (rng.random(300) > 0.5).astype(int)
    parts = [(X[i::3], y[i::3]) for i in range(3)]
    reference = StandardScaler().fit(X)
    ckks = _standardised(FAST_SCHEMES["ckks"].with_plan(max_clients=3, max_weight=128), parts)
    plain = _standardised(Plain(max_clients=3, max_weight=128), parts)

    # Bit for bit the statistics of the exact sums of the clients' moments, whose mean
    # the key holder rounds onto their grid of 2**-62, as it releases every mean, so
    # that the total weight stays hidden (release.py).
    moments = [tasks.moments(Xk, ckks.model.prescale) for Xk, _ in parts]
    step = Fraction(1, 2**62)
    units = [
        sum(len(Xk) * Fraction(m[i]) for (Xk, _), m in zip(parts, moments, strict=True)) / step
        for i in range(4)
    ]
    assert all(u.denominator == 1 for u in units)  # every moment lies on the grid
    released = [float(math.floor(u / 300 + Fraction(1, 2)) * step) for u in units]
    center, scale = tasks.standardization(np.array(released), ckks.model.prescale)
    np.testing.assert_array_equal(ckks.center, center)
    np.testing.assert_array_equal(ckks.scale, scale)

    np.testing.assert_allclose(ckks.center, reference.mean_, rtol=1e-12)
    np.testing.assert_allclose(ckks.scale, reference.scale_, rtol=1e-5)
    error = {
        name: np.abs(a.scale / reference.scale_ - 1)
        for name, a in (("ckks", ckks), ("plain", plain))
    }
    assert np.all(error["ckks"] <= error["plain"])


def test_a_client_under_the_wrong_key_is_left_out_and_the_round_completes():
    keyholder, aggregator, clients = roles("paillier")
    stranger = FAST_SCHEMES["paillier"].keygen().public.to_bytes()
    clients[1] = client(keyholder, "c1", 1, 50, public_key=stranger, identity=clients[1]._identity)
    federation = Federation(keyholder, aggregator, clients)
    outcome = federation.run_round()
    assert outcome.contributors == ("c0", "c2")
    assert "another public key" in outcome.failures["c1"]
    assert outcome.skipped is None


def test_clients_refuse_non_finite_data():

    X, y = data(0, 10)
    X[3, 1] = np.nan
    with pytest.raises(ConfigurationError, match="NaN"):
        Client(
            "c", X, y, keys_for("plain").public, keyholder=bytes(32), model=LogisticRegressionGD()
        )


def test_too_few_clients_skip_the_round_without_decrypting():
    keyholder, aggregator, clients = roles("plain", min_clients=3)
    federation = Federation(keyholder, aggregator, clients)
    outcome = federation.run_round(participants=["c0", "c1"])
    assert outcome.skipped and "requires 3" in outcome.skipped
    assert outcome.absent == ("c2",)
    np.testing.assert_array_equal(aggregator.weights, 0.0)


def test_schemes_are_value_objects():
    assert Paillier(key_bits=2048) == Paillier(key_bits=2048)
    assert hash(CKKS()) == hash(CKKS(preset="aggregation-fast"))
    assert Plain() != Plain(clip=2.0)
