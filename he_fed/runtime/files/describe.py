"""What ``he-fed inspect`` says about the file workflow's files, without any secret.

State files are sealed under their owner's secrets; their fields are shown as
read, marked unverified (only their owner's commands can check the seal).
"""

from __future__ import annotations

from typing import Any

from he_fed.crypto import wire
from he_fed.protocol.messages import RoundStart, decode
from he_fed.protocol.model import RunPlan
from he_fed.protocol.signed_release import Release
from he_fed.protocol.spec import model_kinds
from he_fed.runtime import _sealed
from he_fed.runtime.files.federation import FederationFile
from he_fed.runtime.files.identities import read_signing_key, read_verify_key
from he_fed.runtime.files.stores import ClientState
from he_fed.runtime.keyholder_store import parse_content

__all__ = ["KINDS", "describe_file"]

_UNVERIFIED = "sealed; fields below as read, unverified (the owner's commands check the seal)"
_PHASES = {0: "not started", 1: "magnitude answered", 2: "moments answered", 3: "training"}


def _signing_key(data: bytes) -> dict[str, Any]:
    name, identity = read_signing_key(data)
    return {"name": name, "verify key": identity.public_bytes.hex()}


def _verify_key(data: bytes) -> dict[str, Any]:
    name, public = read_verify_key(data)
    return {"name": name, "verify key": public.hex()}


def _federation(data: bytes) -> dict[str, Any]:
    fed = FederationFile.from_bytes(data)
    model = next(k for k, cls in model_kinds().items() if type(fed.client_plan.model) is cls)
    info: dict[str, Any] = {
        "federation": fed.federation.hex(),
        "key holder": f"{fed.keyholder.hex()} (signature verifies)",
        "model": f"{model}, {fed.plan.n_features} features",
        "standardize": "yes" if fed.plan.standardize else "no",
        "clients": ", ".join(sorted(fed.clients)),
        "min cohort": fed.min_clients or "a majority of the clients",
    }
    if fed.client_plan.classes is not None:
        info["classes"] = ", ".join(str(c) for c in fed.client_plan.classes)
    return info


def _release(data: bytes) -> dict[str, Any]:
    release = Release.from_bytes(data)
    message = release.message()
    return {
        "federation": release.federation.hex(),
        "round": message.round,
        "task": message.task.value,
        "contributors": message.contributors,
        "values": message.mean.size,
    }


def _keyholder_store(data: bytes) -> dict[str, Any]:
    _, content = _sealed.peek(data, wire.Kind.KEYHOLDER_STORE, "key holder state")
    generation, (_, ticket, releases, _) = parse_content(content)
    info: dict[str, Any] = {"seal": _UNVERIFIED, "generation": generation}
    info["last ticket"] = (
        f"round {decode(ticket, RoundStart).round}" if ticket else "none signed yet"
    )
    info["released"] = (
        f"{len(releases)} round(s), the last round {releases[-1].round}" if releases else "nothing"
    )
    return info


def _client_state(data: bytes) -> dict[str, Any]:
    _, content = _sealed.peek(data, wire.Kind.CLIENT_STATE, "client state")
    state = ClientState.from_content(content)
    return {
        "seal": _UNVERIFIED,
        "client": state.client_id,
        "federation": state.federation.hex(),
        "key holder": state.keyholder.hex(),
        "last round": state.last_round,
        "phase": _PHASES.get(state.phase, state.phase),
        "generation": state.generation,
    }


def _aggregator_state(data: bytes) -> dict[str, Any]:
    r = wire.Reader(wire.open_envelope(data, wire.Kind.AGGREGATOR_STATE).body, "aggregator state")
    keyholder, federation = bytes(r.raw(32)), r.blob(max_size=16)
    RunPlan.read_from(r, "aggregator state")
    round_id, task = r.uint() - 1, r.text(length_bytes=1)
    return {
        "federation": federation.hex() or "no round yet",
        "key holder": keyholder.hex(),
        "round": round_id,
        "to release": f"round {round_id} ({task})" if task else "nothing",
    }


#: The kinds this module describes, and how.
KINDS = {
    wire.Kind.SIGNING_KEY: _signing_key,
    wire.Kind.VERIFY_KEY: _verify_key,
    wire.Kind.FEDERATION: _federation,
    wire.Kind.RELEASE: _release,
    wire.Kind.KEYHOLDER_STORE: _keyholder_store,
    wire.Kind.CLIENT_STATE: _client_state,
    wire.Kind.AGGREGATOR_STATE: _aggregator_state,
}


def describe_file(kind: wire.Kind, data: bytes) -> dict[str, Any]:
    """Fields describing a file of one of :data:`KINDS` (empty for any other kind).

    Raises
    ------
    HEFedError
        If the bytes are malformed, or a federation file's signature does not verify.
    """
    reader = KINDS.get(kind)
    return {} if reader is None else reader(data)
