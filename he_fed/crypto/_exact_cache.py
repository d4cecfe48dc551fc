"""Caches that remember a result only under arguments of exact built-in types.

``functools.lru_cache`` files a result under its arguments' hash and equality, which
an object of the caller's making can fake: a ``bytes`` subclass that hashes and
compares as one pin while holding another (whose ``__bytes__`` may return itself),
or an ``int`` subclass that compares as 32,767 while it is worth 64 times that. Any
code in the process that reaches a cached function through a public call could then
plant a verdict, a layout or a table under the key holder's own key; red teams 13
and 14 did both (``tests/crypto/test_exact_cache.py``).

:func:`exact_cache` caches only calls whose arguments are all of exact built-in
types (``bool``, ``int``, ``str``, ``bytes``, ``None``, gmpy2's ``mpz``, which
cannot be subclassed, and tuples of these but bools), whose hash and equality are
the values' own, and keeps arguments of different types apart. Any other call is
computed afresh and remembered nowhere.

The same goes for other state a process shares: :func:`exact_int` turns what a
caller passes into the exact integer it is worth before it keys or builds a shared
pool or table (red team 15 keyed a pool of encryption workers under an honest
key's modulus with an ``int`` subclass whose bytes were 1, and every randomiser the
victim drew from it was 1), and :class:`Sealed` objects refuse attribute writes
once built (the same red team set a shared fixed-base table's ``window`` to 0).
Code that goes around them (``object.__setattr__``, private attributes) is patching
the package, which no in-process guard stops (DESIGN.md, red team 16).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, TypeVar

import gmpy2

from he_fed.exceptions import ConfigurationError

__all__ = ["Sealed", "exact_cache", "exact_int", "is_exact"]

_F = TypeVar("_F", bound=Callable[..., Any])
#: Exact types of a tuple's items: no two of them hold equal values of another type.
_ITEMS = frozenset({int, str, bytes, type(None), type(gmpy2.mpz(0))})


def is_exact(value: object) -> bool:
    """Whether ``value`` is of an exact built-in type (a tuple: each of its items).

    Floats are not (``65534.0 == 65534`` would share an entry with the integer, red
    team 16), nor are bools inside tuples (``(True,) == (1,)``); a bool argument is,
    since the cache keeps arguments of different types apart (``typed=True``).
    """
    kind = type(value)
    if kind is tuple:
        return all(type(item) in _ITEMS or type(item) is tuple and is_exact(item) for item in value)  # type: ignore[attr-defined]
    return kind in _ITEMS or kind is bool


def exact_cache(maxsize: int) -> Callable[[_F], _F]:
    """``lru_cache(maxsize)`` for calls whose arguments are all exact (:func:`is_exact`)."""

    def decorate(function: _F) -> _F:
        cached = lru_cache(maxsize=maxsize, typed=True)(function)

        @wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if all(map(is_exact, args)) and all(map(is_exact, kwargs.values())):
                return cached(*args, **kwargs)
            return function(*args, **kwargs)

        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        call.exact = True  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    return decorate


def exact_int(value: object, name: str = "value") -> int:
    """The exact ``int`` that ``value`` is worth: its own methods are not consulted.

    Raises
    ------
    ConfigurationError
        If ``value`` is neither an ``int`` (of any subclass) nor an ``mpz``.
    """
    if type(value) is int:
        return value
    if isinstance(value, int):
        return int.__int__(value)  # int's own conversion: the value, not an override
    if type(value) is type(gmpy2.mpz(0)):
        return int(value)  # type: ignore[call-overload]
    raise ConfigurationError(f"{name} must be an integer, not {type(value).__name__}")


class Sealed:
    """An object whose attributes cannot be set or deleted once :meth:`_seal` ran.

    For tables and other objects one process shares: any code could otherwise
    change what every later caller computes with.
    """

    _sealed = False

    def _seal(self) -> None:
        object.__setattr__(self, "_sealed", True)

    def __setattr__(self, name: str, value: object) -> None:
        if self._sealed:
            raise AttributeError(f"{type(self).__name__} is shared and cannot be changed")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._sealed:
            raise AttributeError(f"{type(self).__name__} is shared and cannot be changed")
        object.__delattr__(self, name)
