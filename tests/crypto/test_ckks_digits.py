"""CKKS plans that split each value into digits: exact recombination, checks, layout, headers."""

from __future__ import annotations

import functools
import io
import re
from fractions import Fraction

import numpy as np
import pytest

from he_fed.crypto import CKKS, KeyPair, _ckks_binding, load_public, wire
from he_fed.crypto._ckks_grid import GridQuantizer
from he_fed.crypto.ckks import CKKSVector
from he_fed.crypto.ckks_budget import MAX_VALUES
from he_fed.exceptions import (
    AggregateRejected,
    EncodingOverflowError,
    KeyMismatchError,
    MalformedMessage,
    ShapeMismatchError,
)
from tests.crypto.ckks_tools import shifted, unrounded

#: The standardisation moments of a 5-client run (clip 4096, weights up to 128), at
#: the precision the statistics rounds ask for.
MOMENTS = {"clip": 4096.0, "max_clients": 5, "max_weight": 128, "precision_bits": 40}


@functools.cache
def _keys(preset: str = "aggregation-fast") -> KeyPair:
    return CKKS(preset=preset, **MOMENTS).keygen()


def _exact(xs, weights) -> list[Fraction]:
    """The weighted sums of the doubles themselves, in exact rationals."""
    return [
        sum(int(w) * Fraction(float(x[i])) for x, w in zip(xs, weights, strict=True))
        for i in range(len(xs[0]))
    ]


# --- which plans take digits, and how many ----------------------------------------------


def test_training_plans_keep_one_slot_and_todays_header():
    scheme = CKKS(clip=1.0, max_clients=100)
    blinding = _ckks_binding.blinding_slots(scheme)  # the binding commitment's, 14 slots
    assert scheme.digits == 1 and blinding == 14
    assert scheme.ciphertexts_for(4095 - blinding) == 1 < scheme.ciphertexts_for(4096 - blinding)
    assert scheme.params_text() == (
        "clip=1.0;coeff_mod_bit_sizes=60,49;grid_bits=24;max_clients=100;max_weight=1;"
        "poly_modulus_degree=4096;scale_bits=40"
    )
    # A precision one slot already reaches changes nothing but the header.
    asked = CKKS(clip=1.0, max_clients=100, precision_bits=20)
    assert (asked.digits, asked.grid_bits) == (1, 24)
    assert asked.params_text() == scheme.params_text().replace(
        ";scale_bits", ";precision_bits=20;scale_bits"
    )


