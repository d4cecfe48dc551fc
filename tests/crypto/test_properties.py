"""Property: encrypt, add and decrypt equal the plaintext sum, for any shape within the plan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from he_fed.crypto import CKKS, PackedPaillier, Paillier
from tests.conftest import FAST_SCHEMES, keys_for

CLIP = FAST_SCHEMES["plain"].clip


@st.composite
def contributions(draw: st.DrawFn) -> tuple[list[np.ndarray], list[int]]:
    size = draw(st.integers(1, 90))
    count = draw(st.integers(1, 6))
    values = st.floats(-CLIP, CLIP, allow_nan=False, width=64)
    xs = [draw(arrays(np.float64, size, elements=values)) for _ in range(count)]
    weights = [draw(st.integers(1, 128)) for _ in range(count)]
    return xs, weights


@pytest.mark.parametrize("scheme_name", sorted(FAST_SCHEMES))
def test_decrypted_sum_equals_the_plaintext_sum(scheme_name):
    keys = keys_for(scheme_name)
    scheme = keys.public.scheme

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(contributions())
    def run(case: tuple[list[np.ndarray], list[int]]) -> None:
        xs, weights = case
        total = sum(keys.public.encrypt(x, weight=w) for x, w in zip(xs, weights, strict=False))
        result = keys.secret.decrypt_weighted(keys.public.load_vector(total.to_bytes()))
        assert result.weight == sum(weights) and result.count == len(xs)
        if isinstance(scheme, (Paillier, PackedPaillier, CKKS)):
            q = scheme.quantizer
            exact = q.dequantize(sum(w * q.quantize(x) for x, w in zip(xs, weights, strict=False)))
            np.testing.assert_array_equal(result.total, exact)
            # and within half a step per unit of weight of the real sum
            real = sum(w * x for x, w in zip(xs, weights, strict=False))
            assert np.all(np.abs(result.total - real) <= sum(weights) * q.step / 2 + 1e-9)
        else:
            real = sum(w * x for x, w in zip(xs, weights, strict=False))
            np.testing.assert_allclose(result.total, real, rtol=0, atol=1e-12)

    run()
