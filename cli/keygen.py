"""``he-fed keygen``: generate a key pair into separate public and secret files."""

from __future__ import annotations

import os
from pathlib import Path

import click
from he_fed.cli._errors import friendly_errors
from he_fed.cli._flags import check_scheme_flags
from he_fed.cli._paths import check_output_dir
from he_fed.cli._roles import read_passphrase
from he_fed.cli._threshold_keygen import threshold_files, write_threshold_keys
from he_fed.cli._verbosity import verbose_option

from he_fed._files import write_atomic
from he_fed.crypto import SCHEMES, scheme_from_options
from he_fed.crypto.base import DEFAULT_CLIP, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_WEIGHT
from he_fed.crypto.ckks import PRESETS
from he_fed.crypto.threshold import parse_threshold
from he_fed.experiment import RUN_DEFAULTS

FILES = {
    "public": "public.key",
    "aggregation": "aggregator.key",
    "secret": "secret.key",
}


@click.command()
@click.option(
    "--scheme",
    type=click.Choice(sorted(SCHEMES)),
    default=RUN_DEFAULTS["scheme"],
    show_default=True,
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for public.key, aggregator.key and secret.key.",
)
@click.option(
    "--key-bits",
    type=int,
    default=RUN_DEFAULTS["key_bits"],
    show_default=True,
    help="Paillier modulus size: even, at most 8192 (under 2048 needs --allow-insecure); "
    "Paillier schemes only.",
)
@click.option(
    "--ckks-preset",
    type=click.Choice(sorted(PRESETS)),
    default=RUN_DEFAULTS["ckks_preset"],
    show_default=True,
    help="CKKS parameters (--scheme ckks only).",
)
@click.option("--clip", type=float, default=DEFAULT_CLIP, show_default=True)
@click.option("--max-clients", type=int, default=DEFAULT_MAX_CLIENTS, show_default=True)
@click.option(
    "--max-weight",
    type=int,
    default=DEFAULT_MAX_WEIGHT,
    show_default=True,
    help="Largest weight of one contribution; the default 1 allows unweighted sums "
    "only. Federated averaging weights each update by its client's sample count: set "
    "at least the largest client's (he-fed run takes the smallest power of two that "
    "holds it). Larger bounds cost packed-Paillier slots and CKKS precision.",
)
@click.option("--allow-insecure", is_flag=True, help="Accept Paillier keys under 2048 bits.")
@click.option(
    "--passphrase-env",
    metavar="VAR",
    default=None,
    help="Encrypt the secret file with the passphrase in this environment variable.",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Encrypt the secret file with the passphrase in this file.",
)
@click.option(
    "--threshold",
    metavar="T/N",
    default=None,
    help="Deal a T-of-N threshold key instead of one secret: writes verification.key and "
    "share-1.key .. share-N.key, holder-1.identity .. holder-N.identity and council.pin "
    "(for share-holder nodes on Flower), no secret.key (Paillier schemes only).",
)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@verbose_option
def keygen(
    scheme: str,
    out_dir: Path,
    key_bits: int,
    ckks_preset: str,
    clip: float,
    max_clients: int,
    max_weight: int,
    allow_insecure: bool,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    threshold: str | None,
    force: bool,
) -> None:
    """Generate keys: public material for clients and the aggregator, a secret for the key holder.

    The secret file is created with mode 0600 and, with a passphrase, encrypted
    under scrypt and ChaCha20-Poly1305. Aggregator code never reads it. Every file
    is written to a new temporary file and renamed into place
    (:func:`he_fed._files.write_atomic`), so ``--force`` replaces a symlink at a
    destination instead of writing through it, and a reader of an old file never
    sees the new key.
    """
    passphrase = read_passphrase(passphrase_env, passphrase_file)
    with friendly_errors():
        check_scheme_flags(click.get_current_context(), scheme)
        # Where the keys go is checked before they are made (4096-bit keys take a while).
        check_output_dir(out_dir, "--out")
        names = FILES if threshold is None else threshold_files(parse_threshold(threshold)[1])
        paths = {role: out_dir / name for role, name in names.items()}
        # lexists: a planted (even dangling) symlink counts as an existing file.
        existing = [str(p) for p in paths.values() if os.path.lexists(p)]
        if existing and not force:
            raise click.ClickException(f"{', '.join(existing)} exist; pass --force to overwrite")
        planned = scheme_from_options(
            scheme,
            clip=clip,
            max_clients=max_clients,
            max_weight=max_weight,
            key_bits=key_bits,
            ckks_preset=ckks_preset,
            allow_insecure=allow_insecure,
        )
        if threshold is not None:
            write_threshold_keys(planned, threshold, out_dir, passphrase)
            return
        keys = planned.keygen()
        secret = keys.secret.to_bytes(passphrase=passphrase)  # before any file is written
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(paths["public"], keys.public.to_bytes(), mode=0o644)
        write_atomic(paths["aggregation"], keys.public.aggregation_key().to_bytes(), mode=0o644)
        write_atomic(paths["secret"], secret, mode=0o600)
    click.echo(f"{scheme} key, fingerprint {keys.public.fingerprint.hex()[:16]}")
    plan = keys.public.scheme
    click.echo(
        f"  plan: sums of up to {plan.max_clients} contributions of weight up to "
        f"{plan.max_weight}, values clipped at {plan.clip:g} (--max-clients, --max-weight, --clip)"
    )
    for role, path in paths.items():
        note = {
            "secret": " (mode 0600, "
            + ("passphrase-protected)" if passphrase else "NOT encrypted)")
        }.get(role, "")
        click.echo(f"  {role:<12} {path}  {path.stat().st_size} bytes{note}")
