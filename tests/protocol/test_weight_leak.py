"""The aggregator reads a victim's sample count off released means: the attacks, performed.

Clients encode integers on a grid of step ``step``, so a decrypted total is
``t · step`` with ``t`` an integer, and the exact mean ``t · step / W`` is a
fraction whose denominator divides the cohort's total weight ``W``. The aggregator
chooses cohorts: every client in one round, all but the victim in the next. The
smallest ``W`` that makes every ``mean · W / step`` whole (continued fractions) is
each cohort's total weight, and their difference is the victim's sample count.

The aggregator here holds only what a real one holds: the plan (public), every
message, and the releases. The test also decrypts each aggregate with the key
holder's key, as the key holder does, to compute the exact mean it used to release,
so that the attack is shown to work on it (and so can fail). The key holder now
releases the mean rounded to the grid (``he_fed/protocol/release.py``): every total
weight the plan allows is consistent with every released value, and a likelihood
over many values finds nothing either, where a finer grid, ``step / count``, still
gives the weight away.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from he_fed.crypto import Paillier, wire
from he_fed.exceptions import MalformedMessage, PolicyViolation
from he_fed.protocol import EncryptedAggregate, KeyHolder, RoundStart, RunPlan, Task, decode, tasks
from he_fed.protocol.normalisers import Normalisers
from he_fed.protocol.release import rounded_mean
from tests.conftest import keys_for
from tests.protocol.harness import N_FEATURES, open_round, roles

#: The victim c0 holds 30 rows. Neither cohort's counts share a factor: when every
#: weight shares a factor g, the exact mean only gives W / g (see the last test).
SIZES = (30, 47, 20, 41)
#: Per-value Paillier at 32 bits, whose totals stay below 2**53 so that the doubles of
#: the exact mean are exact enough to read; at its default 64 bits, values far from
#: zero have totals beyond 2**53, whose doubles blurred W by accident.
PAILLIER_32 = Paillier(
    key_bits=1024, allow_insecure=True, precision_bits=32, max_clients=64, max_weight=128
)
_KEYS: dict[str, object] = {}


def _keys(name: str):
    if name == "paillier-32":
        if name not in _KEYS:
            _KEYS[name] = PAILLIER_32.keygen()
        return _KEYS[name]
    return keys_for(name)


# --- the attacker's tools ----------------------------------------------------------------


def recovered_weight(mean: np.ndarray, step: float, largest: int) -> int:
    """The least common denominator of every ``mean / step``, by continued fractions.

    Each value's closest fraction with a denominator up to ``largest`` is exact when the
    double holds ``t / W`` to better than ``1 / (2 · largest**2)``.
    """
    denominators = [Fraction(float(v) / step).limit_denominator(largest).denominator for v in mean]
    return math.lcm(*denominators)


def consistent_weights(mean: np.ndarray, step: float, count: int, plan) -> list[int]:
    """Every total weight ``W'`` of the plan under which integer totals give ``mean``.

    The key holder would release ``mean`` for them. For ``W'``, the totals ``t'``
    within the clip bound (``|t'| <= W' · levels``) that round to the released grid
    integer ``k``: the least of them, checked.
    """
    levels = plan.quantizer.levels
    ks = [round(float(v) / step) for v in mean]
    assert np.array_equal(np.array(ks, dtype=np.float64) * step, mean)  # on the grid
    found = []
    for w in range(count, count * plan.max_weight + 1):
        least = [-((-w * (2 * k - 1)) // 2) for k in ks]  # ceil(W'(k - 1/2))
        if all(
            abs(t) <= w * levels and (2 * t + w) // (2 * w) == k
            for t, k in zip(least, ks, strict=True)
        ):
            found.append(w)
    return found


def cell_sizes(ks: np.ndarray, w: int, cells: int) -> np.ndarray:
    """How many integer totals ``t`` round to each ``k`` on the grid ``step / cells`` under ``W'``.

    ``k = floor((2 · cells · t + W') / (2 W'))``, so ``t`` lies in
    ``[W'(2k - 1) / (2 cells), W'(2k + 1) / (2 cells))``.
    """
    low = -((-w * (2 * ks - 1)) // (2 * cells))
    high = -((-w * (2 * ks + 1)) // (2 * cells))
    return high - low


def likelihood_attack(ks: np.ndarray, cells: int, count: int, max_weight: int) -> np.ndarray:
    """Log-likelihood of each ``W'`` in ``[count, count · max_weight]`` given released integers.

    A total ``t`` is about as likely as its neighbours (the data vary over many grid
    steps), so the chance of ``k`` under ``W'`` is proportional to the number of
    totals in its cell over the cell's width, ``W' / cells``.
    """
    return np.array(
        [
            np.sum(np.log(cell_sizes(ks, w, cells) * cells / w))
            for w in range(count, count * max_weight + 1)
        ]
    )


# --- two rounds, as the aggregator runs them -------------------------------------------


def _two_cohorts(name: str):
    """Every client, then all but the victim, each the first release of its own
    federation (one federation refuses a second cohort: ``normalisers.py``, tested
    below), so that each release divides by its own total weight, which is what the
    grid must hide from the data. Releases and exact sums."""
    keys = _keys(name)
    rounds = []
    for everyone in (True, False):
        keyholder, aggregator, clients = roles(name, sizes=SIZES, keys=keys)
        cohort = clients if everyone else clients[1:]
        start = open_round(keyholder, aggregator)
        for c in cohort:
            aggregator.add(c.participate(start).update)
        message = aggregator.finish_round()
        # The test's view: what the key holder decrypts (nothing the aggregator holds).
        vector = keys.public.load_vector(decode(message, EncryptedAggregate).vector)
        exact = keys.secret.decrypt_weighted(vector)
        released = aggregator.apply(keyholder.decrypt_aggregate(message))
        rounds.append((exact, released))
    return keys.public.scheme, rounds


@pytest.mark.parametrize("name", ["paillier-packed", "paillier-32", "ckks"])
def test_two_cohorts_no_longer_give_the_victims_sample_count(name):
    plan, rounds = _two_cohorts(name)
    step, largest = plan.quantizer.step, len(SIZES) * plan.max_weight
    # The exact mean, as it used to be released: each cohort's weight, and the victim's.
    weights = [recovered_weight(exact.total / exact.weight, step, largest) for exact, _ in rounds]
    assert weights == [sum(SIZES), sum(SIZES[1:])]
    assert weights[0] - weights[1] == SIZES[0] == 30

    for exact, released in rounds:
        count = released.contributors
        assert count == exact.count
        # On the grid, every mean is whole in steps: the continued fractions give 1.
        assert recovered_weight(released.mean, step, largest) == 1
        # Every total weight the plan allows is consistent with every released value.
        assert consistent_weights(released.mean, step, count, plan) == list(
            range(count, count * plan.max_weight + 1)
        )
        # And each has the same likelihood: the cells all hold W' totals.
        ks = np.array([round(float(v) / step) for v in released.mean], dtype=np.int64)
        scores = likelihood_attack(ks, 1, count, plan.max_weight)
        assert np.ptp(scores) == 0.0
        # The price: at most half a step per value.
        assert np.max(np.abs(released.mean - exact.total / exact.weight)) <= step / 2 * (1 + 1e-9)
        np.testing.assert_array_equal(released.mean, rounded_mean(exact.units, exact.weight, step))


def test_at_64_bits_the_doubles_blurred_per_value_paillier_by_accident_not_by_design():
    """Totals of 60 to 67 bits lose their low bits in the doubles of the exact mean, so
    continued fractions on them found nothing; the exact quotients still gave W / 2 and
    W / 4 here (the 64-bit grid integers come from doubles, whose low bits are zero, so
    every total is even). The release hides it whatever the values."""
    plan, rounds = _two_cohorts("paillier")
    step, largest = plan.quantizer.step, len(SIZES) * plan.max_weight
    found = []
    for exact, released in rounds:
        assert recovered_weight(exact.total / exact.weight, step, largest) == 1
        quotients = [Fraction(int(t), exact.weight) for t in exact.units]
        found.append(math.lcm(*(q.denominator for q in quotients)))
        count = released.contributors
        assert consistent_weights(released.mean, step, count, plan) == list(
            range(count, count * plan.max_weight + 1)
        )
    assert found == [sum(SIZES) // 2, sum(SIZES[1:]) // 4]


def test_the_statistics_rounds_are_released_on_their_grid_too():
    """MAGNITUDE and MOMENTS release weighted means of per-client statistics (weights:
    sample counts) through the same path, on their own plan's grid (92-bit and 71-bit packed)."""
    plan = RunPlan(n_features=N_FEATURES, standardize=True)
    keys = keys_for("paillier-packed")
    keyholder, aggregator, clients = roles("paillier-packed", sizes=SIZES, plan=plan)
    for task in (Task.MAGNITUDE, Task.MOMENTS):
        stats = tasks.plan_for(keys.public, task)
        start = open_round(keyholder, aggregator, task)
        for c in clients:
            aggregator.add(c.participate(start).update)
        message = aggregator.finish_round()
        vector = stats.load_vector(decode(message, EncryptedAggregate).vector)
        exact = keys.secret.decrypt_weighted(vector)
        released = aggregator.apply(keyholder.decrypt_aggregate(message))
        step, count = stats.scheme.quantizer.step, len(SIZES)
        largest = count * stats.scheme.max_weight
        # The statistics grids are finer than a double holds a mean to: the exact
        # quotients t / W, as Python fractions, give the total weight away.
        exact_denominators = [Fraction(int(t), exact.weight).denominator for t in exact.units]
        assert math.lcm(*exact_denominators) == sum(SIZES)
        assert recovered_weight(released.mean, step, largest) == 1
        assert consistent_weights(released.mean, step, count, stats.scheme) == list(
            range(count, largest + 1)
        )


