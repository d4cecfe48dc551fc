"""An experiment's data: loaded, split and dealt to clients, deterministic in the seed.

Private: :mod:`he_fed.experiment` re-exports :class:`ExperimentData` and
:func:`experiment_data`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from he_fed.data import (
    choose_model,
    load_dataset,
    parse_categorical,
    partition,
    regression_target,
    target_kind,
    train_test,
)
from he_fed.exceptions import ConfigurationError

if TYPE_CHECKING:
    from he_fed.experiment import ExperimentConfig

__all__ = ["ExperimentData", "experiment_data"]


@dataclass(frozen=True, eq=False)
class ExperimentData:
    """An experiment's data, split and dealt to clients exactly as :func:`run_experiment` does.

    A Flower client node calls :meth:`client_data` to load its own share of a
    built-in dataset, so that a deployment trains on the same partitions as the
    in-process run with the same seed.

    Attributes
    ----------
    name, task, model : str
        Dataset name, ``"classification"`` or ``"regression"``, and the model
        (``"logistic"`` or ``"linear"``) that ``model="auto"`` resolves to.
    X_train, X_test, y_train, y_test : ndarray
        The split.
    groups : ndarray of shape (n_train,)
        Which client holds each training row.
    model_reason : str
        Which model was chosen and why, in one sentence.
    """

    name: str
    task: str
    model: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    groups: np.ndarray
    model_reason: str = ""

    @property
    def client_ids(self) -> list[str]:
        """The clients' names, in order (as the estimators name them)."""
        return [str(g) for g in np.unique(self.groups)]

    def client_data(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``index``-th client's ``(X, y)``.

        Raises
        ------
        ConfigurationError
            If there is no such client.
        """
        labels = np.unique(self.groups)
        if not 0 <= index < labels.size:
            raise ConfigurationError(
                f"there is no client {index}; clients are 0..{labels.size - 1}"
            )
        rows = self.groups == labels[index]
        return self.X_train[rows], self.y_train[rows]


def experiment_data(config: ExperimentConfig) -> ExperimentData:
    """Load, split and partition the data of ``config`` (deterministic in its seed).

    Raises
    ------
    ConfigurationError
        If the model does not fit the dataset.
    DatasetError
        If the dataset cannot be loaded.
    """
    data = load_dataset(
        config.dataset,
        target=config.target,
        delimiter=config.delimiter,
        missing=config.missing,
        categorical=parse_categorical(config.categorical),
        n_samples=config.samples,
        n_features=config.features,
        random_state=config.seed,
    )
    model, reason = choose_model(config.model, data.task, target_kind(data.y), data.name)
    y = data.y
    if model == "linear" and data.task == "classification":
        y = regression_target(data.y, name=data.name)
    task = "classification" if model == "logistic" else "regression"
    X_train, X_test, y_train, y_test = train_test(
        data.X, y, task=task, test_size=config.test_size, random_state=config.seed
    )
    parts = partition(
        y_train,
        config.clients,
        method=config.partition,
        alpha=config.dirichlet_alpha,
        task=task,
        random_state=config.seed,
    )
    groups = np.empty(len(y_train), dtype=np.int64)
    for k, idx in enumerate(parts):
        groups[idx] = k
    return ExperimentData(data.name, task, model, X_train, X_test, y_train, y_test, groups, reason)
