"""``-v``/``--verbose``, counted the same wherever it is given.

``he-fed -v run`` and ``he-fed run -v`` both mean one level; ``-vv`` (or
``he-fed -v run -v``) means two. The count picks the level of he-fed's own logger
(``he_fed``): protocol warnings and round summaries at one, each client's update
at two. Without ``-v`` only errors are logged; the result table already reports
skipped rounds and clipped values.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

import click

__all__ = ["LEVELS", "configure_logging", "verbose_option"]

#: Log level by ``-v`` count; more than two counts as two.
LEVELS = {0: logging.ERROR, 1: logging.INFO, 2: logging.DEBUG}

_F = TypeVar("_F", bound=Callable[..., Any])
_META_KEY = "he_fed.verbosity"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted.

    Rich's progress bar and click's test runner replace ``sys.stderr``; a handler
    that kept the stream it was built with would write around them.
    """

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))


def configure_logging(verbosity: int) -> None:
    """Log he-fed's events to stderr at the level ``verbosity`` (a ``-v`` count) asks for."""
    level = LEVELS[min(verbosity, max(LEVELS))]
    logger = logging.getLogger("he_fed")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    _HANDLER.setLevel(level)
    if level < logging.WARNING:
        logger.setLevel(level)


def _count(ctx: click.Context, _param: click.Parameter, value: int) -> int:
    total = ctx.meta.get(_META_KEY, 0) + value  # meta is shared by nested contexts
    ctx.meta[_META_KEY] = total
    configure_logging(total)
    return total


def verbose_option(command: _F) -> _F:
    """Add ``-v``/``--verbose`` to a command or group; counts add up across them."""
    return click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=_count,
        help="Log protocol events: -v skipped rounds, refused updates and round "
        "summaries; -vv also each client's update. Allowed before or after the command.",
    )(command)
