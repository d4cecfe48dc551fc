"""t-of-n threshold Paillier: the dealer, partial decryptions, proofs, combination, formats."""

from __future__ import annotations

import itertools
from functools import cache

import gmpy2
import numpy as np
import pytest
from phe import paillier as phe

from he_fed.crypto import CKKS, PackedPaillier, Paillier, load_public, wire
from he_fed.crypto._paillier_keys import PaillierSecretKey, PaillierVector
from he_fed.crypto._safe_primes import is_safe_prime, safe_prime
from he_fed.crypto._threshold_keys import _combine
from he_fed.crypto.threshold import (
    PartialDecryption,
    ThresholdKeys,
    deal,
    lagrange_at_zero,
    load_partial,
    load_share,
    load_verification,
    parse_threshold,
)
from he_fed.exceptions import (
    AggregateRejected,
    ConfigurationError,
    HEFedError,
    InvalidPartialDecryption,
    InvalidPassphrase,
    KeyMismatchError,
    MalformedMessage,
)
from tests.crypto.threshold_fixtures import (
    TEST_ONLY_PRIMES_512,
    TEST_ONLY_PRIMES_2048,
)

PLAN = {"clip": 2.0, "max_clients": 8, "max_weight": 16}
SCHEMES = {
    "paillier": Paillier(key_bits=512, allow_insecure=True, **PLAN),
    "paillier-packed": PackedPaillier(key_bits=512, allow_insecure=True, **PLAN),
}
XS = [np.array([2.0, -2.0, 0.3, -0.7, 0.0]), np.array([-1.5, 2.0, 0.0, 1e-9, 1.25])]
WEIGHTS = [3, 16]
CONTEXT = b"federation/round-7"


@cache
def _keys(name: str) -> ThresholdKeys:
    return deal(SCHEMES[name], threshold=3, holders=5, primes=TEST_ONLY_PRIMES_512)


_BINDINGS: dict[int, bytes] = {}


def _aggregate(keys: ThresholdKeys) -> PaillierVector:
    """Two clients' contributions summed; their binding commitments' product is kept aside."""
    vectors = [keys.public.encrypt(x, weight=w) for x, w in zip(XS, WEIGHTS, strict=True)]
    total = vectors[0] + vectors[1]
    _BINDINGS[id(total)] = keys.public.sum_bindings([v.binding() for v in vectors])
    return total


def _binding(keys: ThresholdKeys, total: PaillierVector) -> bytes:
    return _BINDINGS[id(total)]


def _partials(keys: ThresholdKeys, total: PaillierVector, context: bytes = CONTEXT):
    return [share.partial_decrypt(total, context) for share in keys.shares]


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_any_three_of_five_decrypt_exactly_what_the_single_key_decrypts(name):
    keys = _keys(name)
    total = _aggregate(keys)
    partials = _partials(keys, total)
    # Test-only path: the fixture primes give the single key of the same modulus.
    single = PaillierSecretKey(keys.public, *TEST_ONLY_PRIMES_512)
    expected = single.decrypt_weighted(total, binding=_binding(keys, total))
    for subset in itertools.combinations(range(5), 3):
        got = keys.verification.combine(
            total, [partials[i] for i in subset], CONTEXT, binding=_binding(keys, total)
        )
        assert got.used == tuple(i + 1 for i in subset)
        assert got.refused == ()
        assert got.result.weight == 19 and got.result.count == 2
        assert got.result.units.tolist() == expected.units.tolist()
        assert got.result.step == expected.step


def test_ciphertexts_stay_standard_paillier_that_phe_decrypts():
    keys = _keys("paillier")
    total = _aggregate(keys)
    p, q = TEST_ONLY_PRIMES_512
    n = int(keys.public.n)
    phe_public = phe.PaillierPublicKey(n)
    phe_private = phe.PaillierPrivateKey(phe_public, p, q)
    by_phe = [phe_private.raw_decrypt(int(c)) for c in total.ciphertexts]
    vk = keys.verification
    combined = _combine(vk, total, _partials(keys, total)[1:4])
    assert combined == by_phe
    # The public key is an ordinary DJN key: it passes every structural check.
    assert load_public(keys.public.to_bytes(), allow_insecure=True) == keys.public


