"""A verdict on a contribution's proofs is given once per process, and only for the same bytes."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.crypto import _verified
from tests.conftest import keys_for

CONTEXT = b"federation|round 3|train|client a|fingerprint"


@pytest.fixture(autouse=True)
def _fresh():
    _verified.forget()
    yield
    _verified.forget()


@pytest.fixture(params=["paillier-packed", "ckks"])
def key(request):
    return keys_for(request.param).public


def _counted(key, monkeypatch):
    """Count the checks that really run behind ``key.verify_commitment_proof``."""
    calls = []
    inner = type(key)._verify_commitment_proof

    def counting(self, *args):
        calls.append(args)
        return inner(self, *args)

    monkeypatch.setattr(type(key), "_verify_commitment_proof", counting)
    return calls


def _contribution(key):
    vector = key.encrypt(np.linspace(-1, 1, 12), weight=7)
    return vector, vector.commitment(), vector.binding(), vector.prove_commitment(CONTEXT)


def test_the_key_holder_s_check_of_what_the_aggregator_checked_is_not_run_twice(key, monkeypatch):
    calls = _counted(key, monkeypatch)
    vector, commitment, binding, proof = _contribution(key)
    for _ in range(3):  # the aggregator on arrival, the key holder from the receipt, again
        assert key.verify_commitment_proof(commitment, proof, vector.size, CONTEXT, binding=binding)
    assert len(calls) == 1


def test_any_other_byte_is_checked_in_full_and_refused(key, monkeypatch):
    calls = _counted(key, monkeypatch)
    vector, commitment, binding, proof = _contribution(key)
    assert key.verify_commitment_proof(commitment, proof, vector.size, CONTEXT, binding=binding)
    forged = bytearray(proof)
    forged[len(forged) // 2] ^= 1
    assert not key.verify_commitment_proof(
        commitment, bytes(forged), vector.size, CONTEXT, binding=binding
    )
    assert not key.verify_commitment_proof(
        commitment, proof, vector.size, CONTEXT + b"!", binding=binding
    )
    assert not key.verify_commitment_proof(commitment, proof, vector.size, CONTEXT, binding=b"")
    assert len(calls) == 4


def test_a_refusal_is_remembered_as_a_refusal(key, monkeypatch):
    calls = _counted(key, monkeypatch)
    vector, commitment, binding, proof = _contribution(key)
    forged = proof[:-1] + bytes([proof[-1] ^ 1])
    for _ in range(2):
        assert not key.verify_commitment_proof(
            commitment, forged, vector.size, CONTEXT, binding=binding
        )
    assert len(calls) == 1


def test_the_same_bytes_under_another_plan_are_checked_again(key, monkeypatch):
    calls = _counted(key, monkeypatch)
    vector, commitment, binding, proof = _contribution(key)
    assert key.verify_commitment_proof(commitment, proof, vector.size, CONTEXT, binding=binding)
    other = key.with_plan(max_weight=2 * key.scheme.max_weight)
    # The weight's range proof was made for the other bound: checked again, and refused.
    assert not other.verify_commitment_proof(
        commitment, proof, vector.size, CONTEXT, binding=binding
    )
    assert len(calls) == 2


def test_the_oldest_verdicts_are_dropped_past_the_bound(monkeypatch):
    monkeypatch.setattr(_verified, "REMEMBERED", 2)
    runs = []
    for part in (b"a", b"b", b"c", b"a"):
        assert _verified.remembered((part,), lambda p=part: runs.append(p) or True)
    assert runs == [b"a", b"b", b"c", b"a"]  # "a" was dropped when "c" came
    assert _verified.remembered((b"c",), lambda: runs.append(b"c") or True)
    assert runs == [b"a", b"b", b"c", b"a"]