# --- why not a finer grid: a likelihood over many values ---------------------------------


def _cohort_totals(weights, n: int, seed: int = 0) -> np.ndarray:
    """``n`` integer totals of a cohort with these weights: weighted sums of grid integers.

    Each client's values spread over about 30 grid steps around a common centre, as
    updates do.
    """
    rng = np.random.default_rng(seed)
    w = np.array(weights)
    centres = rng.normal(0, 50, n)[:, None]
    q = np.rint(rng.normal(centres, 30, (n, w.size))).astype(np.int64)
    return q @ w


@pytest.mark.parametrize(
    ("weights", "found"),
    [((3, 5, 2, 4), 14), ((30, 50, 20, 40), 14)],
    ids=["small-clients", "common-factor-10"],
)
def test_a_likelihood_over_many_values_reads_the_weight_off_a_finer_grid(weights, found):
    """On ``step / count``, which keeps every W' consistent, the cells hold floor or ceil
    of W' / count totals in a pattern that depends on W': 20,000 values (a model of
    1,000 values over 20 rounds) give the total weight of small clients, or W / 10 when
    every count is a multiple of 10 (all the exact mean gave too). On the grid itself,
    as the key holder releases, the likelihood is flat."""
    count, max_weight, total = len(weights), 128, sum(weights)
    t = _cohort_totals(weights, 20_000)
    finer = (2 * count * t + total) // (2 * total)
    scores = likelihood_attack(finer, count, count, max_weight)
    assert count + int(np.argmax(scores)) == found
    released = rounded_mean(t, total, 1.0).astype(np.int64)
    assert np.ptp(likelihood_attack(released, 1, count, max_weight)) == 0.0


