"""The share-holder side of a Flower node: one threshold share, a full policy enforcer.

A node started with ``--node-config "share-file='share-2.key' policy-file='holder.json'
identity-file='holder-2.identity' council-file='council.pin'
federation-file='holder-2.federation'"`` is a share holder: a
:class:`~he_fed.protocol.decryptor.Decryptor`, the same code as in process, rebuilt
from its node state for every message (:mod:`he_fed.protocol.decryptor_state`).
It may also carry ``partition-id`` (or ``data-path``) and train as a client: a
hospital that trains and holds a share.

Everything that decides what it releases is its own, never the ServerApp's:

* its **share** comes from its ``share-file`` (``passphrase-file`` if protected);
* its **policy** (scheme, plan, minimum cohort, trusted clients) from its
  ``policy-file`` (:class:`~he_fed.runtime.flower.policy.KeyHolderPolicy`);
* it serves **one federation**: its ``federation-file`` is claimed at its first
  setup, and a node whose file exists refuses another (a new run would otherwise
  meet a holder that forgot the rounds it answered: :func:`_mark_federation`);
* the **council** it checks tickets and certificates against is the pin in its
  ``council-file`` (hex of :func:`~he_fed.protocol.council.council_pin`), and its
  own Ed25519 identity (``identity-file``, 64 hex digits) must be in it at its index.
  Each holder's X25519 key, to which partials are sealed, is fresh per run and
  signed by its identity; a holder seals only to keys the pinned identities signed.

Only in a simulation (one person owns every node) do the share, the policy and
the pin come from the ServerApp's messages.

Messages (``train.hefed_share_*``): ``setup`` (load share and policy; answer with
public material, identity and signed exchange key), ``join`` (the council and the
holders' exchange keys), ``register`` (client identities, once), ``ticket``,
``endorse``, ``partial`` and ``release``: one per step of
:class:`~he_fed.protocol.decryptor.Decryptor`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from he_fed._files import write_atomic
from he_fed.crypto.threshold import KeyShare, load_share
from he_fed.exceptions import (
    ConfigurationError,
    HEFedError,
    PolicyViolation,
    ProtocolError,
    StateError,
)
from he_fed.protocol.council import parse_council
from he_fed.protocol.decryptor import Decryptor
from he_fed.protocol.decryptor_state import export_decryptor_state, restore_decryptor
from he_fed.protocol.messages import FEDERATION_ID_BYTES
from he_fed.protocol.partial_transport import ExchangeKey
from he_fed.protocol.receipts import Identity, verify_signature
from he_fed.protocol.spec import scheme_from_config
from he_fed.runtime.flower import records
from he_fed.runtime.flower.policy import (
    KeyHolderPolicy,
    admitted_registration,
    federation_record,
    in_simulation,
    with_trusted_clients,
)

__all__ = [
    "SHARE_STATE",
    "add_share_handlers",
    "exchange_payload",
    "holds_share",
    "read_pin_hex",
]

SHARE_STATE = "hefed.shareholder"
_KEYHOLDER_STATE = "hefed.keyholder"
_Handler = Callable[[Message, Context], Message]
_PREFIX = "train.hefed_share_"
#: First line of ``<federation-file>.state``; the second is the saved state's SHA-256.
_SAVED_FORMAT = b"he-fed share-holder state v1\n"


def holds_share(context: Context) -> bool:
    """Whether this node was started as a share holder (``share-file`` or the role)."""
    node = context.node_config
    return "share-file" in node or str(node.get("role", "")).strip().lower() == "shareholder"


def exchange_payload(index: int, exchange: bytes) -> bytes:
    """What a holder's identity signs to vouch for its X25519 exchange key."""
    return b"he-fed/threshold/exchange-key/v1" + index.to_bytes(2, "big") + exchange


def read_pin_hex(text: str, what: str) -> bytes:
    """A council pin from its hex text.

    Raises
    ------
    ConfigurationError
        If ``text`` is not the hex of a council pin.
    """
    try:
        pin = bytes.fromhex(str(text).strip())
    except ValueError:
        pin = b""
    if parse_council(pin) is None:
        raise ConfigurationError(f"{what} is not the hex of a council pin")
    return pin


def _read_file(path: object, what: str) -> bytes:
    try:
        return Path(str(path)).read_bytes()
    except OSError:
        raise ConfigurationError(f"cannot read the {what} {str(path)!r}") from None


