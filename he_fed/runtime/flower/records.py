"""How he-fed's protocol rides on Flower messages: message types, record keys, errors.

Every protocol message is already bytes (:mod:`he_fed.protocol.messages`), so a
Flower message carries it as a ``bytes`` value of a ``ConfigRecord``; the key
holder's key-generation seconds travel in a ``MetricRecord``, and a client node
sends no number (its seconds grow with its rows). One exchange per step:

=====================  ===============  ==========================================
message type           to               carries (reply carries)
=====================  ===============  ==========================================
``query.hefed_hello``  every node       nothing (its role and partition id)
``train.hefed_keygen`` the key holder   scheme and policy (public and aggregation
                                        key bytes; the secret key stays there)
``train.hefed_setup``  each client      client id, public key, client plan
``train.hefed_round``  each client      encoded ``RoundStart`` (``EncryptedUpdate``)
``train.hefed_decrypt`` the key holder  encoded ``EncryptedAggregate`` (``Release``)
``train.hefed_reopen`` the key holder   scheme and plan, as for keygen (public
                                        material, registry and release record of
                                        the federation in its ``state-file``)
``query.hefed_prove``  a node found     a fresh nonce (the key holder's signature
                       again            over it, :func:`identity_challenge`)
=====================  ===============  ==========================================

A node that refuses answers with a Flower ``Error`` whose reason is
``"<ExceptionName>: <message>"``; :func:`raise_remote` turns it back into the
same :mod:`he_fed.exceptions` class on the server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flwr.app import ConfigRecord, Error, Message, MetricRecord, RecordDict

from he_fed import exceptions
from he_fed.exceptions import ConfigurationError, ExecutorError, HEFedError
from he_fed.protocol.messages import Task
from he_fed.protocol.model import RunPlan
from he_fed.protocol.spec import scheme_to_config

if TYPE_CHECKING:
    from he_fed.protocol.spec import FederationSetup

__all__ = [
    "DECRYPT",
    "HELLO",
    "NONCE_BYTES",
    "PROVE",
    "KEYGEN",
    "REGISTER",
    "REOPEN",
    "ROUND",
    "SETUP",
    "TICKET",
    "blob",
    "blobs",
    "config_of",
    "identity_challenge",
    "integer",
    "integers",
    "error_reply",
    "flag",
    "keyholder_request",
    "number",
    "run_plan",
    "task",
    "text",
    "metrics_of",
    "raise_remote",
    "reply",
    "role_of",
    "texts",
]

HELLO = "query.hefed_hello"
KEYGEN = "train.hefed_keygen"
SETUP = "train.hefed_setup"
ROUND = "train.hefed_round"
DECRYPT = "train.hefed_decrypt"
REGISTER = "train.hefed_register"
TICKET = "train.hefed_ticket"
REOPEN = "train.hefed_reopen"
PROVE = "query.hefed_prove"

#: Bytes of the nonce a node that says it is the key holder signs to prove it.
NONCE_BYTES = 32
_CHALLENGE_DOMAIN = b"he-fed/flower/keyholder-node/v1"

#: Record names inside a message's RecordDict.
CONFIG = "hefed"
METRICS = "hefed.metrics"
#: Error code of a refusal by he-fed (Flower's own codes are small integers).
REFUSED = 4701


def content(config: dict[str, object], metrics: dict[str, float | int] | None = None) -> RecordDict:
    """A RecordDict with our ConfigRecord (and MetricRecord, if given)."""
    records = RecordDict({CONFIG: ConfigRecord(config)})  # type: ignore[arg-type]
    if metrics:
        records[METRICS] = MetricRecord(metrics)  # type: ignore[arg-type]
    return records


def reply(
    message: Message, config: dict[str, object], metrics: dict[str, float | int] | None = None
) -> Message:
    """The reply to ``message`` carrying ``config`` (and ``metrics``)."""
    return Message(content(config, metrics), reply_to=message)


def error_reply(message: Message, exc: HEFedError) -> Message:
    """A refusal: a Flower error whose reason names the he-fed exception."""
    return Message(Error(REFUSED, f"{type(exc).__name__}: {exc}"), reply_to=message)


def config_of(message: Message) -> ConfigRecord:
    """Our ConfigRecord in a message.

    Raises
    ------
    MalformedMessage
        If the message does not carry one.
    """
    records = message.content
    if CONFIG not in records:
        raise exceptions.MalformedMessage("the Flower message carries no he-fed record")
    return records[CONFIG]  # type: ignore[return-value]


def blob(config: Mapping[str, object], key: str) -> bytes:
    """The bytes another party sent under ``key``.

    A ConfigRecord also holds integers and text, and ``bytes(n)`` of an integer is
    ``n`` zero bytes: a ServerApp that sent ``2**35`` would have a node fill 32 GiB
    (red team 34). Only bytes are taken.

    Raises
    ------
    MalformedMessage
        If ``key`` is missing or does not hold bytes.
    """
    value = config.get(key)
    if not isinstance(value, bytes):
        raise exceptions.MalformedMessage(
            f"the message's {key!r} must be bytes, not {type(value).__name__}"
        )
    return value


def _exactly(config: Mapping[str, object], key: str, kind: type, what: str) -> object:
    """``config[key]`` if it is exactly of ``kind`` (a ``bool`` is an ``int`` to
    ``isinstance``, not to a message's reader)."""
    value = config.get(key)
    if type(value) is not kind:
        raise exceptions.MalformedMessage(
            f"the message's {key!r} must be {what}, not {type(value).__name__}"
        )
    return value


def integer(config: Mapping[str, object], key: str) -> int:
    """The integer another party sent under ``key``.

    Raises
    ------
    MalformedMessage
        If ``key`` is missing or does not hold an integer.
    """
    return _exactly(config, key, int, "an integer")  # type: ignore[no-any-return]


def text(config: Mapping[str, object], key: str) -> str:
    """The text another party sent under ``key``.

    Raises
    ------
    MalformedMessage
        If ``key`` is missing or does not hold text.
    """
    return _exactly(config, key, str, "text")  # type: ignore[no-any-return]


def task(config: Mapping[str, object]) -> Task:
    """The task a ``hefed_ticket`` request names.

    Raises
    ------
    MalformedMessage
        If it names none of :class:`~he_fed.protocol.messages.Task`'s.
    """
    name = text(config, "task")
    try:
        return Task(name)
    except ValueError:
        raise exceptions.MalformedMessage(f"no task is called {name[:40]!r}") from None


def flag(config: Mapping[str, object], key: str) -> bool:
    """The boolean another party sent under ``key``: ``bool("no")`` is True, so only a
    boolean is taken.

    Raises
    ------
    MalformedMessage
        If ``key`` is missing or does not hold a boolean.
    """
    return _exactly(config, key, bool, "a boolean")  # type: ignore[no-any-return]


def number(config: Mapping[str, object], key: str) -> float:
    """The finite number (an integer or a float, not a boolean) sent under ``key``.

    Raises
    ------
    MalformedMessage
        If ``key`` is missing or does not hold a finite number.
    """
    value = config.get(key)
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise exceptions.MalformedMessage(f"the message's {key!r} must be a finite number")
    return float(value)  # type: ignore[arg-type]


def run_plan(config: Mapping[str, object]) -> RunPlan:
    """The run plan a ``hefed_keygen`` or ``hefed_reopen`` request states.

    Raises
    ------
    MalformedMessage
        If a field is missing or of the wrong type.
    ConfigurationError
        If the fields do not make a plan.
    """
    return RunPlan(
        integer(config, "n-features"),
        number(config, "server-lr"),
        flag(config, "standardize"),
        flag(config, "standardize-target"),
        integer(config, "n-outputs"),
        client_plan=blob(config, "client-plan"),
    )


def keyholder_request(setup: FederationSetup) -> dict[str, object]:
    """What the ServerApp expects of a key holder or share holder: scheme, plan, cohort.

    A deployed node takes its policy from its own file and refuses a request that
    differs; only a simulated one, whose nodes all belong to the person running
    it, takes it from here.

    Parameters
    ----------
    setup : FederationSetup
        The federation the ServerApp runs.

    Returns
    -------
    dict
        The request's fields: the scheme's, the run plan's and ``min-clients``
        (0: not asked).

    Raises
    ------
    ConfigurationError
        If ``setup`` needs what a node's policy does not carry yet: a privacy
        budget, a server optimizer other than avg, or federated evaluation. A node
        would run without it (a private run, for one, would release every round).
    """
    unsupported = [
        what
        for what, used in (
            ("a privacy budget", setup.privacy is not None),
            (f"server_optimizer={setup.server_optimizer!r}", setup.server_optimizer != "avg"),
            ("federated evaluation", bool(setup.plan.validation_split)),
        )
        if used
    ]
    if unsupported:
        raise ConfigurationError(
            f"on Flower, {' and '.join(unsupported)} is not supported yet: the key-holder "
            "and share-holder nodes' policy does not carry it; use the inprocess or "
            "processes executor"
        )
    plan = setup.run_plan
    return {
        **scheme_to_config(setup.scheme),
        "min-clients": setup.min_clients or 0,
        "n-features": plan.n_features,
        "server-lr": plan.server_lr,
        "standardize": plan.standardize,
        "standardize-target": plan.standardize_target,
        "n-outputs": plan.n_outputs,
        "client-plan": plan.client_plan,
    }


def _listed(config: Mapping[str, object], key: str, kind: type, what: str) -> list[Any]:
    """The list under ``key`` (empty if absent) whose items are exactly of ``kind``.

    Exactly: ``bool`` is an ``int`` to ``isinstance``, not to a message's reader.
    """
    values = config.get(key, [])
    if not isinstance(values, list) or not all(type(v) is kind for v in values):
        raise exceptions.MalformedMessage(f"the message's {key!r} must be a list of {what}")
    return list(values)


def integers(config: Mapping[str, object], key: str) -> list[int]:
    """The list of integers another party sent under ``key`` (empty if absent).

    Raises
    ------
    MalformedMessage
        If ``key`` holds anything but a list of integers.
    """
    return _listed(config, key, int, "integers")


def texts(config: Mapping[str, object], key: str) -> list[str]:
    """The list of text another party sent under ``key`` (empty if absent).

    Raises
    ------
    MalformedMessage
        If ``key`` holds anything but a list of text.
    """
    return _listed(config, key, str, "text")


def identity_challenge(nonce: bytes) -> bytes:
    """What a key-holder node signs to prove it holds the pinned identity.

    Domain-separated from tickets and releases, and of one length, so the
    signature serves for nothing else.
    """
    if len(nonce) != NONCE_BYTES:
        raise exceptions.MalformedMessage(f"a challenge nonce is {NONCE_BYTES} bytes")
    return _CHALLENGE_DOMAIN + nonce


def role_of(message: Message) -> tuple[str, int]:
    """The role and partition id a node's answer to ``hefed_hello`` declares.

    Raises
    ------
    MalformedMessage
        If the answer does not carry a text role and an integer partition id.
    """
    config = config_of(message)
    role, partition = config.get("role"), config.get("partition-id")
    if not isinstance(role, str) or type(partition) is not int:
        raise exceptions.MalformedMessage(
            "a node's hello must carry a text role and a partition id"
        )
    return role, partition


def blobs(config: Mapping[str, object], key: str) -> list[bytes]:
    """The list of bytes another party sent under ``key`` (empty if absent), as :func:`blob`."""
    return _listed(config, key, bytes, "bytes")


def metrics_of(message: Message) -> MetricRecord:
    """Our MetricRecord in a message (empty if absent)."""
    records = message.content
    return records[METRICS] if METRICS in records else MetricRecord({})  # type: ignore[return-value]


def raise_remote(reason: str | None, where: str) -> None:
    """Raise the he-fed exception a node reported, or :class:`ExecutorError`.

    Parameters
    ----------
    reason : str or None
        The Flower error's reason, ``"<ExceptionName>: <message>"`` for refusals.
    where : str
        Which node, for the message.
    """
    text = reason or "no reason given"
    name, _, detail = text.partition(": ")
    cls = getattr(exceptions, name, None)
    if cls is exceptions.TrainingDiverged:
        # Only the aggregator finds that its own model diverged; a node that says
        # so would end the run in the model's name (red team 39).
        raise exceptions.ProtocolError(f"{where} claims the model diverged: {detail}")
    if isinstance(cls, type) and issubclass(cls, HEFedError):
        raise cls(f"{where}: {detail}")
    raise ExecutorError(f"{where} failed: {text}")
