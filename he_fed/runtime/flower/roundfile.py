"""The rounds a client node answered, kept on its own disk across Flower runs.

A client answers each round of a federation once, in order, and its statistics
once each (:func:`~he_fed.protocol.ticket_check.checked_ticket`). On Flower it
kept that only in its run's ``context.state``, which every ``flwr run`` starts
empty: tickets a ServerApp harvested in one run were fresh again in the next, and
each made the client read its data and train, a timing sample of its rows per
replay, with no key holder needed (red team 52).

A node with ``round-file`` (by default ``<identity-file>.rounds``, where a
deployed node keeps its identity; a deployed node must have one or the other, only
a simulated one may go without) records, per federation, the last round and
phase it answered, before it reads its data, and starts each round from the
larger of that and its run's state. The file is versioned JSON, written
atomically; one that cannot be read is a :class:`~he_fed.exceptions.StateError`,
and the node answers no round until it is mended.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from he_fed._files import write_atomic
from he_fed.exceptions import StateError
from he_fed.protocol.messages import RoundStart, decode
from he_fed.protocol.ticket_check import PHASE
from he_fed.runtime.flower.policy import federation_record

__all__ = ["FORMAT", "path", "remember", "remembered"]

#: The file's format and version.
FORMAT = {"format": "he-fed/client-rounds", "version": 1}


def path(node_config: Mapping[str, object]) -> Path | None:
    """The node's round file; None only for a simulated node without one.

    Raises
    ------
    ConfigurationError
        If a deployed node has neither ``round-file`` nor ``identity-file`` (red
        team 53: the nodes README started answered old tickets in every new run).
    """
    if not node_config.get("round-file") and node_config.get("identity-file"):
        return Path(f"{node_config['identity-file']}.rounds")
    return federation_record(node_config, "round-file", "client", "round-file='client.rounds'")


def _read(file: Path) -> dict[str, list[int]]:
    try:
        data = json.loads(file.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise StateError("this client node's round-file cannot be read") from None
    federations = data.get("federations") if isinstance(data, dict) else None
    if {k: data.get(k) for k in FORMAT} != FORMAT or not isinstance(federations, dict):
        raise StateError("this client node's round-file is not a he-fed round file of version 1")
    for entry in federations.values():
        if not (
            isinstance(entry, list) and len(entry) == 2 and all(type(v) is int for v in entry)  # noqa: E721 - bool is not a round
        ):
            raise StateError("this client node's round-file holds an entry that is not two ints")
    return federations


def remembered(
    node_config: Mapping[str, object], ticket: bytes, last_round: int, phase: int
) -> tuple[int, int]:
    """The last round and phase to check ``ticket`` against: the run's, or the file's.

    Raises
    ------
    MalformedMessage
        If ``ticket`` is not a round start.
    StateError
        If the node's round file cannot be read.
    """
    file = path(node_config)
    if file is None:
        return last_round, phase
    kept = _read(file).get(decode(ticket, RoundStart).federation.hex(), [-1, 0])
    return max(last_round, kept[0]), max(phase, kept[1])


def remember(node_config: Mapping[str, object], start: RoundStart) -> None:
    """Record that this node answers ``start`` (an attempt counts), before its data is read.

    Raises
    ------
    StateError
        If the node's round file cannot be read or written.
    """
    file = path(node_config)
    if file is None:
        return
    federations = _read(file)
    kept = federations.get(start.federation.hex(), [-1, 0])
    federations[start.federation.hex()] = [
        max(kept[0], start.round),
        max(kept[1], PHASE[start.task]),
    ]
    try:
        write_atomic(file, json.dumps({**FORMAT, "federations": federations}).encode())
    except OSError:
        raise StateError("this client node cannot write its round-file") from None
