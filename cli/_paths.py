"""Output paths are checked before any work starts, so a typo never costs a run."""

from __future__ import annotations

import os
from pathlib import Path

from he_fed.exceptions import ConfigurationError

__all__ = ["check_output_dir", "check_output_file"]


def _writable_dir(directory: Path, flag: str, path: Path) -> None:
    if not directory.is_dir():
        raise ConfigurationError(f"{flag} {path}: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigurationError(f"{flag} {path}: cannot write in {directory}")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (a directory will be made below it)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")  # pragma: no cover  (a relative path's ancestors end at ".")


def check_output_file(path: Path | None, flag: str, *, make_parents: bool = False) -> None:
    """Refuse an output file that could not be written, before any work.

    Parameters
    ----------
    path : Path or None
        The file (None: the flag was not given).
    flag : str
        The option that named it, for the message.
    make_parents : bool, default=False
        Whether the writer creates missing parent directories (then the closest
        existing ancestor must be a writable directory); otherwise the parent
        must exist.

    Raises
    ------
    ConfigurationError
        If the file is a directory or read-only, or its directory is missing
        (without ``make_parents``), not a directory, or not writable.
    """
    if path is None:
        return
    if path.is_dir():
        raise ConfigurationError(f"{flag} {path}: is a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigurationError(f"{flag} {path}: the file is not writable")
    parent = path.parent
    if make_parents:
        parent = _nearest_existing(parent)
    elif not parent.exists():
        raise ConfigurationError(f"{flag} {path}: the directory {parent} does not exist")
    _writable_dir(parent, flag, path)


def check_output_dir(path: Path | None, flag: str) -> None:
    """Refuse an output directory that could not be made or written in, before any work.

    Missing directories are made by the writers, so the closest existing one on
    the way must be a writable directory.

    Raises
    ------
    ConfigurationError
        If that closest existing path is not a directory, or not writable.
    """
    if path is None:
        return
    _writable_dir(_nearest_existing(path), flag, path)
