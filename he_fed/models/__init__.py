"""Plain scikit-learn estimators trained by gradient descent. No cryptography here."""

from __future__ import annotations

from he_fed.models._linear import LinearRegressionGD
from he_fed.models._logistic import LogisticRegressionGD

__all__ = ["LinearRegressionGD", "LogisticRegressionGD"]
