"""What the file-workflow commands share: the key holder's files, reading and writing.

The key holder keeps three files together: ``secret.key`` (from ``he-fed
keygen``), ``keyholder.id`` (its signing identity, made by ``he-fed federation
init``) and ``keyholder.state`` (its policy state). ``--identity`` and
``--state`` default to those names beside ``--secret-key``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from he_fed._files import write_atomic
from he_fed.crypto import KeyPair, load_secret
from he_fed.exceptions import ConfigurationError, MalformedMessage
from he_fed.protocol.messages import Task
from he_fed.protocol.receipts import Identity
from he_fed.runtime.files import read_signing_key, signing_key_bytes
from he_fed.runtime.keyholder_store import STATE_FILE, KeyHolderStore

#: A file that must exist: what every role command reads.
EXISTING_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
#: ``--federation``, the key holder's federation file, as clients and the aggregator take it.
federation_option = click.option(
    "--federation",
    "federation_path",
    type=EXISTING_FILE,
    required=True,
    help="The federation file (from the key holder).",
)

__all__ = [
    "EXISTING_FILE",
    "IDENTITY_FILE",
    "KeyHolderFiles",
    "class_key",
    "federation_option",
    "keyholder_options",
    "pin_bytes",
    "read_input",
    "read_parsed",
    "round_label",
    "write_output",
]

#: The key holder's signing identity, beside its secret key.
IDENTITY_FILE = "keyholder.id"
_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")


def read_passphrase(passphrase_env: str | None, passphrase_file: Path | None) -> str | None:
    """The passphrase from an environment variable or a file, if either is given."""
    if passphrase_env and passphrase_file:
        raise click.UsageError("give --passphrase-env or --passphrase-file, not both")
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            raise click.UsageError(f"environment variable {passphrase_env} is empty or unset")
        return value
    if passphrase_file:
        value = passphrase_file.read_text(encoding="utf-8").rstrip("\n")
        if not value:
            raise click.UsageError(f"passphrase file {passphrase_file} is empty")
        return value
    return None


def class_key(label: object) -> object:
    """How a class label written as text is compared: as a number if it reads as one."""
    try:
        number = float(label)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(label)
    return number if math.isfinite(number) else str(label)


def round_label(round_id: int, task: Task) -> str:
    """``round 3 (train)``."""
    return f"round {round_id} ({Task(task).value})"


def pin_bytes(text: str) -> bytes:
    """The key holder's identity from its pin (64 hex digits), as ``--keyholder`` gives it."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError("--keyholder takes the key holder's pin: 64 hex digits")
    return raw


#: Larger than any file he-fed writes; a device such as ``/dev/zero`` never ends.
MAX_INPUT_BYTES = 1 << 30


def read_input(path: Path, what: str) -> bytes:
    """A file's bytes, or a one-line :class:`ConfigurationError` naming it.

    At most :data:`MAX_INPUT_BYTES`: a larger regular file is refused before it is
    read, and anything else (a device, a pipe) once it has given that much.
    """
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(MAX_INPUT_BYTES + 1) if size <= MAX_INPUT_BYTES else b""
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None
    if max(size, len(data)) > MAX_INPUT_BYTES:
        raise ConfigurationError(
            f"{what} {path} holds more than {MAX_INPUT_BYTES >> 30} GiB; no he-fed file does"
        )
    return data


def read_parsed(path: Path, what: str, parse: Callable[[bytes], _T]) -> _T:
    """``parse`` of a file's bytes; a malformed file's error names the file.

    A bit flipped in a key, identity or federation file said only "checksum
    mismatch", which left the user to guess which of four files it was.
    """
    data = read_input(path, what)
    try:
        return parse(data)
    except MalformedMessage as exc:
        raise type(exc)(f"{what} {path}: {exc}") from None


def read_checked(path: Path, what: str, check: Callable[[bytes], object]) -> bytes:
    """A file's bytes once ``check`` has parsed them; a malformed file's error names it."""

    def checked(data: bytes) -> bytes:
        check(data)
        return data

    return read_parsed(path, what, checked)


def write_output(path: Path, data: bytes, *, secret: bool = False) -> None:
    """Write a file atomically (mode 0600 if ``secret``, else 0644)."""
    write_atomic(path, data, mode=0o600 if secret else 0o644)


def keyholder_options(command: _F) -> _F:
    """The options every key-holder command takes (secret key, identity, state, passphrase)."""
    options = [
        click.option(
            "--secret-key",
            type=click.Path(dir_okay=False, path_type=Path),
            required=True,
            help="The key holder's secret.key (from he-fed keygen).",
        ),
        click.option(
            "--identity",
            "identity_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help=f"The key holder's signing identity [default: {IDENTITY_FILE} beside the key].",
        ),
        click.option(
            "--state",
            "state_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help=f"The key holder's state [default: {STATE_FILE} beside the key].",
        ),
        click.option(
            "--passphrase-env",
            metavar="VAR",
            default=None,
            help="The secret key's passphrase is in this environment variable.",
        ),
        click.option(
            "--passphrase-file",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            default=None,
            help="The secret key's passphrase is in this file.",
        ),
        click.option("--allow-insecure", is_flag=True, help="Accept a key under the bar."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class KeyHolderFiles:
    """The key holder's files, as the options name them.

    Parameters
    ----------
    secret_key : Path
        ``secret.key``.
    identity_path, state_path : Path, optional
        Default to :data:`IDENTITY_FILE` and :data:`STATE_FILE` beside it.
    passphrase_env, passphrase_file, allow_insecure
        As for ``he-fed keygen``.
    """

    def __init__(
        self,
        secret_key: Path,
        identity_path: Path | None,
        state_path: Path | None,
        passphrase_env: str | None,
        passphrase_file: Path | None,
        allow_insecure: bool,
    ) -> None:
        self.secret_key = secret_key
        self.identity_path = identity_path or secret_key.with_name(IDENTITY_FILE)
        self.state_path = state_path or secret_key.with_name(STATE_FILE)
        self._passphrase = read_passphrase(passphrase_env, passphrase_file)
        self._allow_insecure = allow_insecure

    def keys(self) -> KeyPair:
        """The key pair in the secret key file."""
        return read_parsed(
            self.secret_key,
            "the secret key",
            lambda data: load_secret(
                data, passphrase=self._passphrase, allow_insecure=self._allow_insecure
            ),
        )

    def identity(self) -> Identity:
        """The key holder's signing identity."""
        _, identity = read_parsed(self.identity_path, "the key holder identity", read_signing_key)
        return identity

    def identity_or_new(self) -> tuple[Identity, bool]:
        """The identity, made and saved (mode 0600) if there is none yet; and whether it is new."""
        if os.path.lexists(self.identity_path):
            return self.identity(), False
        identity = Identity()
        write_output(self.identity_path, signing_key_bytes("keyholder", identity), secret=True)
        return identity, True

    def open_store(self) -> KeyHolderStore:
        """The key holder, restored from its state (which must verify)."""
        return KeyHolderStore.open(self.state_path, self.keys(), self.identity())
