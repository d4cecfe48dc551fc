"""CKKS for aggregation: exact sums on the grid, the error budget, refusals, material, chunks."""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import re
import tracemalloc

import numpy as np
import pytest
import tenseal as ts

from he_fed.crypto import CKKS, KeyPair, PublicKey, _ckks_binding, load_public, wire
from he_fed.crypto.ckks import PRESETS, CKKSAggregationKey, CKKSVector
from he_fed.crypto.ckks_budget import MAX_VALUES, RESIDUAL_THRESHOLD
from he_fed.crypto.stream import FrameWriter
from he_fed.exceptions import (
    AggregateRejected,
    ConfigurationError,
    EncodingOverflowError,
    InsecureParameters,
    KeyMismatchError,
    MalformedMessage,
    SecretMaterialError,
    ShapeMismatchError,
)
from tests.crypto.ckks_tools import shifted, unrounded

PRESET_NAMES = sorted(PRESETS)
#: A weighted plan every preset can hold: up to 16 contributions of weight up to 8.
PLAN = {"clip": 1.0, "max_clients": 16, "max_weight": 8}


@functools.cache
def _keys(preset: str, **plan: float) -> KeyPair:
    return CKKS(preset=preset, **{**PLAN, **plan}).keygen()


# --- exact sums and the error budget ----------------------------------------------------


def _exact(scheme: CKKS, xs, weights) -> np.ndarray:
    """What a sum must decrypt to: the weighted sum of the quantized values, exactly."""
    q = scheme.quantizer
    return q.dequantize(sum(int(w) * q.quantize(x) for x, w in zip(xs, weights, strict=True)))


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_sums_decrypt_to_exactly_the_sum_of_the_quantized_values(preset, rng):
    keys = _keys(preset)
    scheme = keys.public.scheme
    for size in (1, 2, scheme.slots, scheme.values_per_ciphertext, 3 * scheme.slots + 1):
        weights = rng.integers(1, PLAN["max_weight"] + 1, size=5)
        xs = rng.uniform(-1, 1, size=(5, size))
        xs[0, 0] = 1.0  # the clip bound itself is on the grid
        total = sum(keys.public.encrypt(x, weight=int(w)) for x, w in zip(xs, weights, strict=True))
        result = keys.secret.decrypt_weighted(total)
        np.testing.assert_array_equal(result.total, _exact(scheme, xs, weights))
        assert (result.weight, result.count) == (int(weights.sum()), 5)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_the_decryption_error_matches_the_budget_and_is_rounded_away(preset, rng):
    keys = _keys(preset)
    scheme, budget = keys.public.scheme, keys.public.scheme.error_budget
    blinding = _ckks_binding.blinding_slots(scheme)
    size, count = 4 * scheme.slots - 1 - blinding, 12
    weights = rng.integers(1, PLAN["max_weight"] + 1, size=count)
    xs = rng.uniform(-1, 1, size=(count, size))
    vectors = [keys.public.encrypt(x, weight=int(w)) for x, w in zip(xs, weights, strict=True)]
    total = sum(vectors)
    integers = np.zeros(2 * scheme.values_per_ciphertext)  # two ciphertexts, empty slots = 0
    integers[:size] = _exact(scheme, xs, weights) / scheme.quantizer.step
    integers[size] = weights.sum()
    integers[size + 1 :] = sum(  # the binding commitments' blinding follows the weight
        _ckks_binding.blinding_digits(v._opening[2], scheme) for v in vectors
    )
    error = unrounded(keys.secret, total) - integers  # what the key holder rounds away
    # The model predicts the root-mean-square error, in grid units (weights do not scale it).
    assert 0.85 < math.sqrt(np.mean(error**2)) / budget.decryption_rms(count) < 1.15
    # Values in the real and in the imaginary part of a slot err alike.
    for part in (error[0::2], error[1::2]):
        assert 0.8 < math.sqrt(np.mean(part**2)) / budget.decryption_rms(count) < 1.2
    # The bound holds and is not vacuous; at the plan's max_clients it is within 1/4.
    largest = float(np.max(np.abs(error)))
    assert largest <= budget.decryption_bound(count, error.size) < 20 * largest
    assert budget.decryption_bound(scheme.max_clients) <= RESIDUAL_THRESHOLD
    np.testing.assert_array_equal(
        keys.secret.decrypt_weighted(total).total, _exact(scheme, xs, weights)
    )


