"""The Li-Micciancio attack on CKKS, as an aggregator would mount it, and why it now fails.

A CKKS ciphertext is ``(c0, c1)`` with ``c0 + c1 * s = m`` in ``R_q``, where ``m``
is the plaintext polynomial (the encoded values plus the noise). Whoever holds the
ciphertext and the decrypted values *before rounding* re-encodes the values to get
``m`` back exactly, and solves ``s = (m - c0) / c1``: the whole ternary secret key
(Li and Micciancio, EUROCRYPT 2021). The aggregator holds every ciphertext (it
forwards the sum) and sees every release (the weighted mean it applies to the
model), so it needs nothing else.

The attacker here has only the aggregator's material: the parameters-only key, the
aggregate's bytes and the key holder's answers. The test shows that its solver works
on the unrounded decryption (which the test computes with the secret context, as
the key holder does internally), so that it can fail; then that it fails on what
the key holder releases, for an honest sum and for a sum whose ``c0`` the
aggregator shifted by a known plaintext (refused when the shift is off the grid,
and on the grid by the binding check, since the receipts' binding commitments fix
the plaintext; even the exact shifted sum, which the grid alone would have let
out, gives the solver nothing).

The default preset (N = 4096) and a model of 4095 features: the coefficients and
the intercept fill the first ciphertext exactly (the weight rides alone in a
second), so every value the attacker needs is a released value. The last case runs
the solver on the statistics rounds' plan, which splits each value into digits.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from he_fed.crypto import _ckks_binding, load_public
from he_fed.crypto import _seal_format as seal_format
from he_fed.exceptions import AggregateRejected
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import (
    Aggregate,
    Aggregator,
    Client,
    EncryptedAggregate,
    KeyHolder,
    RunPlan,
    Task,
    decode,
    encode,
    tasks,
)
from he_fed.protocol.release import rounded_mean
from tests.conftest import keys_for
from tests.crypto.ckks_tools import encode as encode_plaintext
from tests.crypto.ckks_tools import shifted, unrounded
from tests.protocol.harness import bound

N_FEATURES = 4095


# --- the attacker's solver: arithmetic in Z_q[X]/(X^N + 1), in SEAL's NTT layout ---------


def _bit_reversed(n: int) -> np.ndarray:
    bits = n.bit_length() - 1
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)])


def _minimal_root(order: int, q: int) -> int:
    """The smallest primitive ``order``-th root of unity modulo ``q``: SEAL's NTT root."""
    for base in range(2, q):
        root = pow(base, (q - 1) // order, q)
        if pow(root, order // 2, q) == q - 1:
            break
    best, current, square = root, root, root * root % q
    for _ in range(order // 2 - 1):
        current = current * square % q
        best = min(best, current)
    return best


def _cyclic_dft(values: np.ndarray, omega: int, q: int) -> np.ndarray:
    """``sum_t values[t] * omega**(j t)`` for every ``j``, radix 2 (object arrays)."""
    n = len(values)
    if n == 1:
        return values
    even = _cyclic_dft(values[0::2], omega * omega % q, q)
    odd = _cyclic_dft(values[1::2], omega * omega % q, q)
    twiddles = np.array([pow(omega, k, q) for k in range(n // 2)], dtype=object)
    odd = odd * twiddles % q
    return np.concatenate([(even + odd) % q, (even - odd) % q])


def _coefficients(ntt: np.ndarray, q: int) -> np.ndarray:
    """Undo SEAL's negacyclic NTT: value ``i`` is ``a(psi**(2 * bitrev(i) + 1))``."""
    n = len(ntt)
    psi = _minimal_root(2 * n, q)
    evaluations = np.array([int(v) for v in ntt], dtype=object)[_bit_reversed(n)]
    twisted = _cyclic_dft(evaluations, pow(psi * psi % q, -1, q), q) * pow(n, -1, q) % q
    untwist = np.array([pow(psi, -j, q) for j in range(n)], dtype=object)
    return twisted * untwist % q


def _solve_for_the_key(key, blob: bytes, decoded: np.ndarray) -> np.ndarray:
    """``s = (encode(decoded) - c0) / c1`` from one ciphertext's bytes and its decoded values.

    Returns the candidate key's coefficients, centred in ``(-q/2, q/2]``.
    """
    scheme = key.scheme
    q = scheme.primes[0]
    parsed = seal_format.parse_ckks_vector(
        blob,
        poly_modulus_degree=scheme.poly_modulus_degree,
        primes=list(scheme.primes[:-1]),
        parms_id=tuple(key.context.seal_context().data.first_parms_id()),
        scale=2.0**scheme.encode_scale_bits,
        max_values=scheme.slots,
    )
    plain = encode_plaintext(key, decoded)
    m = np.array([plain.data(i) for i in range(scheme.poly_modulus_degree)], dtype=object)
    c0 = parsed.c0[0].astype(object)
    c1 = parsed.c1[0].astype(object)
    inverse = np.array([pow(int(c), -1, q) for c in c1], dtype=object)
    s = (m - c0) * inverse % q
    coefficients = _coefficients(s, q)
    return np.where(coefficients > q // 2, coefficients - q, coefficients).astype(np.int64)


def _secret_key(keys) -> np.ndarray:
    """The real key's coefficients (the test, not the attacker, reads them)."""
    scheme = keys.public.scheme
    q = scheme.primes[0]
    ntt = keys.secret._ctx.secret_key().data.data()
    values = np.array([ntt.data(i) for i in range(scheme.poly_modulus_degree)], dtype=object)
    coefficients = _coefficients(values, q)
    return np.where(coefficients > q // 2, coefficients - q, coefficients).astype(np.int64)


def _is_ternary(s: np.ndarray) -> bool:
    return bool(np.all(np.abs(s) <= 1))


# --- the federation -------------------------------------------------------------------


ROWS = (40, 30, 50)
#: The total weight is no longer released; the attacker here is given it anyway.
TOTAL_WEIGHT = sum(ROWS)


def _federation():
    keys = keys_for("ckks")
    plan = bound(
        RunPlan(n_features=N_FEATURES, standardize=False), local_epochs=1, allow_insecure=False
    )
    keyholder = KeyHolder(keys, plan=plan, min_clients=2)
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(), plan=plan, keyholder=keyholder.identity_bytes
    )
    rng = np.random.default_rng(0)
    clients = []
    for i, rows in enumerate(ROWS):
        X = rng.normal(size=(rows, N_FEATURES))
        y = (X[:, 0] + 0.3 * rng.normal(size=rows) > 0).astype(int)
        clients.append(
            Client(
                f"c{i}",
                X,
                y,
                keyholder.public_key_bytes(),
                keyholder=keyholder.identity_bytes,
                model=LogisticRegressionGD(learning_rate=0.5),
                local_epochs=1,
                classes=np.array([0, 1]),
            )
        )
    for client in clients:
        keyholder.register(client.client_id, client.verify_key)
        aggregator.register(client.client_id, client.verify_key)
    return keys, keyholder, aggregator, clients


def _aggregate(keyholder, aggregator, clients) -> EncryptedAggregate:
    start = aggregator.open_round(keyholder.start_round())
    for client in clients:
        aggregator.add(client.participate(start).update)
    return decode(aggregator.finish_round(), EncryptedAggregate)


def _released_values(key, release: Aggregate) -> np.ndarray:
    """The first ciphertext's values, as the aggregator reads them from a release.

    Its best guess: honest totals are integers, so it rounds what the mean gives.
    """
    totals = np.rint(release.mean * TOTAL_WEIGHT / key.scheme.quantizer.step)
    return totals[: key.scheme.values_per_ciphertext]


@pytest.fixture(scope="module")
def federation():
    return _federation()


def test_the_solver_recovers_the_key_from_an_unrounded_decryption(federation):
    keys, keyholder, aggregator, clients = federation
    key = load_public(keys.public.aggregation_key().to_bytes())  # what the aggregator holds
    message = _aggregate(keyholder, aggregator, clients)
    vector = key.load_vector(message.vector)
    per = key.scheme.values_per_ciphertext
    assert vector.size == per and len(vector.blobs()) == 2  # values fill the first ciphertext
    # What the key holder computes before rounding, and must never release.
    decoded = unrounded(keys.secret, vector)[:per]
    candidate = _solve_for_the_key(key, vector.blobs()[0], decoded)
    assert _is_ternary(candidate)
    np.testing.assert_array_equal(candidate, _secret_key(keys))


def test_an_honest_release_gives_the_solver_nothing(federation):
    keys, keyholder, aggregator, clients = federation
    key = load_public(keys.public.aggregation_key().to_bytes())
    message = _aggregate(keyholder, aggregator, clients)
    release = decode(keyholder.decrypt_aggregate(encode(message)), Aggregate)
    aggregator.apply(encode(release))
    vector = key.load_vector(message.vector)
    candidate = _solve_for_the_key(key, vector.blobs()[0], _released_values(key, release))
    assert not _is_ternary(candidate)
    assert np.mean(candidate == _secret_key(keys)) < 0.01  # no better than a random guess
    # The release is a function of the exact sum of the clients' grid integers alone
    # (its mean, rounded to the grid, which hides the total weight): it carries none
    # of the decryption's noise, so the solver lands on a random polynomial.
    step = key.scheme.quantizer.step
    exact = keys.secret.decrypt_weighted(vector)
    np.testing.assert_array_equal(release.mean, rounded_mean(exact.units, TOTAL_WEIGHT, step))


def test_a_shifted_c0_is_refused_off_the_grid_and_by_the_binding_on_it(federation):
    keys, keyholder, aggregator, clients = federation
    key = load_public(keys.public.aggregation_key().to_bytes())
    message = _aggregate(keyholder, aggregator, clients)
    honest = key.load_vector(message.vector)
    per = key.scheme.values_per_ciphertext

    # Off the grid: the key holder refuses, and says only that (one bit, which the
    # off_grid flag lets it count against the key).
    offsets = np.zeros(2 * per)
    offsets[7] = 0.5
    off = EncryptedAggregate(
        message.round, message.task, message.receipts, shifted(key, honest, offsets).to_bytes()
    )
    with pytest.raises(AggregateRejected) as caught:
        keyholder.decrypt_aggregate(encode(off))
    assert caught.value.off_grid and re.search(r"\d", str(caught.value)) is None

    # On the grid (in the next round: the refused attempt used this one up): the
    # plaintext no longer opens the receipts' binding commitments, so nothing is
    # released either, and the refusal says no more than the off-grid one.
    message = _aggregate(keyholder, aggregator, clients)
    honest = key.load_vector(message.vector)
    offsets = np.zeros(2 * per)
    offsets[:per] = np.arange(per) % 7 - 3
    moved = shifted(key, honest, offsets)
    on = EncryptedAggregate(message.round, message.task, message.receipts, moved.to_bytes())
    released = keyholder.released
    with pytest.raises(AggregateRejected) as caught:
        keyholder.decrypt_aggregate(encode(on))
    assert not caught.value.off_grid and re.search(r"\d", str(caught.value)) is None
    assert keyholder.released == released
    # What the grid alone would have released (the exact shifted sum) gives the
    # solver nothing either.
    exact = keys.secret.decrypt_weighted(honest)
    moved_sum = keys.secret.decrypt_weighted(moved)  # no binding: the grid's checks only
    step = key.scheme.quantizer.step
    np.testing.assert_array_equal(moved_sum.units, exact.units + offsets[:per].astype(np.int64))
    mean = rounded_mean(moved_sum.units, TOTAL_WEIGHT, step)
    totals = np.rint(mean * TOTAL_WEIGHT / step)[:per]
    candidate = _solve_for_the_key(key, moved.blobs()[0], totals)
    assert not _is_ternary(candidate)


# --- a statistics plan, whose values take several slots ---------------------------------


def _balanced_digits(totals, base: int, digits: int) -> list[int]:
    """The attacker's best split of released integers into slots: balanced base-``base`` digits."""
    out = []
    for total in totals:
        for _ in range(digits - 1):
            upper = (total + base // 2) // base
            out.append(total - upper * base)
            total = upper
        out.append(total)
    return out


def test_a_multi_digit_release_gives_the_solver_nothing():
    """The moments plan splits each value into four digits; what it releases is still exact.

    1020 values of four digits, the weight and the blinding fill one ciphertext. The solver
    recovers the key from its unrounded decryption, so it works on digit slots;
    it fails on the release (the recombined totals, split back into digits as an
    attacker would) and even on the rounded digit totals themselves, which the key
    holder computes but never releases, and from which the release follows.
    """
    keys = keys_for("ckks")
    key = tasks.plan_for(load_public(keys.public.aggregation_key().to_bytes()), Task.MOMENTS)
    public = tasks.plan_for(keys.public, Task.MOMENTS)
    scheme = key.scheme
    assert (scheme.digits, scheme.digit_bits, scheme.grid_bits) == (4, 18, 45)
    blinding = _ckks_binding.blinding_slots(scheme)
    size = (scheme.values_per_ciphertext - 1 - blinding) // scheme.digits
    rng = np.random.default_rng(1)
    vectors = [public.encrypt(rng.uniform(-2, 2, size), weight=w) for w in (40, 30, 50)]
    total = sum(key.load_vector(v.to_bytes(), size=size) for v in vectors)
    assert (size, blinding) == (1020, 14) and len(total.blobs()) == 1
    blob, secret = total.blobs()[0], _secret_key(keys)

    decoded = unrounded(keys.secret, total)
    np.testing.assert_array_equal(_solve_for_the_key(key, blob, decoded), secret)

    release = keys.secret.decrypt_weighted(total)
    integers = [int(v) for v in release.total * 2.0**scheme.grid_bits]  # exact: below 2**53
    guess = _balanced_digits(integers, 2**scheme.digit_bits, scheme.digits) + [release.weight]
    # An attacker that even knew the blinding's digit totals (the release does not say them).
    guess += list(sum(_ckks_binding.blinding_digits(v._opening[2], scheme) for v in vectors))
    guess += [0] * (len(decoded) - len(guess))  # the unused slots, which must be empty
    for values in (np.array(guess, dtype=np.float64), np.rint(decoded)):
        candidate = _solve_for_the_key(key, blob, values)
        assert not _is_ternary(candidate)
        assert np.mean(candidate == secret) < 0.01
    # The attacker's split is not even the key holder's digit totals: carries differ.
    assert not np.array_equal(guess, np.rint(decoded))