def _colluding(plan: RunPlan, **options: object):
    """Red team 9's federation: the victim c0 (30 rows), a colluder c1 and two others."""
    from tests.protocol.harness import bound, client, signed_update

    plan = bound(plan, **options)
    keyholder, aggregator, _ = roles("paillier-packed", sizes=(), min_clients=3, plan=plan)
    sizes = (30, 50, 20, 40)
    clients = [client(keyholder, f"c{i}", i, n, **options) for i, n in enumerate(sizes)]
    for c in clients:
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    victim, colluder, *others = clients

    def attack(task: Task, cohort) -> int:
        """The colluder's formula: its one value at the clip dwarfs the honest ones."""
        start = open_round(keyholder, aggregator, task)
        for c in cohort:
            aggregator.add(c.participate(start).update)
        key = tasks.plan_for(colluder._key, task)
        at_clip = np.zeros(plan.vector_size(task))
        at_clip[0] = key.scheme.clip
        aggregator.add(signed_update(colluder, start, key.encrypt(at_clip, weight=1)))
        released = aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
        return round((key.scheme.clip - released.mean[0]) / released.mean[0])

    return keyholder, victim, others, colluder, attack


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "own-total"])
def test_a_colluders_value_at_the_clip_reads_one_pinned_total_and_no_sample_count(
    pinned, monkeypatch
):
    """Red team 9, with the aggregator and one colluding client. The release used to be
    ``R = (t_h + w_c·x_c) / (W_h + w_c)``: the colluder proves weight 1 and sends the
    clip, in range, so every proof verifies, and the statistics rounds' clips are far
    above what honest clients send (magnitude: about 1e-14 against 1), so ``W_h = (x_c
    − R) / R`` to well under half a sample. The magnitude round with the victim and the
    moments round without it gave the victim's 30 samples with no refusal (``own-total``:
    the key holder patched to divide each release by its own total again). Now the
    first release pins its total weight as every later release's divisor
    (``he_fed/protocol/normalisers.py``): the colluder reads that one total, of the
    three honest clients together, and the moments round from another cohort is
    refused before anything is decrypted."""
    if not pinned:
        monkeypatch.setattr(Normalisers, "divisor", lambda self, task: None)
        monkeypatch.setattr(Normalisers, "check", lambda self, task, contributors: None)
    keyholder, victim, others, colluder, attack = _colluding(
        RunPlan(n_features=3, standardize=True)
    )
    assert attack(Task.MAGNITUDE, [victim, *others]) == 90
    colluder._phase = 1  # it answered the magnitude round with its crafted update
    if not pinned:
        assert 90 - attack(Task.MOMENTS, others) == victim.n_samples == 30
        return
    with pytest.raises(PolicyViolation, match="cohort, the 4 clients of its first"):
        attack(Task.MOMENTS, others)
    assert (keyholder.released, keyholder.rejected) == (1, 0)  # nothing more decrypted


