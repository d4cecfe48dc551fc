"""Paillier specifics: DJN keys, phe interoperability, packed exactness and overflow."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from phe import paillier as phe

from he_fed.crypto import PackedPaillier, Paillier, load_public
from he_fed.crypto._djn import security_bits
from he_fed.crypto._packing import Quantizer
from he_fed.exceptions import EncodingOverflowError, MalformedMessage
from tests.conftest import keys_for

FAST = {"key_bits": 1024, "allow_insecure": True}


def test_keys_use_primes_congruent_to_three_mod_four():
    keys = keys_for("paillier")
    p, q = keys.secret._crt.p, keys.secret._crt.q
    assert p % 4 == 3 and q % 4 == 3 and p != q
    assert int(keys.public.n) == p * q and (p * q).bit_length() == 1024


def test_phe_private_key_decrypts_our_ciphertexts():
    keys = keys_for("paillier")
    p, q = keys.secret._crt.p, keys.secret._crt.q
    theirs = phe.PaillierPrivateKey(phe.PaillierPublicKey(int(keys.public.n)), p, q)
    n = int(keys.public.n)
    messages = [0, 1, 12345, n - 1, n // 2]
    ciphertexts = keys.public.raw_encrypt(messages)
    assert [theirs.raw_decrypt(int(c)) for c in ciphertexts] == messages
    assert keys.secret.raw_decrypt(ciphertexts) == messages
    # The encoded values of a real contribution too.
    vector = keys.public.encrypt(np.array([0.5, -0.25]), weight=3)
    scheme = keys.public.scheme
    # All but the last ciphertext, which holds the binding commitment's blinding.
    assert [theirs.raw_decrypt(int(c)) for c in vector.ciphertexts[:-1]] == scheme.encode(
        np.array([0.5, -0.25]), 3, n
    )


def test_encryption_is_randomised():
    keys = keys_for("paillier")
    a, b = keys.public.raw_encrypt([7, 7])
    assert a != b


def test_randomness_exponent_is_half_the_key_unless_short_is_asked_for():
    assert Paillier().randomness_bits == 1024
    assert Paillier(short_randomness=True).randomness_bits == 2 * 112
    assert PackedPaillier(key_bits=3072, short_randomness=True).randomness_bits == 256
    assert security_bits(2048) == 112 and security_bits(3072) == 128
    keys = Paillier(short_randomness=True, **FAST).keygen()
    total = keys.public.encrypt(np.array([1.0, -2.0])) + keys.public.encrypt(np.array([1.0, 1.0]))
    np.testing.assert_allclose(keys.secret.decrypt(total), [2.0, -1.0], atol=1e-12)


def test_default_packed_plan_holds_78_values_per_2048_bit_ciphertext():
    plan = PackedPaillier(clip=1.0)  # 16-bit values, room for 1024 clients
    assert plan.layout.slot_bits == 16 + 10 and plan.layout.slots == 78
    assert plan.data_ciphertexts(77) == 1 and plan.data_ciphertexts(78) == 2
    # The blinding of the binding commitment (320 bits and room for 1024 of them)
    # rides above the last chunk's slots when 330 bits are left, else on its own.
    assert plan.blinding_place(65) == (0, 66 * 26) and plan.ciphertexts_for(65) == 1
    assert plan.blinding_place(66) == (1, 0) and plan.ciphertexts_for(66) == 2


@pytest.mark.parametrize("pattern", ["max", "min", "mixed"])
def test_max_clients_extreme_contributions_sum_exactly(pattern):
    K = 32
    scheme = PackedPaillier(clip=2.0, max_clients=K, max_weight=5, **FAST)
    keys = scheme.keygen()
    d = 2 * scheme.layout.slots + 3  # several ciphertexts, weight slot included
    rng = np.random.default_rng(0)
    xs, weights = [], []
    for k in range(K):
        if pattern == "max":
            x = np.full(d, 2.0)
        elif pattern == "min":
            x = np.full(d, -2.0)
        else:
            x = rng.choice([-2.0, 2.0, 0.0], size=d)
        xs.append(x)
        weights.append(5 if pattern != "mixed" else 1 + k % 5)
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, weights, strict=False))
    result = keys.secret.decrypt_weighted(keys.public.load_vector(total.to_bytes(), size=d))
    q = scheme.quantizer
    integer_sum = sum(w * q.quantize(x) for x, w in zip(xs, weights, strict=False))
    np.testing.assert_array_equal(result.total, q.dequantize(integer_sum))
    assert result.weight == sum(weights) and result.count == K


@pytest.mark.parametrize("bits", [2, 16, 32, 48, 49, 53, 55, 58, 61, 62, 63, 64, 100, 128])
def test_the_quantizer_maps_the_clip_to_its_last_level_and_rounds_to_the_nearest(bits):
    """At 55 to 62 bits ``±clip`` used to land one level past ``±levels`` (a double's
    ``float(levels)`` is ``2**(bits - 1)``), and at 63 and 64 bits 0.7 was 85 levels
    off ``round(x · levels / clip)`` (an audit)."""
    q = Quantizer(3.0, bits)
    xs = [3.0, -3.0, 0.7, -0.7, 1e-300, 2.9999999999999996, 0.0]
    got = [int(v) for v in q.quantize(np.array(xs))]
    assert got[:2] == [q.levels, -q.levels]
    exact = [round(Fraction(x) * q.levels / Fraction(3.0)) for x in xs]
    slack = 0 if bits > 48 else 1  # a double's rounding, under 2**-4 of a level
    assert all(abs(g - e) <= slack for g, e in zip(got, exact, strict=True)), (got, exact)


def test_honest_values_at_the_clip_sum_exactly_at_62_bits():
    """``encrypt([clip]) + encrypt([-clip / 2])`` decrypted one level off the grid's
    sum, and ``encrypt([clip])`` alone as an overflow (an audit)."""
    keys = Paillier(clip=1.0, precision_bits=62, max_clients=2, **FAST).keygen()
    q = keys.public.scheme.quantizer
    alone = keys.secret.decrypt(keys.public.encrypt(np.array([1.0])))
    both = keys.public.encrypt(np.array([1.0])) + keys.public.encrypt(np.array([-0.5]))
    summed = keys.secret.decrypt(both)
    assert alone[0] == q.dequantize(np.array([q.levels]))[0] == 1.0
    assert summed[0] == q.dequantize(np.array([q.levels - (q.levels + 1) // 2]))[0]


def test_one_contribution_more_than_the_plan_allows_overflows():
    keys = PackedPaillier(clip=1.0, max_clients=4, **FAST).keygen()
    vectors = [keys.public.encrypt(np.ones(3)) for _ in range(5)]
    total = sum(vectors[:4])
    np.testing.assert_array_equal(keys.secret.decrypt(total), 4.0)
    with pytest.raises(EncodingOverflowError, match="max_clients=4"):
        total + vectors[4]  # noqa: B018


def test_a_forged_overfull_sum_is_caught_at_decryption():
    # Bypass the count check: build the sum of 5 under a plan for 4 and relabel it.
    keys = PackedPaillier(clip=1.0, max_clients=4, **FAST).keygen()
    vectors = [keys.public.encrypt(np.ones(3)) for _ in range(5)]
    total = vectors[0]
    for v in vectors[1:]:
        total = total._add(v, 4)
    with pytest.raises(EncodingOverflowError):
        keys.secret.decrypt(total)


def test_plans_that_cannot_fit_a_slot_are_refused():
    with pytest.raises(EncodingOverflowError, match="slot needs"):
        PackedPaillier(
            precision_bits=128,
            max_clients=2**64 - 1,  # the largest bounds a plan may have
            max_weight=2**64 - 1,
            key_bits=256,
            allow_insecure=True,
        )


def test_corrupt_key_bytes_are_refused():
    data = bytearray(keys_for("paillier-packed").public.to_bytes())
    data[60] ^= 0x01
    with pytest.raises(MalformedMessage):
        load_public(bytes(data), allow_insecure=True)


@pytest.mark.slow
def test_two_worker_processes_encrypt_long_vectors_correctly():
    keys = Paillier(workers=2, clip=1.0, **FAST).keygen()
    x = np.linspace(-1, 1, 600)  # 602 ciphertexts with weight and blinding: over the threshold
    vector = keys.public.encrypt(x, weight=1)
    assert len(vector.ciphertexts) == 602
    np.testing.assert_allclose(keys.secret.decrypt(vector), x, atol=1e-15)


@pytest.mark.slow
def test_packed_paillier_at_full_strength():
    keys = PackedPaillier(clip=1.0, max_clients=8, max_weight=100).keygen()
    assert int(keys.public.n).bit_length() == 2048
    rng = np.random.default_rng(5)
    xs = [rng.uniform(-1, 1, 200) for _ in range(8)]
    total = sum(keys.public.encrypt(x, weight=50 + i) for i, x in enumerate(xs))
    q = keys.public.scheme.quantizer
    expected = q.dequantize(sum((50 + i) * q.quantize(x) for i, x in enumerate(xs)))
    np.testing.assert_array_equal(keys.secret.decrypt(total), expected)
