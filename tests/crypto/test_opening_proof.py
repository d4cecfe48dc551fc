"""CKKS binding commitments: the packing, the blinding's slots, and the proof of an opening."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.crypto import CKKS, _binding, _ckks_binding, _opening_proof, _value_range, _weight_range
from he_fed.crypto.ckks import PRESETS
from he_fed.exceptions import AggregateRejected
from he_fed.protocol.messages import _proof_bound
from tests.conftest import keys_for

CONTEXT = b"federation|round|task|client|fingerprint"


def test_an_honest_proof_verifies_and_has_its_announced_size():
    key = keys_for("ckks").public
    vector = key.encrypt(np.linspace(-1, 1, 40), weight=3)
    binding = vector.binding()
    proof = vector.prove_commitment(CONTEXT)
    count = _ckks_binding.packed_count(key.scheme, 40)
    bits = _ckks_binding.slot_bits(key.scheme) * _ckks_binding.pack_bits(key.scheme)
    weight_proof = _weight_range.linked_size(key.scheme.max_weight)
    values = _value_range.proof_size(_ckks_binding.value_layout(key.scheme, 40))
    assert len(proof) == weight_proof + values + _opening_proof.proof_size(count, bits)
    assert key.verify_commitment_proof(vector.commitment(), proof, 40, CONTEXT, binding=binding)
    # Fresh nonces: another proof of the same opening, equally valid.
    again = vector.prove_commitment(CONTEXT)
    assert again != proof
    assert key.verify_commitment_proof(vector.commitment(), again, 40, CONTEXT, binding=binding)


def test_a_proof_fails_for_another_context_binding_size_or_byte():
    key = keys_for("ckks").public
    a, b = (key.encrypt(np.zeros(40), weight=w) for w in (1, 2))
    proof = a.prove_commitment(CONTEXT)

    def verify(p: bytes, *, binding: bytes = a.binding(), context: bytes = CONTEXT, size=40):
        return key.verify_commitment_proof(a.commitment(), p, size, context, binding=binding)

    assert verify(proof)
    assert not verify(proof, context=CONTEXT + b"!")
    assert not verify(proof, binding=b.binding())
    assert not verify(proof, size=41 * _ckks_binding.pack_bits(key.scheme))  # another count
    for i in (0, 16, len(proof) - 1):  # the challenge, z_rho, the last response
        flipped = bytearray(proof)
        flipped[i] ^= 1
        assert not verify(bytes(flipped))
    assert not verify(proof[:-1]) and not verify(proof + b"\0") and not verify(b"")
    for binding in (b"", a.binding()[:-1], bytes(_binding.WIDTH), (_binding.P - 1).to_bytes(256)):
        assert not verify(proof, binding=binding)


def test_a_sum_or_a_loaded_vector_has_no_opening_to_prove():
    from he_fed.exceptions import ConfigurationError

    key = keys_for("ckks").public
    a, b = (key.encrypt(np.zeros(4)) for _ in range(2))
    for vector in (a + b, key.load_vector(a.to_bytes())):
        with pytest.raises(ConfigurationError, match="fresh from encrypt"):
            vector.binding()
        with pytest.raises(ConfigurationError, match="fresh from encrypt"):
            vector.prove_commitment(CONTEXT)


def test_packing_is_linear_so_the_sum_of_commitments_commits_to_the_slot_sums():
    scheme = keys_for("ckks").public.scheme
    rng = np.random.default_rng(5)
    bound = 1 << (_ckks_binding.slot_bits(scheme) - 3)
    a, b = (rng.integers(-bound, bound, size=100) for _ in range(2))
    pa, pb = _ckks_binding.pack(a, scheme), _ckks_binding.pack(b, scheme)
    packed = [x + y for x, y in zip(pa, pb, strict=True)]
    assert packed == _ckks_binding.pack(a + b, scheme)
    assert len(packed) == -(-100 // _ckks_binding.pack_bits(scheme))
    combined = _binding.product([_binding.commit(_ckks_binding.pack(v, scheme), 7) for v in (a, b)])
    assert _binding.check(_ckks_binding.pack(a + b, scheme), 14, combined)
    # One slot moved by one, anywhere, opens something else.
    for i in (0, 11, 12, 99):
        moved = (a + b).copy()
        moved[i] += 1
        assert not _binding.check(_ckks_binding.pack(moved, scheme), 14, combined)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize(("max_clients", "max_weight"), [(1, 1), (100, 1), (10, 100), (1000, 1)])
def test_the_blinding_fits_its_slots_and_every_proof_fits_the_message_bound(
    preset, max_clients, max_weight
):
    scheme = CKKS(preset=preset, clip=1.0, max_clients=max_clients, max_weight=max_weight)
    d = _ckks_binding.blinding_digit_bits(scheme)
    room = (
        min((scheme.data_modulus - 1) // 4, 2**52 - 1) >> scheme.encode_scale_bits
    )  # what every slot sum must stay within
    assert max_clients * ((1 << d) - 1) <= room < max_clients * ((1 << (d + 1)) - 1) + max_clients
    assert d * _ckks_binding.blinding_slots(scheme) >= _binding.RHO_BITS
    assert 4 * room < 1 << (_ckks_binding.slot_bits(scheme) - 1)  # a difference of sums packs
    bits = _ckks_binding.slot_bits(scheme) * _ckks_binding.pack_bits(scheme)
    assert bits <= _ckks_binding.PACKED_BITS < _binding.Q.bit_length()
    primes = len(scheme.coeff_mod_bit_sizes) - 1
    for size in (1, 31, 1001, 10001):
        c1_bytes = scheme.ciphertexts_for(size) * scheme.poly_modulus_degree * primes * 8
        proof = _opening_proof.proof_size(_ckks_binding.packed_count(scheme, size), bits)
        assert proof <= 4096 + 2 * c1_bytes  # the opening's share of the bound
        # The whole proof: the weight's, the values' (whose size only its spans set:
        # each digit's twice its bound) and the opening's.
        spans = tuple(2 * b for b in scheme.quantizer.digit_bounds) * size
        values = _value_range.proof_size(_value_range.Layout((), spans, None))
        if size == 31:
            assert values == _value_range.proof_size(_ckks_binding.value_layout(scheme, size))
        proof += _weight_range.linked_size(max_weight) + values
        assert proof <= _proof_bound(bytes(c1_bytes))


def test_the_default_plans_blinding_takes_14_slots():
    scheme = CKKS(clip=1.0, max_clients=100)
    assert (_ckks_binding.blinding_digit_bits(scheme), _ckks_binding.blinding_slots(scheme)) == (
        24,
        14,
    )
    assert (_ckks_binding.slot_bits(scheme), _ckks_binding.pack_bits(scheme)) == (40, 12)


def test_a_blinding_digit_total_out_of_range_is_refused():
    """A negative blinding digit, or one beyond count digits, is refused even without a binding."""
    from tests.crypto.ckks_tools import shifted

    keys = keys_for("ckks")
    scheme = keys.public.scheme
    total = sum(keys.public.encrypt(np.zeros(5), weight=1) for _ in range(2))
    at = scheme.digits * 5 + 1
    d = _ckks_binding.blinding_digit_bits(scheme)
    for x in (-float(2 << d), float(2 << d)):
        offsets = np.zeros(scheme.values_per_ciphertext)
        offsets[at] = x
        with pytest.raises(AggregateRejected, match="blinding digit") as refused:
            keys.secret.decrypt_weighted(shifted(keys.public, total, offsets))
        assert not refused.value.off_grid