def test_an_evaluation_from_another_cohort_is_refused_before_decryption():
    """Evaluation figures are ratios over the validation rows of one cohort (the
    confusion matrix sums to the cohort's validation count over the divisor), so they
    come only from the cohort whose first evaluation pinned the divisor."""
    plan = RunPlan(n_features=3, standardize=False, evaluation="classification")
    keyholder, victim, others, _, attack = _colluding(plan, validation_split=0.25)
    attack(Task.TRAIN, [victim, *others])
    attack(Task.EVALUATE, [victim, *others])
    attack(Task.TRAIN, [victim, *others])
    with pytest.raises(PolicyViolation, match="cohort, the 4 clients of its first"):
        attack(Task.EVALUATE, others)
    assert (keyholder.released, keyholder.rejected) == (3, 0)


def test_a_restored_key_holder_keeps_its_pinned_divisor_and_an_older_state_is_refused():
    """A key holder that forgot its pinned total would pin a second one: two totals
    give a sample count. So the divisor is in its state (format 4), and a format-3
    state that released anything cannot be restored."""
    keyholder, aggregator, clients = roles("plain", sizes=SIZES)
    start = open_round(keyholder, aggregator)
    for c in clients:
        aggregator.add(c.participate(start).update)
    keyholder.decrypt_aggregate(aggregator.finish_round())
    state = keyholder.export_state()
    restored = KeyHolder.restore(keyholder._keys, keyholder._identity, state)
    assert restored._divisors.divisor(Task.TRAIN) == sum(SIZES)
    assert restored._divisors.divisor(Task.EVALUATE) is None
    assert restored.export_state() == state
    envelope = wire.open_envelope(state, wire.Kind.KEYHOLDER_STATE)
    pins = wire.Writer()
    keyholder._divisors.write_to(pins)
    assert envelope.body.endswith(pins.getvalue())
    older = wire.seal_envelope(
        wire.Kind.KEYHOLDER_STATE,
        envelope.body[: -len(pins.getvalue())],
        params="state=3",
        fingerprint=envelope.fingerprint,
    )
    with pytest.raises(MalformedMessage, match="start a new federation"):
        KeyHolder.restore(keyholder._keys, keyholder._identity, older)


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "any-cohort"])
def test_a_colluder_that_saturates_the_model_cannot_difference_two_cohorts(pinned, monkeypatch):
    """Red team 10, with the aggregator and one colluding client of the largest weight.
    Its proven contributions at the clip drive the intercept to saturation (every
    sigmoid 0 or 1), where an honest update no longer depends on the model: at
    ``b = -30`` a client's ``n·Δb`` is its count of positives. Two values of its own
    read the pinned divisor ``W_0``, each release then gives its cohort's honest sum
    exactly, and a cohort without the victim gives the victim's by difference: its 12
    positives exactly, with no refusal (``any-cohort``: the key holder patched to
    accept any cohort again). Now every training aggregate must come from the
    federation's cohort, and the one without the victim is refused undecrypted."""
    if not pinned:
        monkeypatch.setattr(Normalisers, "check", lambda self, task, contributors: None)
    from tests.protocol.harness import client, signed_update

    plan = RunPlan(n_features=3, standardize=False)
    keyholder, aggregator, _ = roles("paillier-packed", sizes=(), min_clients=None, plan=plan)
    sizes = (30, 50, 20, 40, 35)
    clients = [client(keyholder, f"c{i}", i, n) for i, n in enumerate(sizes)]
    for c in clients:
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    victim, colluder, *others = clients
    cohort = [victim, *others[:2]]  # three of five: the default minimum
    weight, clip = colluder._key.scheme.max_weight, colluder._key.scheme.clip

    def release(members, value: float) -> np.ndarray:
        start = open_round(keyholder, aggregator, Task.TRAIN)
        for c in members:
            aggregator.add(c.participate(start).update)
        colluder._last_round = decode(start, RoundStart).round
        x = np.zeros(plan.vector_size(Task.TRAIN))
        x[-1] = value
        aggregator.add(signed_update(colluder, start, colluder._key.encrypt(x, weight=weight)))
        return aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round())).mean

    while aggregator.model.weights[-1] > -30:
        release(cohort, -clip)
    a, b = release(cohort, -clip), release(cohort, -clip / 2)
    pinned_total = round(weight * (clip / 2) / (b[-1] - a[-1]))
    assert pinned_total == sum(sizes[:1] + sizes[2:4]) + weight  # W_0, as designed
    with_victim = pinned_total * b - weight * np.append(np.zeros(3), -clip / 2)
    if not pinned:
        without = pinned_total * release(others[:2], -clip / 2)
        without -= weight * np.append(np.zeros(3), -clip / 2)
        positives = round(with_victim[-1] - without[-1])
        assert positives == int(victim._y.sum()) == 12
        return
    with pytest.raises(PolicyViolation, match="must come from the federation.s cohort"):
        release(others[:2], -clip / 2)
    assert keyholder.rejected == 0
