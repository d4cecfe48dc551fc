"""A key-holder node reopens its federation in a new Flower run (a resumed ServerApp).

Flower gives every ``flwr run`` (and every simulation) a new run id and each node
an empty node state for it. A ServerApp that resumes a checkpointed federation
(:mod:`he_fed.runtime.flower.resume`) therefore cannot ask the key-holder node to
generate keys again (``hefed_keygen`` refuses an existing ``state-file``, and
rightly: a node never starts a second federation over it). It sends
``hefed_reopen`` instead, and the node:

* rebuilds its node state from its *own* files (``state-file``,
  ``secret-key-file``, ``identity-file``, ``policy-file``), never from the
  message, so its policy is still only its own;
* refuses a request whose scheme or plan differs from its policy;
* answers with public material only: its public and aggregation keys, its
  identity, its cohort policy, the clients it registered, the last round it
  ticketed and the rounds it released. The ServerApp checks its checkpoint
  against these before it continues.

The node's state file is not changed by a reopen.
"""

from __future__ import annotations

from typing import Any, cast

from flwr.app import ConfigRecord, Context, Message

from he_fed.crypto import Scheme
from he_fed.exceptions import ConfigurationError, PolicyViolation
from he_fed.protocol import RunPlan
from he_fed.runtime.flower import records, statefile
from he_fed.runtime.flower.policy import KeyHolderPolicy
from he_fed.runtime.keyholder_store import KeyHolderStore

__all__ = ["answer"]


def _summary(store: KeyHolderStore) -> dict[str, Any]:
    keyholder = store.keyholder
    registered = keyholder.registered_clients()
    return {
        "public-key": keyholder.public_key_bytes(),
        "aggregation-key": keyholder.aggregation_key_bytes(),
        "identity": keyholder.identity_bytes,
        "min-clients": keyholder.min_clients,
        "client-ids": list(registered),
        "verify-keys": list(registered.values()),
        "last-round": keyholder.last_round,
        "released": [r.round for r in store.releases],
    }


def answer(
    message: Message, context: Context, state_key: str, asked: tuple[Scheme, RunPlan]
) -> Message:
    """The reply to ``hefed_reopen``: the federation in the node's ``state-file``.

    Parameters
    ----------
    message : flwr.app.Message
        The request.
    context : flwr.app.Context
        The node's context; its node state gets the key holder's state under
        ``state_key`` if it was empty (a new run).
    state_key : str
        Where the node keeps the key holder's state in ``context.state``.
    asked : (Scheme, RunPlan)
        The scheme and plan the ServerApp expects.

    Raises
    ------
    ConfigurationError
        If the node has no ``state-file`` (it keeps no federation across runs).
    PolicyViolation
        If the ServerApp expects another scheme or plan than the node's policy.
    StateError
        If the state file is missing, does not verify, or differs from the node
        state in memory.
    """
    path = statefile.path_of(context)
    if path is None:
        raise ConfigurationError(
            "this key-holder node has no state-file, so no federation survives its run; "
            "start it with state-file, secret-key-file, identity-file and policy-file"
        )
    if state_key not in context.state:
        context.state[state_key] = ConfigRecord(statefile.reload(context))
    record = cast(ConfigRecord, context.state[state_key])
    policy = KeyHolderPolicy.from_json(str(record["policy"]))
    scheme, plan = asked
    if scheme != policy.scheme or plan != policy.plan:
        raise PolicyViolation(
            "the key holder's scheme, plan and policy are its own; the ServerApp asked to "
            f"reopen {scheme!r} and {plan!r}, the node's policy says {policy.scheme!r} and "
            f"{policy.plan!r}"
        )
    return records.reply(message, statefile.through_store(path, record, _summary))
