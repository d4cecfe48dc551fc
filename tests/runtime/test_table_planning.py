"""An in-process federation sizes the key's tables for the rounds it is asked to run."""

from __future__ import annotations

import numpy as np

from he_fed.crypto import PackedPaillier, _comb, _commitment_proof
from he_fed.crypto import _djn as djn
from he_fed.models import LinearRegressionGD
from he_fed.runtime import Federation


def test_training_in_process_announces_every_encryption_and_proof():
    rng = np.random.default_rng(6)
    parts = [(rng.normal(size=(20, 4)), rng.normal(size=20)) for _ in range(3)]
    scheme = PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=4, max_weight=32)
    federation = Federation.create(
        parts, scheme=scheme, model=LinearRegressionGD(learning_rate=0.1), standardize=False
    )
    assert len(federation.train(4)) == 4
    public = federation.keyholder.public_key
    bits, number = scheme.randomness_bits, scheme.ciphertexts_for(5)
    # 3 clients x 4 rounds: 12 encryptions, each proved once and checked twice.
    randomisers = djn.fixed_base(int(public.hs), int(public.nsquare), bits)
    widest = djn.table_bytes(2048, bits, djn.table_window(2048, bits))
    shape = _comb.comb_shape(2048, bits, 12 * number, widest)
    assert (randomisers.teeth, randomisers.blocks) == shape == (6, 4)
    proof_bits = _commitment_proof.table_bits(bits, number)
    proofs = djn.fixed_base(int(public.hs % public.n), int(public.n), proof_bits)
    widest = djn.table_bytes(1024, proof_bits, djn.table_window(1024, proof_bits))
    assert (proofs.teeth, proofs.blocks) == _comb.comb_shape(1024, proof_bits, 36, widest) == (8, 5)