def _policy(config: Any, context: Context) -> KeyHolderPolicy:
    node = context.node_config
    if node.get("policy-file"):
        return with_trusted_clients(KeyHolderPolicy.read(str(node["policy-file"])), node)
    if not in_simulation(node):
        raise ConfigurationError(
            "a share-holder node takes its policy from its own configuration: start it "
            "with --node-config \"share-file='share-1.key' policy-file='holder.json'\""
        )
    min_clients = records.integer(config, "min-clients")
    policy = KeyHolderPolicy(
        scheme_from_config(config),
        records.run_plan(config),
        min_clients or None,
        trust_on_first_use=True,
    )
    return with_trusted_clients(policy, node)


def _share(config: Any, context: Context, allow_insecure: bool) -> bytes:
    node = context.node_config
    if node.get("share-file"):
        data = _read_file(node["share-file"], "share-file")
        passphrase = None
        if node.get("passphrase-file"):
            passphrase = _read_file(node["passphrase-file"], "passphrase-file").strip()
        share = load_share(data, passphrase=passphrase, allow_insecure=allow_insecure)
        return share.to_bytes()  # kept in the node's memory only, as a key holder's key
    if in_simulation(node) and "share" in config:
        return records.blob(config, "share")
    raise ConfigurationError(
        "a share-holder node reads its share from its own share-file: start it with "
        "--node-config \"share-file='share-1.key'\""
    )


def _identity(context: Context) -> Identity:
    path = context.node_config.get("identity-file")
    if not path:
        return Identity()
    try:
        return Identity.from_private_bytes(bytes.fromhex(Path(str(path)).read_text().strip()))
    except (OSError, ValueError):
        raise ConfigurationError(f"cannot read the share holder's identity-file {path!r}") from None


