"""Commitments: they add as ciphertexts do, bind the aggregate, and hide the message."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.crypto import _ckks_binding
from he_fed.exceptions import KeyMismatchError, MalformedMessage
from tests.conftest import FAST_SCHEMES, keys_for


def test_commitment_of_a_sum_is_the_sum_of_commitments(scheme_name, keys, rng):
    vectors = [keys.public.encrypt(rng.uniform(-1, 1, 9), weight=w) for w in (1, 4, 2)]
    total = sum(vectors)
    loaded = keys.public.aggregation_key().load_vector(total.to_bytes())
    expected = keys.public.sum_commitments([v.commitment() for v in vectors], 9)
    assert loaded.commitment() == total.commitment() == expected


def test_a_sum_of_negative_zeros_matches_its_commitments(scheme_name, keys):
    # A FedSGD step of -step * 0.0 is -0.0; the plain baseline once committed to its
    # sign bit, so a column of -0.0 at every client made an honest round look forged.
    vectors = [keys.public.encrypt(np.array([-0.0, 0.5, -0.0]), weight=w) for w in (1, 3, 2)]
    total = sum(vectors)
    expected = keys.public.sum_commitments([v.commitment() for v in vectors], 3)
    assert total.commitment() == expected


def test_a_single_ciphertext_does_not_match_the_commitment_of_a_sum(scheme_name, keys, rng):
    vectors = [keys.public.encrypt(rng.uniform(-1, 1, 4)) for _ in range(3)]
    expected = keys.public.sum_commitments([v.commitment() for v in vectors], 4)
    assert vectors[0].commitment() != expected
    assert (vectors[0] + vectors[0] + vectors[0]).commitment() != expected


@pytest.mark.parametrize("scheme_name", ["paillier", "paillier-packed", "ckks"])
def test_commitments_do_not_depend_on_the_message(scheme_name):
    keys = keys_for(scheme_name)
    a = keys.public.encrypt(np.full(5, 1.0))
    b = keys.public.encrypt(np.full(5, -1.0))
    # Same commitment length whatever the message, and fresh randomness each time.
    assert len(a.commitment()) == len(b.commitment())
    assert a.commitment() != keys.public.encrypt(np.full(5, 1.0)).commitment()
    if scheme_name.startswith("paillier"):
        # c mod n is r^n mod n: the message factor (1 + m n) vanishes modulo n.
        n = keys.public.n
        c = a.ciphertexts[0]
        assert c % n == (c * (1 + 12345 * n)) % (n * n) % n


def test_commitments_of_the_wrong_length_or_range_are_refused(keys):
    good = keys.public.encrypt(np.ones(3)).commitment()
    with pytest.raises(MalformedMessage):
        keys.public.sum_commitments([good[:-1]], 3)
    with pytest.raises(MalformedMessage):
        keys.public.sum_commitments([], 3)
    if keys.public.scheme.name != "plain":
        with pytest.raises(MalformedMessage):
            keys.public.sum_commitments([b"\xff" * len(good)], 3)


@pytest.mark.parametrize(
    ("degree", "bits"), [(4096, (60, 49)), (8192, (60, 40, 40)), (8192, (60, 40, 40, 60))]
)
def test_the_primes_commitments_reduce_by_are_the_contexts(degree, bits):
    import tenseal as ts

    from he_fed.crypto.ckks import _primes

    ctx = ts.context(ts.SCHEME_TYPE.CKKS, degree, coeff_mod_bit_sizes=list(bits))
    primes = _primes(degree, bits)
    assert [p.bit_length() for p in primes] == list(bits)
    assert all(p % (2 * degree) == 1 for p in primes)
    low_word = ctx.seal_context().data.first_context_data().total_coeff_modulus()
    product = 1
    for p in primes[:-1]:
        product *= p
    assert product % 2**64 == low_word


def test_ckks_chunks_are_validated_before_tenseal_sees_them():
    keys = keys_for("ckks")
    key = keys.public
    blob = key.encrypt(np.ones(3)).blobs()[0]
    slots = (3 + 1 + _ckks_binding.blinding_slots(key.scheme) + 1) // 2
    key._parse(blob, slots)  # 3 values, the weight and the blinding, two to a slot
    with pytest.raises(MalformedMessage, match=f"fills {slots} slots"):
        key._parse(blob, slots + 1)
    for bad in (b"", blob[:50], blob[:-1], b"\x0a\x01\x04" + b"\x00" * 40):
        with pytest.raises(MalformedMessage):
            key._parse(bad, slots)
    scheme = FAST_SCHEMES["ckks"]
    other = scheme.with_plan(max_clients=2**10).keygen().public  # a larger scale
    assert other.scheme.encode_scale_bits != key.scheme.encode_scale_bits
    with pytest.raises(KeyMismatchError, match="scale"):
        key._parse(other.encrypt(np.ones(3)).blobs()[0], slots)


def test_a_batch_of_proofs_holds_only_if_each_does(scheme_name, keys, rng):
    """The key holder checks a round's receipts in one batch (``verify_commitment_proofs``):
    honest ones hold together; one borrowed proof, wherever it sits, fails the batch."""
    public = keys.public
    claims = []
    for k, weight in enumerate((1, 4, 2)):
        vector = public.encrypt(rng.uniform(-1, 1, 5), weight=weight)
        context = b"round|client-%d" % k
        proof = vector.prove_commitment(context)
        claims.append((vector.commitment(), proof, context, vector.binding()))
    assert public.verify_commitment_proofs(claims, 5)
    assert public.verify_commitment_proofs([], 5)
    if scheme_name == "plain":  # no proofs: only the empty one holds
        assert {proof for _, proof, _, _ in claims} == {b""}
        assert not public.verify_commitment_proofs([(b"", b"x", b"", b"")], 5)
        return
    for at in range(3):
        borrowed = list(claims)
        other = claims[(at + 1) % 3]
        borrowed[at] = (claims[at][0], other[1], claims[at][2], claims[at][3])
        assert not public.verify_commitment_proofs(borrowed, 5)
        assert [
            public.verify_commitment_proof(c, p, 5, x, binding=b) for c, p, x, b in borrowed
        ] == [i != at for i in range(3)]
