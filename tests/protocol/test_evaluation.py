"""Federated evaluation: global figures only, each model once, and no row count given away.

The aggregator-side test inspects everything an aggregator holds in an evaluation
round (the ticket, every client's update, the aggregate it forwards, the release
and its own saved state) and looks for each client's own figures in it.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from he_fed import FederatedLinearRegression
from he_fed.exceptions import PolicyViolation
from he_fed.protocol import (
    Aggregate,
    Aggregator,
    EncryptedUpdate,
    KeyHolder,
    RunPlan,
    Task,
    decode,
    evaluation,
)
from tests.protocol.harness import N_FEATURES, bound, client, open_round, roles

SIZES = (30, 47, 20, 41)
EVAL_PLAN = bound(
    RunPlan(n_features=N_FEATURES, standardize=False, evaluation="classification"),
    validation_split=0.25,
)


def _federation(scheme_name: str, sizes=SIZES):
    keyholder, aggregator, _ = roles(scheme_name, sizes=(), plan=EVAL_PLAN, min_clients=2)
    clients = [client(keyholder, f"c{i}", i, n, validation_split=0.25) for i, n in enumerate(sizes)]
    for c in clients:
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    return keyholder, aggregator, clients


def _round(keyholder, aggregator, clients, task: Task) -> tuple[bytes, list[bytes], bytes, bytes]:
    """One round; every byte string the aggregator held: ticket, updates, aggregate, release."""
    start = open_round(keyholder, aggregator, task)
    updates = [c.participate(start).update for c in clients]
    for update in updates:
        aggregator.add(update)
    encrypted = aggregator.finish_round()
    release = keyholder.decrypt_aggregate(encrypted)
    aggregator.apply(release)
    return start, updates, encrypted, release


def _own_figures(c, weights: np.ndarray) -> np.ndarray:
    """A client's own per-row means on its validation rows, computed in the clear."""
    values, clipped = evaluation.local_means(
        "classification", c._X_val, np.asarray(c._y_val), weights, n_outputs=1
    )
    assert clipped == 0  # a classification's figures lie within the clip
    return values


def _central(clients, weights: np.ndarray) -> tuple[float, float, int]:
    """Accuracy and mean log loss over every validation row, and their count."""
    X = np.vstack([c._X_val for c in clients])
    y = np.concatenate([c._y_val for c in clients])
    p = expit(X @ weights[:-1] + weights[-1])
    loss = -np.mean(np.where(y == 1, np.log(p), np.log1p(-p)))
    return float(np.mean((p > 0.5) == y)), float(loss), len(y)


@pytest.mark.parametrize("scheme_name", ["plain", "paillier-packed", "ckks"])
def test_the_release_is_the_federation_s_figure_within_the_dither(scheme_name):
    keyholder, aggregator, clients = _federation(scheme_name)
    _round(keyholder, aggregator, clients, Task.TRAIN)
    weights = aggregator.weights.copy()
    *_, release = _round(keyholder, aggregator, clients, Task.EVALUATE)
    mean = decode(release, Aggregate).mean
    accuracy, loss, rows = _central(clients, weights)
    assert rows == sum(round(0.25 * n) for n in SIZES) == 35
    # The loss is not dithered: the federation's mean log loss, to the evaluation
    # grid (40 bits over the clip of 4,096: a step of 2^-27 = 7.5e-9 at most).
    assert mean[0] == pytest.approx(loss, abs=1e-8)
    # Fractions carry each client's draw of at most half a row: K / (2W) at most.
    assert abs(mean[1] - accuracy) <= len(clients) / (2 * rows)
    # The dither is the clients' own, keyed by their signing keys: recomputed from
    # their figures and draws, the weighted mean is the release, to the grid.
    round_id = keyholder.last_round
    sent = [_sent(c, weights, keyholder.federation, round_id) for c in clients]
    expected = sum(len(c._X_val) * v for c, v in zip(clients, sent, strict=True)) / rows
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-8)
    assert figures_of(mean)["accuracy"] == pytest.approx(accuracy, abs=len(clients) / (2 * rows))


def figures_of(mean: np.ndarray) -> dict:
    return evaluation.figures("classification", mean)


def _sent(c, weights: np.ndarray, federation: bytes, round_id: int) -> np.ndarray:
    """What client ``c`` encrypted: its own figures plus its keyed draw."""
    return evaluation.dither(
        _own_figures(c, weights),
        len(c._X_val),
        key=c._identity.private_bytes(),
        federation=federation,
        round_id=round_id,
    )


def test_each_model_is_evaluated_once_and_only_in_a_plan_that_evaluates():
    keyholder, aggregator, clients = _federation("plain")
    _round(keyholder, aggregator, clients, Task.EVALUATE)
    with pytest.raises(PolicyViolation, match="evaluated once"):
        keyholder.start_round(Task.EVALUATE)
    _round(keyholder, aggregator, clients, Task.TRAIN)
    _round(keyholder, aggregator, clients, Task.EVALUATE)  # a new model: allowed again
    plain_keyholder, _, _ = roles(
        "plain", plan=bound(RunPlan(n_features=N_FEATURES, standardize=False))
    )
    with pytest.raises(PolicyViolation, match="does not evaluate"):
        plain_keyholder.start_round(Task.EVALUATE)


