"""The aggregator adds a known plaintext to the encrypted sum.

A Paillier ciphertext times ``1 + x·n`` keeps its commitment (``c mod n``) and
decrypts to its message plus ``x``. Red teams used such offsets to steer the
global model, to freeze it (subtracting each round's sum from the next), and then
to difference two cohorts at the frozen model: one client's exact update in 11
releases. Every contribution now also commits to its plaintext slots
(``he_fed.crypto._binding``), and the key holder checks the decrypted sum against
the product of the receipts' commitments before it releases anything.

CKKS had the same hole on ``c0`` (its receipts fix ``c1`` only), with offsets on the
grid that pass every grid and range check; its contributions now commit to their
slot integers too (``he_fed.crypto._ckks_binding``), and the tests at the end
replay the attacks on it.
"""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.crypto import _ckks_binding, load_public
from he_fed.exceptions import AggregateRejected
from he_fed.protocol import EncryptedAggregate, Task, decode, encode
from tests.crypto.ckks_tools import shifted
from tests.protocol.harness import open_round, roles
from tests.protocol.test_attacks import Spy

SCHEMES = ["paillier", "paillier-packed"]


def honest_aggregate(scheme_name: str):
    keyholder, aggregator, clients = roles(scheme_name, sizes=(30, 50, 20, 40))
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    return keyholder, decode(aggregator.finish_round(), EncryptedAggregate)


def offset(keyholder, message: EncryptedAggregate, index: int, x: int) -> EncryptedAggregate:
    """The aggregate with ``x`` added to the plaintext of ciphertext ``index``."""
    key = keyholder.public_key
    n, nsquare = int(key.n), int(key.nsquare)
    vector = key.load_vector(message.vector)
    vector.ciphertexts[index] = vector.ciphertexts[index] * (1 + x * n) % nsquare
    return EncryptedAggregate(message.round, message.task, message.receipts, vector.to_bytes())


def offsets_for(keyholder, size: int) -> dict[str, tuple[int, int]]:
    """(ciphertext, plaintext offset) for a value, the weight and the blinding."""
    scheme = keyholder.public_key.scheme
    index, shift = scheme.blinding_place(size)
    if scheme.name == "paillier":
        return {"value": (0, 1), "weight": (size, 1), "blinding": (index, 1 << shift)}
    slot = scheme.layout.slot_bits
    return {"value": (0, 1 << slot), "weight": (0, 1), "blinding": (index, 1 << shift)}


@pytest.mark.parametrize("scheme_name", SCHEMES)
@pytest.mark.parametrize("where", ["value", "weight", "blinding"])
def test_an_offset_on_the_sum_is_refused_and_nothing_is_released(scheme_name, where, monkeypatch):
    keyholder, message = honest_aggregate(scheme_name)
    size = keyholder.plan.vector_size(Task.TRAIN)
    index, x = offsets_for(keyholder, size)[where]
    tampered = offset(keyholder, message, index, x)
    # The receipts' commitments still multiply to the tampered aggregate's.
    key = keyholder.public_key
    commitments = [r.commitment for r in message.receipts]
    assert key.sum_commitments(commitments, size) == key.load_vector(tampered.vector).commitment()
    spy = Spy(keyholder, monkeypatch)
    released = keyholder.released
    with pytest.raises(AggregateRejected, match="nothing was released"):
        keyholder.decrypt_aggregate(encode(tampered))
    assert spy.calls == 1 and keyholder.released == released  # decrypted, checked, refused
    # Counted like every refusal after decryption: which check failed (the range, or
    # the binding) could depend on where a tampered plaintext wrapped modulo n.
    assert keyholder.rejected == 1


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_the_untampered_aggregate_is_released(scheme_name):
    keyholder, message = honest_aggregate(scheme_name)
    released = keyholder.released
    keyholder.decrypt_aggregate(encode(message))
    assert keyholder.released == released + 1


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_freezing_the_model_by_subtracting_the_last_sum_is_refused(scheme_name):
    """The stall attack's step: subtract round r's sum from round r+1's aggregate.

    Here the aggregator even knows round r's exact plaintext sum (the test reads it
    with the key holder's key), which releases rounded to the grid no longer give.
    """
    keyholder, aggregator, clients = roles(scheme_name, sizes=(30, 50, 20, 40))
    key, secret = keyholder.public_key, keyholder._keys.secret
    n, nsquare = int(key.n), int(key.nsquare)
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    first = decode(aggregator.finish_round(), EncryptedAggregate)
    known = secret.raw_decrypt(key.load_vector(first.vector).ciphertexts)
    aggregator.apply(keyholder.decrypt_aggregate(encode(first)))
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    second = decode(aggregator.finish_round(), EncryptedAggregate)
    vector = key.load_vector(second.vector)
    vector.ciphertexts = [
        c * (1 - m * n) % nsquare for c, m in zip(vector.ciphertexts, known, strict=True)
    ]
    frozen = EncryptedAggregate(second.round, second.task, second.receipts, vector.to_bytes())
    with pytest.raises(AggregateRejected, match="nothing was released"):
        keyholder.decrypt_aggregate(encode(frozen))
    assert np.array_equal(aggregator.weights, keyholder.model.weights)


