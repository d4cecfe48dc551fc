"""The ServerApp's checkpoint: what the aggregator needs to continue a Flower run.

A Flower ServerApp started with a checkpoint directory (``he-fed run --executor
flower --checkpoint DIR``, or run config ``checkpoint``) keeps one file there,
:data:`SERVER_FILE`, in the format of the in-process checkpoint's ``progress``
(:class:`~he_fed.runtime.checkpoint.Progress`): the run's description, the
aggregator's model chain and round, the statistics rounds, the history, the
training rounds counted, the dropout generator's state and, while a round waits
for its release, that round's journal (its outcome and encrypted aggregate).

It holds no secret, because the ServerApp holds none, and it is not sealed: the
envelope's checksum catches a torn or corrupted file, not an edit. An edit buys
the aggregator's operator nothing it does not already have: the key holder
checks every ticket against the model chain its own releases determine, and
keeps its own state (``state-file``), so an edited model chain or round is
refused at the next ticket and an edited journal cannot get a second release.

:func:`reconcile` decides, from the key holder's answer to ``hefed_reopen``,
how the run continues.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from he_fed._files import write_atomic
from he_fed.crypto import wire
from he_fed.exceptions import HEFedError, MalformedMessage, StateError
from he_fed.runtime.checkpoint import Progress

__all__ = ["SERVER_FILE", "peek", "read", "reconcile", "write"]

#: The ServerApp's checkpoint file in the checkpoint directory.
SERVER_FILE = "server.progress"
_MAX_BYTES = 256 << 20
_WHAT = "the ServerApp's checkpoint"


def write(directory: Path, progress: Progress) -> None:
    """Replace the ServerApp's checkpoint atomically (temporary file, fsync, rename)."""
    data = wire.seal_envelope(wire.Kind.SERVER_PROGRESS, progress.to_content())
    write_atomic(directory / SERVER_FILE, data, mode=0o600)


def read(directory: Path) -> Progress:
    """The ServerApp's checkpoint in ``directory``.

    Raises
    ------
    StateError
        If it cannot be read, or is torn or corrupted.
    """
    path = directory / SERVER_FILE
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise StateError(f"cannot read {_WHAT} {path}: {exc.strerror}") from None
    if len(data) > _MAX_BYTES:
        raise StateError(f"{_WHAT} {path} is larger than any he-fed writes")
    try:
        return Progress.from_content(wire.open_envelope(data, wire.Kind.SERVER_PROGRESS).body)
    except MalformedMessage as exc:
        raise StateError(f"{_WHAT} {path} is not readable ({exc})") from None


def peek(directory: str | os.PathLike[str]) -> Progress | None:
    """The ServerApp's checkpoint in ``directory``, or None if there is none readable."""
    try:
        return read(Path(directory))
    except HEFedError:
        return None


def reconcile(progress: Progress, last_round: int, released: Sequence[int]) -> bool:
    """Whether the journaled round was released; refuse states no crash leaves.

    Parameters
    ----------
    progress : Progress
        The ServerApp's checkpoint.
    last_round : int
        The last round the key holder ticketed.
    released : sequence of int
        The rounds the key holder released, in order.

    Returns
    -------
    bool
        True if the checkpoint journaled a round that the key holder released
        (the run completes it from the journal, with the release the key holder
        saved); False if the run continues after ``progress.round_done``, any
        round ticketed since being redone under the next round id.

    Raises
    ------
    StateError
        If the key holder's state is older than the checkpoint, or it released a
        round the checkpoint neither completed nor journaled.
    """
    done = progress.round_done
    if last_round < done:
        raise StateError(
            f"the key holder ticketed rounds up to {last_round}, but this checkpoint "
            f"completed round {done}: its state-file is older than the checkpoint"
        )
    journaled = None if progress.pending is None else int(progress.pending.outcome["round"])
    later = [r for r in released if r > done]
    if later == [] or later == [journaled]:
        return bool(later)
    raise StateError(
        f"the key holder released round(s) {later} that this checkpoint (round {done} "
        "completed) does not hold: it is older than the run, or belongs to another"
    )
