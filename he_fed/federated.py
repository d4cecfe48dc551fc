"""scikit-learn estimators whose ``fit`` runs the whole encrypted protocol on an executor."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score
from sklearn.utils.validation import check_is_fitted, validate_data

from he_fed._adjust import EarlyStopping, best_loss, candidates, released_validation
from he_fed._estimator_doc import PARAMS_DOC as _PARAMS_DOC
from he_fed._fit_settings import (
    check_executor,
    check_private,
    check_settings,
    check_unused,
    client_groups,
    scheme_for,
)
from he_fed._history import RoundRecord
from he_fed._private_fit import PrivateFit
from he_fed._validation import check_int
from he_fed.crypto import Scheme
from he_fed.crypto.base import DEFAULT_CLIP
from he_fed.data import split_by_group, training_classes
from he_fed.exceptions import ConfigurationError
from he_fed.models import BaseGD, LinearRegressionGD, LogisticRegressionGD
from he_fed.models._linear_classifier import LinearClassifierMixin
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime import Executor, run_federation
from he_fed.runtime.checkpoint import describe_run
from he_fed.runtime.council import council_summary, threshold_setting
from he_fed.runtime.federation import Federation, RoundOutcome
from he_fed.runtime.resume import ResumableRun, run_resumable

__all__ = ["FederatedLinearRegression", "FederatedLogisticRegression", "RoundRecord"]


class _FederatedBase(BaseEstimator):
    """Shared machinery of the federated estimators."""

    _local_model: type[BaseGD]
    #: Step size used when ``learning_rate`` is None (for standardised data).
    _default_learning_rate: float

    def __init__(
        self,
        *,
        scheme: str | Scheme = "paillier-packed",
        rounds: int = 20,
        local_epochs: int = 5,
        learning_rate: float | None = None,
        alpha: float = 1e-4,
        batch_size: int | None = None,
        clip: float = DEFAULT_CLIP,
        max_weight: int | None = None,
        server_lr: float = 1.0,
        min_clients: int | None = None,
        standardize: bool = True,
        dropout: float = 0.0,
        key_bits: int = 2048,
        ckks_preset: str = "aggregation-fast",
        allow_insecure: bool = False,
        random_state: int = 0,
        executor: str | Executor = "inprocess",
        workers: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        n_clients: int | None = None,
        threshold: str | None = None,
        validation_split: float = 0.0,
        validation_every: int = 1,
        early_stopping: int | None = None,
        server_optimizer: str = "avg",
        prox_mu: float = 0.0,
        dp_epsilon: float | None = None,
        dp_delta: float = 1e-5,
        dp_level: str = "record",
        dp_clip: float = 1.0,
        dp_noise_multiplier: float | None = None,
        dp_sampling_rate: float | None = None,
        feature_bounds: tuple[Any, Any] | None = None,
        target_bounds: tuple[float, float] | None = None,
    ) -> None:
        self.scheme = scheme
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.batch_size = batch_size
        self.clip = clip
        self.max_weight = max_weight
        self.server_lr = server_lr
        self.min_clients = min_clients
        self.standardize = standardize
        self.dropout = dropout
        self.key_bits = key_bits
        self.ckks_preset = ckks_preset
        self.allow_insecure = allow_insecure
        self.random_state = random_state
        self.executor = executor
        self.workers = workers
        self.checkpoint = checkpoint
        self.n_clients = n_clients
        self.threshold = threshold
        self.validation_split = validation_split
        self.validation_every = validation_every
        self.early_stopping = early_stopping
        self.server_optimizer = server_optimizer
        self.prox_mu = prox_mu
        self.dp_epsilon = dp_epsilon
        self.dp_delta = dp_delta
        self.dp_level = dp_level
        self.dp_clip = dp_clip
        self.dp_noise_multiplier = dp_noise_multiplier
        self.dp_sampling_rate = dp_sampling_rate
        self.feature_bounds = feature_bounds
        self.target_bounds = target_bounds

    def _metrics(
        self, X: np.ndarray, y: np.ndarray, coef: np.ndarray, b: float | np.ndarray
    ) -> tuple[float, float]:
        raise NotImplementedError

    def local_model(self, learning_rate: float | None = None, alpha: float | None = None) -> BaseGD:
        """The unfitted local estimator every client clones and trains each round.

        A deployment whose clients run elsewhere (``he-fed federation init``) hands
        them this recipe, so that they train exactly as ``fit`` would.
        ``learning_rate`` and ``alpha`` override the estimator's (one candidate
        of a list, see ``fit``).
        """
        if learning_rate is None:
            learning_rate = self.learning_rate
        return self._local_model(
            alpha=self.alpha if alpha is None else alpha,
            learning_rate=(self._default_learning_rate if learning_rate is None else learning_rate),
            batch_size=self.batch_size,
            random_state=self.random_state,
            prox_mu=self.prox_mu,
        )

    def plan_scheme(self, client_sizes: list[int]) -> Scheme:
        """The scheme and encoding plan ``fit`` uses for clients of these sizes.

        A deployment's key holder needs it before training, in its own policy.
        """
        return scheme_for(self, client_sizes)

    def _federated_fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None,
        eval_set: tuple[np.ndarray, np.ndarray] | None,
        callback: Callable[[RoundRecord], None] | None,
        classes: np.ndarray | None,
    ) -> None:
        check_settings(self)
        groups = client_groups(self, len(X), groups)
        check_int("rounds", self.rounds, low=1)
        check_int("validation_every", self.validation_every, low=1)
        check_unused(self)
        if self.early_stopping is not None:
            check_int("early_stopping", self.early_stopping, low=1, bounds=">= 1 (or None)")
        rates = candidates("learning_rate", self.learning_rate)
        alphas = candidates("alpha", self.alpha)
        grid = [(rate, alpha) for rate in rates for alpha in alphas]
        needs_loss = len(grid) > 1 or self.early_stopping is not None or self.validation_every != 1
        if needs_loss and not self.validation_split:
            raise ConfigurationError(
                "early stopping, validation_every and choosing among learning rates or L2 "
                "strengths use the federated validation loss; set validation_split (CLI: "
                "--validation-split 0.2)"
            )
        fits = []
        for rate, alpha in grid:
            fits.append(self._fit_once(X, y, groups, eval_set, callback, classes, rate, alpha))
        # The candidate whose best round had the lowest federated validation loss.
        best = min(range(len(fits)), key=lambda i: best_loss(fits[i][0]))
        history, summary, (coef, intercept) = fits[best]
        self.history_ = history
        self.setup_ = summary
        if len(grid) > 1:
            self.setup_["selection"] = [
                {"learning_rate": rate, "alpha": alpha, "validation_loss": best_loss(fit[0])}
                for (rate, alpha), fit in zip(grid, fits, strict=True)
            ]
        rate, self.alpha_ = grid[best]
        self.learning_rate_ = self._default_learning_rate if rate is None else rate
        self.n_clients_ = len(np.unique(groups))
        self._set_model(coef, intercept)

    def _fit_once(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray,
        eval_set: tuple[np.ndarray, np.ndarray] | None,
        callback: Callable[[RoundRecord], None] | None,
        classes: np.ndarray | None,
        learning_rate: Any,
        alpha: Any,
    ) -> tuple[list[RoundRecord], dict[str, Any], tuple[np.ndarray, Any]]:
        """One federated fit with these hyperparameters: history, setup, and model."""
        check_executor(self)
        ids, partitions = split_by_group(X, y, groups)
        model = self.local_model(learning_rate, alpha)
        private = None
        if self.dp_epsilon is not None:
            check_private(self)
            n_outputs = len(classes) if classes is not None and len(classes) > 2 else 1
            regression = classes is None
            private = PrivateFit.plan(self, partitions, regression=regression, n_outputs=n_outputs)
            partitions = private.partitions  # features mapped by the public bounds
        scheme = private.scheme if private else scheme_for(self, [len(p[0]) for p in partitions])
        setup = FederationSetup.from_partitions(
            partitions,
            scheme=scheme,
            threshold=threshold_setting(self.threshold, scheme.name, self.executor),
            model=model,
            local_epochs=self.local_epochs,
            classes=classes,
            min_clients=private.budget.mechanism.min_cohort if private else self.min_clients,
            server_lr=private.server_lr if private else self.server_lr,
            standardize=self.standardize and private is None,
            client_ids=[str(g) for g in ids],
            validation_split=self.validation_split,
            server_optimizer=self.server_optimizer,
            privacy=private.budget if private else None,
        )
        X_eval, y_eval = (X, y) if eval_set is None else eval_set
        X_eval = validate_data(self, X_eval, dtype=np.float64, reset=False)
        history: list[RoundRecord] = []
        started = time.perf_counter()
        stopper = None if self.early_stopping is None else EarlyStopping(self.early_stopping)
        kind = setup.run_plan.evaluation

        def round_model(federation: Federation) -> tuple[np.ndarray, float | np.ndarray]:
            if private is None:
                return federation.aggregator.raw_model()
            return private.observe(federation.aggregator.model.weights)  # kept to average

        def record(
            federation: Federation, outcome: RoundOutcome, index: int
        ) -> tuple[RoundRecord, bool]:
            """The round's record, and whether early stopping ends training here."""
            coef, b = round_model(federation)
            metric, loss = self._metrics(X_eval, np.asarray(y_eval), coef, b)
            validation = released_validation(federation, outcome, kind)
            entry = RoundRecord.from_outcome(index, outcome, metric, loss, validation)
            if private is not None:
                entry = dataclasses.replace(entry, epsilon=private.budget.epsilon)
            if callback is not None:
                callback(entry)
            return entry, stopper is not None and stopper.update(index, validation[1], (coef, b))

        def train(federation: Federation) -> dict[str, Any]:
            def on_round(outcome: RoundOutcome) -> bool:
                entry, stop = record(federation, outcome, len(history) + 1)
                history.append(entry)
                return stop

            federation.train(
                self.rounds,
                dropout=self.dropout,
                random_state=self.random_state,
                on_round=on_round,
                evaluate_every=self.validation_every,
            )
            return summarize(federation)

        def resume(run: ResumableRun) -> dict[str, Any]:
            federation = run.federation
            done = run.train(
                self.rounds,
                dropout=self.dropout,
                random_state=self.random_state,
                on_round=lambda o: record(federation, o, len(run.history) + 1)[0].to_dict(),
            )
            history.extend(RoundRecord.from_dict(entry) for entry in done)
            return summarize(federation)

        def summarize(federation: Federation) -> dict[str, Any]:
            final = private.final_model if private else federation.aggregator.raw_model
            coef, intercept = final()
            kept = len(history)
            if stopper is not None and stopper.best_model is not None:
                (coef, intercept), kept = stopper.best_model, stopper.best_round
            return {
                "stopped": federation.stopped,
                "privacy": private.budget.summary() if private else None,
                "coef": coef,
                "intercept": intercept,
                "best_round": kept,
                "scheme": federation.keyholder.public_key.scheme.name,
                "params": federation.keyholder.public_key.scheme.params(),
                "keygen_s": federation.keygen_s,
                **{f"{k}_bytes": v for k, v in federation.setup_bytes().items()},
                "statistics": [
                    RoundRecord.from_outcome(0, o, float("nan"), float("nan"))
                    for o in federation.setup_outcomes
                ],
                "executor": federation.executor.name,
                "council": council_summary(federation.keyholder),
                "startup_s": federation.executor.startup_s,
            }

        if self.checkpoint is None:
            summary = run_federation(self.executor, setup, partitions, train, workers=self.workers)
        else:
            params = self.get_params()
            for name in ("checkpoint", "executor", "workers"):  # the result depends on none
                params.pop(name)
            arrays = [X, y, groups, X_eval, np.asarray(y_eval)]
            run = describe_run({"estimator": type(self).__name__, **params}, arrays)
            summary = run_resumable(
                self.checkpoint, run, self.executor, setup, partitions, resume, workers=self.workers
            )
        coef, intercept = summary.pop("coef"), summary.pop("intercept")
        summary.update(
            client_sizes=[len(p[0]) for p in partitions],
            fit_s=time.perf_counter() - started,
        )
        return history, summary, (coef, intercept)

    def _set_model(self, coef: np.ndarray, intercept: float | np.ndarray) -> None:
        raise NotImplementedError


