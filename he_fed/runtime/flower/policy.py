"""A key-holder node's own policy, and how Flower nodes tell a simulation from a deployment.

On Flower the ServerApp is the aggregator, so nothing that decides what the key
holder releases, or whom the clients trust, may come from its messages:

* the **key holder's policy** (scheme and key size, insecure opt-ins, the
  minimum cohort, the run plan that fixes every round's global model, the
  registered clients, the most tickets it signs) is a :class:`KeyHolderPolicy`.
  In a deployment the key-holder node reads it from a JSON file named in its own
  node config (``--node-config "role='keyholder' policy-file='keyholder.json'
  ..."``), written with :meth:`KeyHolderPolicy.write`. In a simulation, the person running it
  owns every node, and the policy comes from the simulation's own description.
* a **client node** encrypts only under keys named in tickets signed by the key
  holder whose Ed25519 identity it pinned: ``--node-config
  "keyholder-identity='<64 hex digits>'"``. Trusting the identity that arrives
  with the setup message (trust on first use) happens only in a simulation, or
  with ``trust-on-first-use=true`` in the node's own config.

A node is in a simulation when Flower's simulation engine made it: its node
config then holds ``num-partitions``, which a deployed SuperNode's does not
unless its operator says so. A deployed node that enforces a policy across
rounds (the key holder, each share holder) must also record its federation on its
own disk (:func:`federation_record`): its node state does not outlive the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from he_fed._validation import check_bool, check_float, check_int
from he_fed.crypto import Scheme
from he_fed.exceptions import (
    ConfigurationError,
    HEFedError,
    MalformedMessage,
    PolicyViolation,
    ProtocolError,
)
from he_fed.protocol.keyholder import majority
from he_fed.protocol.model import RunPlan
from he_fed.protocol.spec import FederationSetup, scheme_from_config, scheme_to_config
from he_fed.runtime.flower import records

__all__ = [
    "KeyHolderPolicy",
    "admitted_registration",
    "federation_record",
    "in_simulation",
    "read_identity_hex",
    "trusted_clients_file",
    "with_trusted_clients",
]

#: Version 2 added ``n-outputs`` (rows of weights, one per class of a multinomial
#: model); a version-1 policy, which predates it, describes a one-row model.
#: Version 3 added ``client-plan`` (the digest of the clients' training plan); an
#: older policy names none, and a node refuses to start a federation under it.
#: Version 4 added ``max-tickets`` (the most tickets the node signs for its
#: federation); an older policy sets no limit.
_VERSION = 4
_READABLE = (1, 2, 3, 4)


def in_simulation(node_config: Mapping[str, Any]) -> bool:
    """Whether Flower's simulation engine made this node (it sets ``num-partitions``)."""
    return "num-partitions" in node_config


def federation_record(
    node_config: Mapping[str, Any], name: str, role: str, example: str
) -> Path | None:
    """Where a policy-enforcing node records its federation: ``name`` in its node config.

    Such a node keeps what it answered (rounds, tickets, statistics, budget) in its
    Flower node state, which every new ``flwr run`` starts empty. A deployed node
    without a record on its own disk would meet a second run from the same start as
    a new federation, and an aggregator that runs twice with one client left out
    differences that client's update out of the two releases (a red team did, on
    share holders). So a deployed node must name one; only in a simulation, where
    one person owns every node and the whole run, may it go without.

    Parameters
    ----------
    node_config : mapping
        The node's own configuration.
    name : str
        The node-config key of the record (``"state-file"``, ``"federation-file"``).
    role : str
        The node's role, for the message (``"key-holder"``, ``"share-holder"``).
    example : str
        The node config to show the operator.

    Returns
    -------
    pathlib.Path or None
        The record's path; None for a simulated node without one.

    Raises
    ------
    ConfigurationError
        If a deployed node has none.
    """
    path = node_config.get(name)
    if path:
        return Path(str(path))
    if in_simulation(node_config):
        return None
    raise ConfigurationError(
        f"a {role} node records the federation it serves, since every flwr run starts "
        f'its node state empty: start it with --node-config "{example}" (on its own disk)'
    )


