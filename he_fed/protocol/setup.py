"""The one place the three roles are built: in process, in a worker, or on a node.

Every executor builds roles through these functions, from the plain data of
:mod:`he_fed.protocol.spec`, so that a role gains a parameter in one place only:

* :func:`generate_keyholder` for the key holder (the only function that sees
  secret material; a Flower key-holder node restores itself with
  :mod:`he_fed.protocol.state`);
* :func:`build_aggregator` for the aggregator, from public aggregation bytes;
* :func:`build_client` for a client, from a :class:`~he_fed.protocol.spec.ClientSpec`.
"""

from __future__ import annotations

from he_fed.protocol.aggregator import Aggregator
from he_fed.protocol.client import Client
from he_fed.protocol.keyholder import KeyHolder
from he_fed.protocol.receipts import Identity
from he_fed.protocol.spec import ClientSpec, FederationSetup

__all__ = ["build_aggregator", "build_client", "generate_keyholder"]


def generate_keyholder(setup: FederationSetup) -> KeyHolder:
    """A key holder with fresh keys under ``setup.scheme``, following its run plan.

    Its policy (``min_clients``) is taken from ``setup``: call this only where
    ``setup`` is the key holder's own configuration (in process, or on the key
    holder's node), never with a description received from the aggregator.
    """
    return KeyHolder.generate(
        setup.scheme, plan=setup.run_plan, min_clients=setup.min_clients, privacy=setup.privacy
    )


def build_aggregator(
    aggregation_key: bytes, keyholder: bytes, setup: FederationSetup
) -> Aggregator:
    """The blind aggregator, holding only the key holder's aggregation bytes and identity."""
    return Aggregator(
        aggregation_key,
        plan=setup.run_plan,
        keyholder=keyholder,
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
        keyholder=spec.keyholder,
        model=plan.model,
        local_epochs=plan.local_epochs,
        classes=plan.classes,
        standardize_target=plan.standardize_target,
        identity=None
        if spec.signing_key is None
        else Identity.from_private_bytes(spec.signing_key),
        allow_insecure=plan.allow_insecure,
        last_round=spec.last_round,
        phase=spec.phase,
        validation_split=plan.validation_split,
        privacy=plan.privacy,
    )
