"""The canonical bytes of a client plan: typed fields, sorted, no JSON, no pickle.

A plan's config (:meth:`~he_fed.protocol.spec.ClientPlan.to_config`) is written
entry by entry in name order, each value tagged with its type. The same bytes
are signed in a federation file and hashed into the digest a key holder's run
plan names (:attr:`~he_fed.protocol.model.RunPlan.client_plan`), so two plans
that differ in any hyperparameter, or only in a value's type, differ here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from he_fed.crypto import wire
from he_fed.exceptions import ConfigurationError, MalformedMessage

__all__ = ["read_config", "write_config"]


def _write_value(w: wire.Writer, value: object) -> None:
    if isinstance(value, bool):
        w.text("b", length_bytes=1)
        w.uint(int(value), 1)
    elif isinstance(value, int):
        w.text("i", length_bytes=1)
        w.text(str(value))
    elif isinstance(value, float):
        w.text("f", length_bytes=1)
        w.float64(value)
    elif isinstance(value, str):
        w.text("s", length_bytes=1)
        w.text(value)
    elif isinstance(value, list):
        w.text("l", length_bytes=1)
        w.uint(len(value), 2)
        for item in value:
            if isinstance(item, list):
                raise ConfigurationError("a client plan holds no nested lists")
            _write_value(w, item)
    else:
        raise ConfigurationError(f"a client plan cannot hold {type(value).__name__}")


def _read_value(r: wire.Reader, what: str, *, nested: bool = False) -> Any:
    tag = r.text(length_bytes=1, max_size=1)
    if tag == "b":
        return bool(r.uint(1))
    if tag == "i":
        text = r.text(max_size=40)
        if not text.lstrip("-").isdigit() or not text.isascii():
            raise MalformedMessage(f"{what}: {text!r} is not an integer")
        return int(text)
    if tag == "f":
        return r.float64()
    if tag == "s":
        return r.text()
    if tag == "l" and not nested:
        return [_read_value(r, what, nested=True) for _ in range(r.uint(2))]
    raise MalformedMessage(f"{what}: unknown value tag {tag!r}")


def write_config(w: wire.Writer, config: Mapping[str, object]) -> None:
    """Append ``config``'s entries in name order, each value tagged with its type.

    Raises
    ------
    ConfigurationError
        If a value is not a bool, int, float, str or flat list of them.
    """
    w.uint(len(config), 2)
    for name in sorted(config):
        w.text(name, length_bytes=1)
        _write_value(w, config[name])


def read_config(r: wire.Reader, what: str) -> dict[str, Any]:
    """Read the entries :func:`write_config` wrote.

    Raises
    ------
    MalformedMessage
        If the bytes are not such entries (``what`` names them in the message).
    """
    return {r.text(length_bytes=1): _read_value(r, what) for _ in range(r.uint(2))}