def test_the_scale_is_the_smallest_that_keeps_the_failure_chance_below_2_to_the_40():
    scheme = CKKS(clip=1.0, max_clients=100)
    budget = scheme.error_budget
    assert budget.decryption_bound(100, MAX_VALUES, 2.0**-40) <= RESIDUAL_THRESHOLD
    halved = dataclasses.replace(budget, scale_bits=budget.scale_bits - 1)
    assert halved.decryption_bound(100, MAX_VALUES, 2.0**-40) > RESIDUAL_THRESHOLD
    # The bound grows with the contributions summed, so max_clients is the one to hold.
    assert budget.decryption_bound(1) < budget.decryption_bound(50) < budget.decryption_bound(100)


def test_a_100_client_sum_at_the_default_preset_errs_by_less_than_1e_6(rng):
    keys = CKKS(clip=1.0, max_clients=100).keygen()
    budget = keys.public.scheme.error_budget
    xs = rng.uniform(-1, 1, size=(100, keys.public.scheme.values_per_ciphertext - 1))
    total = sum(keys.public.encrypt(x) for x in xs)
    error = keys.secret.decrypt(total) - xs.sum(axis=0)
    # Only the clients' own rounding onto the grid is left: its hard bound, and the
    # RMS of uniform rounding errors.
    assert np.max(np.abs(error)) <= 1e-6 < budget.bound(100)
    assert 0.95 < math.sqrt(np.mean(error**2)) / budget.rms(100) < 1.05


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_the_largest_sums_the_plan_allows_decrypt_exactly(preset):
    keys = _keys(preset, clip=2.0, max_clients=4, max_weight=3)
    scheme = keys.public.scheme
    x = np.array([2.0, -2.0, 1.0])
    total = sum(keys.public.encrypt(x, weight=3) for _ in range(4))
    np.testing.assert_array_equal(keys.secret.decrypt(total), 12 * x)
    # The grid is the finest that keeps every sum, times the scale, below a quarter
    # of q and below 2**52.
    room = min(scheme.data_modulus / 4, 2.0**52)
    largest = 4 * 3 * scheme.quantizer.levels * 2.0**scheme.encode_scale_bits
    assert largest < room <= 2 * largest


def test_weighting_returns_the_exact_total_weight_and_the_weighted_mean(rng):
    keys = CKKS(max_clients=8, max_weight=1024).keygen()
    xs = [rng.uniform(-4, 4, size=50) for _ in range(3)]
    weights = [1000, 3, 517]
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, weights, strict=True))
    result = keys.secret.decrypt_weighted(total)
    assert result.weight == 1520
    expected = _exact(keys.public.scheme, xs, weights)
    np.testing.assert_array_equal(result.total, expected)
    exact_mean = sum(w * x for w, x in zip(weights, xs, strict=True)) / 1520
    assert np.max(np.abs(result.mean - exact_mean)) <= keys.public.scheme.error_budget.bound(1)


# --- parameters and plans ---------------------------------------------------------------


def test_the_budget_refuses_meaningless_questions_with_configuration_errors():
    budget = CKKS().error_budget
    for bad in ({"count": 0}, {"values": 0}, {"failure_probability": 1.0}, {"count": True}):
        with pytest.raises(ConfigurationError):
            budget.decryption_bound(**bad)
    for method in (budget.rms, budget.bound, budget.decryption_rms):
        with pytest.raises(ConfigurationError):
            method(0)
    assert (
        budget.decryption_bound(4, 10, 1e-3)
        < budget.decryption_bound(4, 10, 1e-12)
        < budget.decryption_bound(4, 10**6, 1e-12)
    )


def test_presets_are_what_the_documentation_says():
    table = {
        name: (s.poly_modulus_degree, s.coeff_mod_bit_sizes, s.slots)
        for name in PRESET_NAMES
        for s in [CKKS(preset=name)]
    }
    assert table == {
        "aggregation-compact": (2048, (40, 14), 1024),
        "aggregation-fast": (4096, (60, 49), 2048),
        "compat-nvflare": (8192, (60, 40, 40), 4096),
    }
    assert CKKS().preset == "aggregation-fast"


