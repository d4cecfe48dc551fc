"""Facts every scheme guarantees: exact (or bounded) sums, typed refusals, clean bytes."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.crypto import CKKS, PackedPaillier, Paillier, Plain, load_public, make_scheme
from he_fed.exceptions import (
    ConfigurationError,
    EncodingError,
    EncodingOverflowError,
    InsecureParameters,
    KeyMismatchError,
    MalformedMessage,
    SecretMaterialError,
    ShapeMismatchError,
)
from tests.conftest import FAST_SCHEMES, keys_for

# Paillier's sum is exact on its integer grid (see the next test); here the expected
# value is summed in floating point, hence the 1e-12. CKKS rounds onto a grid of
# power-of-two steps, where the floating-point sum is exact too.
TOLERANCE = {"plain": 0.0, "paillier": 1e-12, "paillier-packed": 1e-12, "ckks": 0.0}


def _quantized(scheme_name: str, x: np.ndarray) -> np.ndarray:
    """What the scheme represents exactly: Paillier and CKKS round onto a fixed-point grid."""
    scheme = FAST_SCHEMES[scheme_name]
    if isinstance(scheme, (Paillier, PackedPaillier, CKKS)):
        q = scheme.quantizer
        return q.dequantize(q.quantize(x))
    return x


def test_sum_of_weighted_contributions_decrypts_to_the_weighted_sum(scheme_name, keys, rng):
    xs = [rng.uniform(-4, 4, size=7) for _ in range(5)]
    weights = [3, 1, 8, 2, 5]
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, weights, strict=False))
    result = keys.secret.decrypt_weighted(total)
    expected = sum(w * _quantized(scheme_name, x) for x, w in zip(xs, weights, strict=False))
    assert result.weight == sum(weights)
    assert result.count == 5
    if TOLERANCE[scheme_name] == 0.0:
        np.testing.assert_array_equal(result.total, expected)
    else:
        np.testing.assert_allclose(result.total, expected, rtol=0, atol=TOLERANCE[scheme_name])
    np.testing.assert_allclose(result.mean, expected / sum(weights), atol=1e-6)


def test_paillier_sum_is_exact_on_the_integer_grid(rng):
    keys = keys_for("paillier")
    q = keys.public.scheme.quantizer
    xs = [rng.uniform(-4, 4, size=6) for _ in range(4)]
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, (1, 2, 3, 4), strict=False))
    integer_sum = sum(w * q.quantize(x) for x, w in zip(xs, (1, 2, 3, 4), strict=False))
    # Exact: the decrypted total is the integer sum times the step, bit for bit.
    np.testing.assert_array_equal(keys.secret.decrypt(total), q.dequantize(integer_sum))


def test_a_decrypted_sum_carries_its_exact_grid_integers_and_step(scheme_name, keys, rng):
    """The key holder rounds the released mean from these (he_fed/protocol/release.py):
    they must be the exact integer sums, even beyond a double's 53 bits (64-bit Paillier
    sums go far beyond it here), and the step the plan's grid."""
    xs = [rng.uniform(-1, 1, size=5) for _ in range(3)]
    weights = [7, 1, 12]
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, weights, strict=True))
    result = keys.secret.decrypt_weighted(total)
    if scheme_name == "plain":
        assert result.units is None and result.step is None
        return
    quantizer = keys.public.scheme.quantizer
    expected = [
        sum(w * int(q) for w, q in zip(weights, column, strict=True))
        for column in zip(*(quantizer.quantize(x) for x in xs), strict=True)
    ]
    assert [int(u) for u in result.units] == expected
    assert (max(map(abs, expected)) > 2**53) == (scheme_name == "paillier")
    assert result.step == quantizer.step
    np.testing.assert_array_equal(result.total, [float(u) * quantizer.step for u in expected])


def test_a_digit_plan_carries_its_recombined_grid_integers(rng):
    public = keys_for("ckks").public.with_plan(clip=4096.0, precision_bits=40)
    assert public.scheme.digits > 1
    xs = [rng.uniform(-4096, 4096, size=4) for _ in range(2)]
    result = keys_for("ckks").secret.decrypt_weighted(
        public.encrypt(xs[0], weight=3) + public.encrypt(xs[1], weight=5)
    )
    q = public.scheme.quantizer
    pairs = zip(q.quantize(xs[0]), q.quantize(xs[1]), strict=True)
    expected = [3 * int(a) + 5 * int(b) for a, b in pairs]
    assert [int(u) for u in result.units] == expected and max(map(abs, expected)) > 2**53
    assert result.step == 2.0**-public.scheme.grid_bits


