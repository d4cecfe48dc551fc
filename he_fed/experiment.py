"""One experiment: ``ExperimentConfig -> run_experiment -> ExperimentResult`` (JSON-ready)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from he_fed._environment import environment
from he_fed._experiment_data import ExperimentData, experiment_data
from he_fed._private_fit import public_bounds
from he_fed._result_json import jsonable, weights_of
from he_fed._validation import check_float, check_int
from he_fed.crypto import SCHEMES
from he_fed.data import (
    MISSING_POLICIES,
    PARTITIONERS,
    builtin_name,
    has_own_size,
    parse_categorical,
)
from he_fed.exceptions import ConfigurationError
from he_fed.federated import (
    FederatedLinearRegression,
    FederatedLogisticRegression,
    RoundRecord,
)
from he_fed.runtime import EXECUTORS, Executor

__all__ = [
    "MODELS",
    "RUN_DEFAULTS",
    "ExperimentConfig",
    "ExperimentData",
    "ExperimentResult",
    "environment",
    "experiment_data",
    "make_estimator",
    "run_experiment",
]

#: The federated estimators' defaults: the training options below take theirs from
#: here, so that ``he-fed run`` and ``FederatedLogisticRegression()`` agree.
_ESTIMATOR: dict[str, Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(FederatedLogisticRegression).parameters.items()
}

#: Model choices; ``auto`` follows the target (see :func:`he_fed.data.target_kind`):
#: logistic for class labels (softmax for three or more), linear otherwise.
MODELS = ("auto", "logistic", "linear")
_PHASES = ("train", "encrypt", "sign", "serialize", "aggregate", "decrypt")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines an experiment; the CLI's flags map onto it one to one.

    Parameters
    ----------
    dataset : str, default="breast_cancer"
        Built-in dataset name or CSV path (see :func:`he_fed.data.load_dataset`).
    target : str, optional
        Target column of a CSV dataset.
    delimiter : str, optional
        Field separator of a CSV dataset (default ``","``, a tab for ``.tsv``).
    missing : {"error", "drop"}, default="error"
        Whether a CSV row with a missing value is an error or is dropped.
    categorical : tuple of str, default=()
        ``COLUMN=v1,v2,...`` declarations of a CSV dataset's categorical columns,
        one-hot encoded under that vocabulary (see :func:`he_fed.data.load_dataset`).
    samples, features : int, optional
        Size of the synthetic datasets.
    model : {"auto", "logistic", "linear"}, default="auto"
        Model; ``auto`` follows scikit-learn's ``type_of_target``: text labels,
        and whole numbers with few distinct values, are classes (logistic
        regression, multinomial for three or more), other numbers a regression
        target (linear; see :func:`he_fed.data.target_kind`).
    scheme : {"paillier-packed", "paillier", "ckks", "plain"}, default="paillier-packed"
        Encryption scheme (``plain`` is the insecure baseline).
    key_bits : int, default=2048
        Paillier modulus size (both Paillier schemes).
    allow_insecure : bool, default=False
        Accept Paillier keys under 2048 bits.
    ckks_preset : str, default="aggregation-fast"
        CKKS parameters.
    clients : int, default=5
        Number of clients.
    rounds : int, default=20
        Training rounds.
    local_epochs : int, default=5
        Local epochs per round.
    lr : float or tuple of float, optional
        Client learning rate (default 0.5 logistic, 0.1 linear). Several values
        are candidates, chosen by federated validation loss.
    batch_size : int, optional
        Client mini-batch size (default full batch).
    l2 : float or tuple of float, default=1e-4
        L2 penalty (several: candidates, as for ``lr``).
    clip : float, default=4.0
        Clip bound on each update value.
    max_weight : int, optional
        Largest client sample count the plan allows (default: the smallest power
        of two holding the largest client).
    server_lr : float, default=1.0
        Server step.
    partition : {"iid", "dirichlet"}, default="iid"
        How rows are dealt to clients.
    dirichlet_alpha : float, default=0.5
        Dirichlet concentration (``--alpha`` on the command line).
    dropout : float, default=0.0
        Probability a client sits out a training round; every client scores the
        evaluation rounds. Without a privacy budget the key holder releases only
        its first release's cohort (:mod:`he_fed.protocol.normalisers`), so a round
        someone sits out is refused and skipped.
    min_clients : int, optional
        Smallest cohort the key holder decrypts (default: a majority of the
        clients, at least 2).
    standardize : bool, default=True
        Standardise with federated statistics.
    test_size : float, default=0.25
        Held-out fraction.
    seed : int, default=0
        Seed for the split, partition, local training and dropouts.
    executor : {"inprocess", "processes", "flower"}, default="inprocess"
        Where clients run (see :mod:`he_fed.runtime`); the coefficients do not
        depend on it.
    workers : int, optional
        Worker processes (``processes``) or simulation actors (``flower``); default all cores.
    threshold : str, optional
        ``"t/n"``: share holders instead of one key holder (checked by the estimators).
        Worker processes (``processes``) or simulation actors (``flower``);
        default all cores.
    validation_split, validation_every, early_stopping, server_optimizer, prox_mu
        Federated evaluation, early stopping, server optimizer and FedProx, as
        in :class:`~he_fed.federated.FederatedLogisticRegression`.
    dp_epsilon, dp_delta, dp_level, dp_clip, dp_noise_multiplier, dp_sampling_rate
        Differential privacy (see the estimators); ``dp_epsilon=None`` runs without.
        A built-in dataset's published value ranges serve as the public bounds.
    """

    dataset: str = "breast_cancer"
    target: str | None = None
    delimiter: str | None = None
    missing: str = "error"
    categorical: tuple[str, ...] = ()
    samples: int | None = None
    features: int | None = None
    model: str = "auto"
    scheme: str = _ESTIMATOR["scheme"]
    key_bits: int = _ESTIMATOR["key_bits"]
    allow_insecure: bool = _ESTIMATOR["allow_insecure"]
    ckks_preset: str = _ESTIMATOR["ckks_preset"]
    clients: int = 5
    rounds: int = _ESTIMATOR["rounds"]
    local_epochs: int = _ESTIMATOR["local_epochs"]
    lr: float | tuple[float, ...] | None = _ESTIMATOR["learning_rate"]
    batch_size: int | None = _ESTIMATOR["batch_size"]
    l2: float | tuple[float, ...] = _ESTIMATOR["alpha"]
    clip: float = _ESTIMATOR["clip"]
    max_weight: int | None = _ESTIMATOR["max_weight"]
    server_lr: float = _ESTIMATOR["server_lr"]
    partition: str = "iid"
    dirichlet_alpha: float = 0.5
    dropout: float = _ESTIMATOR["dropout"]
    min_clients: int | None = _ESTIMATOR["min_clients"]
    standardize: bool = _ESTIMATOR["standardize"]
    test_size: float = 0.25
    seed: int = _ESTIMATOR["random_state"]
    executor: str = _ESTIMATOR["executor"]
    workers: int | None = _ESTIMATOR["workers"]
    threshold: str | None = _ESTIMATOR["threshold"]
    validation_split: float = _ESTIMATOR["validation_split"]
    validation_every: int = _ESTIMATOR["validation_every"]
    early_stopping: int | None = _ESTIMATOR["early_stopping"]
    server_optimizer: str = _ESTIMATOR["server_optimizer"]
    prox_mu: float = _ESTIMATOR["prox_mu"]
    dp_epsilon: float | None = _ESTIMATOR["dp_epsilon"]
    dp_delta: float = _ESTIMATOR["dp_delta"]
    dp_level: str = _ESTIMATOR["dp_level"]
    dp_clip: float = _ESTIMATOR["dp_clip"]
    dp_noise_multiplier: float | None = _ESTIMATOR["dp_noise_multiplier"]
    dp_sampling_rate: float | None = _ESTIMATOR["dp_sampling_rate"]

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigurationError(
                f"unknown scheme {self.scheme!r}; choose one of {sorted(SCHEMES)}"
            )
        if self.model not in MODELS:
            raise ConfigurationError(f"unknown model {self.model!r}; choose one of {MODELS}")
        if self.missing not in MISSING_POLICIES:
            raise ConfigurationError(
                f"unknown missing policy {self.missing!r}; choose one of {MISSING_POLICIES}"
            )
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigurationError(f"dataset must be a name or a path, not {self.dataset!r}")
        one = isinstance(self.categorical, str)  # a single declaration, not its characters
        if not one and not isinstance(self.categorical, (list, tuple)):
            raise ConfigurationError(
                f"categorical must be COLUMN=v1,v2 declarations, not {self.categorical!r}"
            )
        categorical = (self.categorical,) if one else tuple(self.categorical)
        object.__setattr__(self, "categorical", categorical)  # hashable, as a frozen field
        parse_categorical(self.categorical)  # refuse a malformed declaration before any work
        if self.partition not in PARTITIONERS:
            raise ConfigurationError(
                f"unknown partition {self.partition!r}; choose one of {PARTITIONERS}"
            )
        for name in ("clients", "rounds", "local_epochs", "min_clients"):
            value = getattr(self, name)
            if name == "min_clients" and value is None:
                continue
            check_int(name, value, low=1)
        for name in ("samples", "features"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low=1, types=(int, np.integer))
        # The split's and the runs' seed, and the test share, as train_test_split takes them.
        check_int("seed", self.seed, low=0, high=2**32 - 1, types=(int, np.integer))
        if not 0 < check_float("test_size", self.test_size) < 1:
            raise ConfigurationError(f"test_size must lie in (0, 1), got {self.test_size!r}")
        if self.executor not in EXECUTORS:
            raise ConfigurationError(
                f"unknown executor {self.executor!r}; choose one of {', '.join(EXECUTORS)}"
            )
        if self.workers is not None:
            check_int("workers", self.workers, low=1)
        if self.min_clients is not None and self.min_clients > self.clients:
            raise ConfigurationError(
                f"min_clients={self.min_clients} exceeds the {self.clients} clients"
            )
        self._refuse_unused()

    def _refuse_unused(self) -> None:
        """Refuse a field that this configuration would ignore.

        ``he-fed run`` refuses the same flags when they are given on its command
        line. ``key_bits`` and ``ckks_preset`` are not refused here, unlike their
        flags: a comparison across schemes passes every scheme the same options.

        Raises
        ------
        ConfigurationError
            Naming the first such field whose value is not its default.
        """
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        builtin = builtin_name(self.dataset)
        fixed_size = has_own_size(self.dataset)
        unused = [
            (name, why)
            for name, why, ignored in (
                (
                    "dirichlet_alpha",
                    "the partition is not dirichlet",
                    self.partition != "dirichlet",
                ),
                ("samples", f"{self.dataset} has a size of its own", fixed_size),
                ("features", f"{self.dataset} has a size of its own", fixed_size),
                ("target", f"{builtin} is built in and has its own target", builtin is not None),
                *(
                    (name, "dp_epsilon is None", self.dp_epsilon is None)
                    for name in ("dp_delta", "dp_level", "dp_clip", "dp_noise_multiplier")
                ),
                ("dp_sampling_rate", "dp_epsilon is None", self.dp_epsilon is None),
            )
            if ignored and getattr(self, name) != defaults[name]
        ]
        if unused:
            name, why = unused[0]
            raise ConfigurationError(f"{name}={getattr(self, name)!r} would be unused: {why}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict."""
        return dataclasses.asdict(self)


#: Every :class:`ExperimentConfig` field's default, by name: the one source of the
#: defaults the command line (``he-fed run``, ``estimate``, ``keygen``) shows.
RUN_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}


