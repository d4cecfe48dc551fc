"""Proofs of knowledge of a Paillier commitment's randomness."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest

from he_fed.crypto import PackedPaillier, Paillier, _value_range, _weight_range
from he_fed.crypto import _commitment_proof as pok
from he_fed.exceptions import ConfigurationError
from tests.conftest import keys_for

CONTEXT = b"federation|round 3|train|client a|fingerprint"


@pytest.fixture(params=["paillier", "paillier-packed"])
def key(request):
    return keys_for(request.param).public


def test_a_fresh_vector_proves_its_commitment(key):
    vector = key.encrypt(np.linspace(-1, 1, 40), weight=7)
    binding = vector.binding()
    proof = vector.prove_commitment(CONTEXT)
    n = int(key.n)
    weight_proof = _weight_range.linked_size(key.scheme.max_weight)
    randomness = pok.proof_size(n, key.scheme.randomness_bits, len(vector.ciphertexts))
    values = _value_range.proof_size(key.scheme.value_layout(vector.size))
    assert len(proof) == weight_proof + values + randomness
    commitment = vector.commitment()
    assert key.verify_commitment_proof(commitment, proof, vector.size, CONTEXT, binding=binding)
    # The weight's proof is checked too: without the binding it holds for, none verifies.
    assert not key.verify_commitment_proof(commitment, proof, vector.size, CONTEXT)
    # A second proof of the same vector is fresh randomness, and verifies too.
    again = vector.prove_commitment(CONTEXT)
    assert again != proof
    assert key.verify_commitment_proof(commitment, again, vector.size, CONTEXT, binding=binding)


@pytest.mark.parametrize("scheme", [Paillier, PackedPaillier])
@pytest.mark.parametrize("bits", [512, 768])
def test_a_small_key_proves_and_checks_its_commitment_on_unannounced_tables(scheme, bits):
    """The proof's nonces (the DJN exponent plus 405 bits) outgrow a modulus under
    1,024 bits. Its fixed-base table refused them, so ``keygen --key-bits 512`` made
    keys whose every client failed with "exponent_bits must be ... at most the
    modulus's size", while an in-process run (its tables announced) trained."""
    key = scheme(key_bits=bits, max_weight=8, allow_insecure=True).keygen().public
    assert pok.table_bits(key.scheme.randomness_bits, 1) > bits
    vector = key.encrypt(np.linspace(-1, 1, 5), weight=3)
    proof, binding = vector.prove_commitment(CONTEXT), vector.binding()
    assert key.verify_commitment_proof(vector.commitment(), proof, 5, CONTEXT, binding=binding)
    assert not key.verify_commitment_proof(
        vector.commitment(), proof, 5, CONTEXT + b"!", binding=binding
    )


def test_a_proof_is_bound_to_its_context_and_commitment(key):
    a = key.encrypt(np.zeros(40), weight=1)
    b = key.encrypt(np.zeros(40), weight=1)
    proof, bound = a.prove_commitment(CONTEXT), a.binding()

    def verify(commitment: bytes, candidate: bytes, context: bytes = CONTEXT) -> bool:
        return key.verify_commitment_proof(commitment, candidate, a.size, context, binding=bound)

    assert verify(a.commitment(), proof)
    assert not verify(a.commitment(), proof, CONTEXT + b"!")
    assert not verify(b.commitment(), proof)
    # Nor does it survive a flipped bit, truncation, or the wrong vector length.
    flipped = bytearray(proof)
    flipped[-1] ^= 1
    assert not verify(a.commitment(), bytes(flipped))
    assert not verify(a.commitment(), proof[:-1])
    assert not verify(a.commitment(), b"")
    assert not verify(a.commitment()[:-1], proof)


def test_a_commitment_times_another_clients_fails_with_the_makers_proof(key):
    # The rogue commitment of a colluder: its own, divided by an honest client's.
    mine, theirs = key.encrypt(np.zeros(40)), key.encrypt(np.ones(40))
    n = int(key.n)
    width = (n.bit_length() + 7) // 8
    rogue = b"".join(
        (int(a) % n * int(gmpy2.invert(int(b) % n, n)) % n).to_bytes(width, "big")
        for a, b in zip(mine.ciphertexts, theirs.ciphertexts, strict=True)
    )
    proof, bound = mine.prove_commitment(CONTEXT), mine.binding()
    assert key.verify_commitment_proof(mine.commitment(), proof, 40, CONTEXT, binding=bound)
    assert not key.verify_commitment_proof(rogue, proof, 40, CONTEXT, binding=bound)


def test_only_a_fresh_vector_can_prove(key):
    vector = key.encrypt(np.zeros(40))
    with pytest.raises(ConfigurationError, match="fresh from encrypt"):
        (vector + vector).prove_commitment(CONTEXT)
    with pytest.raises(ConfigurationError, match="fresh from encrypt"):
        key.load_vector(vector.to_bytes()).prove_commitment(CONTEXT)


def test_the_exponents_never_leave_in_the_vectors_bytes(key):
    vector = key.encrypt(np.zeros(40))
    loaded = key.load_vector(vector.to_bytes())
    assert loaded._exponents is None
    assert loaded.to_bytes() == vector.to_bytes()


def test_schemes_without_proofs_accept_only_the_empty_proof():
    for name in ("plain",):
        public = keys_for(name).public
        vector = public.encrypt(np.zeros(8))
        assert vector.prove_commitment(CONTEXT) == b""
        assert public.verify_commitment_proof(vector.commitment(), b"", 8, CONTEXT)
        assert not public.verify_commitment_proof(vector.commitment(), b"x", 8, CONTEXT)