@pytest.mark.parametrize(
    ("n", "bits", "allowed"),
    [(4096, (60, 50), 109), (2048, (40, 15), 54), (8192, (60, 40, 40, 60, 20), 218)],
)
def test_parameters_beyond_the_128_bit_bound_are_insecure_at_construction(n, bits, allowed):
    with pytest.raises(InsecureParameters, match=f"{allowed} bits"):
        CKKS(poly_modulus_degree=n, coeff_mod_bit_sizes=bits)


def test_insecure_parameters_read_from_bytes_are_refused_as_insecure():
    material = _keys("aggregation-fast").public.aggregation_key()
    envelope = wire.open_envelope(material.to_bytes())
    params = envelope.params.replace("coeff_mod_bit_sizes=60,49", "coeff_mod_bit_sizes=60,50")
    forged = wire.seal_envelope(
        envelope.kind, envelope.body, scheme="ckks", params=params, fingerprint=material.fingerprint
    )
    with pytest.raises(InsecureParameters):
        load_public(forged)


@pytest.mark.parametrize(
    "params",
    [
        {"poly_modulus_degree": 3000},
        {"poly_modulus_degree": 65536},
        {"coeff_mod_bit_sizes": (60,)},
        {"coeff_mod_bit_sizes": (61, 40)},
        {"coeff_mod_bit_sizes": (19, 40)},
        {"coeff_mod_bit_sizes": (40, 13)},
        {"scale_bits": 61},
        {"grid_bits": -1},
        {"grid_bits": 97},
        {"precision_bits": -1},
        {"precision_bits": 97},
        {"preset": "fastest"},
    ],
)
def test_invalid_custom_parameters_are_configuration_errors(params):
    with pytest.raises(ConfigurationError) as caught:
        CKKS(**params)
    assert not isinstance(caught.value, InsecureParameters)


def test_primes_seal_cannot_find_are_a_configuration_error_not_a_security_one():
    # No 14-bit prime is 1 mod 2N at N=32768.
    with pytest.raises(ConfigurationError, match="primes") as caught:
        CKKS(poly_modulus_degree=32768, coeff_mod_bit_sizes=(60, 14))
    assert not isinstance(caught.value, InsecureParameters)


def test_plans_that_leave_too_coarse_a_grid_are_refused_with_the_knob_to_turn():
    plan = {"clip": 1.0, "max_clients": 2**14, "max_weight": 16}
    with pytest.raises(EncodingOverflowError, match="lower clip, max_clients or max_weight"):
        CKKS(preset="aggregation-compact", **plan)
    # The default preset holds it, on a coarse grid.
    assert CKKS(**plan).quantizer.levels >= 16
    with pytest.raises(EncodingOverflowError, match="2\\^52"):
        CKKS(**{**plan, "max_clients": 2**20})
    with pytest.raises(EncodingOverflowError, match="scale_bits"):
        CKKS(scale_bits=20, max_clients=1024)


def test_the_grid_is_the_finest_that_fits_and_travels_in_the_parameters():
    scheme = CKKS(clip=1.0, max_clients=100)
    assert scheme.grid_bits == 24 and "grid_bits=24" in scheme.params_text()
    assert CKKS(clip=1.0, max_clients=100, grid_bits=24) == scheme
    coarser = CKKS(clip=1.0, max_clients=100, grid_bits=20)
    assert coarser.params_text() != scheme.params_text()
    assert type(scheme).from_params(coarser.params_text()) == coarser
    with pytest.raises(EncodingOverflowError, match="grid_bits=25"):
        CKKS(clip=1.0, max_clients=100, grid_bits=25)
    # Another plan gets its own finest grid, unless it names one.
    wider = scheme.with_plan(clip=64.0)
    assert wider.grid_bits == 18 and wider == CKKS(clip=64.0, max_clients=100)
    assert scheme.with_plan(clip=64.0, grid_bits=10).grid_bits == 10


