"""The values' range proof: each value of a contribution within its own weight times the clip."""

from __future__ import annotations

import itertools
import secrets

import numpy as np
import pytest

from he_fed.crypto import _binding, _commitment_proof, _value_check, _value_range, _weight_range
from he_fed.crypto.paillier import PackedPaillier, Paillier
from he_fed.exceptions import ConfigurationError, MalformedMessage
from he_fed.protocol import messages, tasks
from tests.conftest import keys_for

LEVELS = 2**15 - 1


def _layout(size: int, span: int = 2 * LEVELS) -> _value_range.Layout:
    generators = _binding._generators(size + 1)
    return _value_range.Layout(generators[1:], (span,) * size, generators[0])


def _committed(layout, ys, weight):
    rho = secrets.randbits(_binding.RHO_BITS)
    binding = _binding.commit([weight] + [weight * y for y in ys], rho)
    return rho, binding, _weight_range.commit(weight, rho)


@pytest.mark.parametrize("weight", [1, 7, 128])
def test_an_honest_proof_verifies_at_both_ends_of_the_range(weight):
    layout = _layout(4)
    ys = [0, 2 * LEVELS, LEVELS, 12345]
    rho, binding, c = _committed(layout, ys, weight)
    proof = _value_range.prove(layout, ys, weight, rho, binding, c, b"ctx")
    assert len(proof) == _value_range.proof_size(layout)
    assert _value_check.verify(layout, binding, c, proof, b"ctx")
    assert not _value_check.verify(layout, binding, c, proof, b"another context")


def test_sizes_are_two_elements_a_plane_six_more_and_18_bytes_a_bit():
    # 16 bits a value at levels 2^15 - 1 (2 · levels + 1 = 65,535 values): 16 planes.
    assert _value_range.bit_count(_layout(11)) == 176
    assert _value_range.proof_size(_layout(11)) == 14_429
    # Two elements a plane and six more, the challenge, a scalar a plane and five more.
    assert (2 * 16 + 6) * 256 + 16 + 16 * 73 + 73 + 73 + 41 + 77 + 85 == 14_429 - 176 * 18
    assert _value_range.proof_size(_layout(12)) - _value_range.proof_size(_layout(11)) == 16 * 18
    # Per-value Paillier's 64-bit plan: 64 bits a value.
    assert (
        _value_range.bit_count(Paillier(key_bits=1024, allow_insecure=True).value_layout(3)) == 192
    )


def test_a_value_out_of_range_has_no_proof():
    layout = _layout(2)
    ys = [2 * LEVELS + 1, 0]
    rho, binding, c = _committed(layout, ys, 1)
    with pytest.raises(ConfigurationError, match="no range proof"):
        _value_range.prove(layout, ys, 1, rho, binding, c, b"ctx")


@pytest.mark.parametrize("top", [2, 3, -1])
def test_digits_that_are_not_bits_fail(top):
    """The only way to reach a value beyond the range: a digit other than 0 or 1."""
    layout = _layout(2)
    coefs = _weight_range.coefficients(2 * LEVELS + 1)
    digits = [1] * (len(coefs) - 1) + [top]
    y = sum(c * b for c, b in zip(coefs, digits, strict=True))
    ys = [y, 5]
    rho, binding, c = _committed(layout, ys, 1)
    all_digits = [digits, _weight_range._bits(5, coefs)]
    proof = _value_range._prove(layout, ys, all_digits, 1, rho, binding, c, b"ctx")
    assert not _value_check.verify(layout, binding, c, proof, b"ctx")


def test_a_binding_with_another_weight_than_its_weight_commitment_fails():
    layout = _layout(3)
    ys = [1, 2, 3]
    rho = secrets.randbits(_binding.RHO_BITS)
    binding = _binding.commit([5] + [5 * y for y in ys], rho)
    claimed = _weight_range.commit(1, rho)  # the weight proven in range
    proof = _value_range.prove(layout, ys, 1, rho, binding, claimed, b"ctx")
    assert not _value_check.verify(layout, binding, claimed, proof, b"ctx")


def test_values_other_than_the_bindings_fail():
    layout = _layout(3)
    rho, binding, c = _committed(layout, [1, 2, 3], 2)
    proof = _value_range.prove(layout, [1, 2, 4], 2, rho, binding, c, b"ctx")
    assert not _value_check.verify(layout, binding, c, proof, b"ctx")


