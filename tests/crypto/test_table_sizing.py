"""Fixed-base tables sized for the encryptions a job announces."""

from __future__ import annotations

import gmpy2
import numpy as np

from he_fed.crypto import PackedPaillier, _binding, _comb, _commitment_proof
from he_fed.crypto import _djn as djn


def test_the_window_minimises_table_and_exponentiations_together():
    # ceil(b / w) * (2^w + uses) multiplications, for a 2048-bit key's randomisers.
    changes = {}
    for uses in range(1000):
        changes.setdefault(djn.window_for_uses(4096, 1024, uses), uses)
    assert changes == {2: 0, 3: 5, 4: 16, 5: 49, 6: 129, 7: 328, 8: 735}
    assert djn.window_for_uses(4096, 1024, 150) == 6
    assert djn.table_bytes(4096, 1024, 6) == 5_603_328  # against 16 MiB at 8 bits
    assert djn.window_for_uses(4096, 1024, 10**6) == 8
    # Nothing announced: the widest window within the budget, as before.
    assert djn.window_for_uses(4096, 1024, None) == djn.table_window(4096, 1024) == 8
    assert djn.window_for_uses(16384, 4096, 10**6) == djn.table_window(16384, 4096) == 5


def test_announcements_add_up_until_the_table_is_built_then_it_is_kept():
    modulus = int(gmpy2.next_prime(2**521)) * int(gmpy2.next_prime(2**519))
    base = 7
    djn.plan_uses(base, modulus, 256, 20)
    djn.plan_uses(base, modulus, 256, 30)
    table = djn.fixed_base(base, modulus, 256)
    # A comb shaped for the 50 announced uses (h = 8 teeth, v = 2 blocks).
    assert (table.teeth, table.blocks) == _comb.comb_shape(1041, 256, 50, 1 << 26) == (8, 2)
    djn.plan_uses(base, modulus, 256, 10**6)
    assert djn.fixed_base(base, modulus, 256) is table
    exponent = 2**255 + 12345
    assert table.pow(exponent) == gmpy2.powmod(base, exponent, modulus)


def test_a_paillier_key_plans_its_randomisers_and_its_proofs():
    scheme = PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=4, max_weight=64)
    public = scheme.keygen().public
    public.expect_contributions(40, 11, proofs=120)
    vector = public.encrypt(np.linspace(-1, 1, 11), weight=3)
    vector.prove_commitment(b"context")
    bits = scheme.randomness_bits
    number = scheme.ciphertexts_for(11)
    randomisers = djn.fixed_base(int(public.hs), int(public.nsquare), bits)
    assert number == 1
    assert (randomisers.teeth, randomisers.blocks) == (8, 4)  # for 40 uses
    proof_bits = _commitment_proof.table_bits(bits, number)
    proofs = djn.fixed_base(int(public.hs % public.n), int(public.n), proof_bits)
    assert (proofs.teeth, proofs.blocks) == (9, 6)  # for 120 uses


def test_proofs_of_every_length_share_one_table_per_key(monkeypatch):
    scheme = PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=4, max_weight=64)
    public = scheme.keygen().public
    built: list[djn.FixedBase] = []
    original = djn.FixedBase.__init__

    def spy(self: djn.FixedBase, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        built.append(self)

    monkeypatch.setattr(djn.FixedBase, "__init__", spy)
    for size in (3, 500, 5000):  # 1, 13 and 120 ciphertexts
        vector = public.encrypt(np.zeros(size), weight=1)
        proof, binding = vector.prove_commitment(b"context"), vector.binding()
        commitment = vector.commitment()
        assert public.verify_commitment_proof(commitment, proof, size, b"context", binding=binding)
    n = int(public.n)
    # the randomisers' table (mod n^2, 2047 or 2048 bits), and one for every proof (mod n);
    # the binding and weight commitments' own (mod the group's prime) are public constants
    built = [t for t in built if int(t.modulus) != _binding.P]
    assert [int(t.modulus) for t in built] == [n * n, n]
    assert built[1].exponent_bits == _commitment_proof.table_bits(scheme.randomness_bits, 1)