def test_two_of_three_needed_shares_decrypt_nothing():
    keys = _keys("paillier-packed")
    total = _aggregate(keys)
    partials = _partials(keys, total)
    vk = keys.verification
    with pytest.raises(InvalidPartialDecryption, match="2 valid partial decryption"):
        vk.combine(total, partials[:2], CONTEXT)
    # The attack itself: interpolate through any two shares as if they were enough.
    p, q = TEST_ONLY_PRIMES_512
    truth = PaillierSecretKey(keys.public, p, q).raw_decrypt(total.ciphertexts)
    n, nsquare = keys.public.n, keys.public.nsquare
    for pair in itertools.combinations(partials, 2):
        assert _combine(vk, total, list(pair)) != truth
        # and with the two-point coefficients, as a degree-1 polynomial would need
        lams = lagrange_at_zero([x.index for x in pair], vk.delta)
        guess = []
        for j in range(len(total.ciphertexts)):
            acc = gmpy2.mpz(1)
            for part, lam in zip(pair, lams, strict=True):
                c = part.values[j] if lam >= 0 else gmpy2.invert(part.values[j], nsquare)
                acc = acc * gmpy2.powmod(c, 2 * abs(lam), nsquare) % nsquare
            guess.append(int((acc - 1) // n * gmpy2.invert(4 * vk.delta**2, n) % n))
        assert all(g != t for g, t in zip(guess, truth, strict=True))


def test_a_tampered_partial_is_refused_with_its_holder_named_and_three_others_decrypt():
    keys = _keys("paillier-packed")
    total = _aggregate(keys)
    partials = _partials(keys, total)
    nsquare = int(keys.public.nsquare)
    bad_value = PartialDecryption(
        2, (partials[1].values[0] * 5 % nsquare, *partials[1].values[1:]), partials[1].proofs
    )
    proof = bytearray(partials[3].proofs[0])
    proof[-1] ^= 1
    bad_proof = PartialDecryption(4, partials[3].values, (bytes(proof), *partials[3].proofs[1:]))
    stale = keys.shares[4].partial_decrypt(total, b"federation/round-6")  # another round's
    answers = [partials[0], bad_value, partials[2], bad_proof, stale]
    with pytest.raises(InvalidPartialDecryption) as info:
        keys.verification.combine(total, answers, CONTEXT)
    assert info.value.holders == (2, 4, 5)
    answers = [partials[0], bad_value, partials[2], bad_proof, partials[4]]
    got = keys.verification.combine(total, answers, CONTEXT, binding=_binding(keys, total))
    assert (got.used, got.refused) == ((1, 3, 5), (2, 4))
    assert got.result.weight == 19


def test_a_holder_cannot_answer_twice_or_under_another_number():
    keys = _keys("paillier-packed")
    total = _aggregate(keys)
    partials = _partials(keys, total)
    impostor = PartialDecryption(3, partials[0].values, partials[0].proofs)  # holder 1's, as 3
    got = keys.verification.combine(
        total, [partials[0], partials[0], impostor, *partials[3:]], CONTEXT
    )
    assert (got.used, got.refused) == ((1, 4, 5), (1, 3))


def test_an_offset_on_the_aggregate_fails_the_binding_check_after_combination():
    keys = _keys("paillier-packed")
    total = _aggregate(keys)
    n, nsquare = keys.public.n, keys.public.nsquare
    forged = PaillierVector(keys.public, list(total.ciphertexts), total.size, total.count)
    forged.ciphertexts[0] = forged.ciphertexts[0] * (1 + 5 * n) % nsquare
    partials = _partials(keys, forged)
    with pytest.raises(AggregateRejected):
        keys.verification.combine(forged, partials, CONTEXT, binding=_binding(keys, total))


def test_shares_verification_keys_and_partials_round_trip_as_bytes():
    keys = _keys("paillier-packed")
    total = _aggregate(keys)
    vk = keys.verification
    assert load_verification(vk.to_bytes(), keys.public).fingerprint == vk.fingerprint
    share = keys.shares[1]
    data = share.to_bytes(passphrase="correct horse")
    assert wire.open_envelope(data).kind is wire.Kind.KEY_SHARE
    assert int(share.value).to_bytes(keys.public._width, "big") not in data
    loaded = load_share(data, passphrase="correct horse", allow_insecure=True)
    assert (loaded.index, loaded.value) == (share.index, share.value)
    assert loaded.verification.fingerprint == vk.fingerprint
    with pytest.raises(InvalidPassphrase):
        load_share(data, passphrase="wrong", allow_insecure=True)
    partial = share.partial_decrypt(total, CONTEXT)
    back = load_partial(partial.to_bytes(vk), vk)
    assert (back.index, back.values, back.proofs) == (partial.index, partial.values, partial.proofs)
    other = deal(SCHEMES["paillier-packed"], threshold=2, holders=3, primes=TEST_ONLY_PRIMES_512)
    with pytest.raises(MalformedMessage, match="another key"):
        load_partial(partial.to_bytes(vk), other.verification)
    with pytest.raises(KeyMismatchError):
        other.verification.combine(total, [partial], CONTEXT)


def test_a_share_that_does_not_match_its_verification_key_is_refused_on_loading():
    keys = _keys("paillier")
    share = keys.shares[0]
    data = share.to_bytes()
    envelope = wire.open_envelope(data)
    old = int(share.value).to_bytes(keys.public._width, "big")
    new = int(share.value + 1).to_bytes(keys.public._width, "big")
    body = envelope.body.replace(old, new)
    forged = wire.seal_envelope(
        envelope.kind,
        body,
        scheme=envelope.scheme,
        params=envelope.params,
        fingerprint=envelope.fingerprint,
    )
    with pytest.raises(MalformedMessage, match="does not match its verification key"):
        load_share(forged, allow_insecure=True)


def test_the_dealer_refuses_what_it_cannot_share():
    with pytest.raises(ConfigurationError, match="Paillier scheme"):
        deal(CKKS(), threshold=3, holders=5)
    with pytest.raises(ConfigurationError, match="safe primes"):
        deal(SCHEMES["paillier"], threshold=3, holders=5, primes=(23, 13))
    with pytest.raises(ConfigurationError, match="threshold"):
        deal(SCHEMES["paillier"], threshold=6, holders=5, primes=TEST_ONLY_PRIMES_512)
    assert parse_threshold("3/5") == (3, 5)
    for text in ("3", "5/3", "1/5", "a/b", "3/65"):
        with pytest.raises(ConfigurationError):
            parse_threshold(text)


def test_the_dealer_draws_safe_primes_and_reports_progress():
    seen: list[tuple[str, int]] = []
    keys = deal(
        SCHEMES["paillier-packed"],
        threshold=2,
        holders=3,
        progress=lambda prime, tested: seen.append((prime, tested)),
    )
    assert [prime for prime, _ in seen][-1] == "q" and seen[0][0] == "p"
    assert keys.public.n.bit_length() == 512
    total = _aggregate(keys)
    got = keys.verification.combine(total, _partials(keys, total)[1:], CONTEXT)
    assert got.result.weight == 19
    assert all(is_safe_prime(safe_prime(b)) for b in (16, 64, 128))


@pytest.mark.slow
def test_full_strength_three_of_five_with_test_only_primes():
    scheme = PackedPaillier(clip=2.0, max_clients=8, max_weight=16)
    keys = deal(scheme, threshold=3, holders=5, primes=TEST_ONLY_PRIMES_2048)
    assert keys.public.n.bit_length() == 2048
    total = _aggregate(keys)
    partials = [keys.shares[i].partial_decrypt(total, CONTEXT) for i in (0, 2, 4)]
    got = keys.verification.combine(total, partials, CONTEXT, binding=_binding(keys, total))
    single = PaillierSecretKey(keys.public, *TEST_ONLY_PRIMES_2048)
    expected = single.decrypt_weighted(total, binding=_binding(keys, total))
    assert got.result.units.tolist() == expected.units.tolist()
    assert got.used == (1, 3, 5)


@pytest.mark.slow
def test_the_real_generator_makes_a_1024_bit_threshold_key():
    scheme = PackedPaillier(key_bits=1024, allow_insecure=True, **PLAN)
    keys = deal(scheme, threshold=2, holders=3)
    total = _aggregate(keys)
    got = keys.verification.combine(total, _partials(keys, total), CONTEXT)
    assert (got.used, got.result.weight) == ((1, 2), 19)


def test_mangled_threshold_bytes_raise_only_he_fed_errors():
    keys = _keys("paillier-packed")
    total = _aggregate(keys)
    vk = keys.verification
    blobs = {
        "verification": (vk.to_bytes(), lambda b: load_verification(b, keys.public)),
        "share": (keys.shares[0].to_bytes(), lambda b: load_share(b, allow_insecure=True)),
        "partial": (
            keys.shares[0].partial_decrypt(total, CONTEXT).to_bytes(vk),
            lambda b: load_partial(b, vk),
        ),
    }
    rng = np.random.default_rng(0)
    for data, load in blobs.values():
        envelope = wire.open_envelope(data)
        body = envelope.body
        mangled = [data[:cut] for cut in (0, 10, len(data) // 2, len(data) - 1)]
        for _ in range(40):  # bodies changed in place or cut short, re-sealed
            edited = bytearray(body)
            at = int(rng.integers(len(edited)))
            edited[at] = int(rng.integers(256))
            for candidate in (bytes(edited), body[: int(rng.integers(len(body)))]):
                mangled.append(
                    wire.seal_envelope(
                        envelope.kind,
                        candidate,
                        scheme=envelope.scheme,
                        params=envelope.params,
                        fingerprint=envelope.fingerprint,
                    )
                )
        refused = 0
        for candidate in mangled:
            try:
                load(candidate)
            except HEFedError:  # anything else fails the test
                refused += 1
        assert refused >= 4 + 40  # every truncation, and every re-sealed short body
