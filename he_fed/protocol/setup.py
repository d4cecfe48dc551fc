"""The one place the three roles are built: in process, in a worker, or on a node.

Every executor builds roles through these functions, from the plain data of
:mod:`he_fed.protocol.spec`, so that a role gains a parameter in one place only:

* :func:`generate_keyholder` and :func:`restore_keyholder` for the key holder
  (the only functions that see secret material);
* :func:`build_aggregator` for the aggregator, from public aggregation bytes;
* :func:`build_client` for a client, from a :class:`~he_fed.protocol.spec.ClientSpec`.
"""

from __future__ import annotations

from he_fed.crypto import Scheme, load_secret
from he_fed.protocol.aggregator import Aggregator
from he_fed.protocol.client import Client
from he_fed.protocol.keyholder import KeyHolder
from he_fed.protocol.receipts import Identity
from he_fed.protocol.spec import ClientSpec, FederationSetup

__all__ = ["build_aggregator", "build_client", "generate_keyholder", "restore_keyholder"]


def generate_keyholder(scheme: Scheme, *, min_clients: int) -> KeyHolder:
    """A key holder with fresh keys under ``scheme`` and a cohort policy of ``min_clients``."""
    return KeyHolder.generate(scheme, min_clients=min_clients)


def restore_keyholder(
    secret_key: bytes,
    *,
    min_clients: int,
    last_round: int,
    clients: dict[str, bytes] | None = None,
    allow_insecure: bool = False,
) -> KeyHolder:
    """The key holder whose secret key and state were stored on its own node.

    Parameters
    ----------
    secret_key : bytes
        From ``keyholder.keys.secret.to_bytes()``; secret, never sent anywhere.
    min_clients, last_round : int
        Its cohort policy and the last round it decrypted.
    clients : mapping of str to bytes, optional
        The registered clients' Ed25519 public keys.
    allow_insecure : bool, default=False
        Accept parameters below the security bar.
    """
    keys = load_secret(secret_key, allow_insecure=allow_insecure)
    return KeyHolder(keys, min_clients=min_clients, last_round=last_round, clients=clients)


def build_aggregator(aggregation_key: bytes, setup: FederationSetup) -> Aggregator:
    """The blind aggregator, holding only the key holder's aggregation bytes."""
    return Aggregator(
        aggregation_key,
        n_features=setup.n_features,
        server_lr=setup.server_lr,
        standardize=setup.standardize,
        standardize_target=setup.regression,
        allow_insecure=setup.plan.allow_insecure,
    )


def build_client(spec: ClientSpec) -> Client:
    """A client from its plain-data description."""
    plan = spec.plan
    return Client(
        spec.client_id,
        spec.X,
        spec.y,
        spec.public_key,
        model=plan.model,
        local_epochs=plan.local_epochs,
        classes=plan.classes,
        standardize_target=plan.standardize_target,
        identity=None
        if spec.signing_key is None
        else Identity.from_private_bytes(spec.signing_key),
        allow_insecure=plan.allow_insecure,
    )