def read_identity_hex(text: str, what: str) -> bytes:
    """32 bytes from 64 hex digits.

    Raises
    ------
    ConfigurationError
        If ``text`` is not 64 hex digits.
    """
    try:
        raw = bytes.fromhex(str(text).strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError(f"{what} must be 64 hex digits (32 bytes)")
    return raw


def with_trusted_clients(
    policy: KeyHolderPolicy, node_config: Mapping[str, Any]
) -> KeyHolderPolicy:
    """``policy`` with the identities of the node config's ``trusted-clients`` file.

    The key-holder node and every share-holder node read it the same way (red
    team 56: share holders ignored it, so one started with ``trusted-clients`` and
    a policy that trusts on first use took whatever identities the ServerApp
    registered). A policy that names its own keeps them, and a file that names
    others is refused rather than ignored: an operator who removed a revoked
    client from the file must not see it admitted from the policy.

    Raises
    ------
    ConfigurationError
        If the file cannot be read, a line is malformed, or the policy names other
        trusted clients.
    """
    path = node_config.get("trusted-clients")
    if not path:
        return policy
    listed = trusted_clients_file(str(path))
    if policy.trusted_clients is None:
        return replace(policy, trusted_clients=listed)
    if dict(policy.trusted_clients) != listed:
        raise ConfigurationError(
            f"the node config's trusted-clients file {str(path)!r} names other clients or "
            "keys than the policy file's trusted-clients; give the list in one place"
        )
    return policy


def trusted_clients_file(path: str | Path) -> dict[str, bytes]:
    """Client identities provisioned out of band: ``client-id hex-public-key`` per line.

    Raises
    ------
    ConfigurationError
        If the file cannot be read or a line is malformed.
    """
    trusted: dict[str, bytes] = {}
    try:
        for line in Path(str(path)).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                client_id, key = line.split()
                trusted[client_id] = read_identity_hex(key, f"the key of {client_id!r}")
    except (OSError, ValueError):
        raise ConfigurationError(f"cannot read trusted-clients file {str(path)!r}") from None
    return trusted


@dataclass(frozen=True)
class KeyHolderPolicy:
    """Everything a key holder decides by itself.

    Parameters
    ----------
    scheme : Scheme
        Scheme, key size and encoding plan (with its insecure opt-in, if any).
    plan : RunPlan
        The run plan that fixes every round's global model.
    min_clients : int, optional
        Smallest cohort decrypted (default: a majority of ``trusted_clients``, or
        without them of the registered clients; see :attr:`cohort`).
    trusted_clients : mapping of str to bytes, optional
        Client identities provisioned out of band; registrations must match them.
    trust_on_first_use : bool, default=False
        Without ``trusted_clients``, accept the identities the aggregator
        forwards once, at setup. Named for what it is: an aggregator that
        substitutes its own identities can then sign receipts for ciphertexts
        it made.
    max_tickets : int, optional
        The most tickets the node signs for its federation, over every run and
        restart. Each ticket makes every client that answers it load its data and
        train, which the ServerApp can time (red team 52), so a ServerApp that asked
        for tickets it never completes learnt more with each one. None: no limit
        (a simulation's policy, where one person owns every node).
        :func:`~he_fed.runtime.flower.app.keyholder_policy` sets the run's own
        tickets and a few spare.
    """

    scheme: Scheme
    plan: RunPlan
    min_clients: int | None = None
    trusted_clients: Mapping[str, bytes] | None = field(default=None, compare=False)
    trust_on_first_use: bool = False
    max_tickets: int | None = None

    def __post_init__(self) -> None:
        check_bool("trust-on-first-use", self.trust_on_first_use)
        if self.min_clients is not None:
            check_int("min-clients", self.min_clients, low=1)
        if self.max_tickets is not None:
            check_int("max_tickets", self.max_tickets, low=1)

    def check_ticket(self, signed: int, who: str) -> None:
        """Refuse the next ticket once ``signed`` tickets have used up :attr:`max_tickets`.

        Raises
        ------
        PolicyViolation
            If the federation's tickets are spent.
        """
        if self.max_tickets is not None and signed >= self.max_tickets:
            raise PolicyViolation(
                f"the {who} has signed the {self.max_tickets} tickets its policy allows "
                "this federation (max-tickets: the run's rounds and a few spare); it "
                "signs no more, and a new run needs a new federation"
            )

    @property
    def cohort(self) -> int | None:
        """The minimum cohort a key holder (or share holder) is built with.

        ``min_clients``, or else a majority of the provisioned ``trusted_clients``:
        a majority of those the aggregator registers would let it register only a
        victim and a colluder (red team 46). None: a majority of the registered.
        """
        if self.min_clients is not None or not self.trusted_clients:
            return self.min_clients
        return majority(len(self.trusted_clients))

    @classmethod
    def for_simulation(cls, setup: FederationSetup) -> KeyHolderPolicy:
        """The policy of a simulated federation, where one person owns every node."""
        return cls(setup.scheme, setup.run_plan, setup.min_clients, None, trust_on_first_use=True)

    def to_json(self) -> str:
        """The policy as versioned JSON (no secret is in it)."""
        plan = self.plan
        data = {
            "he-fed-keyholder-policy": _VERSION,
            "scheme": scheme_to_config(self.scheme),
            "n-features": plan.n_features,
            "server-lr": plan.server_lr,
            "standardize": plan.standardize,
            "standardize-target": plan.standardize_target,
            "n-outputs": plan.n_outputs,
            "client-plan": plan.client_plan.hex(),
            "min-clients": self.min_clients,
            "trusted-clients": None
            if self.trusted_clients is None
            else {cid: key.hex() for cid, key in sorted(self.trusted_clients.items())},
            "trust-on-first-use": self.trust_on_first_use,
            "max-tickets": self.max_tickets,
        }
        return json.dumps(data, indent=2, sort_keys=True)

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (for ``policy-file`` in a node config)."""
        target = Path(path)
        target.write_text(self.to_json() + "\n", encoding="utf-8")
        return target

    @classmethod
    def from_json(cls, text: str) -> KeyHolderPolicy:
        """Read a policy written by :meth:`to_json`.

        Raises
        ------
        ConfigurationError
            If the text is not a valid policy.
        """
        try:
            data = json.loads(text)
            version = data.get("he-fed-keyholder-policy")
            if version not in _READABLE:
                raise ConfigurationError(
                    f"not an he-fed key holder policy of version {' or '.join(map(str, _READABLE))}"
                )
            scheme = scheme_from_config(data["scheme"])
            plan = RunPlan(
                check_int("n-features", data["n-features"], low=1),
                check_float("server-lr", data["server-lr"], low=0, strict_low=True),
                check_bool("standardize", data["standardize"]),
                check_bool("standardize-target", data["standardize-target"]),
                check_int("n-outputs", data["n-outputs"], low=1) if version >= 2 else 1,
                client_plan=bytes.fromhex(data["client-plan"]) if version >= 3 else b"",
            )
            trusted = data.get("trusted-clients")
            min_clients = data.get("min-clients")
            return cls(
                scheme,
                plan,
                min_clients,  # checked as built
                None
                if trusted is None
                else {
                    str(cid): read_identity_hex(key, f"the key of {cid!r}")
                    for cid, key in trusted.items()
                },
                data.get("trust-on-first-use", False),  # checked as built
                data["max-tickets"] if version >= 4 else None,  # checked as built
            )
        except ConfigurationError:
            raise
        except (HEFedError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(f"invalid key holder policy: {exc}") from None

    @classmethod
    def read(cls, path: str | Path) -> KeyHolderPolicy:
        """Read a policy file.

        Raises
        ------
        ConfigurationError
            If it cannot be read or is not a valid policy.
        """
        try:
            text = Path(str(path)).read_text(encoding="utf-8")
        except OSError:
            raise ConfigurationError(f"cannot read policy-file {str(path)!r}") from None
        return cls.from_json(text)

    def refuse_other(self, request: Mapping[str, object], who: str) -> None:
        """Refuse a ServerApp request (``hefed_keygen``, a share holder's setup) whose
        scheme or plan is not this policy's.

        Raises
        ------
        PolicyViolation
            If they differ, or the request names another smallest cohort than the
            policy's.
        MalformedMessage
            If the request does not state a scheme and a plan.
        ConfigurationError
            If the policy names no clients' plan (a policy of version 1 or 2).
        """
        if not self.plan.client_plan:
            raise ConfigurationError(
                f"the {who}'s policy names no clients' training plan (a policy older than "
                "version 3); write it again with "
                "he_fed.runtime.flower.app.keyholder_policy"
            )
        asked, plan = scheme_from_config(request), records.run_plan(request)
        if asked != self.scheme or plan != self.plan:
            raise PolicyViolation(
                f"the {who}'s scheme, plan and policy are its own; the ServerApp asked for "
                f"{asked!r} and {plan!r}, the node's policy says {self.scheme!r} and "
                f"{self.plan!r}"
            )
        cohort = records.integer(request, "min-clients")
        if cohort and cohort != self.cohort:
            own = (
                "a majority of the clients it registers"
                if self.cohort is None
                else f"{self.cohort} clients"
            )
            raise PolicyViolation(
                f"the {who}'s smallest cohort is its own policy's, {own}; the ServerApp's "
                f"run config asks for {cohort}: set the same min-clients in both, or leave "
                "it out of the run config"
            )


def admitted_registration(
    config: Mapping[str, Any], policy: KeyHolderPolicy, role: str
) -> list[tuple[str, bytes]]:
    """The ``(client id, public key)`` pairs of a registration message its policy admits.

    The key-holder node and every share-holder node check a registration the same
    way: one key per distinct client, each the provisioned one when the policy
    names ``trusted-clients``, and none at all unless it trusts on first use.

    Raises
    ------
    MalformedMessage
        If the ids are not text or the keys not bytes (red team 35).
    ProtocolError
        If the ids and keys do not pair up, or an id repeats.
    PolicyViolation
        If a key is not the provisioned one, or the policy takes no identities
        from the aggregator.
    """
    ids = config.get("client-ids")
    if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
        raise MalformedMessage("a registration's 'client-ids' must be a list of text")
    keys = records.blobs(config, "verify-keys")  # bytes(n) of an int: n zero bytes
    if len(ids) != len(keys) or len(set(ids)) != len(ids):
        raise ProtocolError("a registration needs one public key per distinct client")
    pairs = list(zip(ids, keys, strict=True))
    trusted = policy.trusted_clients
    if trusted is not None:
        for client_id, key in pairs:
            if trusted.get(client_id) != key:
                raise PolicyViolation(
                    f"client {client_id!r} is not registered with the identity this node "
                    "was provisioned with"
                )
    elif not policy.trust_on_first_use:
        raise PolicyViolation(
            f"this {role} has no provisioned client identities (trusted-clients) and "
            "does not trust on first use; it will not take identities from the aggregator"
        )
    return pairs