def test_every_byte_of_a_proof_matters():
    layout = _layout(2)
    rho, binding, c = _committed(layout, [3, 4], 1)
    proof = _value_range.prove(layout, [3, 4], 1, rho, binding, c, b"ctx")
    for at in range(0, len(proof), 97):
        bad = bytearray(proof)
        bad[at] ^= 0x01
        assert not _value_check.verify(layout, binding, c, bytes(bad), b"ctx"), at
    assert not _value_check.verify(layout, binding, c, proof[:-1], b"ctx")


@pytest.mark.parametrize("scheme_cls", [PackedPaillier, Paillier])
def test_a_paillier_contribution_proves_its_values(scheme_cls):
    import numpy as np

    scheme = scheme_cls(key_bits=1024, allow_insecure=True, clip=1.0, max_weight=50)
    keys = scheme.keygen()
    vector = keys.public.encrypt(np.array([1.0, -1.0, 0.0, 0.3]), weight=17)
    integers, rho = vector._opening
    layout = scheme.value_layout(4)
    ys = scheme.value_digits(integers, 17)
    assert all(0 <= y <= 2 * scheme.quantizer.levels for y in ys)
    assert ys[0] == 2 * scheme.quantizer.levels and ys[1] == 0  # +clip and -clip
    binding = vector.binding()
    half = _binding.WIDTH
    proof = _value_range.prove(layout, ys, 17, rho, binding[:half], binding[half:], b"c")
    assert _value_check.verify(layout, binding[:half], binding[half:], proof, b"c")


def _batch(count: int, context: bytes = b"ctx") -> list[_value_check.Claim]:
    layout = _layout(3)
    claims = []
    for k in range(count):
        ys, weight = [k, 2 * LEVELS - k, LEVELS], k + 1
        rho, binding, c = _committed(layout, ys, weight)
        proof = _value_range.prove(layout, ys, weight, rho, binding, c, context + bytes([k]))
        claims.append((layout, binding, c, proof, context + bytes([k])))
    return claims


def test_a_batch_of_honest_proofs_verifies_and_an_empty_one_holds():
    assert _value_check.verify_all(_batch(3))
    assert _value_check.verify_all([])


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("at", [0, 1, 2])
def test_one_bad_proof_fails_its_batch_wherever_it_sits(at, batch, monkeypatch):
    """A proof whose digits are not bits (the check batching weakens, if any) at each
    place, in one product or in products of 2 (the first or the last of them)."""
    if batch is not None:
        monkeypatch.setattr(_value_check, "BATCH", batch)
    claims = _batch(3)
    assert _value_check.verify_all(claims)
    layout = claims[0][0]
    coefs = _weight_range.coefficients(2 * LEVELS + 1)
    digits = [1] * (len(coefs) - 1) + [2]
    y = sum(c * b for c, b in zip(coefs, digits, strict=True))
    ys = [y, 5, 6]
    rho, binding, c = _committed(layout, ys, 1)
    all_digits = [digits, *(_weight_range._bits(v, coefs) for v in ys[1:])]
    proof = _value_range._prove(layout, ys, all_digits, 1, rho, binding, c, b"bad")
    claims[at] = (layout, binding, c, proof, b"bad")
    assert not _value_check.verify_all(claims)
    assert [_value_check.verify(*claim) for claim in claims].count(False) == 1


def _scalar_at(layout, index: int) -> int:
    """Where scalar ``index`` (0 is s_2, 1 is s_Y) of a proof over ``layout`` starts."""
    widths = _value_range._widths(layout)
    planes = max(widths)
    at = (2 * planes + _value_range._ELEMENTS) * _value_range._WIDTH
    at += _value_range._CHALLENGE_BITS // 8 + planes * _value_range._PLANE_SCALAR
    return at + sum(_value_range._SCALARS[:index])


@pytest.mark.parametrize("index", [0, 1])
def test_errors_that_cancel_across_proofs_still_fail(index):
    """Two proofs, each off by ``h`` and ``1/h`` in one equation: were the batch's
    equations multiplied without fresh weights, the errors would cancel."""
    claims = _batch(2)
    layout = claims[0][0]
    at, width = _scalar_at(layout, index), _value_range._SCALARS[index]
    for k, step in ((0, 1), (1, -1)):
        proof = bytearray(claims[k][3])
        s = int.from_bytes(proof[at : at + width], "big", signed=True) + step
        proof[at : at + width] = s.to_bytes(width, "big", signed=True)
        claims[k] = (*claims[k][:3], bytes(proof), claims[k][4])
        assert not _value_check.verify(*claims[k])
    assert not _value_check.verify_all(claims)