def test_where_a_tampered_plaintext_wraps_is_no_oracle():
    """A red team's oracle: offset chunk 0 by ``n - T``.

    If its plaintext ``m < T`` the sum wraps to a huge value, else to ``m - T``; the
    two used to fail differently (a crash while unpacking, or an uncounted binding
    refusal), so a binary search over ``T`` read one cohort's chunk exactly, then a
    cohort without the victim's, with nothing released. Now both are the same
    counted refusal.
    """
    from he_fed.models import LogisticRegressionGD
    from he_fed.protocol import Aggregator, Client, KeyHolder, RunPlan
    from tests.conftest import keys_for
    from tests.protocol.harness import bound

    features = 150  # several packed chunks: chunk 0 is not the last
    plan = bound(RunPlan(n_features=features, standardize=False), local_epochs=1)
    keyholder = KeyHolder(keys_for("paillier-packed"), plan=plan, min_clients=2)
    assert keyholder.public_key.scheme.data_ciphertexts(plan.vector_size(Task.TRAIN)) > 1
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(),
        plan=plan,
        keyholder=keyholder.identity_bytes,
        allow_insecure=True,
    )
    rng = np.random.default_rng(3)
    clients = []
    for i, rows in enumerate((30, 50, 20)):
        X = rng.normal(size=(rows, features))
        y = (X[:, 0] > 0).astype(int)
        c = Client(
            f"c{i}",
            X,
            y,
            keyholder.public_key_bytes(),
            keyholder=keyholder.identity_bytes,
            model=LogisticRegressionGD(learning_rate=0.5),
            classes=np.array([0, 1]),
            allow_insecure=True,
        )
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
        clients.append(c)
    key, secret = keyholder.public_key, keyholder._keys.secret
    n = int(key.n)
    answers = []
    for delta in (0, 1):  # T = m and T = m + 1: the two sides of the old oracle
        start = open_round(keyholder, aggregator)
        for c in clients:
            aggregator.add(c.participate(start).update)
        message = decode(aggregator.finish_round(), EncryptedAggregate)
        m = secret.raw_decrypt([key.load_vector(message.vector).ciphertexts[0]])[0]
        tampered = offset(keyholder, message, 0, n - (m + delta))
        with pytest.raises(AggregateRejected) as refused:
            keyholder.decrypt_aggregate(encode(tampered))
        answers.append((type(refused.value), str(refused.value), refused.value.off_grid))
    assert answers[0] == answers[1]
    assert keyholder.rejected == 2 and keyholder.released == 0


# --- CKKS: the aggregator adds a grid plaintext to c0 -----------------------------------
#
# A CKKS receipt fixes c1, not c0: adding any plaintext the aggregator knows keeps
# every commitment, and an offset on the grid passes every grid and range check.
# The receipts' binding commitments (he_fed.crypto._ckks_binding) fix the plaintext.


def ckks_offset(keyholder, message: EncryptedAggregate, slots: dict[int, float]):
    """The aggregate with ``slots`` (slot index: grid integer) added to its ``c0``.

    Made with the parameters-only key, as the aggregator holds.
    """
    key = load_public(keyholder.aggregation_key_bytes())
    vector = key.load_vector(message.vector, size=keyholder.plan.vector_size(message.task))
    offsets = np.zeros(len(vector.parts) * key.scheme.values_per_ciphertext)
    for slot, x in slots.items():
        offsets[slot] = x
    moved = shifted(key, vector, offsets)
    return EncryptedAggregate(message.round, message.task, message.receipts, moved.to_bytes())


