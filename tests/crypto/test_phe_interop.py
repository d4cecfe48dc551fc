"""phe keys work in he-fed, and phe reads he-fed's per-value ciphertexts, exactly."""

from __future__ import annotations

import doctest
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from phe import paillier as phe

from he_fed.crypto import (
    PackedPaillier,
    Paillier,
    key_pair_from_phe,
    load_public,
    public_key_from_phe,
    public_key_to_phe,
    secret_key_to_phe,
    vector_from_phe,
    vector_to_phe,
)
from he_fed.crypto import phe_interop as interop
from he_fed.exceptions import (
    ConfigurationError,
    EncodingError,
    InsecureParameters,
    KeyMismatchError,
    ShapeMismatchError,
)
from tests.conftest import keys_for

ROOT = Path(__file__).resolve().parents[2]
PLAN = {"clip": 2.0, "max_clients": 8, "max_weight": 16}


@cache
def _phe_pair() -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]:
    return phe.generate_paillier_keypair(n_length=1024)


def _scheme() -> Paillier:
    return Paillier(key_bits=1024, allow_insecure=True, **PLAN)


def _integer_sums(scheme: Paillier, xs: list[np.ndarray], weights: list[int]) -> list[int]:
    """``Σ_k w_k · q_ki`` per value, in Python integers, then ``Σ_k w_k``."""
    quantized = [scheme.quantizer.quantize(x) for x in xs]
    sums = [sum(w * int(q[i]) for q, w in zip(quantized, weights, strict=True)) for i in range(4)]
    return [*sums, sum(weights)]


XS = [np.array([2.0, -2.0, 0.3, -0.7]), np.array([-1.5, 2.0, 0.0, 1e-9])]
WEIGHTS = [3, 16]


def test_a_phe_key_pair_comes_into_he_fed_and_goes_back_unchanged():
    phe_public, phe_private = _phe_pair()
    keys = key_pair_from_phe(phe_private, scheme=_scheme())
    assert int(keys.public.n) == phe_public.n and keys.public.scheme == _scheme()
    assert public_key_to_phe(keys.public) == phe_public
    assert secret_key_to_phe(keys.secret) == phe_private
    back = secret_key_to_phe(keys.secret)
    assert (back.p, back.q) == (phe_private.p, phe_private.q)
    # The DJN generator comes from n alone: the same he-fed key in every process.
    assert public_key_from_phe(phe_public, scheme=_scheme()) == keys.public
    assert public_key_from_phe(public_key_to_phe(keys.public), scheme=_scheme()) == keys.public
    assert load_public(keys.public.to_bytes(), allow_insecure=True) == keys.public


def test_an_he_fed_key_pair_goes_to_phe_and_back_with_the_same_modulus_and_primes():
    keys = keys_for("paillier")
    phe_private = secret_key_to_phe(keys.secret)
    assert phe_private.public_key == public_key_to_phe(keys.public)
    assert phe_private.public_key.n == int(keys.public.n)
    back = key_pair_from_phe(phe_private, scheme=keys.public.scheme)
    assert secret_key_to_phe(back.secret) == phe_private
    assert int(back.public.n) == int(keys.public.n)
    # phe has no place for the DJN generator, so the key comes back with a derived
    # one: another fingerprint, the same plaintexts.
    assert back.public.fingerprint != keys.public.fingerprint
    vector = back.public.encrypt(XS[0], weight=5)
    assert keys.secret.raw_decrypt(vector.ciphertexts) == back.secret.raw_decrypt(
        vector.ciphertexts
    )


def test_phe_decrypts_an_he_fed_aggregate_to_the_exact_integers():
    keys = keys_for("paillier")
    scheme = keys.public.scheme
    total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(XS, WEIGHTS, strict=True))
    total = keys.public.load_vector(total.to_bytes(), size=4)
    phe_private = secret_key_to_phe(keys.secret)
    numbers = vector_to_phe(total)
    assert len(numbers) == 5 and {n.exponent for n in numbers} == {0}
    decrypted = [phe_private.decrypt(n) for n in numbers]
    assert decrypted == _integer_sums(scheme, XS, WEIGHTS)
    assert decrypted[-1] == 19
    step = scheme.quantizer.step
    assert [v * step for v in decrypted[:-1]] == keys.secret.decrypt(total).tolist()


def test_a_vector_goes_to_phe_and_back_byte_for_byte():
    keys = keys_for("paillier")
    vector = keys.public.encrypt(XS[0], weight=7) + keys.public.encrypt(XS[1], weight=2)
    numbers = vector_to_phe(vector)
    assert len(numbers) == vector.size + 1  # values and weight; not the blinding
    back = vector_from_phe(numbers, keys.public, count=vector.count)
    # Every value's and the weight's ciphertext, byte for byte; the blinding of the
    # binding commitment, which phe does not carry, is a fresh encryption of zero.
    assert back.ciphertexts[:-1] == vector.ciphertexts[:-1]
    assert back.ciphertexts[-1] != vector.ciphertexts[-1]
    np.testing.assert_array_equal(keys.secret.decrypt(back), keys.secret.decrypt(vector))