def test_bytes_round_trip_through_public_and_aggregation_keys(scheme_name, keys, rng):
    x = rng.uniform(-1, 1, size=5)
    public = load_public(keys.public.to_bytes(), allow_insecure=True)
    aggregation = load_public(keys.public.aggregation_key().to_bytes(), allow_insecure=True)
    assert public == keys.public
    a = aggregation.load_vector(public.encrypt(x, weight=2).to_bytes(), size=5)
    b = aggregation.load_vector(public.encrypt(x, weight=3).to_bytes(), size=5)
    total = keys.public.load_vector((a + b).to_bytes())
    np.testing.assert_allclose(
        keys.secret.decrypt_weighted(total).mean, _quantized(scheme_name, x), atol=1e-6
    )
    assert aggregation.load_vector(b"" + a.to_bytes()).count == 1


def test_ckks_aggregation_key_is_parameters_only_and_cannot_decrypt():
    keys = keys_for("ckks")
    material = keys.public.aggregation_key()
    assert not material.context.is_private()
    assert not material.context.has_public_key()
    assert len(material.to_bytes()) < 1024  # about 0.1 KiB of parameters
    vector = material.load_vector(keys.public.encrypt(np.ones(3)).to_bytes())
    with pytest.raises(ValueError, match="secret"):
        vector.parts[0].decrypt()