def test_the_moments_plan_takes_digits_on_every_preset():
    """(digit bits, digits, grid bits) of the moments plan, and one slot's grid without it."""
    plans = {name: CKKS(preset=name, **MOMENTS) for name in ("aggregation-fast", "compat-nvflare")}
    plans["aggregation-compact"] = CKKS(preset="aggregation-compact", **MOMENTS)
    assert {n: (s.digit_bits, s.digits, s.grid_bits) for n, s in plans.items()} == {
        "aggregation-fast": (24, 3, 59),
        "compat-nvflare": (23, 3, 56),
        "aggregation-compact": (11, 5, 42),
    }
    one_slot = {**MOMENTS, "precision_bits": 0}
    assert CKKS(**one_slot).grid_bits == 11
    with pytest.raises(EncodingOverflowError, match="ask for precision_bits"):
        CKKS(preset="aggregation-compact", **one_slot)
    # Every digit of every sum stays within the slot's room, times the scale.
    for scheme in plans.values():
        room = min(scheme.data_modulus // 4, 2**52)
        slot = 5 * 128 * max(scheme.quantizer.digit_bounds) << scheme.encode_scale_bits
        assert slot < room


def test_a_precision_out_of_reach_is_refused_with_the_knobs_to_turn():
    crowded = {**MOMENTS, "max_clients": 64, "precision_bits": 96}  # digits of 5 bits
    with pytest.raises(EncodingOverflowError, match="precision_bits=96 is out of reach"):
        CKKS(preset="aggregation-compact", **crowded)
    with pytest.raises(EncodingOverflowError, match="grid_bits=60 does not suit"):
        CKKS(**{**MOMENTS, "grid_bits": 60})
    with pytest.raises(EncodingOverflowError, match="grid_bits=30 does not suit"):
        CKKS(**{**MOMENTS, "grid_bits": 30})  # coarser than the precision asked for
    assert CKKS(**{**MOMENTS, "grid_bits": 45}).digits == 3


# --- exact recombination ------------------------------------------------------------------


def test_digits_recombine_to_the_grid_integer_exactly_negative_values_and_the_bound_included():
    quantizer = GridQuantizer(59, 4096.0, 3, 24)
    assert quantizer.levels == 2**71 and quantizer.digit_bounds == (2**23, 2**23, 2**23 + 1)
    tiny = 2.0**-59
    x = np.array([4096.0, -4096.0, 0.0, tiny, -tiny, 1.5 * tiny, np.nextafter(1.0, 2.0), -1e-9])
    x = np.concatenate([x, np.random.default_rng(3).uniform(-4096, 4096, 200)])
    digits = quantizer.encode(x, 1).reshape(-1, 3)
    assert np.all(np.abs(digits) <= quantizer.digit_bounds)
    recombined = quantizer.recombine(digits)
    # 1.5 steps round to even; 1 + 2**-52 is on the grid; -1e-9 is not, and rounds.
    expected = [2**71, -(2**71), 0, 1, -1, 2, 2**59 + 2**7, -576460752]
    assert list(recombined[:8]) == expected
    assert list(recombined) == list(quantizer.quantize(x))  # Python integers, all 72 bits


def test_the_largest_sums_recombine_exactly():
    """Five contributions of weight 128 at the clip bound, in every digit."""
    quantizer = GridQuantizer(59, 4096.0, 3, 24)
    x = np.array([4096.0, -4096.0, 4096.0 - 2.0**-40, -(2.0**-59)])
    totals = 5 * 128 * quantizer.encode(x, 1).reshape(-1, 3)  # the digit totals of the sum
    expected = [640 * 2**71, -640 * 2**71, 640 * (2**71 - 2**19), -640]
    assert list(quantizer.recombine(totals)) == expected


@pytest.mark.parametrize("preset", ["aggregation-fast", "aggregation-compact", "compat-nvflare"])
def test_the_largest_sums_the_plan_allows_decrypt_exactly(preset):
    keys = _keys(preset)
    scheme = keys.public.scheme
    step = scheme.quantizer.step
    x = np.array([4096.0, -4096.0, step, -step, 0.0, np.nextafter(4096.0, 0.0)])
    total = sum(keys.public.encrypt(x, weight=128) for _ in range(5))
    result = keys.secret.decrypt_weighted(total)
    np.testing.assert_array_equal(result.total, 640 * x)
    assert result.weight == 640
    # Each slot sum stays below min(q/4, 2**52) / Delta, where the key holder's check sits.
    largest = min(scheme.data_modulus / 4, 2.0**52) / 2.0**scheme.encode_scale_bits
    assert np.max(np.abs(unrounded(keys.secret, total))) < largest


def test_the_moments_plan_sums_doubles_exactly(rng):
    """Doubles of at least 2**-7 (ulp 2**-59 or more) are on the grid: their sums are exact.

    The release is their exact weighted sum, rounded once to a double.
    """
    keys = _keys()
    xs = [1 + rng.normal(0, 1e-5, size=50) for _ in range(5)]  # moments near 1, as prescaled
    xs[0][:3] = [4096.0, -0.25, -(2.0**-7)]
    weights = [128, 1, 77, 100, 3]
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, weights, strict=True))
    released = keys.secret.decrypt_weighted(total).total
    np.testing.assert_array_equal(released, [float(v) for v in _exact(xs, weights)])


# --- layout: chunks, streams, commitments -------------------------------------------------


