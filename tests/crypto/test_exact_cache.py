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

import he_fed.crypto
from he_fed.crypto import PackedPaillier, _exact_cache
from he_fed.crypto.paillier import _layout


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
        _exact_cache.is_exact(v)
        for v in (1, True, 1.5, "s", b"b", None, gmpy2.mpz(3), (1, (b"x", "y")))
    )
    assert not any(
        _exact_cache.is_exact(v)
        for v in (_PosingInt(5, 4), _PosingBytes(b"x"), (1, _PosingInt(2, 3)), [1], bytearray(b"x"))
    )


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