def test_public_bytes_hold_no_secret_material():
    paillier = keys_for("paillier")
    data = paillier.public.to_bytes()
    p = int(paillier.secret._crt.p)
    q = int(paillier.secret._crt.q)
    for prime in (p, q):
        assert prime.to_bytes((prime.bit_length() + 7) // 8, "big") not in data
    ckks = keys_for("ckks")
    secret_bytes = ckks.secret._ctx.serialize(save_secret_key=True)
    assert len(ckks.public.to_bytes()) < len(secret_bytes)
    assert not load_public(ckks.public.to_bytes()).context.is_private()


def test_sum_builtin_works_and_starts_from_zero(keys):
    vectors = [keys.public.encrypt(np.full(3, 0.5)) for _ in range(3)]
    assert keys.secret.decrypt_weighted(sum(vectors)).count == 3
    with pytest.raises(TypeError):
        vectors[0] + 1  # noqa: B018


def test_vectors_length_longer_than_one_ckks_ciphertext_are_chunked(rng):
    keys = keys_for("ckks")
    for n in (1, 2047, 2048, 2049, 5000):
        x = rng.uniform(-1, 1, size=n)
        loaded = keys.public.load_vector(keys.public.encrypt(x, weight=2).to_bytes(), size=n)
        np.testing.assert_array_equal(keys.secret.decrypt(loaded), 2 * _quantized("ckks", x))


# --- refusals ---------------------------------------------------------------------------


def test_bytes_under_another_key_raise_key_mismatch(scheme_name, keys):
    other = FAST_SCHEMES[scheme_name].keygen()
    data = other.public.encrypt(np.ones(2)).to_bytes()
    with pytest.raises(KeyMismatchError):
        keys.public.load_vector(data)
    with pytest.raises(KeyMismatchError):
        keys.secret.decrypt(other.public.encrypt(np.ones(2)))
    with pytest.raises(KeyMismatchError):
        keys.public.encrypt(np.ones(2)) + other.public.encrypt(np.ones(2))  # noqa: B018


def test_bytes_under_another_scheme_raise_key_mismatch(keys, scheme_name):
    other = "plain" if scheme_name != "plain" else "ckks"
    data = keys_for(other).public.encrypt(np.ones(2)).to_bytes()
    with pytest.raises(KeyMismatchError, match="scheme"):
        keys.public.load_vector(data)


def test_bytes_under_another_plan_raise_key_mismatch(keys):
    wider = keys.public.with_plan(clip=8.0)
    with pytest.raises(KeyMismatchError, match="plan"):
        keys.public.load_vector(wider.encrypt(np.ones(2)).to_bytes())


@pytest.mark.parametrize("cut", [0, 1, 10, -17, -1])
def test_truncated_bytes_raise_malformed(keys, cut):
    data = keys.public.encrypt(np.ones(4)).to_bytes()
    with pytest.raises(MalformedMessage):
        keys.public.load_vector(data[:cut])


def test_garbled_bytes_raise_malformed(keys, rng):
    data = bytearray(keys.public.encrypt(np.ones(4)).to_bytes())
    for _ in range(20):
        garbled = bytearray(data)
        garbled[int(rng.integers(len(garbled)))] ^= 1 + int(rng.integers(255))
        with pytest.raises(MalformedMessage):
            keys.public.load_vector(bytes(garbled))


def test_wrong_vector_length_raises_shape_mismatch(keys):
    data = keys.public.encrypt(np.ones(4)).to_bytes()
    with pytest.raises(ShapeMismatchError):
        keys.public.load_vector(data, size=5)
    with pytest.raises(ShapeMismatchError):
        keys.public.encrypt(np.ones(4)) + keys.public.encrypt(np.ones(5))  # noqa: B018
    with pytest.raises(ShapeMismatchError):
        keys.public.encrypt(np.ones((2, 2)))


def test_paillier_below_2048_bits_is_insecure_without_opt_in():
    with pytest.raises(InsecureParameters, match="allow_insecure"):
        Paillier(key_bits=1024)
    data = keys_for("paillier").public.to_bytes()
    with pytest.raises(InsecureParameters):
        load_public(data)
    assert Paillier(key_bits=2048).key_bits == 2048


def test_values_beyond_clip_nan_and_bad_weights_are_refused(keys):
    clip = keys.public.scheme.clip
    with pytest.raises(EncodingOverflowError, match="clip"):
        keys.public.encrypt(np.array([clip * 1.01]))
    with pytest.raises(EncodingError):
        keys.public.encrypt(np.array([np.nan]))
    with pytest.raises(EncodingOverflowError, match="max_weight"):
        keys.public.encrypt(np.ones(1), weight=keys.public.scheme.max_weight + 1)
    with pytest.raises(EncodingOverflowError):
        keys.public.encrypt(np.ones(1), weight=0)
    with pytest.raises(ConfigurationError):
        keys.public.encrypt(np.ones(1), weight=1.5)


def test_more_contributions_than_the_plan_allows_overflow(scheme_name, keys):
    small = keys.public.with_plan(max_clients=3)
    vectors = [small.encrypt(np.ones(2)) for _ in range(4)]
    total = sum(vectors[:3])
    assert keys.secret.decrypt_weighted(total).count == 3
    with pytest.raises(EncodingOverflowError, match="max_clients"):
        total + vectors[3]  # noqa: B018


def test_plans_that_cannot_hold_their_sum_are_refused_at_construction():
    with pytest.raises(EncodingOverflowError, match="larger key"):
        Paillier(
            key_bits=256,
            allow_insecure=True,
            precision_bits=128,
            max_clients=2**64 - 1,  # the largest bounds a plan may have
            max_weight=2**64 - 1,
        )
    with pytest.raises(EncodingOverflowError, match="lower clip"):
        CKKS(clip=1e6, max_clients=2**20, max_weight=2**20)


def test_ckks_parameters_seal_refuses_are_insecure():
    with pytest.raises(InsecureParameters, match="128-bit"):
        CKKS(coeff_mod_bit_sizes=(60, 50), max_clients=4, max_weight=4).keygen()


def test_loading_secret_bytes_or_junk_as_public_material_is_refused():
    with pytest.raises(MalformedMessage):
        load_public(b"not a key at all")
    vector = keys_for("plain").public.encrypt(np.ones(1)).to_bytes()
    with pytest.raises(MalformedMessage, match="public key"):
        load_public(vector)
    with pytest.raises(SecretMaterialError):
        from he_fed.crypto import wire

        load_public(wire.seal_envelope(wire.Kind.SECRET_KEY, b"", scheme="paillier"))


def test_make_scheme_names_and_errors():
    assert isinstance(make_scheme("plain"), Plain)
    assert make_scheme("paillier", key_bits=3072).key_bits == 3072
    with pytest.raises(ConfigurationError, match="unknown scheme"):
        make_scheme("rot13")
    with pytest.raises(ConfigurationError):
        make_scheme("plain", key_bits=1)


@pytest.mark.slow
def test_paillier_at_full_strength_2048_bits(rng):
    keys = Paillier(max_weight=8).keygen()
    assert int(keys.public.n).bit_length() == 2048
    xs = [rng.uniform(-4, 4, size=8) for _ in range(3)]
    data = [keys.public.encrypt(x, weight=w).to_bytes() for x, w in zip(xs, (5, 6, 7), strict=True)]
    aggregation = load_public(keys.public.aggregation_key().to_bytes())
    total = sum(aggregation.load_vector(d, size=8) for d in data)
    result = keys.secret.decrypt_weighted(keys.public.load_vector(total.to_bytes()))
    q = keys.public.scheme.quantizer
    expected = sum(w * q.dequantize(q.quantize(x)) for x, w in zip(xs, (5, 6, 7), strict=False))
    np.testing.assert_allclose(result.total, expected, rtol=1e-15)
    assert result.weight == 18
    assert len(data[0]) > 9 * 512  # 2048-bit Paillier: 512 bytes per value
