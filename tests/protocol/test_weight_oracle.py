"""The aggregator and one colluding client try to learn a client's sample count.

The attack (red team 7): the colluder encrypts zeros with a weight far above the
plan's ``max_weight``, ``w_c = count · max_weight - T``, commits to exactly that
opening and proves it. Only the decrypted total weight used to be range-checked,
so the key holder released exactly when the honest clients' total weight was at
most ``T``. Sample counts do not change between rounds: an egg-drop search over
``T`` across rounds, within the key holder's three refusals, found the total of
c0, c2 and c3 and then of c2 and c3 alone, whose difference is c0's sample count
(30 of 30, in 50 rounds).

What stops it: every contribution commits to its weight and proves it lies in
``[1, max_weight]`` (``he_fed.crypto._weight_range``), and the key holder checks
the weights' commitments against the decrypted total weight. A colluder that
proves an honest weight but encrypts another is refused whatever the honest
clients hold, so the answer the search needs never varies with ``T``.

Red team 8 then asked the same question through the *values'* range check, whose
bound is the total weight times the clip: a colluder that proved weight 1 and put
``levels · (T + 2) + levels/2`` into one evaluation value was refused exactly when
the honest total weight was at most ``T``, and its search read a victim's exact
validation count in 55 rounds with 3 refusals (and, near convergence, a training
sample count in about 4,700 rounds). Every value is now proven within its own
weight times the clip (``he_fed.crypto._value_range``); the last test asks the
question with the colluder's best forgeries.
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from he_fed.crypto import _binding, _ckks_binding, _opening_proof, _value_range, _weight_range
from he_fed.crypto._ckks_grid import GridQuantizer
from he_fed.crypto.paillier import PaillierVector
from he_fed.exceptions import AggregateRejected, ConfigurationError, InvalidSignature
from he_fed.protocol import RunPlan, Task, tasks
from tests.protocol.harness import N_FEATURES, client, open_round, roles, signed_update

SCHEMES = ["paillier-packed", "ckks"]
SIZES = (30, 50, 20, 40)  # victim c0, colluder c1, honest c2 and c3: 90 honest samples
PLAN_SIZE = 4  # three features and the intercept


def _out_of_range(key, values: np.ndarray, weight: int, claimed: int | None):
    """A contribution encrypting ``weight`` (beyond the plan) with an honest opening.

    Its binding commitment opens to what it encrypts. With ``claimed``, its weight
    commitment and range proof are for that in-range weight instead (the strongest
    variant: every proof verifies); without, they are for ``weight`` itself, whose
    range proof cannot be made.
    """
    vector = key._encrypt(values, weight)  # what encrypt's own checks would refuse
    if claimed is None:
        return vector
    if hasattr(vector, "_weight"):  # Paillier: the opening holds the slot integers
        vector._weight = claimed
        return vector
    packed, rho = vector._packed()  # CKKS: the opening holds the values and weight
    plain = _binding.commit(packed, rho)
    bits = _ckks_binding.slot_bits(key.scheme) * _ckks_binding.pack_bits(key.scheme)
    vector._binding = _weight_range.bind(plain, claimed, rho)

    def prove(context: bytes) -> bytes:
        ranged = _weight_range.prove_linked(
            None, claimed, rho, key.scheme.max_weight, key.fingerprint, context
        )
        return ranged + _opening_proof.prove(packed, rho, plain, bits, context)

    vector.prove_commitment = prove
    return vector


def _query(keyholder, aggregator, clients, threshold: int, claimed: int | None) -> str:
    """One round of the search: does the key holder release when the colluder sets ``T``?"""
    victim, colluder, *others = clients
    start = open_round(keyholder, aggregator)
    for c in (victim, *others):
        aggregator.add(c.participate(start).update)
    count = len(others) + 2
    weight = count * colluder._key.scheme.max_weight - threshold
    zeros = np.zeros(PLAN_SIZE)
    crafted = _out_of_range(colluder._key, zeros, weight, claimed)
    return _answer(keyholder, aggregator, signed_update(colluder, start, crafted))


def _answer(keyholder, aggregator, update: bytes) -> str:
    """Whether the aggregator takes the colluder's ``update``, and the key holder releases."""
    try:
        aggregator.add(update)
    except InvalidSignature:
        outcome = "dropped"
    else:
        outcome = "added"
    try:
        aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    except AggregateRejected:
        return f"{outcome}, refused"
    return f"{outcome}, released"


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_an_in_range_weight_proof_over_an_out_of_range_weight_is_refused_for_every_t(
    scheme_name,
):
    keyholder, aggregator, clients = roles(scheme_name, sizes=SIZES, min_clients=3)
    honest = SIZES[0] + SIZES[2] + SIZES[3]
    # Before the weight commitments, the first answer was "released" and the second
    # "refused": the comparison W_honest <= T the search is built on.
    answers = [_query(keyholder, aggregator, clients, t, claimed=1) for t in (honest, honest - 1)]
    # The values' range proof ties the binding's weight slot to C's weight: the
    # contribution cannot prove it and never reaches a sum.
    assert answers == ["dropped, released", "dropped, released"]
    assert (keyholder.released, keyholder.rejected) == (2, 0)


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_a_weight_beyond_the_plan_cannot_prove_its_range_and_is_dropped_on_arrival(scheme_name):
    keyholder, aggregator, clients = roles(scheme_name, sizes=SIZES, min_clients=3)
    honest = SIZES[0] + SIZES[2] + SIZES[3]
    answers = [
        _query(keyholder, aggregator, clients, t, claimed=None) for t in (honest, honest - 1)
    ]
    # The colluder's update never reaches a sum; the honest cohort's rounds go on.
    assert answers == ["dropped, released", "dropped, released"]
    assert (keyholder.released, keyholder.rejected) == (2, 0)


