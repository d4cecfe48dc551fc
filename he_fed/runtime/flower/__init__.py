"""he-fed's protocol on Flower: simulation and real multi-party deployment.

Needs ``pip install "he-fed[flower]"``; importing :mod:`he_fed` never imports
Flower, this package does.

=============  ===============================================================
he-fed role    Flower piece
=============  ===============================================================
aggregator     the ServerApp (:class:`FlowerExecutor` drives the rounds from it);
               it holds the aggregation key only
client         a SuperNode's ClientApp, holding its own data and the public key
key holder     one designated SuperNode (``--node-config "role='keyholder'
               policy-file='keyholder.json' state-file='keyholder.state' ..."``:
               :mod:`~he_fed.runtime.flower.statefile`); its keys and policy are
               its own, it signs every round's ticket and never lets the secret
               key leave
=============  ===============================================================

* :func:`simulate` runs a federation on Flower's simulation engine in process
  (``he-fed run --executor flower``).
* :mod:`he_fed.runtime.flower.app` is the Flower App for ``flwr run``:
  :func:`write_app` writes its ``pyproject.toml``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from he_fed import _lazy

if TYPE_CHECKING:
    from he_fed.runtime.flower.nodes import make_client_app, node_role
    from he_fed.runtime.flower.policy import KeyHolderPolicy
    from he_fed.runtime.flower.server import FlowerExecutor, RemoteClient, RemoteKeyHolder
    from he_fed.runtime.flower.simulation import simulate

__all__ = [
    "FlowerExecutor",
    "KeyHolderPolicy",
    "RemoteClient",
    "RemoteKeyHolder",
    "make_client_app",
    "node_role",
    "simulate",
]

# Imported on first use (he_fed/_lazy.py): every ClientApp and ServerApp message of
# a deployment is a fresh process that imports this package. Flower's simulation
# engine (Ray, its SQL state, its web API) is a third of Flower's import time and
# no deployment needs it; the aggregator's driver imports what only training needs.
__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "he_fed.runtime.flower.nodes": ("make_client_app", "node_role"),
        "he_fed.runtime.flower.policy": ("KeyHolderPolicy",),
        "he_fed.runtime.flower.server": ("FlowerExecutor", "RemoteClient", "RemoteKeyHolder"),
        "he_fed.runtime.flower.simulation": ("simulate",),
    },
)
