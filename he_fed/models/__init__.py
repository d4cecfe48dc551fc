"""Plain scikit-learn estimators trained by gradient descent. No cryptography here.

:class:`BaseGD` is the base of every model a federation can train: clients call
its ``fit(X, y, coef_init=..., intercept_init=...)`` each round.
"""

from __future__ import annotations

from he_fed.models._gd import BaseGD
from he_fed.models._linear import LinearRegressionGD
from he_fed.models._logistic import LogisticRegressionGD

__all__ = ["BaseGD", "LinearRegressionGD", "LogisticRegressionGD"]
