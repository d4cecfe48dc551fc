"""Pedersen commitments that bind a Paillier contribution's slots."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest

from he_fed.crypto import _binding
from he_fed.exceptions import AggregateRejected, ConfigurationError
from tests.conftest import keys_for


def test_the_group_is_rfc_7919_ffdhe2048_a_safe_prime():
    assert _binding.P.bit_length() == 2048
    assert gmpy2.is_prime(_binding.P) and gmpy2.is_prime(_binding.Q)
    assert _binding.P == 2 * _binding.Q + 1
    assert hex(_binding.P).endswith("886b423861285c97ffffffffffffffff")


def test_commitments_multiply_as_their_integers_add():
    a, b = [3, -7, 0, 2**40], [5, 7, 1, 1]
    ca, cb = _binding.commit(a, 11), _binding.commit(b, 13)
    total = _binding.product([ca, cb])
    assert _binding.check([8, 0, 1, 2**40 + 1], 24, total)
    assert not _binding.check([8, 0, 1, 2**40 + 2], 24, total)
    assert not _binding.check([8, 0, 1, 2**40 + 1], 25, total)
    # Hiding: the same integers under other blindings give other commitments.
    assert _binding.commit(a, 12) != ca


def _commit_by_powmod(integers, rho):
    acc = gmpy2.powmod(_binding._h(), rho, _binding.P)
    for g, v in zip(_binding._generators(len(integers)), integers, strict=True):
        acc = acc * gmpy2.powmod(g, v, _binding.P) % _binding.P
    return int(acc).to_bytes(_binding.WIDTH, "big")


@pytest.mark.parametrize("size", [1, 2, 12, 300])
@pytest.mark.parametrize("bits", [1, 25, 130])
def test_bucketed_commitments_are_the_products_of_powers(size, bits):
    rng = np.random.default_rng(size * 1000 + bits)
    integers = [int.from_bytes(rng.bytes(17), "big") % (1 << bits) for _ in range(size)]
    signs = rng.integers(0, 3, size) - 1  # negative, zero and positive slots
    integers = [int(s) * v for s, v in zip(signs, integers, strict=True)]
    integers[0] = (1 << bits) - 1
    rho = int.from_bytes(rng.bytes(40), "big")
    assert _binding.commit(integers, rho) == _commit_by_powmod(integers, rho)


def test_malformed_commitments_have_no_product():
    good = _binding.commit([1, 2], 3)
    assert _binding.product([good, good[:-1]]) is None
    assert _binding.product([good, (1).to_bytes(_binding.WIDTH, "big")]) is None
    assert _binding.product([good, _binding.P.to_bytes(_binding.WIDTH, "big")]) is None
    # A non-square, outside the order-Q subgroup (an element of order 2Q).
    non_residue = next(a for a in range(2, 100) if gmpy2.legendre(a, _binding.P) == -1)
    assert _binding.product([good, non_residue.to_bytes(_binding.WIDTH, "big")]) is None


def test_subgroup_membership_is_eulers_criterion():
    # product() decides membership by Legendre's symbol; it must be value^Q == 1.
    rng = np.random.default_rng(19)
    values = [int.from_bytes(rng.bytes(_binding.WIDTH), "big") % _binding.P for _ in range(60)]
    values += [2, 3, _binding.P - 2, 4, _binding.P - 4]
    accepted = [_binding.product([v.to_bytes(_binding.WIDTH, "big")]) is not None for v in values]
    members = [
        1 < v < _binding.P - 1 and gmpy2.powmod(v, _binding.Q, _binding.P) == 1 for v in values
    ]
    assert accepted == members
    assert sum(accepted) == 33  # of 65: both kinds are exercised


@pytest.mark.parametrize("name", ["paillier", "paillier-packed"])
def test_a_fresh_vectors_binding_opens_with_the_key_holders_sum(name):
    keys = keys_for(name)
    xs = [np.linspace(-1, 1, 10), np.linspace(1, -1, 10)]
    vectors = [keys.public.encrypt(x, weight=w) for x, w in zip(xs, (3, 5), strict=True)]
    product = keys.public.sum_bindings([v.binding() for v in vectors])
    total = vectors[0] + vectors[1]
    result = keys.secret.decrypt_weighted(total, binding=product)
    np.testing.assert_allclose(result.total, 3 * xs[0] + 5 * xs[1], atol=1e-3)
    with pytest.raises(AggregateRejected, match="binding"):
        keys.secret.decrypt_weighted(vectors[0], binding=product)
    with pytest.raises(ConfigurationError, match="fresh from encrypt"):
        total.binding()


def test_schemes_without_bindings_take_only_empty_ones():
    public = keys_for("plain").public
    assert public.encrypt(np.zeros(4)).binding() == b""
    assert public.sum_bindings([b"", b""]) == b""


@pytest.mark.parametrize(
    "integers",
    [
        [5, -7, 0, (1 << 64) - 1],  # every slot tabled
        [1 << 64, -(1 << 64), 3],  # slots one bit past the tables take the buckets
        list(range(-20, 20)),  # more generators than are tabled
    ],
)
@pytest.mark.parametrize(
    "rho", [0, (1 << _binding.TABLE_RHO_BITS) - 1, 1 << _binding.TABLE_RHO_BITS]
)
@pytest.mark.parametrize("paid", [False, True], ids=["buckets", "tables"])
def test_tabled_commitments_are_the_products_of_powers(integers, rho, paid):
    _binding.drop_tables()
    if paid:  # every table bought, as a long run's are
        for table in [_binding._h_table()] + [
            _binding._generator_table(i) for i in range(_binding.TABLED_GENERATORS)
        ]:
            assert table.table_for(table.price) is not None
    assert _binding.commit(integers, rho) == _commit_by_powmod(integers, rho)


def test_dropped_tables_are_rebuilt_to_the_same_commitment():
    before = _binding.commit([3, -4, 5], 6)
    _binding.drop_tables()
    assert _binding._h_table.cache_info().currsize == 0
    assert _binding._generator_table.cache_info().currsize == 0
    assert _binding.commit([3, -4, 5], 6) == before == _commit_by_powmod([3, -4, 5], 6)
