"""What a client node tells the ServerApp when it cannot go on: that, never why.

A refusal's text travels back to the ServerApp, which writes the run
configuration and relays every message, so any reason that depends on the data
is an answer to a question it chose: "holds 30 samples" (red team 43), a CSV
cell (47), a row count in sklearn's words (48), a label, the epoch training
diverged at, or how far past the clip a dithered value went (49). The node logs
why; the ServerApp hears one fixed sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from he_fed.exceptions import (
    ConfigurationError,
    InvalidSignature,
    KeyMismatchError,
    MalformedMessage,
    PolicyViolation,
    ProtocolError,
)

__all__ = ["ABOUT_THE_TICKET", "kept_to_itself"]

_LOG = logging.getLogger("he_fed.runtime.flower.nodes")

#: Refusals about the ticket or the run, not the data: their text may travel.
ABOUT_THE_TICKET = (
    InvalidSignature,
    KeyMismatchError,
    MalformedMessage,
    PolicyViolation,
    ProtocolError,
)


@contextmanager
def kept_to_itself(sentence: str, *, passing: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn any exception but ``passing`` into ``ConfigurationError(sentence)``, logging why.

    Parameters
    ----------
    sentence : str
        All the ServerApp is told; the node's log gets the exception.
    passing : tuple of exception types, default=()
        Exceptions whose text is not about the data, raised as they are.
    """
    try:
        yield
    except passing:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever it is, its text may name the data
        _LOG.warning("%s: %r", sentence, exc)
        raise ConfigurationError(f"{sentence} (its node's log says why)") from None
