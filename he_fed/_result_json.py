"""The experiment's result as JSON writes it: plain values, and the model's weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from he_fed._history import RoundRecord
from he_fed.federated import FederatedLinearRegression, FederatedLogisticRegression

__all__ = ["jsonable", "weights_of"]


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: records as dicts, arrays as lists, NaN as None."""
    if isinstance(value, RoundRecord):
        return jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def weights_of(estimator: FederatedLogisticRegression | FederatedLinearRegression) -> dict:
    """``coef`` and ``intercept`` as JSON writes them: flat for one row, per class for more."""
    coef, intercept = np.asarray(estimator.coef_), np.asarray(estimator.intercept_)
    if coef.ndim == 1 or coef.shape[0] == 1:
        return {"coef": np.ravel(coef), "intercept": float(np.ravel(intercept)[0])}
    return {"coef": coef, "intercept": intercept, "classes": estimator.classes_}  # type: ignore[union-attr]