def test_keys_and_vectors_of_the_old_encoding_are_refused():
    """Version-2 headers without grid_bits describe unrounded CKKS: never load them."""
    keys = _keys("aggregation-fast")
    scheme = keys.public.scheme
    old_params = ";".join(
        p for p in scheme.params_text().split(";") if not p.startswith("grid_bits=")
    )
    envelope = wire.open_envelope(keys.public.to_bytes())
    old_key = wire.seal_envelope(
        envelope.kind,
        envelope.body,
        scheme="ckks",
        params=old_params,
        fingerprint=keys.public.fingerprint,
    )
    with pytest.raises(MalformedMessage, match="do not describe a ckks scheme"):
        load_public(old_key)
    envelope = wire.open_envelope(keys.public.encrypt(np.ones(3)).to_bytes())
    old_vector = wire.seal_envelope(
        envelope.kind,
        envelope.body,
        scheme="ckks",
        params=old_params,
        fingerprint=keys.public.fingerprint,
    )
    with pytest.raises(KeyMismatchError, match="parameters"):
        keys.public.load_vector(old_vector)


# --- public material --------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_the_aggregator_gets_parameters_only_and_cannot_decrypt_or_encrypt(preset):
    keys = _keys(preset)
    material = load_public(keys.public.aggregation_key().to_bytes())
    assert isinstance(material, CKKSAggregationKey) and not isinstance(material, PublicKey)
    assert not material.context.is_private() and not material.context.has_public_key()
    assert not material.context.has_galois_keys() and not material.context.has_relin_keys()
    assert len(material.to_bytes()) < 512
    vector = material.load_vector(keys.public.encrypt(np.ones(3)).to_bytes())
    with pytest.raises(ValueError, match="secret"):
        vector.parts[0].decrypt()
    public = load_public(keys.public.to_bytes())
    assert not public.context.has_galois_keys() and not public.context.has_relin_keys()
    secret_blob = keys.secret._ctx.serialize(save_secret_key=True)
    with pytest.raises(SecretMaterialError):
        CKKSAggregationKey(keys.public.scheme, secret_blob, keys.public.fingerprint)


# --- chunks, streams and mismatches -----------------------------------------------------


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_odd_lengths_round_trip_through_envelopes_and_streams(preset, rng):
    keys = _keys(preset)
    slots, per = keys.public.scheme.slots, keys.public.scheme.values_per_ciphertext
    assert per == 2 * slots  # two values to a complex slot
    aggregation = keys.public.aggregation_key()
    for n in (1, 2, slots - 1, slots, slots + 1, per - 2, per - 1, per, per + 1):
        x = rng.uniform(-1, 1, size=n)
        vector = keys.public.encrypt(x, weight=5)
        blinding = _ckks_binding.blinding_slots(keys.public.scheme)
        assert len(vector.parts) == math.ceil((n + 1 + blinding) / per)
        buffer = io.BytesIO()
        vector.write_to(buffer)
        buffer.seek(0)
        summed = aggregation.load_vector(vector.to_bytes(), size=n) + aggregation.read_vector_from(
            buffer, size=n
        )
        result = keys.secret.decrypt_weighted(summed)
        assert result.weight == 10
        np.testing.assert_array_equal(result.total, _exact(keys.public.scheme, [x, x], [5, 5]))


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_chunks_at_another_scale_or_under_another_plan_raise_key_mismatch(preset):
    keys = _keys(preset)
    aggregation = keys.public.aggregation_key()
    scale = 2.0 ** (keys.public.scheme.encode_scale_bits - 2)
    odd = ts.ckks_vector(keys.public.context, [0.5] * 4, scale)
    forged = CKKSVector(keys.public, 3, 1, parts=[odd]).to_bytes()  # a valid header, another scale
    with pytest.raises(KeyMismatchError, match="scale"):
        aggregation.load_vector(forged)
    other = next(name for name in PRESET_NAMES if name != preset)
    with pytest.raises(KeyMismatchError):
        aggregation.load_vector(_keys(other).public.encrypt(np.ones(3)).to_bytes())
    with pytest.raises(KeyMismatchError, match="plan"):
        aggregation.with_plan(max_clients=8).load_vector(keys.public.encrypt(np.ones(3)).to_bytes())