@dataclass
class ExperimentResult:
    """What an experiment measured. :meth:`to_json` is what ``he-fed run --json`` writes.

    Attributes
    ----------
    config : ExperimentConfig
    dataset : dict
        Name, task, feature count, train/test sizes and client sizes.
    final : dict
        ``metric_name`` (accuracy or r2), ``metric``, ``loss``, ``coef``,
        ``intercept``, and ``reference_metric``: centralised scikit-learn on the same
        split (``LogisticRegression``, multinomial for three or more classes, or
        ``LinearRegression``, after ``StandardScaler``). The multinomial model's
        ``coef`` and ``intercept`` have one row per class of ``classes``. Also
        ``best_round`` (the round whose model was kept: the last, or the best
        under early stopping; ``metric`` and ``loss`` are that round's), its
        ``validation_metric`` and ``validation_loss``, and the ``learning_rate``
        and ``l2`` trained with (the chosen candidates).
    rounds : list of RoundRecord
        Per round: ``metric``, ``loss``, ``timings``, ``bytes_up``, ``bytes_down``,
        ``contributors``, ``dropped``, ``clipped``, ``skipped``,
        ``validation_metric``, ``validation_loss``, ``validation_bytes_up``.
    setup : dict
        Key generation, key sizes and the standardisation rounds (``RoundRecord``).
    totals : dict
        ``train_s``, ``encrypt_s``, ``sign_s``, ``serialize_s``, ``aggregate_s``, ``decrypt_s``
        (summed over clients; None where the clients kept theirs, as Flower client
        nodes do), ``keygen_s``, ``startup_s`` (the executor's:
        spawning workers or waiting for Flower nodes), ``round_wall_s`` (wall
        clock of all rounds), ``total_s`` and ``bytes_up`` (all clients, all
        rounds, standardisation included).
    environment : dict
        Versions, CPU and thread settings.
    model_reason : str
        Which model was trained and why, for the run's header (not in the JSON).
    """

    config: ExperimentConfig
    dataset: dict[str, Any]
    final: dict[str, Any]
    rounds: list[RoundRecord]
    setup: dict[str, Any]
    totals: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    model_reason: str = ""
    privacy: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serializable dict."""
        return jsonable(
            {
                "config": self.config.to_dict(),
                "dataset": self.dataset,
                "final": self.final,
                "rounds": self.rounds,
                "setup": self.setup,
                "totals": self.totals,
                "environment": self.environment,
                **({"privacy": self.privacy} if self.privacy is not None else {}),
            }
        )

    def to_json(self, **kwargs: Any) -> str:
        """JSON text of :meth:`to_dict` (NaN written as null)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)


