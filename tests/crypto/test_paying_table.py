"""Fixed-base tables that are built only once the powers asked of them paid for them."""

from __future__ import annotations

import secrets

import gmpy2
import pytest

from he_fed.crypto import _binding, _value_check, _value_range, _weight_range
from he_fed.crypto import _djn as djn
from he_fed.exceptions import ConfigurationError

MODULUS = int(gmpy2.next_prime(2**255))


@pytest.fixture
def built(monkeypatch):
    """The moduli of the FixedBase tables built while the test runs."""
    moduli: list[int] = []
    original = djn.FixedBase.__init__

    def spy(self, base, modulus, *args, **kwargs):
        moduli.append(int(modulus))
        original(self, base, modulus, *args, **kwargs)

    monkeypatch.setattr(djn.FixedBase, "__init__", spy)
    return moduli


def test_powers_are_powmods_until_their_bits_reach_the_price_then_the_tables(built):
    table = djn.PayingTable(5, MODULUS, 64, 4)
    assert table.price == 16 * 15  # 16 rows of 15 powers besides 1
    exponents = [secrets.randbits(59) | 1 << 59 for _ in range(6)]  # 60 bits each
    for k, e in enumerate(exponents, start=1):
        assert int(table.pow(e)) == pow(5, e, MODULUS)
        assert len(built) == (k >= 4)  # 4 × 60 bits = 240: bought at the fourth
    assert table.pow(0) == 1 and int(table.pow(2**64 - 1)) == pow(5, 2**64 - 1, MODULUS)
    assert len(built) == 1


def test_table_for_answers_none_until_paid_then_always_the_one_table(built):
    table = djn.PayingTable(3, MODULUS, 64, 4)
    assert [table.table_for(100) for _ in range(2)] == [None, None]
    bought = table.table_for(40)
    assert isinstance(bought, djn.FixedBase) and table.table_for(1) is bought
    assert built == [MODULUS]
    assert int(bought.pow(12345)) == pow(3, 12345, MODULUS)


@pytest.mark.parametrize("paid", [False, True], ids=["before", "after"])
def test_exponents_outside_the_range_are_refused_before_and_after_the_table(paid):
    table = djn.PayingTable(3, MODULUS, 64, 4)
    if paid:
        table.table_for(table.price)
    for exponent in (-1, 2**64):
        with pytest.raises(ValueError, match="out of the table's range"):
            table.pow(exponent)


def test_a_paying_table_is_sealed_and_checks_its_shape():
    table = djn.PayingTable(3, MODULUS, 64, 4)
    for name in ("base", "modulus", "window", "exponent_bits", "price", "_built"):
        with pytest.raises(AttributeError, match="shared and cannot be changed"):
            setattr(table, name, 0)
    for bits, window in [(0, 4), (64, 0)]:
        with pytest.raises(ConfigurationError):
            djn.PayingTable(3, MODULUS, bits, window)


def test_exponents_longer_than_the_modulus_are_served_by_both_tables():
    """A 512-bit key's proof nonces are about 660 bits: both tables serve them."""
    exponents = [2**600 - 1, 2**599 + 12345, 3**370]
    paying = djn.PayingTable(3, MODULUS, 600, 4)
    for _ in range(2):  # by powmod, then (once paid) by the table
        for _ in range(12):
            assert [int(paying.pow(e)) for e in exponents] == [
                pow(3, e, MODULUS) for e in exponents
            ]
    assert paying.table_for(600) is not None
    rows = djn.FixedBase(3, MODULUS, 600)
    assert [int(rows.pow(e)) for e in exponents] == [pow(3, e, MODULUS) for e in exponents]


def _proof(layout, ys):
    rho = secrets.randbits(_binding.RHO_BITS)
    binding = _binding.commit([1] + ys, rho)
    weight = _weight_range.commit(1, rho)
    return binding, weight, _value_range.prove(layout, ys, 1, rho, binding, weight, b"ctx")


def test_one_proof_builds_no_table_and_a_long_run_builds_them(built):
    """A command that proves one update built 68 tables before (0.5 s of its 0.57):
    none of the commitments' group now, while a run of proofs still gets them."""
    _value_range.drop_tables()
    generators = _binding._generators(32)
    layout = _value_range.Layout(generators[1:], (2 * (2**15 - 1),) * 31, generators[0])
    ys = [secrets.randbelow(2**16 - 1) for _ in range(31)]  # breast cancer's 31, packed
    binding, weight, proof = _proof(layout, ys)
    assert _value_check.verify(layout, binding, weight, proof, b"ctx")
    assert _binding.P not in built
    for _ in range(20):
        binding, weight, proof = _proof(layout, ys)
        assert _value_check.verify(layout, binding, weight, proof, b"ctx")
    assert built.count(_binding.P) >= _value_range._TABLED  # the bit generators' at least