def test_a_chunk_below_the_first_data_level_raises_key_mismatch():
    keys = _keys("compat-nvflare")  # two data primes: a ciphertext can drop one
    lower = keys.public.encrypt(np.ones(3)).parts[0] * 1.0  # rescaled to the next level
    with pytest.raises(KeyMismatchError, match="level"):
        keys.public.aggregation_key().load_vector(
            CKKSVector(keys.public, 3, 1, parts=[lower]).to_bytes()
        )


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_chunk_frames_stay_under_the_limit_the_reader_enforces(preset):
    keys = _keys(preset)
    x = np.random.default_rng(0).uniform(-1, 1, 3 * keys.public.scheme.slots)
    vector = keys.public.encrypt(x)
    assert max(len(frame) for frame in vector._frames()) <= keys.public._chunk_bound
    assert len(vector._payload()) <= keys.public._payload_bound(vector.size)


def test_a_forged_length_of_2_to_the_60_values_is_refused_without_allocating():
    keys = _keys("aggregation-fast")
    scheme = keys.public.scheme
    w = wire.Writer()
    w.uint(2**60)
    w.uint(1)
    w.blob(b"tiny")
    header = {
        "scheme": "ckks",
        "params": scheme.params_text(),
        "fingerprint": keys.public.fingerprint,
    }
    envelope = wire.seal_envelope(wire.Kind.VECTOR, w.getvalue(), **header)
    buffer = io.BytesIO()
    frames = FrameWriter(buffer, wire.Kind.VECTOR, **header)
    frames.write((2**60).to_bytes(8, "big") + (1).to_bytes(8, "big"))
    frames.close()
    tracemalloc.start()
    with pytest.raises(MalformedMessage, match="truncated"):
        keys.public.load_vector(envelope)
    with pytest.raises(MalformedMessage, match="ends after"):
        keys.public.read_vector_from(io.BytesIO(buffer.getvalue()))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


def test_the_largest_vector_is_counted_beside_the_weight_and_the_blinding():
    keys = _keys("aggregation-fast")
    scheme = keys.public.scheme
    most = (MAX_VALUES - 1 - _ckks_binding.blinding_slots(scheme)) // scheme.digits
    assert scheme.encoded_length(most) <= MAX_VALUES < scheme.encoded_length(most + 1)
    vector = CKKSVector(keys.public, most + 1, 1, blobs=[])
    with pytest.raises(ShapeMismatchError, match=f"at most {most} values"):
        keys.secret.decrypt_weighted(vector)


def test_garbage_inside_a_valid_envelope_is_malformed_not_a_tenseal_error():
    keys = _keys("aggregation-fast")
    w = wire.Writer()
    w.uint(3)
    w.uint(1)
    w.blob(b"\x00" * 100)
    scheme = keys.public.scheme
    data = wire.seal_envelope(
        wire.Kind.VECTOR,
        w.getvalue(),
        scheme="ckks",
        params=scheme.params_text(),
        fingerprint=keys.public.fingerprint,
    )
    with pytest.raises(MalformedMessage, match="ckks"):
        keys.public.load_vector(data)


# --- what the key holder releases -----------------------------------------------------

#: Numbers a refusal may print: the plan's public bounds, never a decrypted value.
_PUBLIC = re.compile(r"\d+")


def _refusal(keys, vector) -> AggregateRejected:
    with pytest.raises(AggregateRejected) as caught:
        keys.secret.decrypt_weighted(vector)
    return caught.value


def _honest(keys, size: int = 5):
    """Two contributions of ``size`` values, weights 3 and 4, and their exact sum."""
    xs = [np.linspace(-1, 1, size), np.full(size, 0.5)]
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, (3, 4), strict=True))
    return total, _exact(keys.public.scheme, xs, (3, 4))


def test_a_c0_shifted_off_the_grid_is_refused_as_depending_on_the_key():
    keys = _keys("aggregation-fast")
    aggregation = keys.public.aggregation_key()
    total, _ = _honest(keys)
    per = keys.public.scheme.values_per_ciphertext
    for offset in (0.5, 0.3, 1e3 + 0.5):
        offsets = np.zeros(per)
        offsets[1] = offset
        refusal = _refusal(keys, shifted(aggregation, total, offsets))
        assert refusal.off_grid and _PUBLIC.findall(str(refusal)) == []
    # A random polynomial, as a forger without any plan would add, is off the grid too.
    noise = np.random.default_rng(0).normal(0, 2**20, per)
    assert _refusal(keys, shifted(aggregation, total, noise)).off_grid


