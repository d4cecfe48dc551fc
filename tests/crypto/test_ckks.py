"""CKKS for aggregation: presets, the error budget, minimal material, chunks, flooding."""

from __future__ import annotations

import functools
import io
import math
import tracemalloc

import numpy as np
import pytest
import tenseal as ts

from he_fed.crypto import CKKS, KeyPair, PublicKey, load_public, wire
from he_fed.crypto.ckks import PRESETS, CKKSAggregationKey, CKKSVector
from he_fed.crypto.stream import FrameWriter
from he_fed.exceptions import (
    ConfigurationError,
    EncodingOverflowError,
    InsecureParameters,
    KeyMismatchError,
    MalformedMessage,
    SecretMaterialError,
)

PRESET_NAMES = sorted(PRESETS)
#: A weighted plan every preset can hold: up to 16 contributions of weight up to 8.
PLAN = {"clip": 1.0, "max_clients": 16, "max_weight": 8}


@functools.cache
def _keys(preset: str, **plan: float) -> KeyPair:
    return CKKS(preset=preset, **{**PLAN, **plan}).keygen()


def _max_error(result: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(result - expected)))


# --- the error budget -------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_weighted_sums_match_the_budgets_rms_and_stay_under_its_bound(preset, rng):
    keys = _keys(preset)
    scheme, budget = keys.public.scheme, keys.public.scheme.error_budget
    size, count = 4 * scheme.slots - 1, 12
    weights = rng.integers(1, PLAN["max_weight"] + 1, size=count)
    xs = rng.uniform(-1, 1, size=(count, size))
    total = sum(keys.public.encrypt(x, weight=int(w)) for x, w in zip(xs, weights, strict=True))
    result = keys.secret.decrypt_weighted(total)
    error = result.total - weights @ xs
    assert result.weight == int(weights.sum()) and result.count == count
    # The model predicts the root-mean-square error (weights do not scale it).
    assert 0.85 < math.sqrt(np.mean(error**2)) / budget.rms(count) < 1.15
    # Values in the real and in the imaginary part of a slot err alike.
    for part in (error[0::2], error[1::2]):
        assert 0.8 < math.sqrt(np.mean(part**2)) / budget.rms(count) < 1.2
    # The bound holds, and is not vacuous: within a factor of 20 of the largest error.
    largest = float(np.max(np.abs(error)))
    assert largest <= budget.bound(count, size) < 20 * largest


def test_a_100_client_sum_at_the_default_preset_errs_by_less_than_1e_6(rng):
    keys = CKKS(clip=1.0, max_clients=100).keygen()
    xs = rng.uniform(-1, 1, size=(100, keys.public.scheme.slots - 1))
    total = sum(keys.public.encrypt(x) for x in xs)
    largest = _max_error(keys.secret.decrypt(total), xs.sum(axis=0))
    assert largest <= keys.public.scheme.error_budget.bound(100, xs.shape[1]) <= 1e-6


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_the_largest_sums_the_plan_allows_decrypt_without_wrapping(preset):
    keys = _keys(preset, clip=2.0, max_clients=4, max_weight=3)
    scheme, budget = keys.public.scheme, keys.public.scheme.error_budget
    x = np.array([2.0, -2.0, 1.0])
    total = sum(keys.public.encrypt(x, weight=3) for _ in range(4))
    np.testing.assert_allclose(keys.secret.decrypt(total), 12 * x, atol=budget.bound(4, 3))
    # The scale is the largest that keeps every allowed sum below a quarter of q.
    quarter = scheme.data_modulus / 4
    assert 2.0**scheme.encode_scale_bits * budget.plan_bound <= quarter
    assert (
        scheme.encode_scale_bits == scheme.scale_bits
        or 2.0 ** (scheme.encode_scale_bits + 1) * budget.plan_bound > quarter
    )
    assert budget.plan_bound <= budget.largest_sum / 2


def test_weighting_returns_the_exact_total_weight_and_the_weighted_mean(rng):
    keys = CKKS(max_clients=8, max_weight=1024).keygen()
    xs = [rng.uniform(-4, 4, size=50) for _ in range(3)]
    weights = [1000, 3, 517]
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, weights, strict=True))
    result = keys.secret.decrypt_weighted(total)
    assert result.weight == 1520
    expected = sum(w * x for w, x in zip(weights, xs, strict=True))
    bound = keys.public.scheme.error_budget.bound(3, 50)
    assert _max_error(result.total, expected) <= bound
    assert _max_error(result.mean, expected / 1520) <= bound / 1520


# --- parameters and plans ---------------------------------------------------------------


def test_the_budget_refuses_meaningless_questions_with_configuration_errors():
    budget = CKKS().error_budget
    for bad in ({"count": 0}, {"size": 0}, {"failure_probability": 1.0}, {"count": True}):
        with pytest.raises(ConfigurationError):
            budget.bound(**bad)
    assert budget.bound(4, 10, 1e-3) < budget.bound(4, 10, 1e-12) < budget.bound(4, 10**6, 1e-12)


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
        {"flood_bits": -1},
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


def test_plans_that_leave_too_little_precision_are_refused_with_the_knob_to_turn():
    plan = {"clip": 1.0, "max_clients": 2**14, "max_weight": 16}
    with pytest.raises(EncodingOverflowError, match="max_clients or max_weight"):
        CKKS(preset="aggregation-compact", **plan)
    assert CKKS(**plan).encode_scale_bits > 30  # the default preset holds it


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
        assert len(vector.parts) == math.ceil((n + 1) / per)
        buffer = io.BytesIO()
        vector.write_to(buffer)
        buffer.seek(0)
        summed = aggregation.load_vector(vector.to_bytes(), size=n) + aggregation.read_vector_from(
            buffer, size=n
        )
        result = keys.secret.decrypt_weighted(summed)
        assert result.weight == 10
        assert _max_error(result.total, 10 * x) <= keys.public.scheme.error_budget.bound(2, n)


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


# --- noise flooding ---------------------------------------------------------------------


def test_flooding_is_opt_in_invisible_on_the_wire_and_decided_by_the_key_holder(rng):
    plain, flooded = CKKS(**PLAN), CKKS(**PLAN, flood_bits=10)
    assert plain == flooded and plain.params_text() == flooded.params_text()
    assert plain.error_budget.flood_std(4) == 0.0
    keys = flooded.keygen()
    aggregation = load_public(keys.public.aggregation_key().to_bytes())
    assert aggregation.scheme.flood_bits == 0  # the aggregator neither knows nor cares
    size = 2 * flooded.slots - 1
    xs = rng.uniform(-1, 1, size=(4, size))
    total = sum(aggregation.load_vector(keys.public.encrypt(x, weight=2).to_bytes()) for x in xs)
    result = keys.secret.decrypt_weighted(total)
    error = result.total - 2 * xs.sum(axis=0)
    budget = flooded.error_budget
    assert result.weight == 8  # the weight is rounded, never flooded
    assert 0.9 < np.std(error) / budget.flood_std(4) < 1.1
    assert budget.flood_std(4) == pytest.approx(
        2**10 * math.sqrt(flooded.values_per_ciphertext) * budget.rms(4)
    )
    assert budget.released_rms(4) == pytest.approx(math.hypot(budget.rms(4), budget.flood_std(4)))
    assert np.max(np.abs(error)) <= budget.bound(4, size)


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
    expected = sum(w * x for w, x in zip(weights, xs, strict=True))
    assert _max_error(result.total, expected) <= keys.public.scheme.error_budget.bound(2, n)