@pytest.mark.parametrize("scheme_name", SCHEMES)
def test_one_query_no_longer_tells_two_victims_apart(scheme_name):
    """T = 90 separated a victim of 30 samples (90 honest) from one of 31 (91)."""
    answers = []
    for victim_size in (30, 31):
        sizes = (victim_size, *SIZES[1:])
        keyholder, aggregator, clients = roles(scheme_name, sizes=sizes, min_clients=3)
        answers.append(_query(keyholder, aggregator, clients, 90, claimed=1))
    assert answers == ["dropped, released", "dropped, released"]


def _packed(key, slots: list[int], weight: int):
    """A packed contribution whose raw slots (the weight first) are ``slots``, with every
    proof honest about them: only its values are beyond what an honest client sends."""
    scheme, n = key.scheme, int(key.n)
    size = len(slots) - 1
    plaintexts = scheme.layout.pack(np.array(slots, dtype=object))
    rho = secrets.randbits(scheme.blinding_bits)
    ciphertexts, exponents = key._raw_encrypt(scheme.attach(plaintexts, size, rho))
    vector = PaillierVector(key, ciphertexts, size, 1)
    vector._exponents = exponents
    vector._opening = (scheme.exact(plaintexts, size, n), rho)
    vector._weight = weight
    return vector


def _forged_digits(layout, values, weight, rho, binding, weight_commitment, context):
    """The colluder's own prover: the crafted value's digits over the plan's
    coefficients, all 0 or 1 but the top one, which takes whatever is left (here 2 or
    more). Every other part of the proof is honest about the crafted binding."""
    digits = []
    for y, span in zip(values, layout.spans, strict=True):
        coefs = _weight_range.coefficients(span + 1)
        top, rest = divmod(y, coefs[-1])  # rest < coefs[-1]: the lower bits reach it
        low = [(rest >> j) & 1 for j in range(len(coefs) - 1)] + [top]
        digits.append(low)
        assert sum(c * b for c, b in zip(coefs, low, strict=True)) == y
    return _value_range._prove(
        layout, list(values), digits, weight, rho, binding, weight_commitment, context
    )


def _with_forged_digits(prove_commitment, monkeypatch):
    def prove(context: bytes) -> bytes:
        with monkeypatch.context() as patch:
            patch.setattr(_value_range, "prove", _forged_digits)
            return prove_commitment(context)

    return prove


def _crafted(key, size: int, threshold: int, monkeypatch):
    """The colluder's contribution of weight 1 with ``levels · (T + 2) + levels/2`` in the
    accuracy slot (``q = levels · (T + 3/2)``, every other ``q`` zero), and an honest one
    (every ``q`` zero)."""
    if key.scheme.name == "paillier-packed":
        levels = key.scheme.quantizer.levels
        honest = [1] + [levels] * size
        crafted = list(honest)
        crafted[2] = levels * (threshold + 2) + levels // 2
        return _packed(key, crafted, 1), _packed(key, honest, 1)
    honest = np.zeros(size)  # the same q as Paillier's slots, whose zero point is levels
    crafted = honest.copy()
    crafted[1] = key.scheme.clip * (threshold + 1.5)
    vector = _unclipped(key._encrypt, monkeypatch)(crafted, 1)
    # Its binding and proofs are honest about what it encrypts, past the clip too.
    vector.binding = _unclipped(vector.binding, monkeypatch)
    vector.prove_commitment = _unclipped(vector.prove_commitment, monkeypatch)
    return vector, key._encrypt(honest, 1)


def _unclipped(method, monkeypatch):
    """``method`` with CKKS grid integers past the clip, as encrypt would not make them."""

    def call(*args):
        with monkeypatch.context() as patch:
            patch.setattr(GridQuantizer, "_scaled", lambda self, x: np.rint(x * 2.0**self.bits))
            return method(*args)

    return call


