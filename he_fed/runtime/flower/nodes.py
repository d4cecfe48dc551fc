"""The node side: a Flower ClientApp that plays a client or the key holder.

Every SuperNode runs the same ClientApp. What a node becomes is decided by the
first he-fed message it accepts, and then fixed for the run:

* a node that accepts ``hefed_keygen`` is **the key holder**. It builds its keys
  and its policy from its *own* configuration (see
  :mod:`he_fed.runtime.flower.policy`): in a deployment, the ``policy-file`` of
  its node config, with ``secret-key-file``, ``identity-file`` and
  ``state-file``, without which a deployed node refuses ``hefed_keygen``;
  only in a simulation, where one person owns every node, from the message. It
  answers with public material and its Ed25519 identity, keeps the secret key,
  its identity and its state in the node state (``context.state``, which Flower
  keeps in the SuperNode's memory and never sends), signs every round's ticket
  and every release (:class:`~he_fed.protocol.signed_release.Release`), and
  refuses to train. With ``state-file`` it also keeps its state on its own
  disk, survives a restart and never starts a second federation
  (:mod:`he_fed.runtime.flower.statefile`);
* a node that accepts ``hefed_setup`` is **a client**. It
  pins the key holder's identity (``--node-config
  "keyholder-identity='<hex>'"``; trust on first use only in a simulation or with
  ``trust-on-first-use=true``), makes (or reads from ``identity-file``) its own
  Ed25519 signing identity, and from then on answers only tickets signed by the
  pinned key holder, each round once. It reads its own data only for such a
  ticket, and a fresh one. It refuses to generate or hold keys.

In a later run (a resumed ServerApp), a key-holder node started with
``state-file`` accepts ``hefed_reopen`` instead of ``hefed_keygen``: it rebuilds
itself from its own files and answers with public material only
(:mod:`he_fed.runtime.flower.reopen`).

The key holder learns the clients' identities through ``hefed_register``, once,
before its first ticket: with ``trusted-clients`` (in its policy or node config)
every registration must match them; without, only under trust on first use.

A node started with ``--node-config "role='keyholder'"`` (or ``role='client'``)
refuses the other role from the start. Flower runs each message in a fresh
process on the node, so every handler rebuilds its role from the node state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from he_fed._validation import check_bool, check_client_id
from he_fed.crypto import load_secret
from he_fed.exceptions import (
    ConfigurationError,
    HEFedError,
    PolicyViolation,
    ProtocolError,
)
from he_fed.protocol import KeyHolder
from he_fed.protocol._keys import client_key
from he_fed.protocol.receipts import Identity
from he_fed.protocol.signed_release import Release
from he_fed.protocol.spec import ClientPlan, ClientSpec, scheme_from_config, ticket_plan
from he_fed.protocol.ticket_check import checked_ticket
from he_fed.runtime.flower import records, reopen, roundfile, statefile
from he_fed.runtime.flower.discretion import (
    ABOUT_THE_TICKET,
    kept_to_itself,
    padded,
    round_floor,
)
from he_fed.runtime.flower.policy import (
    KeyHolderPolicy,
    admitted_registration,
    in_simulation,
    read_identity_hex,
    with_trusted_clients,
)
from he_fed.runtime.flower.sharenode import (
    SHARE_STATE,
    add_share_handlers,
    holds_share,
    read_pin_hex,
)

__all__ = ["DataSource", "NodeFiles", "make_client_app", "node_role"]


#: How a client node finds its own data: ``(X, y)`` from its Flower context.
DataSource = Callable[[Context], tuple[np.ndarray, np.ndarray]]
#: Node-config entries a simulation adds to a virtual node (its files on disk).
NodeFiles = Callable[[Context], Mapping[str, Any]]

_CLIENT_STATE = "hefed.client"
_KEYHOLDER_STATE = "hefed.keyholder"
_PLAN = "plan."
_Handler = Callable[[Message, Context], Message]


def node_role(context: Context) -> str:
    """The role a node was started with: ``"keyholder"``, ``"client"`` or ``""``."""
    return str(context.node_config.get("role", "")).strip().lower()


def _refusing(handler: _Handler, node_files: NodeFiles | None = None) -> _Handler:
    """Answer a refused message with a Flower error naming the he-fed exception."""

    def wrapped(message: Message, context: Context) -> Message:
        if node_files is not None:  # a simulated node's files (a checkpointed simulation)
            context.node_config = {**context.node_config, **node_files(context)}
        try:
            return handler(message, context)
        except HEFedError as exc:
            return records.error_reply(message, exc)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _hello(message: Message, context: Context) -> Message:
    """Report the role this node was started with, and its partition id.

    A node with a ``share-file`` (and no other role) is a share holder
    (:mod:`he_fed.runtime.flower.sharenode`); with ``partition-id`` it also trains.
    """
    partition = context.node_config.get("partition-id", -1)
    role = node_role(context) or ("shareholder" if holds_share(context) else "")
    return records.reply(message, {"role": role, "partition-id": int(partition)})  # type: ignore[arg-type]


def _policy(message_config: ConfigRecord, context: Context) -> KeyHolderPolicy:
    """The key holder's policy: its own file in a deployment, the message only in a simulation."""
    node = context.node_config
    path = node.get("policy-file")
    if path:
        return KeyHolderPolicy.read(str(path))
    if not in_simulation(node):
        raise ConfigurationError(
            "a key-holder node takes its policy from its own configuration: start it with "
            "--node-config \"role='keyholder' policy-file='keyholder.json'\" "
            "(see he_fed.runtime.flower.KeyHolderPolicy)"
        )
    min_clients = records.integer(message_config, "min-clients")
    return KeyHolderPolicy(
        scheme_from_config(message_config),
        records.run_plan(message_config),
        min_clients or None,
        trust_on_first_use=True,
    )


