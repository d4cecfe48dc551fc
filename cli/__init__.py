"""The ``he-fed`` command line (installed as :mod:`he_fed.cli`)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click
from he_fed.cli._verbosity import verbose_option

from he_fed._version import __version__

#: The commands, each defined by the module of its name (``-`` as ``_``). A command's
#: module is imported only when the command runs (or help lists it): a key holder's
#: ``he-fed ticket`` need not import what ``he-fed run`` trains with.
_COMMANDS = (
    "run",
    "keygen",
    "inspect",
    "bench",
    "estimate",
    "flower-app",
    # The file-based workflow: each role is a command, and every arrow is a file.
    "identity",
    "federation",
    "ticket",
    "client",
    "aggregate",
    "decrypt",
)


class _Commands(click.Group):
    """The command group; a reader that stops early (``he-fed run | head -1``) is no error.

    Only output escapes :func:`~he_fed.cli._errors.friendly_errors` (results are
    printed after the work), so a broken pipe that reaches here is stdout's; one
    during the work (a worker's pipe) is an error there.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module = cmd_name.replace("-", "_")
        command: click.Command = getattr(importlib.import_module(f"he_fed.cli.{module}"), module)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            value = super().invoke(ctx)
            sys.stdout.flush()  # a broken pipe surfaces here, not at interpreter exit
        except BrokenPipeError:
            # Whoever reads our output has what they wanted. Point stdout at
            # /dev/null so that nothing tries (and fails) to flush it again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            ctx.exit(0)
        return value


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="he-fed")
@verbose_option
def main() -> None:
    """Secure aggregation for federated learning with homomorphic encryption."""


__all__ = ["main"]