def _mark_federation(context: Context, share: KeyShare, exchange: bytes) -> None:
    """Claim this node's ``federation-file`` for the federation being set up, once.

    A node keeps its policy state (rounds answered, models combined under, the
    budget) in its Flower node state, which every new run starts empty. Without
    this file a new ``flwr run`` against the same holders would meet holders that
    forgot the last one, and could have them answer a second cohort from the same
    starting model, which differences one client's update (a red team did). So a
    deployed holder claims the file before it answers its first setup, and refuses
    to set up again while the file exists. A holder resumed across runs is not
    built; its operator starts a new federation by moving the file away.

    Raises
    ------
    ConfigurationError
        If a deployed node has no ``federation-file``.
    PolicyViolation
        If the file exists: this holder already served a federation.
    """
    path = federation_record(
        context.node_config,
        "federation-file",
        "share-holder",
        "federation-file='holder-1.federation'",
    )
    if path is None:
        return  # a simulation: one ServerApp owns every node and its whole lifetime
    text = (
        "he-fed share-holder federation v1\n"
        f"share {share.index} of key {share.public.fingerprint.hex()}\n"
        f"exchange key {exchange.hex()}\n"
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(str(path), flags, 0o600)
    except FileExistsError:
        raise PolicyViolation(
            f"share holder {share.index} already served a federation (its federation-file "
            f"{str(path)!r} exists): a holder that forgot which rounds it answered could be "
            "made to answer a second cohort from the same start; move the file away only to "
            "start a new federation"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the federation-file {str(path)!r}: {exc}"
        ) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _record(context: Context) -> ConfigRecord:
    if SHARE_STATE not in context.state:
        raise ProtocolError("this node holds no share in this run; it was never set up")
    return cast(ConfigRecord, context.state[SHARE_STATE])


def _load(context: Context) -> tuple[ConfigRecord, KeyShare, KeyHolderPolicy]:
    record = _record(context)
    policy = KeyHolderPolicy.from_json(str(record["policy"]))
    allow_insecure = bool(getattr(policy.scheme, "allow_insecure", False))
    share = load_share(bytes(record["share"]), allow_insecure=allow_insecure)  # type: ignore[arg-type]
    return record, share, policy


def _restore(context: Context) -> Decryptor:
    record, share, _ = _load(context)
    if "state" not in record:
        raise ProtocolError("this share holder has not joined its council yet")
    _check_saved(context, bytes(record["state"]))  # type: ignore[arg-type]
    peers = [bytes(k) for k in record["peers"]]  # type: ignore[union-attr, arg-type]
    return restore_decryptor(
        share,
        exchange=ExchangeKey(X25519PrivateKey.from_private_bytes(bytes(record["exchange"]))),  # type: ignore[arg-type]
        peers={i + 1: k for i, k in enumerate(peers)},
        council=bytes(record["council"]),  # type: ignore[arg-type]
        identity=Identity.from_private_bytes(bytes(record["identity"])),  # type: ignore[arg-type]
        state=bytes(record["state"]),  # type: ignore[arg-type]
    )


def _save(context: Context, holder: Decryptor) -> None:
    state = export_decryptor_state(holder)
    _record(context)["state"] = state
    path = _saved_path(context)
    if path is not None:
        write_atomic(path, _saved_line(state))


def _saved_path(context: Context) -> Path | None:
    """Beside a deployed holder's ``federation-file``: the digest of the state it saved last."""
    path = context.node_config.get("federation-file")
    return Path(f"{path}.state") if path else None


def _saved_line(state: bytes) -> bytes:
    return _SAVED_FORMAT + hashlib.sha256(state).hexdigest().encode() + b"\n"


def _check_saved(context: Context, state: bytes) -> None:
    """Refuse a node state older than the one this holder saved last (red team 54).

    Flower hands each message's process the node state and takes it back whole at
    its end. Had a node run a second message while a decryption ran, that message's
    older state, written back last, would have made the holder forget the release
    and release the round again for another cohort. A Flower 1.42 SuperNode runs
    one message at a time; this check does not rely on it.

    Raises
    ------
    StateError
        If the state is not the one whose digest the holder saved last.
    """
    path = _saved_path(context)
    if path is None:  # a simulation: one person owns every node
        return
    try:
        saved = path.read_bytes()
    except OSError:
        saved = b""
    if not hmac.compare_digest(saved, _saved_line(state)):
        raise StateError(
            f"share holder's node state is not the one it saved last ({str(path)!r}): "
            "an older state was handed back, or the file was changed; refusing to act on it"
        )


def _setup(message: Message, context: Context) -> Message:
    """Load this node's share and policy; answer with public material and a signed exchange key."""
    if str(context.node_config.get("role", "")).strip().lower() == "keyholder" or (
        _KEYHOLDER_STATE in context.state
    ):
        raise PolicyViolation("this node is the single key holder; it holds no share")
    if SHARE_STATE in context.state:
        raise ProtocolError("this node already set up its share in this run")
    started = time.perf_counter()
    config = records.config_of(message)
    policy = _policy(config, context)
    policy.refuse_other(config, "share holder")
    allow_insecure = bool(getattr(policy.scheme, "allow_insecure", False))
    raw = _share(config, context, allow_insecure)
    share = load_share(raw, allow_insecure=allow_insecure)
    if share.public.scheme != policy.scheme:
        raise ConfigurationError("the share-file's scheme differs from the policy's")
    identity = _identity(context)
    exchange = X25519PrivateKey.generate()
    exchange_public = ExchangeKey(exchange).public_bytes
    _mark_federation(context, share, exchange_public)
    context.state[SHARE_STATE] = ConfigRecord(
        {
            "share": raw,
            "identity": identity.private_bytes(),
            "exchange": exchange.private_bytes_raw(),
            "policy": policy.to_json(),
        }
    )
    vk = share.verification
    return records.reply(
        message,
        {
            "index": share.index,
            "threshold": vk.threshold,
            "holders": vk.holders,
            "public-key": share.public.to_bytes(),
            "aggregation-key": share.public.aggregation_key().to_bytes(),
            "identity": identity.public_bytes,
            "exchange": exchange_public,
            "exchange-signature": identity.sign(exchange_payload(share.index, exchange_public)),
        },
        {"setup-s": time.perf_counter() - started},
    )


def _join(message: Message, context: Context) -> Message:
    """Take the council's exchange keys, checked against the pinned council."""
    record, share, policy = _load(context)
    if "state" in record:
        raise ProtocolError("this share holder already joined its council")
    config = records.config_of(message)
    node = context.node_config
    offered = records.blob(config, "council")
    if node.get("council-file"):
        text = _read_file(node["council-file"], "council-file").decode(errors="replace")
        council = read_pin_hex(text, "the council-file")
        if offered != council:
            raise PolicyViolation("the ServerApp names a council other than this node's pin")
    elif in_simulation(node):
        council = offered
    else:
        raise ConfigurationError(
            "a share-holder node checks tickets against the council it was provisioned "
            "with: start it with --node-config \"council-file='council.pin'\""
        )
    parsed = parse_council(council)
    exchanges = records.blobs(config, "exchanges")
    signatures = records.blobs(config, "exchange-signatures")
    if parsed is None or len(exchanges) != len(parsed[1]) or len(signatures) != len(exchanges):
        raise ProtocolError("a council join needs one exchange key per pinned holder")
    for index, (key, signature, ident) in enumerate(
        zip(exchanges, signatures, parsed[1], strict=True), start=1
    ):
        if not verify_signature(ident, signature, exchange_payload(index, key)):
            raise PolicyViolation(f"holder {index}'s exchange key is not signed by its identity")
    federation = hashlib.sha256(
        b"he-fed/threshold/federation/v1" + council + b"".join(exchanges)
    ).digest()[:FEDERATION_ID_BYTES]
    identity = Identity.from_private_bytes(bytes(record["identity"]))  # type: ignore[arg-type]
    holder = Decryptor(
        share,
        exchange=ExchangeKey(X25519PrivateKey.from_private_bytes(bytes(record["exchange"]))),  # type: ignore[arg-type]
        peers={i: k for i, k in enumerate(exchanges, start=1)},
        council=council,
        identity=identity,
        plan=policy.plan,
        min_clients=policy.cohort,
        federation=federation,
    )
    record["council"] = council
    record["peers"] = exchanges
    _save(context, holder)
    return records.reply(message, {"joined": share.index})


def _register(message: Message, context: Context) -> Message:
    """Record the clients' identities, once, before the first ticket (as the key holder)."""
    holder = _restore(context)
    _, _, policy = _load(context)
    if holder.registered_clients() or holder.last_round >= 0:
        raise ProtocolError("clients register once, at setup, before the first round")
    for client_id, key in admitted_registration(records.config_of(message), policy, "share holder"):
        holder.register(client_id, key)
    _save(context, holder)
    return records.reply(message, {"min-clients": holder.min_clients})


def _step(act: Callable[[Decryptor, Any], dict[str, object]]) -> _Handler:
    """A handler that restores the holder, acts, and saves it whatever happened."""

    def handler(message: Message, context: Context) -> Message:
        holder = _restore(context)
        try:
            answer = act(holder, records.config_of(message))
        finally:
            _save(context, holder)  # an attempt counts, as for the key holder
        return records.reply(message, answer)

    return handler


def _ticket(message: Message, context: Context) -> Message:
    """Sign the next round's ticket, unless the policy's ``max-tickets`` are spent."""
    policy = _load(context)[2]

    def sign(holder: Decryptor, config: Any) -> dict[str, object]:
        policy.check_ticket(holder.last_round + 1, "share holder")
        return {"ticket": holder.start_round(records.task(config))}

    return _step(sign)(message, context)


def _endorse(holder: Decryptor, config: Any) -> dict[str, object]:
    return {"endorsement": holder.endorse(records.blob(config, "encrypted-aggregate"))}


def _partial(holder: Decryptor, config: Any) -> dict[str, object]:
    sealed = holder.partial_decrypt(
        records.blob(config, "encrypted-aggregate"), records.blob(config, "certificate")
    )
    return {"recipients": list(sealed), "sealed": list(sealed.values())}


def _release(holder: Decryptor, config: Any) -> dict[str, object]:
    aggregate = holder.release(records.blobs(config, "sealed"))
    used, refused = holder.last_partials
    return {"aggregate": aggregate, "used": list(used), "refused": list(refused)}


def _refusing(handler: _Handler) -> _Handler:
    def wrapped(message: Message, context: Context) -> Message:
        try:
            return handler(message, context)
        except HEFedError as exc:
            return records.error_reply(message, exc)

    return wrapped


#: Message type (``train.hefed_share_<step>``) of each step.
STEPS: dict[str, _Handler] = {
    "setup": _setup,
    "join": _join,
    "register": _register,
    "ticket": _ticket,
    "endorse": _step(_endorse),
    "partial": _step(_partial),
    "release": _step(_release),
}


def add_share_handlers(app: ClientApp) -> None:
    """Register the share-holder messages on ``app`` (every node runs the same ClientApp)."""
    for step, handler in STEPS.items():
        app.train(f"hefed_share_{step}")(_refusing(handler))
