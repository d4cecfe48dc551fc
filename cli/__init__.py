"""The ``he-fed`` command line (installed as :mod:`he_fed.cli`)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from he_fed.cli._verbosity import verbose_option
from he_fed.cli.aggregate import aggregate
from he_fed.cli.bench import bench
from he_fed.cli.client import client
from he_fed.cli.decrypt import decrypt
from he_fed.cli.estimate import estimate
from he_fed.cli.federation import federation
from he_fed.cli.flower_app import flower_app
from he_fed.cli.identity import identity
from he_fed.cli.inspect import inspect
from he_fed.cli.keygen import keygen
from he_fed.cli.run import run
from he_fed.cli.ticket import ticket

from he_fed._version import __version__


class _Commands(click.Group):
    """The command group; a reader that stops early (``he-fed run | head -1``) is no error.

    Only output escapes :func:`~he_fed.cli._errors.friendly_errors` (results are
    printed after the work), so a broken pipe that reaches here is stdout's; one
    during the work (a worker's pipe) is an error there.
    """

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


main.add_command(run)
main.add_command(keygen)
main.add_command(inspect)
main.add_command(bench)
main.add_command(estimate)
main.add_command(flower_app)
# The file-based workflow: each role is a command, and every arrow is a file.
main.add_command(identity)
main.add_command(federation)
main.add_command(ticket)
main.add_command(client)
main.add_command(aggregate)
main.add_command(decrypt)

__all__ = ["main"]