def make_estimator(
    config: ExperimentConfig,
    model: str,
    *,
    executor: Executor | None = None,
    bounds: dict[str, Any] | None = None,
) -> FederatedLogisticRegression | FederatedLinearRegression:
    """The federated estimator ``he-fed run`` trains for ``config`` (``model``: its kind).

    ``bounds`` holds a private run's public ``feature_bounds`` (and ``target_bounds``).
    """
    cls = FederatedLogisticRegression if model == "logistic" else FederatedLinearRegression
    return cls(
        scheme=config.scheme,
        rounds=config.rounds,
        local_epochs=config.local_epochs,
        learning_rate=list(config.lr) if isinstance(config.lr, tuple) else config.lr,
        alpha=list(config.l2) if isinstance(config.l2, tuple) else config.l2,
        batch_size=config.batch_size,
        clip=config.clip,
        max_weight=config.max_weight,
        server_lr=config.server_lr,
        min_clients=config.min_clients,
        standardize=config.standardize,
        dropout=config.dropout,
        key_bits=config.key_bits,
        ckks_preset=config.ckks_preset,
        allow_insecure=config.allow_insecure,
        random_state=config.seed,
        executor=config.executor if executor is None else executor,
        workers=config.workers,
        threshold=config.threshold,
        validation_split=config.validation_split,
        validation_every=config.validation_every,
        early_stopping=config.early_stopping,
        server_optimizer=config.server_optimizer,
        prox_mu=config.prox_mu,
        dp_epsilon=config.dp_epsilon,
        dp_delta=config.dp_delta,
        dp_level=config.dp_level,
        dp_clip=config.dp_clip,
        dp_noise_multiplier=config.dp_noise_multiplier,
        dp_sampling_rate=config.dp_sampling_rate,
        **(bounds or {}),
    )


