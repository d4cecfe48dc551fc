"""One registered, validly signing client crafts its plaintext.

Every contribution proves its weight in ``[1, max_weight]``
(``he_fed.crypto._weight_range``) and each of its values within its own weight times
the clip (``he_fed.crypto._value_range``). A crafted update cannot prove that: the
aggregator drops it on arrival and the round goes on without it. One that commits
to honest values and encrypts crafted ones proves everything, but its sum does not
open the binding commitments: the key holder refuses it (``AggregateRejected``),
the round is skipped, and three such refusals retire the key. What is left is an
honest client's reach with the largest weight the plan allows: a coordinate of the
mean moves by at most ``2 · clip`` times the client's share of the total weight.
"""

from __future__ import annotations

import re
import secrets

import numpy as np
import pytest
import tenseal.sealapi as sealapi

from he_fed.crypto import _binding, _ckks_binding
from he_fed.crypto import _seal_format as seal_format
from he_fed.crypto import _seal_io as seal_io
from he_fed.crypto._ckks_keys import CKKSVector
from he_fed.crypto.paillier import PaillierVector
from he_fed.exceptions import InvalidSignature
from he_fed.protocol import Aggregate, Client, EncryptedUpdate, decode
from he_fed.protocol.client import ClientReport
from he_fed.runtime import Federation
from tests.protocol.harness import N_FEATURES, roles, signed_update

CLIP = 4.0  # the plan's clip (Scheme default)
SIZE = N_FEATURES + 1


def paillier_vector(key, values: np.ndarray, weight: int, *, levels=None) -> PaillierVector:
    """A per-value Paillier contribution of any values and weight (no clipping).

    ``levels`` gives the weighted sums in quantization levels directly, exactly.
    """
    n, step = int(key.n), key.scheme.quantizer.step
    if levels is None:
        levels = [weight * round(float(v) / step) for v in values]
    plaintexts = [int(v) % n for v in levels] + [weight % n]
    return fresh(key, plaintexts, len(levels))


def fresh(key, plaintexts: list[int], size: int) -> PaillierVector:
    """Ciphertexts of any plaintexts, holding their randomness as the client's own do."""
    scheme, n = key.scheme, int(key.n)
    rho = secrets.randbits(scheme.blinding_bits)
    ciphertexts, exponents = key._raw_encrypt(scheme.attach(plaintexts, size, rho))
    vector = PaillierVector(key, ciphertexts, size, 1)
    vector._exponents = exponents  # the crafting client made them, so it can prove them
    # and commits to what it crafted, so that its sum opens the binding commitments.
    vector._opening = (scheme.exact(plaintexts, size, n), rho)
    vector._weight = 1  # the weight it proves, which every plan allows
    return vector


def paillier_committed_to_zeros(vector: PaillierVector) -> PaillierVector:
    """``vector`` with its binding and proofs for zeros of weight 1: all of them verify,
    and only the key holder's binding check can tell the ciphertext holds another sum."""
    key, size = vector.key, vector.size
    scheme, n = key.scheme, int(key.n)
    honest = scheme.encode(np.zeros(size), 1, n)
    vector._opening = (scheme.exact(honest, size, n), vector._opening[1])
    return vector


class _CraftedCKKS(CKKSVector):
    """A crafted CKKS vector that commits to its integers honestly, as its maker can."""

    def _packed(self) -> tuple[list[int], int]:
        return self._crafted


