"""The worker side of the ``processes`` executor: clients that stay in their worker.

A worker process keeps the clients it was given for as long as it lives. The
first round a client takes part in carries its data, its plan and its signing key
(an :data:`Arrival`); the worker builds the client once with
:func:`he_fed.protocol.setup.build_client` and keeps it under a token the
executor chose. Every later round carries only the round start (bytes) and, per
client, its token and the rounds it answered as the executor last recorded them.
Only plain data crosses the process boundary, both ways.

Worker state is per process and lives in this module: :func:`answer_round`
updates it, :func:`held` reports it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from he_fed.exceptions import HEFedError

__all__ = ["Arrival", "Member", "Row", "answer_round", "held"]

#: A client's first delivery to its worker: id, X, y, public key, plan config,
#: the key holder's identity and the client's signing key.
Arrival = tuple[str, np.ndarray, np.ndarray, bytes, "dict[str, Any]", bytes, "bytes | None"]
#: One client of a round: its token, its id, (last round answered, phase) as the
#: executor records it, and its arrival if the worker does not hold it yet.
Member = tuple[int, str, tuple[int, int], "Arrival | None"]
#: One client's answer: id, (last round answered, phase), the report's record or
#: None, the error or None, and whether the worker now holds the client.
Row = tuple[str, tuple[int, int], "dict[str, Any] | None", "str | None", bool]

_CLIENTS: dict[int, Any] = {}
#: How many times each client's data reached this worker, by client id.
_ARRIVALS: Counter[str] = Counter()


def _build(arrival: Arrival, state: tuple[int, int]) -> Any:
    from he_fed.protocol.setup import build_client
    from he_fed.protocol.spec import ClientPlan, ClientSpec

    client_id, X, y, public_key, plan, keyholder, signing_key = arrival
    spec = ClientSpec(
        client_id,
        X,
        y,
        public_key,
        ClientPlan.from_config(plan),
        keyholder=keyholder,
        signing_key=signing_key,
        last_round=state[0],
        phase=state[1],
    )
    return build_client(spec)


def answer_round(message: bytes, members: list[Member], forgotten: list[int]) -> list[Row]:
    """Have each member answer ``message``, building the ones that arrive with it.

    Parameters
    ----------
    message : bytes
        The encoded round start.
    members : list of Member
        The clients of this worker asked this round, in order.
    forgotten : list of int
        Tokens of clients the executor no longer has: they are dropped first.

    Returns
    -------
    list of Row
        One row per member, in order.
    """
    for token in forgotten:
        _CLIENTS.pop(token, None)
    rows: list[Row] = []
    for token, client_id, state, arrival in members:
        client = _CLIENTS.get(token)
        try:
            if client is None:
                if arrival is None:
                    # The executor sends the data whenever it has no confirmation
                    # that this worker holds the client; this cannot happen.
                    raise RuntimeError(f"worker does not hold client {client_id!r}")
                _ARRIVALS[client_id] += 1
                client = _build(arrival, state)
                _CLIENTS[token] = client
            else:
                # The executor's record wins if the client answered elsewhere since.
                client.mark_answered(*state)
            report = client.participate(message)
        except HEFedError as exc:
            answered = state if client is None else (client.last_round, client.phase)
            rows.append((client_id, answered, None, str(exc), client is not None))
            continue
        answered = (client.last_round, client.phase)
        rows.append((client_id, answered, report.to_record(), None, True))
    return rows


def held() -> dict[str, int]:
    """Clients this worker holds now, by id, with how often their data reached it."""
    ids = {client.client_id for client in _CLIENTS.values()}
    return {client_id: _ARRIVALS[client_id] for client_id in sorted(ids)}