def run_experiment(
    config: ExperimentConfig | None = None,
    *,
    progress: Callable[[RoundRecord], None] | None = None,
    executor: Executor | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> ExperimentResult:
    """Load, split and partition the data, then train with the encrypted protocol.

    Parameters
    ----------
    config : ExperimentConfig, optional
        The experiment (default: ``ExperimentConfig()``).
    progress : callable, optional
        Called with each round's record as it completes.
    executor : Executor, optional
        An executor object to use instead of ``config.executor`` (the Flower App's
        ServerApp passes its grid-bound :class:`~he_fed.runtime.flower.FlowerExecutor`).
    checkpoint : path-like, optional
        Save after each round there, and resume from it (the estimators' ``checkpoint``).

    Returns
    -------
    ExperimentResult
    """
    config = config or ExperimentConfig()
    started = time.perf_counter()
    prepared = experiment_data(config)
    model = prepared.model
    X_train, X_test = prepared.X_train, prepared.X_test
    y_train, y_test = prepared.y_train, prepared.y_test
    groups = prepared.groups
    bounds = public_bounds(config.dataset, prepared) if config.dp_epsilon is not None else None
    estimator = make_estimator(config, model, executor=executor, bounds=bounds)
    estimator.set_params(checkpoint=checkpoint)
    estimator.fit(X_train, y_train, groups, eval_set=(X_test, y_test), callback=progress)
    reference = LogisticRegression(max_iter=1000) if model == "logistic" else LinearRegression()
    reference_metric = (
        make_pipeline(StandardScaler(), reference).fit(X_train, y_train).score(X_test, y_test)
    )
    rounds = estimator.history_
    setup = estimator.setup_
    last = rounds[setup["best_round"] - 1]  # the round whose model was kept
    metric, loss = last.metric, last.loss
    if setup["privacy"] is not None:  # the reported model: the mean of the last half of rounds
        coef, b = np.asarray(estimator.coef_), np.asarray(estimator.intercept_)
        if coef.ndim == 2 and len(coef) == 1:  # binary: sklearn's (1, d) shape
            coef, b = coef[0], b[0]
        metric, loss = estimator._metrics(X_test, y_test, coef, b)
    every_round = [*setup["statistics"], *rounds]
    totals: dict[str, Any] = {}
    for phase in _PHASES:  # None: the clients kept their seconds (Flower nodes do)
        seconds = [r.timings[phase] for r in every_round]
        totals[f"{phase}_s"] = None if None in seconds else float(sum(seconds))  # type: ignore[arg-type]
    totals["keygen_s"] = setup["keygen_s"]
    totals["startup_s"] = setup["startup_s"]
    totals["round_wall_s"] = float(sum(r.wall_s for r in every_round))
    totals["total_s"] = time.perf_counter() - started
    totals["bytes_up"] = int(sum(r.bytes_up * r.contributors for r in every_round))
    totals["bytes_down"] = int(sum(r.bytes_down * r.contributors for r in every_round))
    return ExperimentResult(
        config=config,
        dataset={
            "name": prepared.name,
            "task": prepared.task,
            "model": model,
            "n_features": int(X_train.shape[1]),
            "n_train": len(y_train),
            "n_test": len(y_test),
            "client_sizes": setup["client_sizes"],
        },
        final={
            "metric_name": "accuracy" if model == "logistic" else "r2",
            "metric": metric,
            "loss": loss,
            "loss_name": "log_loss" if model == "logistic" else "mse",
            **weights_of(estimator),
            "reference_metric": float(reference_metric),
            "best_round": setup["best_round"],
            "validation_metric": last.validation_metric,
            "validation_loss": last.validation_loss,
            "learning_rate": estimator.learning_rate_,
            "l2": estimator.alpha_,
        },
        rounds=rounds,
        setup=setup,
        totals=totals,
        environment=environment(),
        model_reason=prepared.model_reason,
        privacy=setup["privacy"],
    )