def ckks_vector(key, values: np.ndarray, weight: int) -> CKKSVector:
    """A CKKS contribution of any values and weight: the client's encoding, unclipped.

    Its binding commitment opens to what it encrypts, and its maker can prove that,
    so the aggregator takes it; only the key holder's range checks can refuse it.
    """
    scheme = key.scheme
    integers = np.rint(weight * values / scheme.quantizer.step)
    rho = secrets.randbits(_binding.RHO_BITS)
    flat = np.append(integers, float(weight))
    packed = _ckks_binding.pack(flat, scheme)
    flat = np.append(flat, _ckks_binding.blinding_digits(rho, scheme))
    per, scale = scheme.values_per_ciphertext, 2.0**scheme.encode_scale_bits
    encoder, encryptor = key._sealapi
    blobs = []
    for start in range(0, flat.size, per):
        chunk = flat[start : start + per]
        used = chunk.size
        if used % 2:
            chunk = np.append(chunk, 0.0)
        plain, ciphertext = sealapi.Plaintext(), sealapi.Ciphertext()
        encoder.encode(chunk.view(np.complex128).tolist(), scale, plain)
        encryptor.encrypt(plain, ciphertext)
        blobs.append(
            seal_format.write_ckks_vector(seal_io.save(ciphertext), (used + 1) // 2, scale)
        )
    vector = _CraftedCKKS(key, values.size, 1, blobs=blobs)
    vector._crafted = (packed, rho)
    vector._opening = (values, 1, rho)  # the weight it proves, which every plan allows
    return vector


def ckks_committed_to_zeros(vector: CKKSVector) -> CKKSVector:
    """A crafted CKKS ``vector`` whose binding and proofs are for zeros of weight 1."""
    scheme, rho = vector.key.scheme, vector._opening[2]
    zeros = np.zeros(vector.size)
    flat = np.append(scheme.quantizer.encode(zeros, 1), 1.0)
    vector._crafted = (_ckks_binding.pack(flat, scheme), rho)
    vector._opening = (zeros, 1, rho)
    return vector


def crafted(key, scheme_name: str, how: str, *, committed_to_zeros: bool = False):
    """A contribution no honest client can encrypt, built below the public API's checks.

    Its binding and proofs are honest about what it encrypts (which the values' range
    proof cannot be) or, with ``committed_to_zeros``, about zeros of weight 1.
    """
    values = np.zeros(SIZE)
    weight = {"inflate": 1, "negative-weight": -300, "huge-weight": 10_000}[how]
    if how == "inflate":
        values[0] = 2000.0
    if scheme_name == "paillier":
        vector = paillier_vector(key, values, weight)
    elif scheme_name == "paillier-packed":
        scheme = key.scheme
        levels, bits = scheme.quantizer.levels, scheme.layout.slot_bits
        slots = np.array([weight % (1 << bits)] + [levels * max(weight, 1)] * SIZE, dtype=object)
        if how == "inflate":  # 2000 (500 times the clip) in a slot sized for honest sums
            slots[1] = levels + round(2000.0 / scheme.quantizer.step)
        plaintexts = scheme.layout.pack(slots)
        vector = fresh(key, plaintexts, SIZE)
    else:
        vector = ckks_vector(key, values, weight)
        return ckks_committed_to_zeros(vector) if committed_to_zeros else vector
    return paillier_committed_to_zeros(vector) if committed_to_zeros else vector


class Crafting(Client):
    """A client whose update carries a crafted vector, validly signed."""

    how = "inflate"
    scheme_name = "paillier-packed"
    committed_to_zeros = False

    def participate(self, message: bytes) -> ClientReport:
        honest = super().participate(message)
        vector = crafted(
            self._key, self.scheme_name, self.how, committed_to_zeros=self.committed_to_zeros
        )
        return ClientReport(honest.round, signed_update(self, message, vector), 0, 0, 0, 0, 0)


ATTACKS = [
    ("paillier-packed", "inflate"),
    ("paillier", "inflate"),
    ("ckks", "inflate"),
    ("paillier", "negative-weight"),
    ("paillier-packed", "negative-weight"),
    ("ckks", "negative-weight"),
    ("paillier", "huge-weight"),
    ("ckks", "huge-weight"),
]


def _federation(scheme_name: str, how: str, *, committed_to_zeros: bool = False):
    keyholder, aggregator, honest = roles(scheme_name, sizes=(30, 50, 20, 40), min_clients=2)
    bad = Crafting(
        "mallory",
        np.random.default_rng(9).normal(size=(25, N_FEATURES)),
        np.arange(25) % 2,
        keyholder.public_key_bytes(),
        keyholder=keyholder.identity_bytes,
        model=honest[0]._model,
        local_epochs=2,
        classes=np.array([0, 1]),
        allow_insecure=True,
    )
    bad.how, bad.scheme_name, bad.committed_to_zeros = how, scheme_name, committed_to_zeros
    keyholder.register("mallory", bad.verify_key)
    aggregator.register("mallory", bad.verify_key)
    return keyholder, aggregator, honest, bad


@pytest.mark.parametrize("scheme_name, how", ATTACKS)
def test_a_crafted_update_cannot_prove_its_values_and_is_dropped_on_arrival(scheme_name, how):
    keyholder, aggregator, honest, bad = _federation(scheme_name, how)
    federation = Federation(keyholder, aggregator, [*honest, bad])
    first = federation.run_round()
    # Its maker could prove neither the values nor the weight it encrypted: the
    # aggregator dropped the update alone, and the others' round was released.
    assert "mallory" in first.failures and "rejected" in first.failures["mallory"]
    assert first.contributors == ("c0", "c1", "c2", "c3")
    assert first.skipped is None and keyholder.released == 1


@pytest.mark.parametrize("scheme_name, how", ATTACKS)
def test_a_crafted_update_committed_as_an_honest_one_is_refused_and_the_federation_goes_on(
    scheme_name, how, caplog
):
    keyholder, aggregator, honest, bad = _federation(scheme_name, how, committed_to_zeros=True)
    federation = Federation(keyholder, aggregator, [*honest, bad])
    first = federation.run_round()
    # Every proof verified, so the aggregator took the update (it cannot read it); the
    # key holder refused the sum, and said nothing about the values it decrypted.
    assert "mallory" in first.contributors
    assert first.skipped is not None
    assert "mallory" not in first.skipped
    numbers = {int(v) for v in re.findall(r"\d+", first.skipped)}
    decrypted = {140 + 1, 140 - 300, 300 - 140, 140 + 10_000, 2000, 2000 * 141}
    assert not numbers & decrypted  # the plan's public bounds may appear, no sum does
    np.testing.assert_array_equal(aggregator.weights, 0.0)
    # The run goes on: the next round, without the crafted update, is released.
    second = federation.run_round(participants=[c.client_id for c in honest])
    assert second.skipped is None and second.contributors == ("c0", "c1", "c2", "c3")
    assert keyholder.released == 1


def test_a_client_that_always_crafts_stops_the_run_after_three_refusals():
    """Each refusal may tell the round's observers one bit, so the key holder retires
    its key after three: the run stops cleanly with the model so far, and says why."""
    keyholder, aggregator, honest, bad = _federation("paillier", "inflate", committed_to_zeros=True)
    federation = Federation(keyholder, aggregator, [*honest, bad])
    outcomes = federation.train(5)  # no exception escapes
    assert [o.skipped is not None for o in outcomes] == [True, True, True]
    assert keyholder.released == 0 and keyholder.rejected == 3
    assert federation.stopped and "retired its key" in federation.stopped


@pytest.mark.parametrize("beyond", [False, True])
def test_the_most_one_client_can_move_the_mean_is_twice_the_clip_times_its_share(beyond):
    """The worst a client can do within its proofs: the largest weight the plan allows,
    every value at the clip bound. One level beyond cannot be proven."""
    keyholder, aggregator, honest, bad = _federation("paillier", "inflate")
    start = aggregator.open_round(keyholder.start_round())
    key = keyholder.public_key
    secret, n = keyholder._keys.secret, int(key.n)  # the test's oracle, not the attacker's
    honest_levels, honest_weight = [0] * SIZE, 0
    for c in honest:
        update = c.participate(start).update
        aggregator.add(update)
        vector = key.load_vector(decode(update, EncryptedUpdate).vector)
        data, _ = key.scheme.detach(secret.raw_decrypt(vector.ciphertexts), SIZE)
        *values, weight = data
        signed = [v - n if v > n // 2 else v for v in values]
        honest_levels = [a + b for a, b in zip(honest_levels, signed, strict=True)]
        honest_weight += weight
    quantizer = key.scheme.quantizer
    top, most = quantizer.levels, key.scheme.max_weight
    target = [most * (top + int(beyond))] * SIZE
    vector = paillier_vector(key, None, most, levels=target)
    vector._weight = most
    update = signed_update(bad, start, vector)
    if beyond:
        with pytest.raises(InvalidSignature):
            aggregator.add(update)
        return
    aggregator.add(update)
    result = decode(keyholder.decrypt_aggregate(aggregator.finish_round()), Aggregate)
    honest_mean = quantizer.dequantize(np.array(honest_levels, dtype=object)) / honest_weight
    shift = np.abs(result.mean - honest_mean)
    share = most / (honest_weight + most)
    # Exact to half a grid step: the mean of (honest sum + most · top) over the total.
    bound = 2 * CLIP * share + quantizer.step
    assert np.all(shift <= bound) and np.any(shift > CLIP * share)