def _node_identity(context: Context, what: str) -> Identity:
    """This node's Ed25519 identity: from its provisioned ``identity-file``, or a fresh one."""
    path = context.node_config.get("identity-file")
    if not path:
        return Identity()
    try:
        return Identity.from_private_bytes(bytes.fromhex(Path(str(path)).read_text().strip()))
    except (OSError, ValueError):
        raise ConfigurationError(f"cannot read the {what} identity-file {path!r}") from None


def _keygen(message: Message, context: Context) -> Message:
    """Become the key holder: keys and policy of its own; answer with public material only."""
    if node_role(context) == "client" or _CLIENT_STATE in context.state:
        raise PolicyViolation("this node is a client; a client never holds the secret key")
    if holds_share(context) or SHARE_STATE in context.state:
        raise PolicyViolation("this node holds a threshold share; it is not the single key holder")
    if _KEYHOLDER_STATE in context.state:
        raise ProtocolError("this node already generated this run's keys")
    statefile.check_provisioned(context)
    config = records.config_of(message)
    policy = with_trusted_clients(_policy(config, context), context.node_config)
    policy.refuse_other(config, "key holder")
    started = time.perf_counter()
    key_file = context.node_config.get("secret-key-file")
    allow_insecure = bool(getattr(policy.scheme, "allow_insecure", False))
    if key_file:
        try:
            raw = Path(str(key_file)).read_bytes()
        except OSError:
            raise ConfigurationError(f"cannot read secret-key-file {key_file!r}") from None
        keys = load_secret(raw, allow_insecure=allow_insecure)
        if keys.public.scheme != policy.scheme:
            raise ConfigurationError("the secret-key-file's scheme differs from the policy's")
    else:
        keys = policy.scheme.keygen()
    keygen_s = time.perf_counter() - started
    identity = _node_identity(context, "key holder's")
    keyholder = KeyHolder(keys, plan=policy.plan, min_clients=policy.cohort, identity=identity)
    context.state[_KEYHOLDER_STATE] = ConfigRecord(
        {
            "secret-key": keyholder.secret_key_bytes(),
            "identity": identity.private_bytes(),
            "state": keyholder.export_state(),
            "policy": policy.to_json(),  # no secret in it
        }
    )
    return records.reply(
        message,
        {
            "public-key": keyholder.public_key_bytes(),
            "aggregation-key": keyholder.aggregation_key_bytes(),
            "identity": keyholder.identity_bytes,
        },
        {"keygen-s": keygen_s},
    )


