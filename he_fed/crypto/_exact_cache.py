"""Caches that remember a result only under arguments of exact built-in types.

``functools.lru_cache`` files a result under its arguments' hash and equality, which
an object of the caller's making can fake: a ``bytes`` subclass that hashes and
compares as one pin while holding another (whose ``__bytes__`` may return itself),
or an ``int`` subclass that compares as 32,767 while it is worth 64 times that. Any
code in the process that reaches a cached function through a public call could then
plant a verdict, a layout or a table under the key holder's own key; red teams 13
and 14 did both (``tests/crypto/test_exact_cache.py``).

:func:`exact_cache` caches only calls whose arguments are all of exact built-in
types (``bool``, ``int``, ``float``, ``str``, ``bytes``, ``None``, gmpy2's ``mpz``,
which cannot be subclassed, and tuples of these), whose hash and equality are the
values' own. Any other call is computed afresh and remembered nowhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, TypeVar

import gmpy2

from he_fed.exceptions import ConfigurationError

__all__ = ["Sealed", "exact_cache", "exact_int", "is_exact"]

_F = TypeVar("_F", bound=Callable[..., Any])
_EXACT = frozenset({bool, int, float, str, bytes, type(None), type(gmpy2.mpz(0))})


def is_exact(value: object) -> bool:
    """Whether ``value`` is of an exact built-in type (a tuple: each of its items)."""
    kind = type(value)
    if kind is tuple:
        return all(is_exact(item) for item in value)  # type: ignore[attr-defined]
    return kind in _EXACT


def exact_cache(maxsize: int) -> Callable[[_F], _F]:
    """``lru_cache(maxsize)`` for calls whose arguments are all exact (:func:`is_exact`)."""

    def decorate(function: _F) -> _F:
        cached = lru_cache(maxsize=maxsize)(function)

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