class FederatedLogisticRegression(LinearClassifierMixin, _FederatedBase):
    __doc__ = (
        """Logistic regression trained by encrypted federated averaging.

    ``fit(X, y, groups=client_ids)`` splits the rows by client, generates keys,
    and runs the full protocol: clients train locally and send encrypted updates,
    a blind aggregator sums them, and a key holder decrypts only the aggregate.
    Every hop goes through bytes. The clients run in this process by default, or
    in worker processes or on Flower (``executor=``), with the same result.

    Two classes make the binary model: one row of weights, ``coef_`` of shape
    ``(1, n_features)``. Three or more make the multinomial (softmax) model, as
    in scikit-learn's ``LogisticRegression``: ``coef_`` of shape ``(n_classes,
    n_features)``, ``intercept_`` of shape ``(n_classes,)``, and every update a
    client encrypts is the whole ``n_classes × (n_features + 1)`` matrix of its
    change. Labels may be numbers or strings; ``classes_`` lists them sorted.
"""
        + _PARAMS_DOC
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = FederatedLogisticRegression(scheme="plain", rounds=10)
    >>> clf.fit(X, y, groups=np.arange(len(y)) % 3).score(X, y) > 0.95
    True
    >>> from sklearn.datasets import load_wine
    >>> X, y = load_wine(return_X_y=True)
    >>> wine = FederatedLogisticRegression(scheme="plain").fit(X, y, groups=np.arange(len(y)) % 3)
    >>> wine.coef_.shape, wine.predict_proba(X).shape, wine.score(X, y) > 0.95
    ((3, 13), (178, 3), True)
    """
    )

    _local_model = LogisticRegressionGD
    _default_learning_rate = 0.5
    _multiclass = True

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None = None,
        *,
        eval_set: tuple[np.ndarray, np.ndarray] | None = None,
        callback: Callable[[RoundRecord], None] | None = None,
    ) -> FederatedLogisticRegression:
        """Train across the clients named by ``groups``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            All clients' features (the simulation holds them in one process).
        y : array-like of shape (n_samples,)
            Class labels (numbers or strings), at least two distinct.
        groups : array-like of shape (n_samples,), optional
            Which client holds each row. Without it, the rows are dealt IID to
            ``n_clients`` clients (an error if that is None too).
        eval_set : (X, y), optional
            Held-out data for the per-round metrics in ``history_``.
        callback : callable, optional
            Called with each round's ``history_`` entry (for progress bars).

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.classes_ = training_classes(y, None if eval_set is None else eval_set[1])
        self._federated_fit(X, y, groups, eval_set, callback, self.classes_)
        return self

    def _metrics(
        self, X: np.ndarray, y: np.ndarray, coef: np.ndarray, b: float | np.ndarray
    ) -> tuple[float, float]:
        if coef.ndim == 2:
            p = softmax(X @ coef.T + b, axis=1)
            predicted = self.classes_[p.argmax(axis=1)]
            return float(accuracy_score(y, predicted)), float(log_loss(y, p, labels=self.classes_))
        p = expit(X @ coef + b)
        predicted = self.classes_[(p > 0.5).astype(int)]
        return float(accuracy_score(y, predicted)), float(
            log_loss(y == self.classes_[1], p, labels=[False, True])
        )

    def _set_model(self, coef: np.ndarray, intercept: float | np.ndarray) -> None:
        if coef.ndim == 2:
            self.coef_, self.intercept_ = coef, np.asarray(intercept)
            return
        self.coef_ = coef.reshape(1, -1)
        self.intercept_ = np.array([intercept])


class FederatedLinearRegression(RegressorMixin, _FederatedBase):
    __doc__ = (
        """Least-squares linear regression trained by encrypted federated averaging.

    ``fit(X, y, groups=client_ids)`` runs the full protocol on the chosen
    executor, as :class:`FederatedLogisticRegression` does.
"""
        + _PARAMS_DOC
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = FederatedLinearRegression(scheme="plain", rounds=20)
    >>> reg.fit(X, y, groups=np.arange(len(y)) % 3).score(X, y) > 0.45
    True
    """
    )

    _local_model = LinearRegressionGD
    _default_learning_rate = 0.1

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None = None,
        *,
        eval_set: tuple[np.ndarray, np.ndarray] | None = None,
        callback: Callable[[RoundRecord], None] | None = None,
    ) -> FederatedLinearRegression:
        """Train across the clients named by ``groups``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            All clients' features.
        y : array-like of shape (n_samples,)
            Targets.
        groups : array-like of shape (n_samples,), optional
            Which client holds each row. Without it, the rows are dealt IID to
            ``n_clients`` clients (an error if that is None too).
        eval_set : (X, y), optional
            Held-out data for the per-round metrics in ``history_``.
        callback : callable, optional
            Called with each round's ``history_`` entry.

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self._federated_fit(X, y, groups, eval_set, callback, None)
        return self

    def _metrics(
        self, X: np.ndarray, y: np.ndarray, coef: np.ndarray, b: float | np.ndarray
    ) -> tuple[float, float]:
        predicted = X @ coef + b
        return float(r2_score(y, predicted)), float(mean_squared_error(y, predicted))

    def _set_model(self, coef: np.ndarray, intercept: float | np.ndarray) -> None:
        self.coef_ = coef
        self.intercept_ = intercept

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted targets of shape (n_samples,)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_ + self.intercept_
