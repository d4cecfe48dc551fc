"""Lim-Lee comb tables: exact powers, and a shape that fits the announced workload."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest

from he_fed.crypto import _comb
from he_fed.crypto import _djn as djn

MODULUS = int(gmpy2.next_prime(2**300)) * int(gmpy2.next_prime(2**301))


@pytest.mark.parametrize("teeth, blocks", [(1, 1), (3, 2), (5, 7), (8, 3), (9, 6)])
@pytest.mark.parametrize("bits", [1, 7, 130, 333])
def test_comb_powers_are_powmod(teeth, blocks, bits):
    table = _comb.CombTable(12345, MODULUS, bits, teeth, blocks)
    rng = np.random.default_rng(teeth * 1000 + blocks * 10 + bits)
    exponents = [0, 1, (1 << bits) - 1, 1 << (bits - 1)]
    exponents += [int.from_bytes(rng.bytes(48), "big") % (1 << bits) for _ in range(4)]
    for e in exponents:
        assert table.pow(e) == gmpy2.powmod(12345, e, MODULUS)


def test_exponents_outside_the_table_are_refused():
    table = _comb.CombTable(3, MODULUS, 16, 4, 2)
    with pytest.raises(ValueError, match="out of the table's range"):
        table.pow(1 << 16)
    with pytest.raises(ValueError, match="out of the table's range"):
        table.pow(-1)


def test_the_shape_for_the_phe_example_costs_a_third_less_than_rows():
    # 2048-bit key: 1,024-bit randomiser exponents modulo a 4,096-bit n^2, 150 uses.
    widest = djn.table_bytes(4096, 1024, djn.table_window(4096, 1024))
    teeth, blocks = _comb.comb_shape(4096, 1024, 150, widest)
    assert (teeth, blocks) == (9, 6)
    assert _comb.comb_cost(1024, teeth, blocks, 150) == 23_838
    window = djn.window_for_uses(4096, 1024, 150)
    assert -(-1024 // window) * ((1 << window) + 150) == 36_594  # the best row table
    assert blocks * (1 << teeth) * 512 == 1_572_864 < djn.table_bytes(4096, 1024, window)


@pytest.mark.parametrize("uses", [0, 12, 150, 10**6])
def test_a_comb_never_takes_more_memory_than_the_unannounced_table(uses):
    widest = djn.table_bytes(4096, 1024, djn.table_window(4096, 1024))
    teeth, blocks = _comb.comb_shape(4096, 1024, uses, widest)
    assert blocks * (1 << teeth) * 512 <= widest == 16 << 20


def test_an_announced_table_is_a_comb_and_an_unannounced_one_rows():
    djn.plan_uses(5, MODULUS, 200, 30)
    planned = djn.fixed_base(5, MODULUS, 200)
    unplanned = djn.fixed_base(7, MODULUS, 200)
    assert isinstance(planned, _comb.CombTable) and isinstance(unplanned, djn.FixedBase)
    e = (1 << 199) + 987654321
    assert planned.pow(e) == gmpy2.powmod(5, e, MODULUS)
    assert unplanned.pow(e) == gmpy2.powmod(7, e, MODULUS)
