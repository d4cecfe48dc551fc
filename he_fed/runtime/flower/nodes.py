"""The node side: a Flower ClientApp that plays a client or the key holder.

Every SuperNode runs the same ClientApp. What a node becomes is decided by the
first he-fed message it accepts, and then fixed for the run:

* a node that accepts ``hefed_keygen`` is **the key holder**. It generates the
  keys itself, answers with the public and aggregation bytes only, and keeps the
  secret key in its own node state (``context.state``), which Flower keeps in the
  SuperNode's memory and never sends to the SuperLink. It then refuses to train;
* a node that accepts ``hefed_setup`` is **a client**. It loads its own data,
  holds the public key, and from then on answers round starts with encrypted
  updates. It refuses to generate or hold keys.

A node started with ``--node-config "role='keyholder'"`` (or ``role='client'``)
refuses the other role from the start. Flower runs each message in a fresh
process on the node, so every handler rebuilds its role from the node state
with :mod:`he_fed.protocol.setup`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from he_fed.exceptions import HEFedError, PolicyViolation, ProtocolError
from he_fed.protocol.setup import build_client, generate_keyholder, restore_keyholder
from he_fed.protocol.spec import ClientPlan, ClientSpec, scheme_from_config
from he_fed.runtime.flower import records

__all__ = ["DataSource", "make_client_app", "node_role"]

#: How a client node finds its own data: ``(X, y)`` from its Flower context.
DataSource = Callable[[Context], tuple[np.ndarray, np.ndarray]]

_CLIENT_STATE = "hefed.client"
_KEYHOLDER_STATE = "hefed.keyholder"
_PLAN = "plan."
_Handler = Callable[[Message, Context], Message]


def node_role(context: Context) -> str:
    """The role a node was started with: ``"keyholder"``, ``"client"`` or ``""``."""
    return str(context.node_config.get("role", "")).strip().lower()


def _refusing(handler: _Handler) -> _Handler:
    """Answer a refused message with a Flower error naming the he-fed exception."""

    def wrapped(message: Message, context: Context) -> Message:
        try:
            return handler(message, context)
        except HEFedError as exc:
            return records.error_reply(message, exc)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _hello(message: Message, context: Context) -> Message:
    """Report the role this node was started with, and its partition id."""
    partition = context.node_config.get("partition-id", -1)
    return records.reply(message, {"role": node_role(context), "partition-id": int(partition)})  # type: ignore[arg-type]


def _keygen(message: Message, context: Context) -> Message:
    """Become the key holder: generate keys here, answer with public material only."""
    if node_role(context) == "client" or _CLIENT_STATE in context.state:
        raise PolicyViolation("this node is a client; a client never holds the secret key")
    if _KEYHOLDER_STATE in context.state:
        raise ProtocolError("this node already generated this run's keys")
    config = records.config_of(message)
    scheme = scheme_from_config(config)
    started = time.perf_counter()
    keyholder = generate_keyholder(scheme, min_clients=int(config["min-clients"]))  # type: ignore[arg-type]
    keygen_s = time.perf_counter() - started
    context.state[_KEYHOLDER_STATE] = ConfigRecord(
        {
            "secret-key": keyholder.secret_key_bytes(),
            "min-clients": keyholder.min_clients,
            "last-round": keyholder.last_round,
            "allow-insecure": bool(config["allow-insecure"]),
        }
    )
    return records.reply(
        message,
        {
            "public-key": keyholder.public_key_bytes(),
            "aggregation-key": keyholder.aggregation_key_bytes(),
        },
        {"keygen-s": keygen_s},
    )


def _decrypt(message: Message, context: Context) -> Message:
    """Decrypt an aggregate under the cohort policy, and remember the round."""
    if _KEYHOLDER_STATE not in context.state:
        raise ProtocolError("this node holds no keys; it was never asked to generate them")
    state = cast(ConfigRecord, context.state[_KEYHOLDER_STATE])
    keyholder = restore_keyholder(
        state["secret-key"],  # type: ignore[arg-type]
        min_clients=int(state["min-clients"]),  # type: ignore[arg-type]
        last_round=int(state["last-round"]),  # type: ignore[arg-type]
        allow_insecure=bool(state["allow-insecure"]),
    )
    aggregate = keyholder.decrypt_aggregate(records.config_of(message)["encrypted-aggregate"])  # type: ignore[arg-type]
    state["last-round"] = keyholder.last_round
    return records.reply(message, {"aggregate": aggregate})


def _client_spec(state: Mapping[str, Any], data: tuple[np.ndarray, np.ndarray]) -> ClientSpec:
    plan = ClientPlan.from_config(
        {key[len(_PLAN) :]: value for key, value in state.items() if key.startswith(_PLAN)}
    )
    X, y = data
    return ClientSpec(str(state["client-id"]), X, y, bytes(state["public-key"]), plan)


def _make_setup(data: DataSource) -> _Handler:
    def _setup(message: Message, context: Context) -> Message:
        """Become a client: take the public key and plan, check the local data fits."""
        if node_role(context) == "keyholder" or _KEYHOLDER_STATE in context.state:
            raise PolicyViolation("this node is the key holder; it does not train as a client")
        config = records.config_of(message)
        state: dict[str, Any] = {
            "client-id": str(config["client-id"]),
            "public-key": config["public-key"],
        }
        state.update({key: value for key, value in config.items() if key.startswith(_PLAN)})
        spec = _client_spec(state, data(context))
        build_client(spec)  # refuses bad data, a bad plan or a secret key, before storing
        context.state[_CLIENT_STATE] = ConfigRecord(state)
        return records.reply(message, {"n-features": int(spec.X.shape[1])})

    return _setup


def _make_round(data: DataSource) -> _Handler:
    def _round(message: Message, context: Context) -> Message:
        """Answer a round start with an encrypted update."""
        if _CLIENT_STATE not in context.state:
            raise ProtocolError("this node was not set up as a client in this run")
        client = build_client(_client_spec(context.state[_CLIENT_STATE], data(context)))
        report = client.participate(records.config_of(message)["round-start"])  # type: ignore[arg-type]
        return records.reply(
            message,
            {"update": report.update},
            {
                "train-s": report.train_s,
                "encrypt-s": report.encrypt_s,
                "serialize-s": report.serialize_s,
                "clipped": report.clipped,
            },
        )

    return _round


def make_client_app(data: DataSource) -> ClientApp:
    """The ClientApp every node runs; ``data`` finds a client node's own data.

    Parameters
    ----------
    data : callable
        ``data(context) -> (X, y)``: the node's features and targets, for example
        read from a path in ``context.node_config``. Called on client nodes only.

    Returns
    -------
    flwr.clientapp.ClientApp
    """
    app = ClientApp()
    app.query(records.HELLO.split(".")[1])(_refusing(_hello))
    app.train(records.KEYGEN.split(".")[1])(_refusing(_keygen))
    app.train(records.SETUP.split(".")[1])(_refusing(_make_setup(data)))
    app.train(records.ROUND.split(".")[1])(_refusing(_make_round(data)))
    app.train(records.DECRYPT.split(".")[1])(_refusing(_decrypt))
    return app
