"""The key holder's policy state on disk: sealed, atomic, and saved before anything leaves.

A key holder that runs as a sequence of commands (``he-fed ticket``, ``he-fed
decrypt``) must remember, between them, everything its policy depends on: the
rounds it ticketed and released, the model chain its tickets carry, which
statistics were released, the registered client identities, the refusals it
counted. :class:`KeyHolderStore` keeps all of it in one file and follows three
rules:

1. **Saved before release.** A ticket or a release is returned only after the
   state that accounts for it is on disk (:func:`he_fed._files.write_atomic`:
   temporary file, fsync, rename, fsync of the folder). A crash at any
   instruction leaves the old state or the new one, never a torn one; if the
   write fails, nothing leaves, and the store refuses further use until it is
   reopened from disk. A failed decryption attempt that used up its round (or
   counted a refusal) is saved before the refusal is raised, too.
2. **Authenticated.** The file ends in an HMAC-SHA256 tag under a key derived
   (HKDF-SHA256, label ``he-fed/keyholder-state/v1``) from the secret key's bytes
   and the key holder's signing identity (:mod:`he_fed.runtime._sealed`). An
   edited file, even one re-sealed with a valid checksum, is refused: the store
   does not start on a state that does not verify.
3. **Rollback is caught where it shows.** An older copy of the file verifies
   too. The file carries a generation counter, incremented by every save and
   checked against the file on disk before each write (so two processes cannot
   both act on one state; an exclusive lock on ``<state>.lock`` keeps a second
   process out in the first place), and every aggregate shown to the key holder
   is checked against the newest round the state ticketed: one naming a newer
   round means the state was rolled back, and the store refuses it.

What a rollback that is never shown a newer round can still do: restored to a
copy in which round ``r`` is still open, a key holder would decrypt a second
aggregate for ``r``. Only a counter outside the file (a TPM, a write-once log)
stops that; keep the state where the secret key is, with the same care.

The state holds no secret: the secret key and the identity stay in their own
files, and the store needs both to open the state.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from he_fed._files import write_atomic
from he_fed.crypto import KeyPair, wire
from he_fed.exceptions import HEFedError, MalformedMessage, StateError
from he_fed.protocol.keyholder import KeyHolder
from he_fed.protocol.messages import EncryptedAggregate, Task, decode
from he_fed.protocol.model import RunPlan
from he_fed.protocol.receipts import Identity, digest
from he_fed.runtime import _sealed

try:  # POSIX; elsewhere the generation check alone guards against a second process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["STATE_FILE", "KeyHolderStore", "ReleaseRecord", "parse_content"]

#: The state file's name beside the secret key, where the CLI looks by default.
STATE_FILE = "keyholder.state"
_LABEL = b"he-fed/keyholder-state/v1"
_WHAT = "the key holder state"
_MAX_BYTES = 64 << 20
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class ReleaseRecord:
    """One release, as the state remembers it.

    Attributes
    ----------
    round : int
        The round released.
    task : Task
        Its task.
    aggregate_digest : bytes
        SHA-256 of the encrypted aggregate that was decrypted.
    contributors : int
        How many contributions it summed.
    """

    round: int
    task: Task
    aggregate_digest: bytes
    contributors: int


def _mac_key(keys: KeyPair, identity: Identity) -> bytes:
    return _sealed.derive_key(_LABEL, keys.secret.to_bytes(), identity.private_bytes())


class KeyHolderStore:
    """A :class:`~he_fed.protocol.keyholder.KeyHolder` whose state lives in one sealed file.

    Make one with :meth:`create` (a new federation) or :meth:`open` (every later
    command), use :meth:`start_round` and :meth:`decrypt_aggregate` as on a key
    holder, and :meth:`close` it (or use it in a ``with`` block). There is no
    "open, or create if missing": a missing state must not silently become a
    fresh one, which would forget the rounds already released.
    """

    def __init__(
        self,
        path: Path,
        holder: KeyHolder,
        key: bytes,
        fingerprint: bytes,
        *,
        generation: int,
        ticket: bytes,
        releases: list[ReleaseRecord],
        last_release: bytes,
        lock: int | None,
    ) -> None:
        self._path = path
        self._holder = holder
        self._key = key
        self._fingerprint = fingerprint
        self._generation = generation
        self._ticket = ticket
        self._releases = releases
        self._last_release = last_release
        self._lock = lock
        self._broken: str | None = None

    # -- opening -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        keys: KeyPair,
        identity: Identity,
        *,
        plan: RunPlan,
        clients: dict[str, bytes] | None = None,
        min_clients: int | None = None,
        force: bool = False,
    ) -> KeyHolderStore:
        """Start a new federation (fresh federation id) and save its state at ``path``.

        Parameters
        ----------
        path : path-like
            Where the state lives (by convention :data:`STATE_FILE` beside the
            secret key).
        keys : KeyPair
            The key holder's keys.
        identity : Identity
            The key holder's signing identity.
        plan, clients, min_clients
            The key holder's policy (see :class:`~he_fed.protocol.keyholder.KeyHolder`).
        force : bool, default=False
            Replace an existing state. The new federation has a new id, so nothing
            signed for the old one (tickets, receipts) is accepted in it.

        Raises
        ------
        StateError
            If a state exists at ``path`` and ``force`` is false, or another process
            holds it.
        """
        target = Path(path)
        lock = _acquire(target)
        try:
            if os.path.lexists(target) and not force:
                raise StateError(
                    f"{target} exists: it holds a federation's released rounds; replacing "
                    "it starts a new federation (force it only if that is what you want)"
                )
            holder = KeyHolder(
                keys, plan=plan, clients=clients, min_clients=min_clients, identity=identity
            )
            store = cls(
                target,
                holder,
                _mac_key(keys, identity),
                keys.public.fingerprint,
                generation=0,
                ticket=b"",
                releases=[],
                last_release=b"",
                lock=lock,
            )
            store._write(check_disk=False)
        except BaseException:
            _release(lock)
            raise
        return store

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], keys: KeyPair, identity: Identity
    ) -> KeyHolderStore:
        """The key holder saved at ``path``, once its state verifies.

        Raises
        ------
        StateError
            If there is no state, it does not verify (edited, torn, other keys or
            identity), or another process holds it.
        """
        target = Path(path)
        lock = _acquire(target)
        try:
            key = _mac_key(keys, identity)
            generation, fields = _read(target, key, keys.public.fingerprint)
            state, ticket, releases, last_release = fields
            try:
                holder = KeyHolder.restore(keys, identity, state)
            except HEFedError as exc:
                raise StateError(f"{_WHAT} {target} cannot be restored: {exc}") from None
            store = cls(
                target,
                holder,
                key,
                keys.public.fingerprint,
                generation=generation,
                ticket=ticket,
                releases=releases,
                last_release=last_release,
                lock=lock,
            )
        except BaseException:
            _release(lock)
            raise
        return store

    def close(self) -> None:
        """Release the lock on the state (the state itself is always saved already)."""
        _release(self._lock)
        self._lock = None

    def __enter__(self) -> KeyHolderStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what it holds -------------------------------------------------------------

    @property
    def keyholder(self) -> KeyHolder:
        """The key holder (read its properties; act through the store)."""
        return self._holder

    @property
    def path(self) -> Path:
        """The state file."""
        return self._path

    @property
    def generation(self) -> int:
        """Saves so far, this one included (1 after :meth:`create`)."""
        return self._generation

    @property
    def last_ticket(self) -> bytes:
        """The newest ticket signed (empty before the first)."""
        return self._ticket

    @property
    def releases(self) -> tuple[ReleaseRecord, ...]:
        """Every release, in order."""
        return tuple(self._releases)

    # -- acting --------------------------------------------------------------------

    def start_round(self, task: Task = Task.TRAIN) -> bytes:
        """Sign the next round's ticket; return it once the state that records it is saved.

        Raises
        ------
        OSError
            If the state cannot be saved: no ticket leaves, and the store must be
            reopened.
        HEFedError
            Whatever :meth:`KeyHolder.start_round` raises.
        """
        self._check_usable()
        ticket = self._holder.start_round(task)
        self._ticket = ticket
        self._save()
        return ticket

    def check_round(self, round_id: int) -> None:
        """Refuse a message naming a round newer than any this state ticketed.

        Raises
        ------
        StateError
            If ``round_id`` is newer than :attr:`KeyHolder.last_round`: the key
            holder signed that round's ticket in a state newer than this one, so
            this file was rolled back (or the message is forged).
        """
        if round_id > self._holder.last_round:
            raise StateError(
                f"a message names round {round_id}, but {_WHAT} {self._path} ticketed no "
                f"round after {self._holder.last_round}: the state was rolled back to an "
                "older copy (or the message is forged); refusing it"
            )

    def decrypt_aggregate(self, data: bytes) -> bytes:
        """Check, decrypt and release as the key holder does; save before returning.

        The encoded :class:`~he_fed.protocol.messages.Aggregate` is returned only
        after the state that records the release is on disk. Shown again the
        very aggregate it released last, the store returns the same release
        without decrypting (so a release lost after the save can be fetched
        again); any other aggregate for a released round is refused.

        Raises
        ------
        StateError
            If the aggregate names a round newer than the state knows (rolled back).
        OSError
            If the state cannot be saved: nothing is released, and the store must
            be reopened (the state on disk still has the round open).
        HEFedError
            Whatever :meth:`KeyHolder.decrypt_aggregate` raises; if the attempt used
            up the round, that is saved before the error is raised.
        """
        self._check_usable()
        message = decode(data, EncryptedAggregate)
        self.check_round(message.round)
        aggregate_digest = digest(data)
        if self._releases and self._last_release:
            last = self._releases[-1]
            same = (message.round, message.task, aggregate_digest)
            if same == (last.round, last.task, last.aggregate_digest):
                return self._last_release
        before = self._holder.export_state()
        try:
            release = self._holder.decrypt_aggregate(data)
        except HEFedError:
            if self._holder.export_state() != before:
                self._save()
            raise
        self._releases.append(
            ReleaseRecord(message.round, message.task, aggregate_digest, len(message.receipts))
        )
        self._last_release = release
        self._save()
        return release

    # -- saving --------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise StateError(f"{_WHAT} could not be saved ({self._broken}); reopen it from disk")

    def _save(self) -> None:
        self._check_usable()
        self._write(check_disk=True)

    def _write(self, *, check_disk: bool) -> None:
        if check_disk:
            found, _ = _read(self._path, self._key, self._fingerprint)
            if found != self._generation:
                self._broken = "changed on disk"
                raise StateError(
                    f"{_WHAT} {self._path} changed since it was loaded (generation {found}, "
                    f"not {self._generation}): another process acts on it; nothing was released"
                )
        generation = self._generation + 1
        content = _content(
            generation, self._holder, self._ticket, self._releases, self._last_release
        )
        try:
            write_atomic(
                self._path,
                _sealed.seal(
                    wire.Kind.KEYHOLDER_STORE, content, self._key, fingerprint=self._fingerprint
                ),
                mode=0o600,
            )
        except OSError as exc:
            self._broken = str(exc)
            raise
        self._generation = generation


def _content(
    generation: int,
    holder: KeyHolder,
    ticket: bytes,
    releases: list[ReleaseRecord],
    last_release: bytes,
) -> bytes:
    w = wire.Writer()
    w.uint(generation)
    w.blob(holder.export_state())
    w.blob(ticket)
    w.uint(len(releases), 4)
    for record in releases:
        w.uint(record.round)
        w.text(record.task.value, length_bytes=1)
        w.raw(record.aggregate_digest)
        w.uint(record.contributors)
    w.blob(last_release)
    return w.getvalue()


_Fields = tuple[bytes, bytes, list[ReleaseRecord], bytes]


def parse_content(content: bytes) -> tuple[int, _Fields]:
    """``(generation, (holder state, ticket, releases, last release))`` of a state's content.

    Raises
    ------
    MalformedMessage
        If the content is not a key holder store's.
    """
    r = wire.Reader(content, _WHAT)
    generation = r.uint()
    state, ticket = r.blob(), r.blob()
    releases = []
    for _ in range(r.uint(4)):
        round_id, task = r.uint(), r.text(length_bytes=1)
        try:
            parsed = Task(task)
        except ValueError:
            raise MalformedMessage(f"{_WHAT}: unknown task {task!r}") from None
        releases.append(ReleaseRecord(round_id, parsed, bytes(r.raw(32)), r.uint()))
    last_release = r.blob()
    r.finish()
    return generation, (state, ticket, releases, last_release)


def _read(path: Path, key: bytes, fingerprint: bytes) -> tuple[int, _Fields]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise StateError(
            f"no key holder state at {path}: a federation's state is made once, when it is "
            "set up (he-fed federation init)"
        ) from None
    except OSError as exc:
        raise StateError(f"cannot read {_WHAT} {path}: {exc.strerror}") from None
    if len(data) > _MAX_BYTES:
        raise StateError(f"{_WHAT} {path} is larger than any he-fed writes")
    content = _sealed.unseal(
        data, wire.Kind.KEYHOLDER_STORE, key, fingerprint=fingerprint, what=f"{_WHAT} {path}"
    )
    try:
        return parse_content(content)
    except MalformedMessage as exc:
        raise StateError(f"{_WHAT} {path}: {exc}") from None


def _acquire(path: Path) -> int | None:
    """An exclusive lock on ``<path>.lock``, or :class:`StateError` if another process holds it."""
    if fcntl is None:  # pragma: no cover
        return None
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, _LOCK_FLAGS, 0o600)
    except OSError as exc:
        raise StateError(f"cannot lock {_WHAT} {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StateError(f"another process is using {_WHAT} {path}") from None
    return fd


def _release(lock: int | None) -> None:
    if lock is not None:
        with contextlib.suppress(OSError):
            os.close(lock)