@pytest.mark.parametrize("paid", [False, True], ids=["buckets", "tables"])
def test_products_over_the_bit_generators_equal_their_powmods(paid):
    """Tables, once paid for, serve the first generators' exponents of either sign up
    to their width; later generators, wider exponents and powers asked for before a
    table paid take the buckets; all give the same residue."""
    _value_range.drop_tables()
    if paid:
        for v in range(5):
            table = _value_range._table(v)
            assert table.table_for(table.price) is not None
    mod = _binding.P
    count = _value_range._TABLED + 3
    gens = _value_range._bit_generators(count)
    widest = _value_range._TABLE_BITS
    pairs = [
        (v, sign * secrets.randbits(bits))
        for v, sign, bits in [
            (0, 1, 150),
            (1, -1, 430),
            (2, 1, widest),
            (3, -1, widest + 40),
            (4, 1, 0),
            (count - 3, 1, 150),
            (count - 2, -1, 560),
            (count - 1, 1, widest + 1),
        ]
    ]
    expected = 1
    for v, x in pairs:
        power = pow(int(gens[v]), abs(x), mod)
        expected = expected * (power if x >= 0 else pow(power, -1, mod)) % mod
    assert int(_value_range._generator_product(pairs, gens)) == expected
    assert int(_value_range._generator_product([], gens)) == 1


