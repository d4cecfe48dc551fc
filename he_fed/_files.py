"""Writing files that others may be reading, or that an attacker may have prepared.

One helper, :func:`write_atomic`, for every file he-fed writes where a half-written
file, a widened permission or a followed symlink would matter (keys first of all).
It never opens the destination itself:

1. it creates a new file with a random name in the destination's folder, with
   ``O_CREAT | O_EXCL | O_NOFOLLOW`` and the final mode from the start (so a
   secret is never readable by others, not even for an instant, and nothing
   planted at the temporary name is followed or reused);
2. writes the bytes and ``fsync``\\ s them;
3. renames the file over the destination (``rename(2)`` replaces a symlink there
   rather than following it, and is atomic: a reader sees the old file or the new
   one, never a mix) and ``fsync``\\ s the folder.

A process that opened the old file (or the file an old symlink pointed to) before
the rename keeps reading the old bytes: the old file is never truncated or
rewritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

__all__ = ["write_atomic"]

#: Random temporary names tried before giving up (a clash needs 64 random bits).
_ATTEMPTS = 8
_CREATE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
#: Filesystems that cannot fsync a folder say so with these; nothing else is hidden.
_NO_FOLDER_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF}


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically, never following a symlink at ``path``.

    Parameters
    ----------
    path : str or path-like
        The destination. Whatever is there (a file, a symlink, nothing) is
        replaced; a symlink's target is left untouched.
    data : bytes
        The new contents.
    mode : int, default=0o600
        Permission bits of the new file, set from its creation (the umask can only
        narrow them until ``fchmod`` sets exactly ``mode``, before any byte is
        written). Use ``0o644`` for public files.

    Raises
    ------
    OSError
        If the folder is not writable, the destination is a directory, or the
        disk is full; the temporary file is removed and the destination is left
        as it was.
    """
    target = Path(path)
    folder = target.parent
    fd, temp = _create_temporary(folder, target.name, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _sync_folder(folder)


def _create_temporary(folder: Path, name: str, mode: int) -> tuple[int, Path]:
    """A new, exclusively created file next to the destination, and its path."""
    for _ in range(_ATTEMPTS):
        temp = folder / f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(temp, _CREATE, mode), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name for {name} in {folder}")


def _sync_folder(folder: Path) -> None:
    """Make the rename durable: fsync the folder that holds the new entry."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _NO_FOLDER_SYNC:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_FOLDER_SYNC:
            raise
    finally:
        os.close(fd)