def _evaluation_query(scheme_name: str, victim_rows: int, forge: str, monkeypatch) -> str:
    """Red team 8's question, asked once: the colluder proves weight 1 and puts
    ``levels · (T + 2) + levels/2`` into the accuracy slot, with ``T`` the honest total
    weight when the victim holds 10 validation rows.

    ``forge`` is how it gets past the values' range proof, which it cannot make:
    ``"digits"`` proves the crafted slot with digits that are not all bits (every
    other proof honest about the crafted binding); ``"binding"`` commits to an
    honest opening (every proof verifies) and encrypts the crafted slots.
    """
    plan = RunPlan(n_features=N_FEATURES, standardize=False, evaluation="classification")
    keyholder, aggregator, clients = roles(
        scheme_name, sizes=(victim_rows, 20, 28, 48), min_clients=3, plan=plan
    )
    for c in clients:
        c._X_val, c._y_val = c._X[: len(c._X) // 4], c._y[: len(c._y) // 4]
    victim, colluder, *others = clients
    key = tasks.plan_for(colluder._key, Task.EVALUATE)
    threshold = 7 + 12 + 10  # the others' 7 and 12 validation rows, and 10 of the victim's
    vector, decoy = _crafted(key, plan.vector_size(Task.EVALUATE), threshold, monkeypatch)
    with pytest.raises(ConfigurationError, match="no range proof"):
        vector.prove_commitment(b"any context")
    vector._binding = None
    if forge == "digits":
        vector.prove_commitment = _with_forged_digits(vector.prove_commitment, monkeypatch)
    elif isinstance(vector, PaillierVector):
        vector._opening = (decoy._opening[0], vector._opening[1])  # B and proofs: honest slots
    else:
        vector._opening = (decoy._opening[0], 1, vector._opening[2])
    start = open_round(keyholder, aggregator, Task.EVALUATE)
    for c in (victim, *others):
        aggregator.add(c.participate(start).update)
    return _answer(keyholder, aggregator, signed_update(colluder, start, vector))


@pytest.mark.parametrize("scheme_name", SCHEMES)
@pytest.mark.parametrize(
    ("forge", "expected"),
    [("digits", "dropped, released"), ("binding", "added, refused")],
)
def test_the_values_range_check_no_longer_tells_two_victims_apart(
    scheme_name, forge, expected, monkeypatch
):
    """Red team 8's question in two federations whose victims hold 10 and 11 validation
    rows. Before the values' range proof the answers were ``["refused", "released"]``:
    the key holder refused exactly when the honest total weight was at most ``T``, and
    the red team's search (3 refusals, 55 rounds) read a victim's exact validation
    count. Now the crafted slot cannot be proven, so the colluder's contribution is
    dropped on arrival, or, committed as an honest one, fails the binding check
    whatever the honest clients hold."""
    answers = [_evaluation_query(scheme_name, rows, forge, monkeypatch) for rows in (40, 44)]
    assert answers == [expected, expected]


def _digits_at_their_bounds(honest_sizes: tuple[int, ...], monkeypatch) -> str:
    """A magnitude round (a two-digit CKKS plan) with a colluder of weight 128 whose every
    digit sits at its bound: each digit is in range, so every proof verifies, but the
    digits recombine to a value beyond ``levels`` (about 1.023 times the clip)."""
    plan = RunPlan(n_features=3, standardize=True)
    keyholder, aggregator, _ = roles("ckks", sizes=(), min_clients=3, plan=plan)
    honest = [client(keyholder, f"h{i}", 10 + i, n) for i, n in enumerate(honest_sizes)]
    colluder = client(keyholder, "colluder", 99, 60)
    for c in (*honest, colluder):
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    start = open_round(keyholder, aggregator, Task.MAGNITUDE)
    for c in honest:
        aggregator.add(c.participate(start).update)
    key = tasks.plan_for(colluder._key, Task.MAGNITUDE)
    quantizer = key.scheme.quantizer
    assert quantizer.digits > 1 and quantizer.reach > quantizer.levels
    encode = GridQuantizer.encode

    def at_bounds(self, x, weight):
        out = encode(self, x, weight)
        if self == quantizer:
            out[: self.digits] = weight * np.array(self.digit_bounds, dtype=float)
        return out

    with monkeypatch.context() as patch:
        patch.setattr(GridQuantizer, "encode", at_bounds)
        vector = key._encrypt(np.zeros(plan.vector_size(Task.MAGNITUDE)), 128)
        update = signed_update(colluder, start, vector)
    aggregator.add(update)  # every proof verifies
    try:
        aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
    except AggregateRejected:
        return "refused"
    return "released"


def test_digits_at_their_bounds_no_longer_tell_small_honest_totals_apart(monkeypatch):
    """Red team 9: checked against ``weight · levels``, such a sum was refused when the
    honest total weight was 2 or 3 and released at 4. The key holder now checks
    recombined totals against what proven digits can reach."""
    answers = [_digits_at_their_bounds(s, monkeypatch) for s in ((1, 1), (1, 2), (2, 2))]
    assert answers == ["released"] * 3