def test_he_fed_decrypts_contributions_encrypted_and_summed_with_phe():
    phe_public, phe_private = _phe_pair()
    keys = key_pair_from_phe(phe_private, scheme=_scheme())
    scheme = keys.public.scheme

    def phe_contribution(x: np.ndarray, w: int) -> list[phe.EncryptedNumber]:
        return [phe_public.encrypt(w * int(q)) for q in scheme.quantizer.quantize(x)] + [
            phe_public.encrypt(w)
        ]

    first, second = (phe_contribution(x, w) for x, w in zip(XS, WEIGHTS, strict=True))
    summed = vector_from_phe(
        [a + b for a, b in zip(first, second, strict=True)], keys.public, count=2
    )
    ours = sum(keys.public.encrypt(x, weight=w) for x, w in zip(XS, WEIGHTS, strict=True))
    result = keys.secret.decrypt_weighted(summed)
    expected = keys.secret.decrypt_weighted(ours)
    assert result.total.tolist() == expected.total.tolist()
    assert (result.weight, result.count) == (19, 2)
    # phe's and he-fed's contributions add to each other.
    mixed = vector_from_phe(first, keys.public) + keys.public.encrypt(XS[1], weight=16)
    assert keys.secret.decrypt(mixed).tolist() == expected.total.tolist()
    assert [phe_private.decrypt(n) for n in vector_to_phe(mixed)] == _integer_sums(
        scheme, XS, WEIGHTS
    )


def test_keys_under_2048_bits_need_the_insecure_opt_in():
    phe_public, phe_private = _phe_pair()
    with pytest.raises(InsecureParameters, match="allow_insecure"):
        public_key_from_phe(phe_public)
    with pytest.raises(InsecureParameters, match="allow_insecure"):
        key_pair_from_phe(phe_private)
    key = public_key_from_phe(phe_public, allow_insecure=True)
    assert key.scheme == Paillier(key_bits=1024, allow_insecure=True)


def test_wrong_keys_schemes_and_numbers_raise_typed_errors():
    phe_public, _ = _phe_pair()
    keys = keys_for("paillier")
    for other in ("ckks", "plain"):
        with pytest.raises(KeyMismatchError, match="expected a Paillier public key"):
            public_key_to_phe(keys_for(other).public)
        with pytest.raises(KeyMismatchError, match="expected a Paillier secret key"):
            secret_key_to_phe(keys_for(other).secret)
        with pytest.raises(KeyMismatchError, match="expected a Paillier vector"):
            vector_to_phe(keys_for(other).public.encrypt(np.ones(2)))
    packed = keys_for("paillier-packed")
    with pytest.raises(KeyMismatchError, match="packs many values"):
        vector_to_phe(packed.public.encrypt(np.ones(2)))
    with pytest.raises(KeyMismatchError, match="packs many values"):
        vector_from_phe(vector_to_phe(keys.public.encrypt(np.ones(2))), packed.public)
    assert public_key_to_phe(packed.public).n == int(packed.public.n)  # keys are fine
    with pytest.raises(KeyMismatchError, match="another key"):
        vector_from_phe([phe_public.encrypt(1), phe_public.encrypt(1)], keys.public)
    theirs = public_key_to_phe(keys.public)
    with pytest.raises(EncodingError, match="exponent"):
        vector_from_phe([theirs.encrypt(0.5), theirs.encrypt(1)], keys.public)
    with pytest.raises(ShapeMismatchError):
        vector_from_phe([theirs.encrypt(1)], keys.public)
    with pytest.raises(ConfigurationError, match="count"):
        vector_from_phe([theirs.encrypt(0), theirs.encrypt(1)], keys.public, count=65)
    with pytest.raises(ConfigurationError, match="EncryptedNumber"):
        vector_from_phe([1, 2], keys.public)  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="key_bits=2048"):
        public_key_from_phe(phe_public, scheme=Paillier())
    with pytest.raises(ConfigurationError, match="PaillierPrivateKey"):
        key_pair_from_phe(phe_public)  # type: ignore[arg-type]
    assert (
        PackedPaillier(key_bits=1024, allow_insecure=True)
        == public_key_from_phe(
            phe_public, scheme=PackedPaillier(key_bits=1024, allow_insecure=True)
        ).scheme
    )


def test_positive_phe_exponents_are_brought_down_to_integers():
    keys = keys_for("paillier")
    theirs = public_key_to_phe(keys.public)
    sixteen = phe.EncryptedNumber(theirs, theirs.raw_encrypt(1), exponent=1)  # 1 · 16^1
    vector = vector_from_phe([theirs.encrypt(0), sixteen], keys.public)
    result = keys.secret.decrypt_weighted(vector)
    assert (result.total.tolist(), result.weight) == ([0.0], 16)


def test_the_module_example_runs():
    failures, tried = doctest.testmod(interop)
    assert tried > 0 and failures == 0


def test_the_readme_example_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Keys and ciphertexts from python-paillier", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(example, "README.md", "exec"), {})
