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

from he_fed import exceptions
from he_fed._version import __version__
from he_fed.crypto import CKKS, PackedPaillier, Paillier, Plain
from he_fed.exceptions import HEFedError
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
