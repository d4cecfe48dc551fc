"""The node side: a Flower ClientApp that plays a client or the key holder.

Every SuperNode runs the same ClientApp. What a node becomes is decided by the
first he-fed message it accepts, and then fixed for the run:

* a node that accepts ``hefed_keygen`` is **the key holder**. It generates the
  keys itself, answers with the public and aggregation bytes only, and keeps the
  secret key in its own node state (``context.state``), which Flower keeps in the
  SuperNode's memory and never sends to the SuperLink. It then refuses to train;
* a node that accepts ``hefed_setup`` is **a client**. It loads its own data,
  holds the public key, makes (or reads from ``--node-config
  "identity-file='...'"``) its Ed25519 signing identity, keeps it in its node
  state, answers with the public half, and from then on answers round starts with
  encrypted, signed updates. It refuses to generate or hold keys.

The key holder learns the clients' public identities through ``hefed_register``.
That message comes through the ServerApp, which is the aggregator; an aggregator
that swapped an identity for its own could forge receipts. In a deployment where
the aggregator is not trusted that far, give the key-holder node
``--node-config "trusted-clients='clients.txt'"``: a file of ``client-id
hex-public-key`` lines provisioned out of band. The node then refuses any
registration that differs from it.

A node started with ``--node-config "role='keyholder'"`` (or ``role='client'``)
refuses the other role from the start. Flower runs each message in a fresh
process on the node, so every handler rebuilds its role from the node state
with :mod:`he_fed.protocol.setup`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from he_fed.exceptions import ConfigurationError, HEFedError, PolicyViolation, ProtocolError
from he_fed.protocol.receipts import Identity
from he_fed.protocol.setup import build_client, generate_keyholder, restore_keyholder
from he_fed.protocol.spec import ClientPlan, ClientSpec, scheme_from_config
from he_fed.runtime.flower import records

__all__ = ["DataSource", "make_client_app", "node_role"]

#: How a client node finds its own data: ``(X, y)`` from its Flower context.
DataSource = Callable[[Context], tuple[np.ndarray, np.ndarray]]

_CLIENT_STATE = "hefed.client"
_KEYHOLDER_STATE = "hefed.keyholder"
_REGISTRY_STATE = "hefed.registry"
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


def _trusted_clients(context: Context) -> dict[str, bytes] | None:
    """The identities provisioned to this node out of band, if any."""
    path = context.node_config.get("trusted-clients")
    if not path:
        return None
    trusted: dict[str, bytes] = {}
    try:
        for line in Path(str(path)).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                client_id, key = line.split()
                trusted[client_id] = bytes.fromhex(key)
    except (OSError, ValueError):
        raise ConfigurationError(f"cannot read trusted-clients file {path!r}") from None
    return trusted


def _register(message: Message, context: Context) -> Message:
    """Record the clients' public identities (checked against a provisioned list, if any)."""
    if _KEYHOLDER_STATE not in context.state:
        raise ProtocolError("this node holds no keys; it was never asked to generate them")
    config = records.config_of(message)
    ids = [str(c) for c in config["client-ids"]]  # type: ignore[union-attr]
    keys = [bytes(k) for k in config["verify-keys"]]  # type: ignore[union-attr]
    if len(ids) != len(keys) or len(set(ids)) != len(ids):
        raise ProtocolError("a registration needs one public key per distinct client")
    trusted = _trusted_clients(context)
    if trusted is not None:
        for client_id, key in zip(ids, keys, strict=False):
            if trusted.get(client_id) != key:
                raise PolicyViolation(
                    f"client {client_id!r} is not registered with the identity this node "
                    "was provisioned with"
                )
    context.state[_REGISTRY_STATE] = ConfigRecord(dict(zip(ids, keys, strict=False)))
    restored = _restore(context)  # refuses malformed keys now rather than at decryption
    return records.reply(message, {"registered": len(restored.registered_clients())})


def _restore(context: Context) -> Any:
    state = cast(ConfigRecord, context.state[_KEYHOLDER_STATE])
    registry = context.state.get(_REGISTRY_STATE)
    return restore_keyholder(
        state["secret-key"],  # type: ignore[arg-type]
        min_clients=int(state["min-clients"]),  # type: ignore[arg-type]
        last_round=int(state["last-round"]),  # type: ignore[arg-type]
        clients={k: bytes(v) for k, v in registry.items()} if registry else None,  # type: ignore[union-attr, arg-type]
        allow_insecure=bool(state["allow-insecure"]),
    )


def _decrypt(message: Message, context: Context) -> Message:
    """Decrypt an aggregate under the cohort policy, and remember the round."""
    if _KEYHOLDER_STATE not in context.state:
        raise ProtocolError("this node holds no keys; it was never asked to generate them")
    state = cast(ConfigRecord, context.state[_KEYHOLDER_STATE])
    keyholder = _restore(context)
    aggregate = keyholder.decrypt_aggregate(records.config_of(message)["encrypted-aggregate"])  # type: ignore[arg-type]
    state["last-round"] = keyholder.last_round
    return records.reply(message, {"aggregate": aggregate})


def _client_spec(state: Mapping[str, Any], data: tuple[np.ndarray, np.ndarray]) -> ClientSpec:
    plan = ClientPlan.from_config(
        {key[len(_PLAN) :]: value for key, value in state.items() if key.startswith(_PLAN)}
    )
    X, y = data
    signing_key = state.get("signing-key")
    return ClientSpec(
        str(state["client-id"]),
        X,
        y,
        bytes(state["public-key"]),
        plan,
        signing_key=None if signing_key is None else bytes(signing_key),
    )


def _identity(context: Context) -> Identity:
    """This client's signing identity: from its provisioned file, or a fresh one."""
    path = context.node_config.get("identity-file")
    if not path:
        return Identity()
    try:
        return Identity.from_private_bytes(bytes.fromhex(open(str(path)).read().strip()))
    except (OSError, ValueError):
        raise ConfigurationError(f"cannot read identity-file {path!r}") from None


def _make_setup(data: DataSource) -> _Handler:
    def _setup(message: Message, context: Context) -> Message:
        """Become a client: take the public key and plan, check the local data fits."""
        if node_role(context) == "keyholder" or _KEYHOLDER_STATE in context.state:
            raise PolicyViolation("this node is the key holder; it does not train as a client")
        config = records.config_of(message)
        identity = _identity(context)
        state: dict[str, Any] = {
            "client-id": str(config["client-id"]),
            "public-key": config["public-key"],
            "signing-key": identity.private_bytes(),  # stays in this node's state
        }
        state.update({key: value for key, value in config.items() if key.startswith(_PLAN)})
        spec = _client_spec(state, data(context))
        build_client(spec)  # refuses bad data, a bad plan or a secret key, before storing
        context.state[_CLIENT_STATE] = ConfigRecord(state)
        return records.reply(
            message, {"n-features": int(spec.X.shape[1]), "verify-key": identity.public_bytes}
        )

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
                "sign-s": report.sign_s,
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
    app.train(records.REGISTER.split(".")[1])(_refusing(_register))
    app.train(records.DECRYPT.split(".")[1])(_refusing(_decrypt))
    return app