def _load_keyholder_state(context: Context) -> None:
    """Have the key holder's state in the node state (a restarted node reloads its file).

    Raises
    ------
    ProtocolError
        If this node holds no keys.
    """
    if _KEYHOLDER_STATE not in context.state and statefile.path_of(context) is not None:
        # A restarted node: its memory is gone, its state file is not.
        context.state[_KEYHOLDER_STATE] = ConfigRecord(statefile.reload(context))
    if _KEYHOLDER_STATE not in context.state:
        raise ProtocolError("this node holds no keys; it was never asked to generate them")


def _restore(context: Context) -> KeyHolder:
    _load_keyholder_state(context)
    state = cast(ConfigRecord, context.state[_KEYHOLDER_STATE])
    allow_insecure = bool(getattr(_stored_policy(context).scheme, "allow_insecure", False))
    keys = load_secret(bytes(state["secret-key"]), allow_insecure=allow_insecure)  # type: ignore[arg-type]
    identity = Identity.from_private_bytes(bytes(state["identity"]))  # type: ignore[arg-type]
    return KeyHolder.restore(keys, identity, bytes(state["state"]))  # type: ignore[arg-type]


def _prove(message: Message, context: Context) -> Message:
    """Sign the ServerApp's nonce with the key holder's identity (a node found again).

    Only the key holder's node can: the identity comes from its node state, or
    from its state file after a restart.
    """
    nonce = records.blob(records.config_of(message), "nonce")
    _load_keyholder_state(context)
    state = cast(ConfigRecord, context.state[_KEYHOLDER_STATE])
    identity = Identity.from_private_bytes(bytes(state["identity"]))  # type: ignore[arg-type]
    return records.reply(message, {"signature": identity.sign(records.identity_challenge(nonce))})


def _stored_policy(context: Context) -> KeyHolderPolicy:
    state = cast(ConfigRecord, context.state[_KEYHOLDER_STATE])
    return KeyHolderPolicy.from_json(str(state["policy"]))


def _save(context: Context, keyholder: KeyHolder) -> None:
    cast(ConfigRecord, context.state[_KEYHOLDER_STATE])["state"] = keyholder.export_state()


def _register(message: Message, context: Context) -> Message:
    """Record the clients' identities, once, before the first ticket."""
    keyholder = _restore(context)
    policy = _stored_policy(context)
    if keyholder.registered_clients() or keyholder.last_round >= 0:
        raise ProtocolError("clients register once, at setup, before the first round")
    for client_id, key in admitted_registration(records.config_of(message), policy, "key holder"):
        keyholder.register(client_id, key)
    path = statefile.path_of(context)
    if path is None:
        _save(context, keyholder)
    else:  # the state on disk starts here, before the first ticket; memory only after it
        record = cast(ConfigRecord, context.state[_KEYHOLDER_STATE])
        record["state"] = statefile.create(path, record, keyholder.registered_clients())
    return records.reply(
        message,
        {"registered": len(keyholder.registered_clients()), "min-clients": keyholder.min_clients},
    )


def _ticket(message: Message, context: Context) -> Message:
    """Sign the next round's ticket (the key holder decides whether it may run)."""
    keyholder = _restore(context)
    task = records.task(records.config_of(message))
    _stored_policy(context).check_ticket(keyholder.last_round + 1, "key holder")
    path = statefile.path_of(context)
    if path is not None:
        record = cast(ConfigRecord, context.state[_KEYHOLDER_STATE])
        ticket = statefile.through_store(path, record, lambda s: s.start_round(task))
        return records.reply(message, {"ticket": ticket})
    try:
        ticket = keyholder.start_round(task)
    finally:
        _save(context, keyholder)
    return records.reply(message, {"ticket": ticket})


