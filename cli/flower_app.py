"""``he-fed flower-app``: write the Flower App that runs he-fed, for ``flwr run``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("flower-app")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def flower_app(directory: Path) -> None:
    """Write the Flower App that runs he-fed (DIRECTORY/pyproject.toml).

    Its ServerApp is the blind aggregator, its ClientApps are the clients, and one
    SuperNode started with --node-config "role='keyholder'" is the key holder.
    Run it with: flwr run DIRECTORY <superlink> --stream --run-config "rounds=10".
    Needs pip install "he-fed[flower]" on every machine.
    """
    try:
        from he_fed.runtime.flower.app import write_app
    except ImportError as exc:
        raise click.ClickException(
            f'Flower is not installed: pip install "he-fed[flower]" ({exc})'
        ) from None
    try:
        path = write_app(directory)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path}")
