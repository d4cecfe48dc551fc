"""What a client node tells the ServerApp when it cannot go on: that, never why.

A refusal's text travels back to the ServerApp, which writes the run
configuration and relays every message, so any reason that depends on the data
is an answer to a question it chose: "holds 30 samples" (red team 43), a CSV
cell (47), a row count in sklearn's words (48), a label, the epoch training
diverged at, or how far past the clip a dithered value went (49). The node logs
why; the ServerApp hears one fixed sentence.

Nor when: the ServerApp times each reply, and a round's time grows with the
client's rows (red teams 50 to 52). A node started with ``round-floor-s`` pads
every round it works on, answered or failed, to at least that many seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from he_fed._validation import check_float
from he_fed.exceptions import (
    ConfigurationError,
    InvalidSignature,
    KeyMismatchError,
    MalformedMessage,
    PolicyViolation,
    ProtocolError,
)

__all__ = ["ABOUT_THE_TICKET", "kept_to_itself", "padded", "round_floor"]

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


def round_floor(node_config: Mapping[str, object]) -> float:
    """The node's own ``round-floor-s`` (0, no padding, if unset).

    Raises
    ------
    ConfigurationError
        If it is not a finite number of seconds, at least 0.
    """
    return check_float("round-floor-s", node_config.get("round-floor-s", 0.0), low=0.0)


@contextmanager
def padded(seconds: float) -> Iterator[None]:
    """Make the block take at least ``seconds``, however it ends.

    A block that takes longer is logged: its time tells of the data again, and the
    node's ``round-floor-s`` should be raised above it.
    """
    started = time.monotonic()
    try:
        yield
    finally:
        spare = started + seconds - time.monotonic()
        if spare > 0:
            time.sleep(spare)
        elif seconds > 0:
            _LOG.warning(
                "a round took %.3f s, over this node's round-floor-s of %.3f s: its time "
                "tells of its data; raise round-floor-s",
                seconds - spare,
                seconds,
            )
