"""The one place scalar arguments are checked, as scikit-learn's ``check_scalar``.

A ``bool`` is an ``int`` to Python but never a count, a size or a rate to he-fed,
so both checkers refuse it. Each raises the exception its caller names (by
default :class:`~he_fed.exceptions.ConfigurationError`) with a message that names
the argument, the range and the value received.
"""

from __future__ import annotations

import math
import numbers

from he_fed.exceptions import ConfigurationError

__all__ = ["MAX_CLIENT_ID_BYTES", "check_bool", "check_client_id", "check_float", "check_int"]

_Types = type | tuple[type, ...]


def _range_text(low: float | None, high: float | None, *, strict_low: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if strict_low else '['}{low}, {high}]"
    if low is not None:
        return f"{'>' if strict_low else '>='} {low}"
    if high is not None:
        return f"<= {high}"
    return ""


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool``; raise otherwise.

    Configuration files and Flower's ``--node-config`` and ``--run-config`` keep a
    quoted ``'false'`` as text, and ``bool("false")`` is True: a switch given as
    text would turn on what it meant to turn off.

    Parameters
    ----------
    name : str
        The setting's name, for the message.
    value : object
        What was given.

    Returns
    -------
    bool
        ``value``.

    Raises
    ------
    ConfigurationError
        If ``value`` is not a ``bool`` (text, a number, None).

    Examples
    --------
    >>> check_bool("trust-on-first-use", False)
    False
    """
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"{name} must be true or false (a boolean, not quoted), got {value!r}"
        )
    return value


def check_int(
    name: str,
    value: object,
    *,
    low: int | None = None,
    high: int | None = None,
    types: _Types = int,
    bounds: str | None = None,
    error: type[Exception] = ConfigurationError,
) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[low, high]``; raise otherwise.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        What was given.
    low, high : int, optional
        Inclusive bounds; ``None`` leaves that side open.
    types : type or tuple of types, default=int
        The accepted integer types (``bool`` is refused whatever they are), e.g.
        ``(int, np.integer)`` or :class:`numbers.Integral`.
    bounds : str, optional
        The range as the message should spell it (``"from 1 to 2**64 - 1"``);
        by default it is written from ``low`` and ``high``.
    error : exception type, default=ConfigurationError
        What to raise.

    Returns
    -------
    int

    Examples
    --------
    >>> check_int("rounds", 3, low=1)
    3
    >>> check_int("rounds", True, low=1)
    Traceback (most recent call last):
    ...
    he_fed.exceptions.ConfigurationError: rounds must be a positive integer, got True
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, types)
        or (low is not None and value < low)  # type: ignore[operator]
        or (high is not None and value > high)  # type: ignore[operator]
    ):
        if bounds is None and low == 1 and high is None:
            wanted = "a positive integer"
        else:
            wanted = f"an integer {bounds or _range_text(low, high)}".rstrip()
        raise error(f"{name} must be {wanted}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_float(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    strict_low: bool = False,
    finite: bool = True,
    types: _Types = numbers.Real,
    bounds: str | None = None,
    error: type[Exception] = ConfigurationError,
) -> float:
    """Return ``value`` as a ``float`` if it is a (finite) number in range; raise otherwise.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        What was given.
    low, high : float, optional
        Bounds; ``None`` leaves that side open. ``high`` is inclusive.
    strict_low : bool, default=False
        Whether ``low`` itself is refused.
    finite : bool, default=True
        Whether infinities and NaN are refused.
    types : type or tuple of types, default=numbers.Real
        The accepted number types (``bool`` is refused whatever they are).
    bounds : str, optional
        The range as the message should spell it; by default it is written from
        ``low`` and ``high``.
    error : exception type, default=ConfigurationError
        What to raise.

    Returns
    -------
    float

    Examples
    --------
    >>> check_float("alpha", 0.5, low=0)
    0.5
    >>> check_float("learning_rate", 0, low=0, strict_low=True)
    Traceback (most recent call last):
    ...
    he_fed.exceptions.ConfigurationError: learning_rate must be a finite number > 0, got 0
    """
    if isinstance(value, bool) or not isinstance(value, types):
        raise error(f"{name} must be a number, got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if (
        (finite and not math.isfinite(number))
        or (low is not None and (number <= low if strict_low else number < low))
        or (high is not None and number > high)
    ):
        text = bounds or _range_text(low, high, strict_low=strict_low)
        wanted = f"{'a finite' if finite else 'a'} number {text}".rstrip()
        raise error(f"{name} must be {wanted}, got {value!r}")
    return number


#: Longest client id, in UTF-8 bytes, that an update or receipt can carry.
MAX_CLIENT_ID_BYTES = 256


def check_client_id(client_id: object) -> str:
    """``client_id`` if it is a non-empty string of at most :data:`MAX_CLIENT_ID_BYTES`
    UTF-8 bytes: no update or receipt could carry a longer one.

    Raises
    ------
    ConfigurationError
        Otherwise.
    """
    try:
        size = len(client_id.encode("utf-8")) if type(client_id) is str else 0
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 text
        size = 0
    if not 0 < size <= MAX_CLIENT_ID_BYTES:
        raise ConfigurationError(
            f"a client id is a non-empty string of at most {MAX_CLIENT_ID_BYTES} UTF-8 bytes"
        )
    return client_id
