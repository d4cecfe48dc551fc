"""The crypto layer's caches remember nothing under arguments a caller can fake (red team 14).

Red team 14, given the aggregator's material and one colluding client in the key
holder's process, planted entries in two ``lru_cache``s through public calls: a
pin verdict (a ``bytes`` subclass posing as a rogue pin, whose ``__bytes__``
returned itself, got past a copy to ``bytes``) and a values' layout (an ``int``
subclass posing as the plan's ``levels`` while worth 64 times that). The key holder
then admitted a weight of 129 under ``max_weight`` 128 and a value 20 times the
clip. Every cache with arguments now caches only exact built-in arguments.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import SimpleNamespace

import gmpy2
import pytest

import he_fed.crypto
from he_fed.crypto import PackedPaillier, _exact_cache
from he_fed.crypto.paillier import _layout
from he_fed.exceptions import ConfigurationError


class _PosingInt(int):
    """An int worth ``real`` that hashes and compares as ``pose``."""

    _pose: int

    def __new__(cls, real: int, pose: int) -> _PosingInt:
        made = super().__new__(cls, real)
        made._pose = pose
        return made

    def __hash__(self) -> int:
        return hash(self._pose)

    def __eq__(self, other: object) -> bool:
        return other == self._pose

    def __ne__(self, other: object) -> bool:
        return not self == other


class _PosingBytes(bytes):
    def __bytes__(self) -> bytes:
        return self


def test_only_exact_builtin_values_count_as_exact():
    assert all(
        _exact_cache.is_exact(v) for v in (1, True, "s", b"b", None, gmpy2.mpz(3), (1, (b"x", "y")))
    )
    assert not any(
        _exact_cache.is_exact(v)
        for v in (
            _PosingInt(5, 4),
            _PosingBytes(b"x"),
            (1, _PosingInt(2, 3)),
            [1],
            bytearray(b"x"),
            1.5,  # 65534.0 == 65534: a float would share the integer's entry (red team 16)
            (True, 2),  # (True,) == (1,)
        )
    )


def test_a_float_equal_to_the_plans_levels_plants_no_layout():
    """Red team 16: ``float(levels)`` hashed and compared as the key holder's ``levels``."""
    scheme = PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=8, max_weight=128)
    levels = scheme.quantizer.levels
    _layout.cache_clear()
    assert _layout(True, 4, float(levels)).spans == (2.0 * levels,) * 4
    assert _layout(1, 4, levels).spans == (2 * levels,) * 4  # int 1, not True: apart
    assert all(type(s) is int for s in scheme.value_layout(4).spans)


def test_every_cache_with_arguments_in_the_crypto_layer_is_exact():
    found = []
    for info in pkgutil.iter_modules(he_fed.crypto.__path__, "he_fed.crypto."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            cached = callable(value) and hasattr(value, "cache_info")
            if cached and value.__module__ == info.name and inspect.signature(value).parameters:
                found.append((info.name, name, getattr(value, "exact", False)))
    assert len(found) >= 10, found
    assert [f for f in found if not f[2]] == []


def test_a_layout_cannot_be_planted_through_the_public_method():
    """Red team 14's attack 2: the key holder's layout keeps the plan's spans."""
    scheme = PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=8, max_weight=128)
    levels = scheme.quantizer.levels
    _layout.cache_clear()
    posing = SimpleNamespace(
        _weight_first=True, quantizer=SimpleNamespace(levels=_PosingInt(64 * levels, levels))
    )
    planted = PackedPaillier.value_layout(posing, 4)  # type: ignore[arg-type]
    assert planted.spans == (2 * 64 * levels,) * 4  # it computed with what it was given
    assert scheme.value_layout(4).spans == (2 * levels,) * 4
    assert _layout.cache_info().currsize == 1  # only the key holder's exact call


def test_an_uncached_call_is_computed_from_what_it_reads():
    real, pose = b"real", b"pose"
    calls = []

    @_exact_cache.exact_cache(maxsize=4)
    def read(blob: bytes) -> bytes:
        calls.append(blob)
        return bytes(memoryview(blob))

    class Posing(bytes):
        def __hash__(self) -> int:
            return hash(pose)

        def __eq__(self, other: object) -> bool:
            return other == pose

        def __bytes__(self) -> bytes:
            return self

    assert read(Posing(real)) == real
    assert read(pose) == pose  # computed, not the posing call's result
    assert read(pose) == pose and len(calls) == 2  # the exact call is remembered


class _OneInBytes(int):
    """An int worth the key's ``hs`` whose bytes are those of 1 (red team 15)."""

    def to_bytes(self, length=1, byteorder="big", *, signed=False):  # type: ignore[override]
        return (1).to_bytes(length, byteorder, signed=signed)


def test_exact_int_reads_the_value_not_its_methods():
    assert _exact_cache.exact_int(_OneInBytes(77)).to_bytes(1, "big") == bytes([77])
    assert type(_exact_cache.exact_int(_PosingInt(9, 4))) is int
    assert _exact_cache.exact_int(_PosingInt(9, 4)) == 9
    assert _exact_cache.exact_int(gmpy2.mpz(5)) == 5
    with pytest.raises(ConfigurationError, match="must be an integer"):
        _exact_cache.exact_int(5.0)


def test_a_pool_of_encryption_workers_cannot_be_planted_under_an_honest_key():
    """Red team 15's attack A: a pool keyed by the key's ``hs`` but built from 1.

    The victim's randomisers came from the planted pool: every one was 1, and each
    ciphertext read as ``1 + m·n``. The pool is keyed and built from exact integers.
    """
    from he_fed.crypto import Paillier, _parallel

    key = Paillier(key_bits=1024, allow_insecure=True).keygen().public
    hs, nsquare, bits = int(key.hs), int(key.nsquare), key.scheme.randomness_bits
    planted = _parallel.randomisers(_OneInBytes(hs), nsquare, bits, [12345], 2)
    assert planted is not None, "worker processes could not start here"
    honest = _parallel.randomisers(hs, nsquare, bits, [12345, 6789], 2)
    assert honest == [gmpy2.powmod(hs, 12345, nsquare), gmpy2.powmod(hs, 6789, nsquare)]
    assert planted == honest[:1]


def test_shared_tables_cannot_be_changed():
    """Red team 15's attack B: a shared table's ``window`` set to 0 made every power 1."""
    from he_fed.crypto import Paillier, _djn

    key = Paillier(key_bits=1024, allow_insecure=True).keygen().public
    hs, nsquare = int(key.hs), int(key.nsquare)
    _djn.plan_uses(hs, nsquare, 64, 10)
    comb = _djn.fixed_base(hs, nsquare, 64)
    rows = _djn.fixed_base(hs, nsquare, 80)
    assert type(comb).__name__ == "CombTable" and type(rows).__name__ == "FixedBase"
    for table in (comb, rows):
        for name in ("window", "modulus", "exponent_bits", "teeth", "_table", "_tables"):
            with pytest.raises(AttributeError, match="shared and cannot be changed"):
                setattr(table, name, 0)
        with pytest.raises(AttributeError, match="shared and cannot be changed"):
            del table.modulus
        assert table.pow(12345) == gmpy2.powmod(hs, 12345, nsquare)
    assert isinstance(rows._table, tuple) and isinstance(rows._table[0], tuple)
    assert isinstance(comb._tables, tuple) and not comb._weights.flags.writeable
