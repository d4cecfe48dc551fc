"""``he-fed identity``: a client's Ed25519 signing identity, as two files."""

from __future__ import annotations

import os
from pathlib import Path

import click
from he_fed.cli._errors import friendly_errors
from he_fed.cli._roles import write_output

from he_fed.protocol.receipts import Identity
from he_fed.runtime.files import check_name, signing_key_bytes, verify_key_bytes


@click.command()
@click.option("--id", "name", required=True, help="The client's name: letters, digits, . _ -")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for NAME.id and NAME.pub.",
)
@click.option("--force", is_flag=True, help="Replace an existing identity.")
def identity(name: str, out_dir: Path, force: bool) -> None:
    """Make a client's signing identity: NAME.id (keep it) and NAME.pub (hand it out).

    The key holder registers NAME.pub (he-fed federation init --client), and every
    update the client sends is signed with NAME.id, which never leaves its folder.
    """
    with friendly_errors():
        check_name(name)
        private, public = out_dir / f"{name}.id", out_dir / f"{name}.pub"
        existing = [str(p) for p in (private, public) if os.path.lexists(p)]
        if existing and not force:
            raise click.ClickException(f"{', '.join(existing)} exist; pass --force to replace")
        out_dir.mkdir(parents=True, exist_ok=True)
        made = Identity()
        write_output(private, signing_key_bytes(name, made), secret=True)
        write_output(public, verify_key_bytes(name, made.public_bytes))
    click.echo(f"{name}: signing identity {made.public_bytes.hex()[:16]}")
    click.echo(f"  signing key  {private}  (mode 0600: it stays with {name})")
    click.echo(f"  verify key   {public}  (for the key holder and the aggregator)")