def ckks_offsets_for(keyholder, size: int) -> dict[str, dict[int, float]]:
    """Grid offsets on a value, the weight, and the lowest and highest blinding digits."""
    scheme = keyholder.public_key.scheme
    weight_at = scheme.digits * size
    top = weight_at + _ckks_binding.blinding_slots(scheme)
    return {
        "value": {0: 1.0},
        "values": {i: float(i % 3 - 1) for i in range(weight_at)},
        "weight": {weight_at: 1.0},
        "blinding": {weight_at + 1: 1.0},
        "blinding-top": {top: 1.0},
    }


@pytest.mark.parametrize("where", ["value", "values", "weight", "blinding", "blinding-top"])
def test_a_grid_offset_on_a_ckks_sum_is_refused_and_nothing_is_released(where, monkeypatch):
    keyholder, message = honest_aggregate("ckks")
    size = keyholder.plan.vector_size(Task.TRAIN)
    tampered = ckks_offset(keyholder, message, ckks_offsets_for(keyholder, size)[where])
    key = keyholder.public_key
    vector = key.load_vector(tampered.vector, size=size)
    # The receipts' c1 still add up to the tampered aggregate's, and the grid's own
    # checks would release it: only the binding stands in the way.
    assert key.sum_commitments([r.commitment for r in message.receipts], size) == (
        vector.commitment()
    )
    keyholder._keys.secret.decrypt_weighted(vector)  # no binding: released
    spy = Spy(keyholder, monkeypatch)
    released = keyholder.released
    with pytest.raises(AggregateRejected, match="nothing was released") as refused:
        keyholder.decrypt_aggregate(encode(tampered))
    assert not refused.value.off_grid
    assert spy.calls == 1 and keyholder.released == released  # decrypted, checked, refused
    assert keyholder.rejected == 1  # counted like every refusal after decryption


def test_the_untampered_ckks_aggregate_is_released():
    keyholder, message = honest_aggregate("ckks")
    keyholder.decrypt_aggregate(encode(message))
    assert keyholder.released == 1 and keyholder.rejected == 0


def test_freezing_a_ckks_model_by_subtracting_the_last_sum_is_refused():
    """The stall attack's step on CKKS: subtract round r's exact value sums from round r+1's.

    The aggregator even knows round r's exact slot sums (read here with the key
    holder's key) and keeps the weight, so that every grid and range check passes.
    """
    keyholder, aggregator, clients = roles("ckks", sizes=(30, 50, 20, 40))
    secret = keyholder._keys.secret
    size = keyholder.plan.vector_size(Task.TRAIN)
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    first = decode(aggregator.finish_round(), EncryptedAggregate)
    known = secret.decrypt_weighted(keyholder.public_key.load_vector(first.vector, size=size))
    aggregator.apply(keyholder.decrypt_aggregate(encode(first)))
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    second = decode(aggregator.finish_round(), EncryptedAggregate)
    frozen = ckks_offset(keyholder, second, {i: -float(u) for i, u in enumerate(known.units)})
    vector = keyholder.public_key.load_vector(frozen.vector, size=size)
    secret.decrypt_weighted(vector)  # without the binding, the grid's checks would release it
    weights = aggregator.weights.copy()
    with pytest.raises(AggregateRejected, match="nothing was released"):
        keyholder.decrypt_aggregate(encode(frozen))
    assert np.array_equal(aggregator.weights, weights)
    assert np.array_equal(aggregator.weights, keyholder.model.weights)


def test_a_ckks_weight_offset_is_no_comparison_oracle():
    """An offset the range check refuses and one it lets through are refused alike.

    Before the binding, whether ``weight + x`` stayed within ``[count, count *
    max_weight]`` decided release or refusal: a comparison on the cohort's total
    weight. Now the offset that passes the range check fails the binding check,
    with the same text and flag.
    """
    answers = []
    for below in (True, False):
        keyholder, message = honest_aggregate("ckks")
        size = keyholder.plan.vector_size(Task.TRAIN)
        weight_at = keyholder.public_key.scheme.digits * size
        exact = keyholder._keys.secret.decrypt_weighted(
            keyholder.public_key.load_vector(message.vector, size=size)
        )
        x = -float(exact.weight) if below else 1.0  # a total weight of 0, or one more
        tampered = ckks_offset(keyholder, message, {weight_at: x})
        with pytest.raises(AggregateRejected) as refused:
            keyholder.decrypt_aggregate(encode(tampered))
        answers.append((type(refused.value), str(refused.value), refused.value.off_grid))
        assert keyholder.released == 0 and keyholder.rejected == 1
    assert answers[0] == answers[1]
