"""What the round logic asks of an executor, and what an executor hands back.

:class:`~he_fed.runtime.federation.Federation` depends on this protocol only. An
executor moves bytes and calls role methods: it hands the encoded round start to
each client it is given, wherever that client runs, and returns each client's
:class:`~he_fed.protocol.client.ClientReport` or the error that stopped it. It
never touches keys, ciphertexts or the aggregate.

==============  ===========================================================
executor        where clients run
==============  ===========================================================
``inprocess``   here, one after another (:class:`InProcessExecutor`)
``processes``   a pool of spawned worker processes (:class:`ProcessesExecutor`)
``flower``      Flower ClientApps on SuperNodes (``he_fed.runtime.flower``)
==============  ===========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from he_fed.protocol.client import ClientReport

__all__ = ["ClientHandle", "ClientResult", "Executor", "gather"]


@dataclass(frozen=True)
class ClientResult:
    """One client's answer to a round: a report, or the error that stopped it."""

    client_id: str
    report: ClientReport | None
    error: str | None = None


@runtime_checkable
class ClientHandle(Protocol):
    """What the round logic knows of a client: its name. Executors know the rest."""

    @property
    def client_id(self) -> str:
        """The client's unique name."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs a round's client side: hands a message to clients, gathers their reports.

    The round logic calls :meth:`collect` once per round and :meth:`close` at the
    end; :meth:`start` lets a caller pay (and measure) start-up up front.
    """

    #: Registry name (``inprocess``, ``processes``, ``flower``).
    name: str
    #: Seconds :meth:`start` spent (spawning workers, waiting for nodes), or None.
    startup_s: float | None

    def start(self) -> float:
        """Get ready before the first round, so start-up is not billed to a round.

        Returns the seconds it took (0 when already started). Optional to call:
        :meth:`collect` starts what it needs.
        """
        ...

    def collect(self, clients: Sequence[ClientHandle], message: bytes) -> list[ClientResult]:
        """Hand ``message`` to every client in ``clients`` and return their results.

        One :class:`ClientResult` per client, in the order given. A client that
        fails is reported with its error, and the others go on.
        """
        ...

    def close(self) -> None:
        """Release workers, pools or connections. Safe to call twice."""
        ...


def gather(
    executor: Executor, clients: Sequence[ClientHandle], message: bytes
) -> Iterable[ClientResult]:
    """:meth:`Executor.collect`'s results, streamed where the executor can.

    An executor with a ``stream`` method of the same signature (the ``processes``
    one) yields each result, in order, as soon as it is in, so the caller checks
    the first while the rest are still being made.
    """
    stream = getattr(executor, "stream", None)
    return stream(clients, message) if callable(stream) else executor.collect(clients, message)
