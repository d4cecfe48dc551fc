"""What problem a target poses: scikit-learn's ``type_of_target``, and a cap on classes.

``type_of_target`` calls any target of whole numbers or text labels ``binary`` or
``multiclass``, and a target of other numbers ``continuous``. It has no notion of
"too many classes": the diabetes progression score, whole numbers from 25 to 346,
is ``multiclass`` to it. So a numeric target of whole numbers is classification
only while it has few distinct values (:data:`MAX_AUTO_CLASSES`), and regression
beyond. Text labels cannot be regressed on, so they are always classification.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils.multiclass import type_of_target

from he_fed.exceptions import ConfigurationError, DatasetError

__all__ = [
    "MAX_AUTO_CLASSES",
    "TargetKind",
    "choose_model",
    "regression_target",
    "target_kind",
    "training_classes",
]

#: The most distinct whole numbers a numeric target may hold and still be read as
#: class labels (digits has 10); more make it a regression target.
MAX_AUTO_CLASSES = 20


@dataclass(frozen=True)
class TargetKind:
    """What a target is, and why.

    Attributes
    ----------
    task : {"classification", "regression"}
        The problem ``--model auto`` trains.
    sklearn_type : str
        ``sklearn.utils.multiclass.type_of_target``'s answer.
    n_values : int
        Distinct values of the target.
    reason : str
        One sentence saying why, for the run's header.
    """

    task: str
    sklearn_type: str
    n_values: int
    reason: str


def target_kind(y: np.ndarray, *, name: str = "the target") -> TargetKind:
    """Classify a target as scikit-learn's ``type_of_target`` does, capped at few classes.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Numbers or text labels.
    name : str, default="the target"
        How error messages name it.

    Returns
    -------
    TargetKind

    Raises
    ------
    DatasetError
        If the target holds one value only, or is of a type neither task takes.
    """
    y = np.asarray(y)
    values = np.unique(y)
    if values.size < 2:
        shown = repr(values[0].item()) if values.size else "nothing"
        raise DatasetError(
            f"{name} is constant: all {len(y)} rows hold {shown}; there is nothing to learn"
        )
    kind = type_of_target(y)
    numeric = np.issubdtype(y.dtype, np.number)
    what = "whole numbers" if numeric else "labels"
    if kind == "continuous":
        return TargetKind(
            "regression",
            kind,
            values.size,
            f"{name} holds numbers that are not all whole (type_of_target: continuous)",
        )
    if kind not in ("binary", "multiclass"):
        raise DatasetError(f"{name} is {kind} (type_of_target); he-fed takes one label per row")
    if numeric and values.size > MAX_AUTO_CLASSES:
        return TargetKind(
            "regression",
            kind,
            values.size,
            f"{name} holds {values.size} distinct whole numbers (type_of_target: {kind}), more "
            f"than the {MAX_AUTO_CLASSES} classes read as labels",
        )
    return TargetKind(
        "classification",
        kind,
        values.size,
        f"{name} holds {values.size} distinct {what} (type_of_target: {kind})",
    )


def regression_target(y: np.ndarray, *, name: str = "the dataset") -> np.ndarray:
    """Class labels as numbers, for a linear model: 0/1 for two, their values for more.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    name : str, default="the dataset"
        How error messages name the dataset.

    Returns
    -------
    ndarray of shape (n_samples,)

    Raises
    ------
    ConfigurationError
        If three or more labels are not numbers.
    """
    classes = np.unique(y)
    if classes.size == 2:
        return (y == classes[1]).astype(np.float64)
    try:
        return np.asarray(y).astype(np.float64)
    except ValueError:
        raise ConfigurationError(
            f"{name}'s target holds {classes.size} text labels, which linear regression "
            "cannot fit; use --model logistic"
        ) from None


def choose_model(model: str, task: str, kind: TargetKind, name: str) -> tuple[str, str]:
    """The model to train, ``"logistic"`` or ``"linear"``, for ``--model model``, and why.

    Parameters
    ----------
    model : {"auto", "logistic", "linear"}
        What was asked; ``"auto"`` takes logistic for a classification target.
    task : {"classification", "regression"}
        The dataset's task.
    kind : TargetKind
        What :func:`target_kind` read in the target.
    name : str
        The dataset's name, for messages.

    Returns
    -------
    model : {"logistic", "linear"}
    reason : str
        One line for the run's header.

    Raises
    ------
    ConfigurationError
        If logistic regression is asked of a regression target.
    """
    if model == "auto":
        model = "logistic" if task == "classification" else "linear"
        reason = f"--model auto chose {model}: {kind.reason}"
    else:
        reason = f"--model {model}, as given; {kind.reason}"
    if model == "logistic" and task != "classification":
        raise ConfigurationError(
            f"{name} is a regression dataset ({kind.reason}); use --model linear"
        )
    return model, reason


def training_classes(y: np.ndarray, y_eval: np.ndarray | None = None) -> np.ndarray:
    """The sorted classes of ``y``, checked for a classifier to learn.

    Raises
    ------
    ConfigurationError
        If ``y`` holds a single class, or ``y_eval`` a class absent from ``y``
        (no client holds it, so no model can learn it).
    """
    classes = np.unique(y)
    if classes.size < 2:
        raise ConfigurationError(
            f"y holds a single class ({classes[0].item()!r}); classification needs more "
            "than one class"
        )
    if y_eval is not None:
        unseen = np.setdiff1d(np.unique(np.asarray(y_eval)), classes)
        if unseen.size:
            raise ConfigurationError(
                f"eval_set holds class{'es' * (unseen.size > 1)} "
                f"{', '.join(map(repr, unseen.tolist()))} absent from every client's "
                "training data; a model cannot learn a class no client holds"
            )
    return classes
