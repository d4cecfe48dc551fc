"""``he-fed inspect``: what a key or message file is, without needing any secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from he_fed.cli._roles import read_input
from he_fed.cli._verbosity import verbose_option

from he_fed.crypto import wire
from he_fed.crypto.keyfile import is_protected
from he_fed.exceptions import HEFedError
from he_fed.protocol import messages
from he_fed.runtime.files.describe import describe_file

_MESSAGES = {
    wire.Kind.ROUND_START: messages.RoundStart,
    wire.Kind.UPDATE: messages.EncryptedUpdate,
    wire.Kind.ENCRYPTED_AGGREGATE: messages.EncryptedAggregate,
    wire.Kind.AGGREGATE: messages.Aggregate,
}


def describe(data: bytes) -> dict[str, Any]:
    """Fields that describe an he-fed file; reads headers only, never a secret.

    Raises
    ------
    MalformedMessage
        If the bytes are not an he-fed object.
    """
    envelope = wire.open_envelope(data)
    info: dict[str, Any] = {"kind": envelope.kind.label}
    if envelope.scheme:
        info["scheme"] = envelope.scheme
    if envelope.params:
        info["parameters"] = envelope.params.replace(";", ", ")
    if envelope.fingerprint:
        info["fingerprint"] = envelope.fingerprint.hex()
    if envelope.kind is wire.Kind.SECRET_KEY:
        info["secret"] = "YES" + (
            " (passphrase-protected)" if is_protected(envelope) else " (not encrypted)"
        )
    elif envelope.kind is wire.Kind.KEY_SHARE:
        info["secret"] = "YES, a threshold key share" + (
            " (passphrase-protected)" if is_protected(envelope) else " (not encrypted)"
        )
    elif envelope.kind is wire.Kind.SIGNING_KEY:
        info["secret"] = "YES (a signing identity, not encrypted)"
    elif envelope.kind is wire.Kind.RUN_SECRETS:
        info["secret"] = "YES (a checkpoint's secret key and signing identities, not encrypted)"
    else:
        info["secret"] = "no secret"
    if envelope.kind is wire.Kind.VECTOR:
        r = wire.Reader(envelope.body, "vector")
        info["values"], info["contributions"] = r.uint(), r.uint()
    message_type = _MESSAGES.get(envelope.kind)
    if message_type is not None:
        message = messages.decode(data, message_type)
        info["round"] = message.round
        info["task"] = message.task.value
        if isinstance(message, messages.EncryptedUpdate):
            info["client"] = message.client_id
        if isinstance(message, messages.EncryptedAggregate):
            info["contributors"] = ", ".join(message.contributors)
        if isinstance(message, messages.Aggregate):
            info["contributors"] = message.contributors
    info.update(describe_file(envelope.kind, data))
    info["bytes"] = len(data)
    return info


@click.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@verbose_option
def inspect(files: tuple[Path, ...]) -> None:
    """Describe he-fed files: keys, identities, messages, releases, federation and state files."""
    for path in files:
        try:
            info = describe(read_input(path, "file"))
        except HEFedError as exc:
            raise click.ClickException(f"{path}: {type(exc).__name__}: {exc}") from None
        click.echo(f"{path}")
        for key, value in info.items():
            click.echo(f"  {key:<13} {value}")
