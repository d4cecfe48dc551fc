"""Products of many powers by buckets: the residue that one powmod per base gives."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest

from he_fed.crypto import _binding
from he_fed.crypto._multiexp import bucket_window, product_of_powers
from tests.conftest import keys_for


def _by_powmod(pairs, modulus):
    acc = gmpy2.mpz(1)
    for g, e in pairs:
        acc = acc * gmpy2.powmod(g, e, modulus) % modulus
    return acc


@pytest.mark.parametrize("modulus", ["paillier-n", "ffdhe2048"])
@pytest.mark.parametrize("count", [0, 1, 4, 5, 40, 300])
@pytest.mark.parametrize("bits", [1, 25, 128, 200])
def test_the_product_is_the_product_of_powmods(modulus, count, bits):
    m = int(keys_for("paillier").public.n) if modulus == "paillier-n" else _binding.P
    rng = np.random.default_rng(count * 1000 + bits)
    width = (m.bit_length() + 7) // 8
    bases = [int.from_bytes(rng.bytes(width), "big") % m for _ in range(count)]
    exponents = [int.from_bytes(rng.bytes(26), "big") % (1 << bits) for _ in range(count)]
    if count > 1:
        exponents[1] = 0  # zero exponents contribute nothing
    pairs = list(zip(bases, exponents, strict=True))
    assert product_of_powers(pairs, m) == _by_powmod(pairs, m)


def test_the_digit_width_fits_the_job():
    assert bucket_window(2001, 25) == 7  # a binding commitment of 2,001 slots
    assert bucket_window(40, 128) == 4  # a proof's product over 40 ciphertexts
    assert bucket_window(1, 128) == 2