def _decrypt(message: Message, context: Context) -> Message:
    """Decrypt an aggregate under the key holder's policy; every attempt is remembered.

    The answer is the release signed with the key holder's identity, which the
    ServerApp checks against the identity it pinned (a node that only says it is
    the key holder cannot sign one). Ed25519 signs deterministically, so a release
    fetched again after a lost reply has the same bytes.
    """
    keyholder = _restore(context)
    data = records.blob(records.config_of(message), "encrypted-aggregate")
    path = statefile.path_of(context)
    state = cast(ConfigRecord, context.state[_KEYHOLDER_STATE])
    if path is not None:  # saved before the release leaves; a released round stays so
        aggregate = statefile.through_store(path, state, lambda s: s.decrypt_aggregate(data))
    else:
        try:
            aggregate = keyholder.decrypt_aggregate(data)
        finally:
            _save(context, keyholder)
    identity = Identity.from_private_bytes(bytes(state["identity"]))  # type: ignore[arg-type]
    release = Release.sign(identity, keyholder.federation, aggregate)
    return records.reply(message, {"release": release.to_bytes()})


def _reopen(message: Message, context: Context) -> Message:
    """Reopen the federation in the node's state-file, in a new run (a resumed ServerApp)."""
    if node_role(context) == "client" or _CLIENT_STATE in context.state:
        raise PolicyViolation("this node is a client; a client never holds the secret key")
    config = records.config_of(message)
    return reopen.answer(
        message, context, _KEYHOLDER_STATE, (scheme_from_config(config), records.run_plan(config))
    )


def _client_plan(state: Mapping[str, Any]) -> ClientPlan:
    return ClientPlan.from_config(
        {key[len(_PLAN) :]: value for key, value in state.items() if key.startswith(_PLAN)}
    )


def _client_spec(state: Mapping[str, Any], data: tuple[np.ndarray, np.ndarray]) -> ClientSpec:
    X, y = data
    signing_key = state.get("signing-key")
    return ClientSpec(
        str(state["client-id"]),
        X,
        y,
        bytes(state["public-key"]),
        _client_plan(state),
        keyholder=bytes(state["keyholder"]),
        signing_key=None if signing_key is None else bytes(signing_key),
        last_round=int(state["last-round"]),
        phase=int(state["phase"]),
    )


def _pinned_keyholder(context: Context, offered: bytes) -> bytes:
    """The key holder identity this client trusts: pinned, or (only if allowed) the offered one."""
    node = context.node_config
    pinned = node.get("keyholder-identity")
    if pinned:
        text = str(pinned).strip()  # one key holder's identity, or a council's pin
        identity = (
            read_identity_hex(text, "keyholder-identity")
            if len(text) <= 64
            else read_pin_hex(text, "keyholder-identity")
        )
        if offered != identity:
            raise PolicyViolation(
                "the setup names a key holder other than the one this node pinned"
            )
        return identity
    if in_simulation(node) or check_bool(
        "trust-on-first-use", node.get("trust-on-first-use", False)
    ):
        return offered
    raise ConfigurationError(
        "a client node trusts only the key holder it was provisioned with: start it with "
        "--node-config \"keyholder-identity='<64 hex digits>'\" (or trust-on-first-use=true)"
    )


def _make_setup() -> _Handler:
    def _setup(message: Message, context: Context) -> Message:
        """Become a client: take the public key and plan; the data is read at a ticket."""
        if node_role(context) == "keyholder" or _KEYHOLDER_STATE in context.state:
            raise PolicyViolation("this node is the key holder; it does not train as a client")
        if _CLIENT_STATE in context.state:
            # A second setup would reset the rounds it answered (and its plan): it
            # would answer a round again (red team 40).
            raise ProtocolError("this node is already set up as a client in this run")
        roundfile.path(context.node_config)  # a deployed client keeps its rounds on disk
        config = records.config_of(message)
        identity = _node_identity(context, "client's")
        state: dict[str, Any] = {
            "client-id": check_client_id(records.text(config, "client-id")),
            "public-key": records.blob(config, "public-key"),
            "signing-key": identity.private_bytes(),  # stays in this node's state
            "keyholder": _pinned_keyholder(context, records.blob(config, "keyholder-identity")),
            "last-round": -1,
            "phase": 0,
        }
        state.update({key: value for key, value in config.items() if key.startswith(_PLAN)})
        # The key and plan are checked here, the data is not even read: it meets them
        # only under a fresh ticket of the key holder's. The ServerApp chooses both,
        # and a refusal would tell it whether the data fits the plan it chose (red
        # teams 43, 44), the time to read it how many rows it holds (51).
        client_key(bytes(state["public-key"]), allow_insecure=_client_plan(state).allow_insecure)
        context.state[_CLIENT_STATE] = ConfigRecord(state)
        return records.reply(message, {"verify-key": identity.public_bytes})

    return _setup