def test_threads_that_extend_the_bit_generators_at_once_leave_each_in_its_place(monkeypatch):
    """Three threads growing the list with a short switch interval appended the same
    index twice and shifted the generators after it (a red team: 25 of 6,000 wrong)."""
    import sys
    import threading

    fresh = list(_value_range._bit_generators(6000))
    monkeypatch.setattr(_value_range, "_BIT_GENERATORS", [])
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [
            threading.Thread(target=_value_range._bit_generators, args=(6000,)) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert fresh == _value_range._BIT_GENERATORS


def _honest_size(scheme, size: int) -> int:
    """A Paillier contribution's proof: its weight's, its values' and its opening's."""
    return (
        _weight_range.linked_size(scheme.max_weight)
        + _value_range.proof_size(scheme.value_layout(size))
        + _commitment_proof.proof_size(0, scheme.randomness_bits, scheme.ciphertexts_for(size))
    )


def test_a_one_ciphertext_magnitude_round_fits_the_message_bound():
    """A 1024-bit packed key's magnitude round (92-bit values; 8 clients of weight up to
    40,000) fits 5 values in one ciphertext. Its 128-byte commitment admitted 70,458
    bytes of proof (4,096 for everything of the values' proof but 33 bytes a bit),
    against an honest 71,318: the values' proof alone takes 585 bytes for each of its
    92 planes. The aggregate that carried it could not be decoded."""
    plan = keys_for("paillier-packed").public.with_plan(max_clients=8, max_weight=40_000)
    key = tasks.plan_for(plan, messages.Task.MAGNITUDE)
    vector = key.encrypt(np.linspace(0.0, 1.0, 5), weight=40_000)
    proof, commitment = vector.prove_commitment(b"ctx"), vector.commitment()
    binding = vector.binding()
    layout = key.scheme.value_layout(5)
    widths = _value_range._widths(layout)
    assert (len(commitment), max(widths), sum(widths)) == (128, 92, 460)
    assert (_value_range.proof_size(layout), len(proof), _honest_size(key.scheme, 5)) == (
        64_001,
        71_318,
        71_318,
    )
    assert messages._proof_bound(commitment) == 28_218 + 96_237 + 4_096 + 256 == 128_807

    def aggregate(proof: bytes) -> bytes:
        receipt = messages.Receipt("c", commitment, bytes(64), proof, binding)
        task = messages.Task.MAGNITUDE
        return messages.encode(messages.EncryptedAggregate(1, task, (receipt,), vector.to_bytes()))

    decoded = messages.decode(aggregate(proof), messages.EncryptedAggregate)
    assert decoded.receipts[0].proof == proof
    update = messages.EncryptedUpdate(
        1, messages.Task.MAGNITUDE, "c", vector.to_bytes(), bytes(64), bytes(64), proof, binding
    )
    assert messages.decode(messages.encode(update), messages.EncryptedUpdate).proof == proof
    # Still a bound: one byte more is refused before anything is read into it.
    with pytest.raises(MalformedMessage, match="field of 128808 bytes exceeds 128807"):
        messages.decode(aggregate(bytes(128_808)), messages.EncryptedAggregate)


class _Key:
    """What :func:`tasks.plan_for` reads of a key: its scheme (no key generation)."""

    def __init__(self, scheme) -> None:
        self.scheme = scheme

    def with_plan(self, **changes) -> _Key:
        return _Key(self.scheme.with_plan(**changes))


@pytest.mark.parametrize("key_bits", [1024, 2048])
def test_no_paillier_plan_outgrows_the_message_bound(key_bits):
    """Every task's plan, at 16 and 128 bits of precision, from 2 clients of weight 1 to
    1,024 of weight up to 2^64 - 1: the whole honest proof of up to 130 packed values
    (31 per-value ones) fits the bound of its commitment. At 2048 bits (one
    ciphertext: a bound of 104,506 bytes) and the default precision and clients, a
    weight bound of 2^64 - 1 put the moments of 4 columns (8 values) 6,139 bytes over
    it; at 128 bits of precision, a weight bound of 2 put a three-class evaluation
    round (11 values) 72 bytes over it."""
    worst = 0.0
    plans = itertools.product((16, 128), ((2, 1), (8, 40_000), (1024, 2**64 - 1)))
    for (precision, (clients, weight)), scheme_cls in itertools.product(
        plans, (PackedPaillier, Paillier)
    ):
        base = scheme_cls(
            key_bits=key_bits,
            allow_insecure=True,
            precision_bits=precision,
            max_clients=clients,
            max_weight=weight,
        )
        most = 130 if scheme_cls is PackedPaillier else 31
        for task in messages.Task:
            scheme = tasks.plan_for(_Key(base), task).scheme
            # With its ciphertexts, a bound stays and a proof grows: check each count's
            # most values (one more spills into another ciphertext).
            counts = [scheme.ciphertexts_for(n) for n in range(1, most + 2)]
            fullest = [n for n in range(1, most + 1) if counts[n] != counts[n - 1]]
            for size in (*fullest, most):
                bound = messages._proof_bound(bytes(scheme.ciphertexts_for(size) * key_bits // 8))
                honest = _honest_size(scheme, size)
                assert honest <= bound, (scheme, task, size)
                worst = max(worst, honest / bound)
    assert 0.85 < worst <= 1  # the bound is not slack everywhere either
    packed = PackedPaillier(key_bits=2048, max_weight=2**64 - 1)
    moments = tasks.plan_for(_Key(packed), messages.Task.MOMENTS).scheme
    assert (moments.ciphertexts_for(8), _honest_size(moments, 8)) == (1, 110_645)
    evaluation = PackedPaillier(key_bits=2048, precision_bits=128, max_weight=2)
    evaluation = tasks.plan_for(_Key(evaluation), messages.Task.EVALUATE).scheme
    assert (evaluation.ciphertexts_for(11), _honest_size(evaluation, 11)) == (1, 104_578)
    assert messages._proof_bound(bytes(256)) == 148_519  # was 104,506


def test_128_bit_values_reach_the_largest_size_and_wider_ones_have_no_proof():
    """:func:`_value_range.largest_size` is attained (eight 128-bit values, 1,024 bits),
    and a value wider than :data:`_value_range.MAX_VALUE_BITS` is refused by the prover,
    whose proof the messages would refuse."""
    paillier = Paillier(key_bits=1024, allow_insecure=True, precision_bits=128)
    widest = paillier.value_layout(8)
    assert set(_value_range._widths(widest)) == {_value_range.MAX_VALUE_BITS} == {128}
    assert _value_range.proof_size(widest) == _value_range.largest_size(1024) == 96_237
    assert _value_range.largest_size(1024) == 128 * 585 + 1_901 + 1024 * 19
    layout = _layout(1, span=2**128)  # 129 bits
    rho, binding, c = _committed(layout, [0], 1)
    with pytest.raises(ConfigurationError, match="wider than 128 bits"):
        _value_range.prove(layout, [0], 1, rho, binding, c, b"ctx")
