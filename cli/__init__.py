"""The ``he-fed`` command line (installed as :mod:`he_fed.cli`)."""

from __future__ import annotations

import logging

import click
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="he-fed")
@click.option("-v", "--verbose", count=True, help="Log protocol events (-v warnings, -vv info).")
def main(verbose: int) -> None:
    """Secure aggregation for federated learning with homomorphic encryption."""
    level = {0: logging.ERROR, 1: logging.WARNING}.get(verbose, logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


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