def _float_bytes(values: np.ndarray) -> list[bytes]:
    """Each value's float64 bytes, both byte orders; whole numbers (counts, 0, 1) are
    left out: their bytes are in many messages for other reasons."""
    return [
        np.array([v], dtype=order).tobytes()
        for v in values
        if v != round(v)
        for order in (">f8", "<f8")
    ]


@pytest.mark.parametrize("scheme_name", ["paillier-packed", "plain"])
def test_no_client_s_own_figures_reach_the_aggregator_in_the_clear(scheme_name):
    keyholder, aggregator, clients = _federation(scheme_name)
    _round(keyholder, aggregator, clients, Task.TRAIN)
    weights = aggregator.weights.copy()
    start, updates, encrypted, release = _round(keyholder, aggregator, clients, Task.EVALUATE)
    held = b"".join([start, *updates, encrypted, release, aggregator.export_state()])
    released = decode(release, Aggregate).mean
    for c, update in zip(clients, updates, strict=True):
        own = _own_figures(c, weights)
        sent = _sent(c, weights, keyholder.federation, decode(update, EncryptedUpdate).round)
        n = len(c._X_val)
        figures = np.concatenate([own, sent, n * own, n * sent])  # means and sums
        found = [b for b in _float_bytes(figures) if b in held]
        if scheme_name == "plain":
            # The control: the insecure baseline carries each client's figures as
            # they are, and this search finds them.
            assert found
            continue
        assert found == []
        # Nor does the one plaintext the aggregator gets equal any client's own.
        assert not np.any(np.isclose(released, own, rtol=0, atol=1e-12)[1:])


def test_released_fractions_do_not_give_the_validation_row_count_away():
    keyholder, aggregator, clients = _federation("paillier-packed")
    _round(keyholder, aggregator, clients, Task.TRAIN)
    weights = aggregator.weights.copy()
    *_, release = _round(keyholder, aggregator, clients, Task.EVALUATE)
    released = decode(release, Aggregate).mean[1:]
    rows = sum(len(c._X_val) for c in clients)
    # Without the dither the release would be exact fractions of the 35 rows: the
    # aggregator's test (is every value times W' whole?) singles out W' = 35.
    exact = sum(len(c._X_val) * _own_figures(c, weights) for c in clients)[1:] / rows

    def whole(values: np.ndarray, w: int) -> bool:
        return bool(np.all(np.abs(values * w - np.round(values * w)) < 1e-6))

    candidates = range(len(clients), len(clients) * 128 + 1)
    assert [w for w in candidates if whole(exact, w)][0] == rows
    assert [w for w in candidates if whole(released, w)] == []


def test_the_evaluation_state_survives_a_restart_of_either_role():
    keyholder, aggregator, clients = _federation("plain")
    _round(keyholder, aggregator, clients, Task.TRAIN)
    _round(keyholder, aggregator, clients, Task.EVALUATE)
    state = keyholder.export_state()
    again = KeyHolder.restore(keyholder._keys, keyholder._identity, state)
    assert again.model.evaluated
    assert np.array_equal(again.model.evaluation, keyholder.model.evaluation)
    assert again.export_state() == state
    with pytest.raises(PolicyViolation, match="evaluated once"):
        again.start_round(Task.EVALUATE)
    saved = aggregator.export_state()
    back = Aggregator.restore(keyholder.aggregation_key_bytes(), saved, allow_insecure=True)
    assert np.array_equal(back.model.evaluation, aggregator.model.evaluation)
    assert back.export_state() == saved


def test_a_dithered_value_at_the_clip_stays_within_it():
    """Red team 49: a value clamped at the clip and then dithered past it was refused
    by the encoder, and by how far past told the aggregator the validation rows."""
    from he_fed.protocol.evaluation import EVALUATION_CLIP, dither

    values = np.array([1.0, EVALUATION_CLIP, -EVALUATION_CLIP, EVALUATION_CLIP])
    for round_id in range(20):
        out = dither(values, 4, key=bytes(32), federation=bytes(16), round_id=round_id)
        assert np.all(np.abs(out) <= EVALUATION_CLIP) and out[0] == 1.0


def test_a_regression_s_clamped_figures_are_counted_as_clipped():
    """An MSE past the clip (in standardised units) was clamped and counted nowhere:
    a diverging fit reported the same validation loss, 36815.45, every round (an
    audit). The clamp is counted in the client's report and in the round's record."""
    from he_fed.protocol.evaluation import EVALUATION_CLIP

    X = np.array([[0.0], [1.0]])
    far = np.array([0.0, 100.0])  # MSE 5000 and mean square 5000 past 4096
    values, clipped = evaluation.local_means("regression", X, far, np.zeros(2), 1)
    assert clipped == 2 and values.tolist() == [EVALUATION_CLIP, 50.0, EVALUATION_CLIP]
    _, none = evaluation.local_means("regression", X, far / 10, np.zeros(2), 1)
    assert none == 0

    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 2))
    y = 3 * X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.1, size=150)
    options = dict(key_bits=1024, allow_insecure=True, rounds=3, n_clients=3)
    diverging = FederatedLinearRegression(
        server_lr=100.0, learning_rate=1.5, validation_split=0.2, **options
    ).fit(X, y)
    scored = [r for r in diverging.history_ if not np.isnan(r.validation_loss)]
    assert scored and all(r.clipped >= 3 for r in scored)  # every client's MSE, at least
    calm = FederatedLinearRegression(validation_split=0.2, **options).fit(X, y)
    assert [r.clipped for r in calm.history_] == [0, 0, 0]