def test_a_shift_that_could_wrap_around_the_modulus_is_refused_as_depending_on_the_key():
    """Beyond min(q/4, 2**52) / Delta, whether a coefficient wrapped could hinge on the error."""
    keys = _keys("aggregation-fast")
    scheme = keys.public.scheme
    largest = min(scheme.data_modulus / 4, 2.0**52) / 2.0**scheme.encode_scale_bits
    total, _ = _honest(keys)
    offsets = np.zeros(scheme.values_per_ciphertext)
    offsets[2] = 2 * largest  # an integer, far out of range
    refusal = _refusal(keys, shifted(keys.public, total, offsets))
    assert refusal.off_grid and _PUBLIC.findall(str(refusal)) == []


@pytest.mark.parametrize("slot", [0, 1, 100, 4095])
def test_a_value_in_the_unused_slots_is_refused(slot):
    keys = _keys("aggregation-fast")
    total, _ = _honest(keys)  # 5 values, the weight, then the blinding's digits
    if slot < 2:  # the first two slots after the blinding
        slot += 6 + _ckks_binding.blinding_slots(keys.public.scheme)
    offsets = np.zeros(keys.public.scheme.values_per_ciphertext)
    offsets[slot] = 3.0
    refusal = _refusal(keys, shifted(keys.public.aggregation_key(), total, offsets))
    assert not refusal.off_grid and _PUBLIC.findall(str(refusal)) == []


def test_a_vector_claiming_fewer_values_than_it_holds_is_refused():
    keys = _keys("aggregation-fast")
    total, _ = _honest(keys, size=5)
    claimed = CKKSVector(keys.public, 3, total.count, parts=total.parts)  # the weight moves
    assert not _refusal(keys, claimed).off_grid
    longer = CKKSVector(keys.public, 5000, total.count, parts=total.parts)
    with pytest.raises(MalformedMessage, match="2 ciphertext"):
        keys.secret.decrypt_weighted(longer)


@pytest.mark.parametrize(("index", "offset"), [(5, -7), (5, 10), (0, 2**30)])
def test_an_out_of_range_weight_or_value_is_refused_without_printing_it(index, offset):
    keys = _keys("aggregation-fast")  # up to 16 contributions of weight up to 8
    total, _ = _honest(keys)  # total weight 7 at index 5
    offsets = np.zeros(keys.public.scheme.values_per_ciphertext)
    offsets[index] = offset
    refusal = _refusal(keys, shifted(keys.public, total, offsets))
    assert not refusal.off_grid
    assert set(_PUBLIC.findall(str(refusal))) <= {"2", "16"}  # count and count * max_weight


def test_a_shift_on_the_grid_releases_the_honest_sum_plus_the_known_offset():
    keys = _keys("aggregation-fast")
    total, exact = _honest(keys)
    offsets = np.zeros(keys.public.scheme.values_per_ciphertext)
    offsets[:5] = [1, -2, 3, 0, 5]
    result = keys.secret.decrypt_weighted(shifted(keys.public.aggregation_key(), total, offsets))
    step = keys.public.scheme.quantizer.step
    np.testing.assert_array_equal(result.total, exact + offsets[:5] * step)
    assert result.weight == 7
    offsets[5] = 9  # a weight still within [2, 16] is released as shifted
    assert keys.secret.decrypt_weighted(shifted(keys.public, total, offsets)).weight == 16


# --- a large model ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_million_value_update_streams_sums_and_decrypts(tmp_path, rng):
    keys = CKKS(clip=1.0, max_clients=10, max_weight=8).keygen()
    aggregation = load_public(keys.public.aggregation_key().to_bytes())
    n, weights = 10**6, (2, 5)
    xs = [rng.uniform(-1, 1, size=n) for _ in weights]
    paths = []
    for k, (x, w) in enumerate(zip(xs, weights, strict=True)):
        paths.append(tmp_path / f"client{k}.hefs")
        with paths[-1].open("wb") as out:
            keys.public.encrypt(x, weight=w).write_to(out)
    total = None
    for path in paths:
        with path.open("rb") as source:
            vector = aggregation.read_vector_from(source, size=n)
        total = vector if total is None else total + vector
    assert total is not None and len(total.parts) == math.ceil((n + 1) / 4096)
    result = keys.secret.decrypt_weighted(total)
    assert result.weight == 7
    np.testing.assert_array_equal(result.total, _exact(keys.public.scheme, xs, weights))
