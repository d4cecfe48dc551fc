"""A contribution's weight commitment and its proof that the weight lies in [1, max_weight]."""

from __future__ import annotations

import itertools
import secrets

import gmpy2
import pytest

from he_fed.crypto import _binding, _weight_range
from he_fed.exceptions import ConfigurationError
from he_fed.protocol.messages import MAX_RANGE_PROOF

LARGEST = 2**64 - 1
CONTEXT = b"federation|round|task|client|key|digests"


def _proof(weight: int, max_weight: int) -> tuple[bytes, bytes]:
    rho = secrets.randbits(_binding.RHO_BITS)
    return _weight_range.commit(weight, rho), _weight_range.prove(weight, rho, max_weight, CONTEXT)


@pytest.mark.parametrize("max_weight", [*range(1, 41), 128, 1000, 4097])
def test_the_coefficients_sum_to_exactly_every_weight_below_the_bound(max_weight):
    coefs = _weight_range.coefficients(max_weight)
    assert len(coefs) == (max_weight - 1).bit_length()
    choices = itertools.product((0, 1), repeat=len(coefs))
    sums = {sum(c for c, b in zip(coefs, bits, strict=True) if b) for bits in choices}
    assert sums == set(range(max_weight))


@pytest.mark.parametrize("max_weight", [1, 2, 3, 5, 128, 1000, LARGEST])
def test_every_weight_in_range_proves_and_verifies(max_weight):
    edges = {1, 2, max_weight // 2 + 1, max_weight - 1, max_weight}
    for weight in sorted(w for w in edges if 1 <= w <= max_weight):
        commitment, proof = _proof(weight, max_weight)
        assert len(proof) == _weight_range.proof_size(max_weight)
        assert _weight_range.verify(commitment, proof, max_weight, CONTEXT)


def test_proof_sizes_in_bytes():
    sizes = {m: _weight_range.proof_size(m) for m in (1, 2, 128, 256, 1024, LARGEST)}
    assert sizes == {1: 89, 2: 507, 128: 3030, 256: 3450, 1024: 4290, LARGEST: 27873}
    linked = {m: _weight_range.linked_size(m) for m in (1, 128, LARGEST)}
    assert linked == {1: 434, 128: 3375, LARGEST: 28218}  # pin, its proof, a 89-byte link
    assert linked[LARGEST] == MAX_RANGE_PROOF  # what a message allows before the scheme's


@pytest.mark.parametrize("weight", [0, -1, 129, 2**70])
def test_no_proof_is_made_for_a_weight_outside_the_plan(weight):
    with pytest.raises(ConfigurationError, match="no range proof"):
        _weight_range.prove(weight, 5, 128, CONTEXT)


def test_a_proof_holds_for_its_own_commitment_context_and_plan_only():
    commitment, proof = _proof(7, 128)
    other, _ = _proof(7, 128)  # same weight, another blinding
    assert not _weight_range.verify(other, proof, 128, CONTEXT)
    assert not _weight_range.verify(commitment, proof, 128, CONTEXT + b"!")
    assert not _weight_range.verify(commitment, proof, 127, CONTEXT)  # another size
    assert not _weight_range.verify(commitment, proof[:-1], 128, CONTEXT)
    shifted = gmpy2.mpz(int.from_bytes(commitment, "big")) * _weight_range._g() % _binding.P
    assert not _weight_range.verify(int(shifted).to_bytes(256, "big"), proof, 128, CONTEXT)


def test_every_flipped_byte_of_a_proof_is_refused():
    commitment, proof = _proof(100, 128)
    rng = secrets.SystemRandom()
    for at in sorted(rng.sample(range(len(proof)), 40)) + [0, len(proof) - 1]:
        forged = bytearray(proof)
        forged[at] ^= 1 << rng.randrange(8)
        assert not _weight_range.verify(commitment, bytes(forged), 128, CONTEXT)


def test_a_commitment_outside_the_subgroup_is_refused():
    commitment, proof = _proof(3, 128)
    outside = (_binding.P - int.from_bytes(commitment, "big")).to_bytes(256, "big")  # -C
    assert not _weight_range.verify(outside, proof, 128, CONTEXT)
    assert not _weight_range.verify((1).to_bytes(256, "big"), proof, 128, CONTEXT)


def test_bits_that_do_not_compose_the_commitment_are_refused(monkeypatch):
    """A prover whose bit commitments add up to another weight than ``C`` holds."""
    honest_bits = _weight_range._bits
    monkeypatch.setattr(_weight_range, "_bits", lambda u, coefs: honest_bits(u - 1, coefs))
    commitment, proof = _proof(100, 128)  # C holds 100, the bits 99
    assert not _weight_range.verify(commitment, proof, 128, CONTEXT)
    monkeypatch.setattr(_weight_range, "_bits", honest_bits)
    commitment, proof = _proof(100, 128)
    assert _weight_range.verify(commitment, proof, 128, CONTEXT)


def test_the_products_of_weight_commitments_open_with_the_total_weight_and_blinding():
    weights = [30, 1, 128, 77]
    rhos = [secrets.randbits(_binding.RHO_BITS) for _ in weights]
    parts = [_weight_range.commit(w, r) for w, r in zip(weights, rhos, strict=True)]
    total = _binding.product(parts)
    assert total is not None
    assert _weight_range.check(sum(weights), sum(rhos), total)
    assert not _weight_range.check(sum(weights) + 1, sum(rhos), total)
    assert not _weight_range.check(sum(weights), sum(rhos) + 1, total)


FINGERPRINT = b"key-fingerprint!"


def _linked(pins, weight: int, max_weight: int = 128, context: bytes = CONTEXT):
    rho = secrets.randbits(_binding.RHO_BITS)
    proof = _weight_range.prove_linked(pins, weight, rho, max_weight, FINGERPRINT, context)
    return _weight_range.commit(weight, rho), proof


def test_a_pin_is_range_proven_once_and_linked_to_each_contribution():
    pins: dict = {}
    first, first_proof = _linked(pins, 30)
    second, second_proof = _linked(pins, 30)
    assert len(pins) == 1 and first != second  # one pin (3,286 bytes); fresh blindings
    assert first_proof[:3286] == second_proof[:3286] != _linked({}, 30)[1][:3286]
    for current, proof in ((first, first_proof), (second, second_proof)):
        assert _weight_range.verify_linked(current, proof, 128, FINGERPRINT, CONTEXT)
    _linked(pins, 31)  # another weight (the evaluation rows): another pin
    assert len(pins) == 2


def test_a_link_holds_for_its_own_contribution_context_and_key_only():
    pins: dict = {}
    current, proof = _linked(pins, 30)
    other, _ = _linked(pins, 30)
    assert not _weight_range.verify_linked(other, proof, 128, FINGERPRINT, CONTEXT)
    assert not _weight_range.verify_linked(current, proof, 128, FINGERPRINT, CONTEXT + b"!")
    assert not _weight_range.verify_linked(current, proof, 128, b"another key", CONTEXT)
    assert not _weight_range.verify_linked(current, proof, 256, FINGERPRINT, CONTEXT)


def test_a_pinned_weight_cannot_link_a_contribution_of_another_weight():
    """The colluder pins an honest weight and links a contribution of a forbidden one."""
    pins: dict = {}
    _linked(pins, 1)  # the pin holds 1
    rho = secrets.randbits(_binding.RHO_BITS)
    pin = next(iter(pins.values()))
    forbidden = _weight_range.commit(300, rho)
    # The honest link algorithm, with the pin's blinding, for C of another weight:
    proof = _weight_range.prove_linked(pins, 1, rho, 128, FINGERPRINT, CONTEXT)
    assert not _weight_range.verify_linked(forbidden, proof, 128, FINGERPRINT, CONTEXT)
    assert _weight_range.verify_linked(
        _weight_range.commit(1, rho), proof, 128, FINGERPRINT, CONTEXT
    )
    assert pin.sigma != rho


class _Posing(bytes):
    """Bytes that hash and compare as ``pose`` while their buffer holds other bytes."""

    _pose: bytes

    def __new__(cls, buffer: bytes, pose: bytes) -> _Posing:
        made = super().__new__(cls, buffer)
        made._pose = pose
        return made

    def __hash__(self) -> int:
        return hash(self._pose)

    def __eq__(self, other: object) -> bool:
        return other == self._pose


class _PosingItself(_Posing):
    """As :class:`_Posing`, and ``bytes()`` of it is itself (red team 14)."""

    def __bytes__(self) -> bytes:
        return self


class _Sliced(bytes):
    """Bytes whose chosen slices, by (start, stop), are given objects."""

    _parts: dict[tuple[int | None, int | None], bytes]

    def __new__(cls, buffer: bytes, parts: dict) -> _Sliced:
        made = super().__new__(cls, buffer)
        made._parts = parts
        return made

    def __getitem__(self, item):  # type: ignore[override]
        if isinstance(item, slice) and (item.start, item.stop) in self._parts:
            return self._parts[item.start, item.stop]
        return bytes(self)[item]


@pytest.mark.parametrize("posing", [_Posing, _PosingItself])
def test_a_pin_verdict_cannot_be_planted_through_the_public_verifier(posing, monkeypatch):
    """Red team 13's planting, against the pins' remembered verdicts.

    A verifier remembers which pins held, since every contribution carries its
    client's pin. Anyone in the process can call the public verifier: here with a
    proof whose pin is genuine in its buffer but hashes and compares as a *rogue* pin,
    a commitment to weight 0 with another proof's bytes. Were the verdict
    remembered under what the pin poses as, a contribution of weight 0 linked to
    that rogue pin would then pass; the verifier remembers only the exact bytes it
    checked.
    """
    from he_fed.crypto import PackedPaillier

    keys = PackedPaillier(key_bits=1024, allow_insecure=True, max_weight=128).keygen()
    public, size, WIDTH = keys.public, 3, _weight_range.WIDTH
    vector = public.encrypt([0.1, 0.2, 0.3], weight=3)
    pins: dict = {}
    proof = vector.prove_commitment(CONTEXT, pins)
    linked = _weight_range.linked_size(128)
    pin_size = _weight_range.proof_size(128)
    genuine_pin, genuine_proof = proof[:WIDTH], proof[WIDTH : WIDTH + pin_size]
    sigma = secrets.randbits(_binding.RHO_BITS)
    rogue_pin = _weight_range.commit(0, sigma)  # weight 0: outside [1, 128]
    rogue_proof = bytes(reversed(genuine_proof))  # any bytes: no proof exists
    inner = _Sliced(
        proof[:linked],
        {
            (None, WIDTH): posing(genuine_pin, rogue_pin),
            (WIDTH, WIDTH + pin_size): posing(genuine_proof, rogue_proof),
        },
    )
    outer = _Sliced(proof, {(None, linked): inner})
    public.verify_commitment_proof(
        vector.commitment(), outer, size, CONTEXT, binding=vector.binding()
    )
    rho = secrets.randbits(_binding.RHO_BITS)
    forged = {(0, 128, public.fingerprint): _weight_range._Pin(sigma, rogue_pin, rogue_proof)}
    rogue = _weight_range.prove_linked(forged, 0, rho, 128, public.fingerprint, CONTEXT)
    current = _weight_range.commit(0, rho)
    assert not _weight_range.verify_linked(current, rogue, 128, public.fingerprint, CONTEXT)
    # What only the pin's verdict stops: with the pin taken on trust, the link holds.
    monkeypatch.setattr(_weight_range, "_pin_holds", lambda *_: True)
    assert _weight_range.verify_linked(current, rogue, 128, public.fingerprint, CONTEXT)


def test_a_10000_client_round_checks_each_pin_once_per_process(monkeypatch):
    """The aggregator and then the key holder check every pin of a round, in the same
    order. A remembered-pins cache smaller than the federation forgot each one before
    its second check (4,096 entries: every one of 20,000 checks ran in full)."""
    checked = []

    def counting(commitment, proof, max_weight, context):
        checked.append(commitment)
        return True

    monkeypatch.setattr(_weight_range, "verify", counting)
    pins = [(i.to_bytes(_binding.WIDTH, "big"), b"proof", 32, b"key") for i in range(10_000)]
    _weight_range._pin_holds.cache_clear()
    try:
        for _ in ("aggregator", "key holder"):
            assert all(_weight_range._pin_holds(*pin) for pin in pins)
    finally:
        _weight_range._pin_holds.cache_clear()  # no stubbed verdict outlives the test
    assert len(checked) == len(set(checked)) == 10_000