@pytest.mark.parametrize("preset", ["aggregation-fast", "aggregation-compact"])
def test_vectors_straddling_ciphertexts_round_trip_through_envelopes_and_streams(preset, rng):
    keys = _keys(preset)
    scheme = keys.public.scheme
    per, digits = scheme.values_per_ciphertext, scheme.digits
    aggregation = load_public(keys.public.aggregation_key().to_bytes())
    for n in (1, per // digits - 1, per // digits, per // digits + 1, 2 * per // digits + 1):
        xs = [rng.uniform(-4096, 4096, size=n) for _ in range(2)]
        vectors = [keys.public.encrypt(x, weight=w) for x, w in zip(xs, (7, 9), strict=True)]
        used = digits * n + 1 + _ckks_binding.blinding_slots(scheme)
        assert len(vectors[0].parts) == scheme.ciphertexts_for(n) == -(-used // per)
        loaded = [aggregation.load_vector(v.to_bytes(), size=n) for v in vectors]
        expected = aggregation.sum_commitments([v.commitment() for v in vectors], n)
        assert (loaded[0] + loaded[1]).commitment() == expected
        buffer = io.BytesIO()
        keys.public.encrypt_to(buffer, xs[1], weight=9)  # streamed chunk by chunk
        buffer.seek(0)
        total = loaded[0] + aggregation.read_vector_from(buffer, size=n)
        result = keys.secret.decrypt_weighted(total)
        assert result.weight == 16
        quantizer = scheme.quantizer
        exact = 7 * quantizer.quantize(xs[0]) + 9 * quantizer.quantize(xs[1])
        np.testing.assert_array_equal(result.total, quantizer.dequantize(exact))


def test_the_plan_travels_in_the_header_and_one_text_describes_it():
    keys = _keys()
    scheme = keys.public.scheme
    assert "precision_bits=40" in scheme.params_text() and "grid_bits=59" in scheme.params_text()
    assert type(scheme).from_params(scheme.params_text()) == scheme
    explicit = scheme.params_text().replace("precision_bits=40", "precision_bits=0")
    with pytest.raises(MalformedMessage, match="implied"):
        type(scheme).from_params(explicit)
    envelope = wire.open_envelope(keys.public.encrypt(np.ones(3)).to_bytes())
    assert envelope.params == scheme.params_text()
    # A one-slot plan's key does not load a vector of the digit plan.
    with pytest.raises(KeyMismatchError, match="plan"):
        keys.public.with_plan(precision_bits=0).load_vector(
            keys.public.encrypt(np.ones(3)).to_bytes()
        )


def test_a_vector_longer_than_the_bound_counts_its_digits():
    keys = _keys()
    total = keys.public.encrypt(np.ones(3))
    too_long = CKKSVector(keys.public, (MAX_VALUES - 1) // 3 + 1, 1, parts=total.parts)
    with pytest.raises(ShapeMismatchError, match="3 slot"):
        keys.secret.decrypt_weighted(too_long)


# --- what the key holder releases ----------------------------------------------------------

_PUBLIC = re.compile(r"\d+")


def _honest(keys):
    """Two contributions of 5 values, weights 3 and 4 (15 digit slots, the weight at 15)."""
    xs = [np.linspace(-4096, 4096, 5), np.full(5, 0.5)]
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, (3, 4), strict=True))
    quantizer = keys.public.scheme.quantizer
    return total, 3 * quantizer.quantize(xs[0]) + 4 * quantizer.quantize(xs[1])


def _refusal(keys, vector) -> AggregateRejected:
    with pytest.raises(AggregateRejected) as caught:
        keys.secret.decrypt_weighted(vector)
    return caught.value


@pytest.mark.parametrize(("slot", "offset"), [(0, 0.5), (1, 0.3), (2, -0.4), (13, 0.5)])
def test_an_off_grid_digit_is_refused_like_any_other_slot(slot, offset):
    keys = _keys()
    total, _ = _honest(keys)
    offsets = np.zeros(keys.public.scheme.values_per_ciphertext)
    offsets[slot] = offset
    refusal = _refusal(keys, shifted(keys.public.aggregation_key(), total, offsets))
    assert refusal.off_grid and _PUBLIC.findall(str(refusal)) == []


def test_a_digit_shifted_on_the_grid_is_released_as_the_honest_sum_plus_its_known_offset():
    keys = _keys()
    scheme = keys.public.scheme
    base = 2**scheme.digit_bits
    total, exact = _honest(keys)
    offsets = np.zeros(scheme.values_per_ciphertext)
    offsets[[0, 4, 8]] = [5, -3, 1]  # value 0's lowest digit, value 1's middle, value 2's top
    result = keys.secret.decrypt_weighted(shifted(keys.public, total, offsets))
    moved = list(exact)
    moved[0] += 5
    moved[1] += -3 * base
    moved[2] += base**2
    np.testing.assert_array_equal(result.total, scheme.quantizer.dequantize(np.array(moved)))


@pytest.mark.parametrize(
    ("slot", "offset", "check"),
    [
        (16, 1.0, "beyond the vector"),  # an unused slot, just after the weight's blinding
        (15, 250.0, "total weight"),  # the total weight beyond 2 * 128
        (0, 7 * 2**23 + 1.0, "digit total"),  # a lower digit beyond the weight times B/2
        (2, -(7 * 2**23 + 1.0), "digit total"),  # the top digit beyond the weight times its bound
    ],
)
def test_digit_totals_out_of_range_are_refused_without_depending_on_the_key(slot, offset, check):
    keys = _keys()
    total, _ = _honest(keys)
    offsets = np.zeros(keys.public.scheme.values_per_ciphertext)
    if check == "beyond the vector":
        slot += _ckks_binding.blinding_slots(keys.public.scheme)
    offsets[slot] = offset
    refusal = _refusal(keys, shifted(keys.public, total, offsets))
    assert not refusal.off_grid and check in str(refusal)
    assert set(_PUBLIC.findall(str(refusal))) <= {"2", "256"}


def test_a_recombined_value_within_what_proven_digits_reach_is_released():
    """Each digit within its bound, their sum one step beyond weight * levels: released.

    Every contribution's digits are range-proven one by one (``_value_range``), so
    their sum can recombine a little beyond the clip (``GridQuantizer.reach``). A
    check at ``weight * levels`` would refuse such a sum depending on what the honest
    contributions hold (red team 9); beyond what the digits reach, the digit checks
    refuse it first (``test_digit_totals_out_of_range_are_refused_without_depending_on_the_key``).
    """
    keys = _keys()
    scheme = keys.public.scheme
    quantizer = scheme.quantizer
    assert quantizer.reach > quantizer.levels
    total, exact = _honest(keys)  # value 4 is 3 * 4096 + 4 * 0.5 at weight 7
    digits = quantizer.encode(np.array([4096.0]), 7)  # the digits of 7 * clip
    current = quantizer.encode(np.array([4096.0]), 3) + quantizer.encode(np.array([0.5]), 4)
    offsets = np.zeros(scheme.values_per_ciphertext)
    offsets[12:15] = digits - current + [1, 0, 0]  # one step beyond 7 * levels
    assert np.all(np.abs(digits + [1, 0, 0]) <= 7 * np.array(quantizer.digit_bounds))
    result = keys.secret.decrypt_weighted(shifted(keys.public, total, offsets))
    assert result.units[4] == 7 * quantizer.levels + 1 <= 7 * quantizer.reach
