"""The default executor: every client in this process, in a fixed order."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from he_fed.exceptions import ConfigurationError, HEFedError
from he_fed.protocol.client import Client
from he_fed.runtime.base import ClientHandle, ClientResult

__all__ = ["ClientResult", "InProcessExecutor"]

log = logging.getLogger("he_fed")


class InProcessExecutor:
    """Run clients one after another in this process. Deterministic.

    Executors only move bytes and call role methods; they never touch crypto.
    """

    name = "inprocess"
    #: Nothing to start.
    startup_s: float | None = 0.0

    def start(self) -> float:
        """Nothing to start; returns 0."""
        return 0.0

    def collect(self, clients: Sequence[ClientHandle], message: bytes) -> list[ClientResult]:
        """Hand ``message`` to every client and gather their reports.

        A client that fails with an :class:`~he_fed.exceptions.HEFedError` is
        reported with its error and left out of the round; the others go on.

        Raises
        ------
        ConfigurationError
            If a client is not a :class:`~he_fed.protocol.client.Client` object.
        """
        results = []
        for client in clients:
            if not isinstance(client, Client):
                raise ConfigurationError(
                    f"the inprocess executor runs Client objects, not {type(client).__name__}"
                )
            try:
                results.append(ClientResult(client.client_id, client.participate(message)))
            except HEFedError as exc:
                log.warning("client %s failed this round: %s", client.client_id, exc)
                results.append(ClientResult(client.client_id, None, str(exc)))
        return results

    def close(self) -> None:
        """Release resources (none here)."""