def _own_data(data: DataSource, context: Context) -> tuple[np.ndarray, np.ndarray]:
    with kept_to_itself("this node cannot read its data"):
        return data(context)


def _build_client(spec: ClientSpec) -> Any:
    # Imported here: a client trains with scikit-learn, and every message to this
    # app is a fresh process, most of them to nodes that never train (the key
    # holder, the share holders).
    from he_fed.protocol.setup import build_client

    return build_client(spec)


def _make_round(data: DataSource) -> _Handler:
    def _round(message: Message, context: Context) -> Message:
        """Answer a round start with an encrypted update."""
        if _CLIENT_STATE not in context.state:
            raise ProtocolError("this node was not set up as a client in this run")
        state = cast(ConfigRecord, context.state[_CLIENT_STATE])
        ticket = records.blob(records.config_of(message), "round-start")
        plan = _client_plan(state)
        key = client_key(bytes(state["public-key"]), allow_insecure=plan.allow_insecure)
        node = context.node_config  # its round-file: the rounds it answered in any run
        last, phase = roundfile.remembered(node, ticket, state["last-round"], state["phase"])
        start = checked_ticket(  # before the data is read: a refusal takes the same time
            ticket,
            client_id=str(state["client-id"]),
            keyholder=bytes(state["keyholder"]),
            plan=ticket_plan(plan.digest(), key.scheme),
            key=key,
            last_round=last,
            phase=phase,
        )
        roundfile.remember(node, start)
        # The key holder signed this plan and key, for a round this client has not
        # answered: now the data may meet them, in a time that tells nothing of it.
        with padded(round_floor(context.node_config)):
            spec = _client_spec(state, _own_data(data, context))
            with kept_to_itself("this client's data does not fit the federation's plan"):
                client = _build_client(spec)
            try:
                with kept_to_itself(
                    "this client could not answer the round under the federation's plan",
                    passing=ABOUT_THE_TICKET,
                ):
                    report = client.participate(ticket)
            finally:
                state["last-round"] = client.last_round  # an attempt counts
                state["phase"] = client.phase
        # Its clipped count and seconds tell of this client's data: they stay here.
        record = report.kept().to_record()
        # The bytes and the round travel in the ConfigRecord, the numbers as metrics.
        config = {key: record.pop(key) for key in ("update", "round")}
        return records.reply(message, config, record)  # type: ignore[arg-type]

    return _round


def make_client_app(data: DataSource, node_files: NodeFiles | None = None) -> ClientApp:
    """The ClientApp every node runs; ``data`` finds a client node's own data.

    Parameters
    ----------
    data : callable
        ``data(context) -> (X, y)``: the node's features and targets, for example
        read from a path in ``context.node_config``. Called on client nodes only.
    node_files : callable, optional
        ``node_files(context) -> dict``: node-config entries to add to every
        message's context (a checkpointed simulation gives its virtual nodes their
        ``state-file`` and ``identity-file`` this way, as a deployment's node
        config would).

    Returns
    -------
    flwr.clientapp.ClientApp
    """
    app = ClientApp()
    app.query(records.HELLO.split(".")[1])(_refusing(_hello, node_files))
    app.query(records.PROVE.split(".")[1])(_refusing(_prove, node_files))
    app.train(records.KEYGEN.split(".")[1])(_refusing(_keygen, node_files))
    app.train(records.SETUP.split(".")[1])(_refusing(_make_setup(), node_files))
    app.train(records.ROUND.split(".")[1])(_refusing(_make_round(data), node_files))
    app.train(records.REGISTER.split(".")[1])(_refusing(_register, node_files))
    app.train(records.TICKET.split(".")[1])(_refusing(_ticket, node_files))
    app.train(records.DECRYPT.split(".")[1])(_refusing(_decrypt, node_files))
    app.train(records.REOPEN.split(".")[1])(_refusing(_reopen, node_files))
    add_share_handlers(app)
    return app
