"""he-fed: secure aggregation for federated learning with homomorphic encryption.

The public API, from the top down:

* :class:`FederatedLogisticRegression`, :class:`FederatedLinearRegression`:
  scikit-learn estimators whose ``fit(X, y, groups=...)`` runs the encrypted
  protocol, in process by default (``executor=`` picks worker processes or Flower).
* :func:`run_experiment` with :class:`ExperimentConfig`: what ``he-fed run`` does.
* :mod:`he_fed.protocol`: the three roles (``Client``, ``Aggregator``,
  ``KeyHolder``) and their messages, for building your own deployment.
* :mod:`he_fed.runtime`: the executors that decide where clients run; Flower
  (simulation and deployment) lives in ``he_fed.runtime.flower``, behind the
  ``flower`` extra, and importing :mod:`he_fed` never imports it.
* :mod:`he_fed.crypto`: the schemes (``Plain``, ``Paillier``, ``PackedPaillier``,
  ``CKKS``) behind one interface. The low layer: most users never need it directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from he_fed import _lazy, exceptions
from he_fed._version import __version__
from he_fed.exceptions import HEFedError

if TYPE_CHECKING:
    from he_fed.crypto import CKKS, PackedPaillier, Paillier, Plain
    from he_fed.experiment import ExperimentConfig, ExperimentResult, run_experiment
    from he_fed.federated import FederatedLinearRegression, FederatedLogisticRegression
    from he_fed.protocol import Aggregator, Client, KeyHolder
    from he_fed.runtime import Federation

__all__ = [
    "CKKS",
    "Aggregator",
    "Client",
    "ExperimentConfig",
    "ExperimentResult",
    "FederatedLinearRegression",
    "FederatedLogisticRegression",
    "Federation",
    "HEFedError",
    "KeyHolder",
    "PackedPaillier",
    "Paillier",
    "Plain",
    "__version__",
    "exceptions",
    "run_experiment",
]

# Imported on first use (he_fed/_lazy.py): the key holder's processes never train.
__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "he_fed.crypto": ("CKKS", "PackedPaillier", "Paillier", "Plain"),
        "he_fed.experiment": ("ExperimentConfig", "ExperimentResult", "run_experiment"),
        "he_fed.federated": ("FederatedLinearRegression", "FederatedLogisticRegression"),
        "he_fed.protocol": ("Aggregator", "Client", "KeyHolder"),
        "he_fed.runtime": ("Federation",),
    },
)
