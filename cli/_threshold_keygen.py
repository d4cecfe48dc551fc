"""``he-fed keygen --threshold t/n``: the dealer's ceremony, written to files.

It writes ``public.key`` and ``aggregator.key`` as a single-key ceremony does,
``verification.key`` (every holder's verification key, public) and one
``share-i.key`` per holder (mode 0600, passphrase-protected when a passphrase is
given, each with the verification keys inside), and what a Flower deployment's
share-holder nodes and client nodes need to know each other: one
``holder-i.identity`` per holder (its Ed25519 signing key as 64 hex digits, mode
0600, the ``identity-file`` of its node) and ``council.pin`` (hex of the council
pin, :func:`~he_fed.protocol.council.council_pin`: the ``council-file`` of every
holder node and the ``keyholder-identity`` of every client node). The dealer,
trusted during the ceremony anyway since it deals every share, makes the
identities too, so that the pin is ready when the ceremony ends. The factorisation and the
decryption exponent exist only in this process's memory while the dealer runs;
no file holds them (``tests/test_cli_threshold.py`` reads every file written).
"""

from __future__ import annotations

from pathlib import Path

import click

from he_fed._files import write_atomic
from he_fed.crypto import Scheme
from he_fed.crypto.paillier import _PaillierScheme
from he_fed.crypto.threshold import deal, parse_threshold
from he_fed.exceptions import ConfigurationError
from he_fed.protocol.council import council_pin
from he_fed.protocol.receipts import Identity

__all__ = ["threshold_files", "write_threshold_keys"]


def threshold_files(holders: int) -> dict[str, str]:
    """The file of each role, by role name."""
    files = {
        "public": "public.key",
        "aggregation": "aggregator.key",
        "verification": "verification.key",
    }
    files.update({f"share {i}": f"share-{i}.key" for i in range(1, holders + 1)})
    files.update({f"identity {i}": f"holder-{i}.identity" for i in range(1, holders + 1)})
    files["council"] = "council.pin"
    return files


def write_threshold_keys(
    scheme: Scheme, threshold_text: str, out_dir: Path, passphrase: str | None
) -> None:
    """Deal a ``t/n`` threshold key under ``scheme`` and write its files into ``out_dir``.

    The caller has checked the destination (``he-fed keygen`` refuses existing
    files without ``--force`` before anything is made).

    Raises
    ------
    ConfigurationError
        If the scheme has no threshold decryption (CKKS, plain) or ``t/n`` is invalid.
    """
    threshold, holders = parse_threshold(threshold_text)
    if not isinstance(scheme, _PaillierScheme):
        raise ConfigurationError(
            f"--threshold needs a Paillier scheme; {scheme.name} has no threshold decryption "
            "(multiparty CKKS is not built: DESIGN.md, 'Threshold decryption')"
        )
    paths = {role: out_dir / name for role, name in threshold_files(holders).items()}

    def progress(prime: str, tested: int) -> None:
        click.echo(f"  safe prime {prime}: {tested} candidates tested", err=True)

    click.echo(
        f"dealing a {threshold}-of-{holders} threshold key ({scheme.key_bits} bits; safe "
        "primes take a while)",
        err=True,
    )
    keys = deal(scheme, threshold=threshold, holders=holders, progress=progress)
    shares = {s.index: s.to_bytes(passphrase=passphrase) for s in keys.shares}  # before any file
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(paths["public"], keys.public.to_bytes(), mode=0o644)
    write_atomic(paths["aggregation"], keys.public.aggregation_key().to_bytes(), mode=0o644)
    write_atomic(paths["verification"], keys.verification.to_bytes(), mode=0o644)
    for index, data in shares.items():
        write_atomic(paths[f"share {index}"], data, mode=0o600)
    identities = [Identity() for _ in range(holders)]
    for i, identity in enumerate(identities, start=1):
        write_atomic(paths[f"identity {i}"], identity.private_bytes().hex().encode(), mode=0o600)
    pin = council_pin(threshold, [identity.public_bytes for identity in identities])
    write_atomic(paths["council"], pin.hex().encode(), mode=0o644)
    click.echo(
        f"{scheme.name} {threshold}-of-{holders} threshold key, fingerprint "
        f"{keys.public.fingerprint.hex()[:16]}"
    )
    click.echo(f"  verification keys, fingerprint {keys.verification.fingerprint.hex()[:16]}")
    protection = "passphrase-protected" if passphrase else "NOT encrypted"
    for role, path in paths.items():
        note = f" (mode 0600, {protection})" if role.startswith("share") else ""
        note = " (mode 0600, NOT encrypted)" if role.startswith("identity") else note
        click.echo(f"  {role:<12} {path}  {path.stat().st_size} bytes{note}")
    click.echo(
        f"  give share-i.key to holder i only; any {threshold} holders decrypt, "
        f"{threshold - 1} learn nothing; the factorisation was never written"
    )
    click.echo(
        "  on Flower: holder i's node takes share-i.key, holder-i.identity and council.pin "
        "(share-file, identity-file, council-file); client nodes pin the council with "
        "keyholder-identity='<the hex in council.pin>' and keep their rounds in "
        "round-file='client-K.rounds'"
    )
