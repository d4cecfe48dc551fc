"""scikit-learn estimators whose ``fit`` runs the whole encrypted protocol on an executor."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score
from sklearn.utils.validation import check_is_fitted, validate_data

from he_fed._history import RoundRecord
from he_fed._private_fit import PrivateFit
from he_fed._validation import check_int
from he_fed.crypto import Scheme, scheme_from_options
from he_fed.crypto.base import DEFAULT_CLIP
from he_fed.exceptions import ConfigurationError
from he_fed.models import BaseGD, LinearRegressionGD, LogisticRegressionGD
from he_fed.models._linear_classifier import LinearClassifierMixin
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime import Executor, run_federation
from he_fed.runtime.federation import Federation, RoundOutcome

__all__ = ["FederatedLinearRegression", "FederatedLogisticRegression", "RoundRecord"]


def _scheme_for(est: _FederatedBase, sizes: list[int]) -> Scheme:
    if isinstance(est.scheme, Scheme):
        return est.scheme
    max_weight = est.max_weight
    if max_weight is None:
        max_weight = 1 << (max(sizes) - 1).bit_length()
    return scheme_from_options(
        str(est.scheme),
        clip=est.clip,
        max_clients=len(sizes),
        max_weight=max_weight,
        key_bits=est.key_bits,
        ckks_preset=est.ckks_preset,
        allow_insecure=est.allow_insecure,
    )


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
        dp_epsilon: float | None = None,
        dp_delta: float = 1e-5,
        dp_level: str = "record",
        dp_clip: float = 1.0,
        dp_noise_multiplier: float | None = None,
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
        self.dp_epsilon = dp_epsilon
        self.dp_delta = dp_delta
        self.dp_level = dp_level
        self.dp_clip = dp_clip
        self.dp_noise_multiplier = dp_noise_multiplier
        self.feature_bounds = feature_bounds
        self.target_bounds = target_bounds

    def _metrics(
        self, X: np.ndarray, y: np.ndarray, coef: np.ndarray, b: float | np.ndarray
    ) -> tuple[float, float]:
        raise NotImplementedError

    def local_model(self) -> BaseGD:
        """The unfitted local estimator every client clones and trains each round.

        A deployment whose clients run elsewhere (``he-fed federation init``) hands
        them this recipe, so that they train exactly as ``fit`` would.
        """
        return self._local_model(
            alpha=self.alpha,
            learning_rate=(
                self._default_learning_rate if self.learning_rate is None else self.learning_rate
            ),
            batch_size=self.batch_size,
            random_state=self.random_state,
        )

    def plan_scheme(self, client_sizes: list[int]) -> Scheme:
        """The scheme and encoding plan ``fit`` uses for clients of these sizes.

        A deployment's key holder needs it before training, in its own policy.
        """
        return _scheme_for(self, client_sizes)

    def _federated_fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None,
        eval_set: tuple[np.ndarray, np.ndarray] | None,
        callback: Callable[[RoundRecord], None] | None,
        classes: np.ndarray | None,
    ) -> None:
        if groups is None:
            raise ConfigurationError("fit needs groups=: which client holds each row")
        groups = np.asarray(groups)
        if groups.shape != (len(X),):
            raise ConfigurationError(f"groups has shape {groups.shape}, expected ({len(X)},)")
        check_int("rounds", self.rounds, low=1)
        ids = np.unique(groups)
        partitions = [(X[groups == g], y[groups == g]) for g in ids]
        model = self.local_model()
        private = None
        if self.dp_epsilon is not None:
            n_outputs = len(classes) if classes is not None and len(classes) > 2 else 1
            regression = classes is None
            private = PrivateFit.plan(self, partitions, regression=regression, n_outputs=n_outputs)
        setup = FederationSetup.from_partitions(
            private.partitions if private else partitions,
            scheme=private.scheme
            if private
            else _scheme_for(self, [len(p[0]) for p in partitions]),
            model=model,
            local_epochs=self.local_epochs,
            classes=classes,
            min_clients=private.budget.mechanism.min_cohort if private else self.min_clients,
            server_lr=private.server_lr if private else self.server_lr,
            standardize=self.standardize and private is None,
            client_ids=[str(g) for g in ids],
            privacy=private.budget if private else None,
        )
        if private:
            partitions = private.partitions
        X_eval, y_eval = (X, y) if eval_set is None else eval_set
        X_eval = validate_data(self, X_eval, dtype=np.float64, reset=False)
        history: list[RoundRecord] = []
        started = time.perf_counter()

        def train(federation: Federation) -> dict[str, Any]:
            def raw_model() -> tuple[np.ndarray, float | np.ndarray]:
                if private is None:
                    return federation.aggregator.raw_model()
                return private.raw_model(federation.aggregator.model.weights)

            def record(outcome: RoundOutcome) -> None:
                coef, b = raw_model()
                metric, loss = self._metrics(X_eval, np.asarray(y_eval), coef, b)
                entry = RoundRecord.from_outcome(len(history) + 1, outcome, metric, loss)
                if private is not None:
                    entry = dataclasses.replace(entry, epsilon=private.budget.epsilon)
                history.append(entry)
                if callback is not None:
                    callback(entry)

            federation.train(
                self.rounds, dropout=self.dropout, random_state=self.random_state, on_round=record
            )
            coef, intercept = raw_model()
            return {
                "stopped": federation.stopped,
                "privacy": private.budget.summary() if private else None,
                "coef": coef,
                "intercept": intercept,
                "scheme": federation.keyholder.public_key.scheme.name,
                "params": federation.keyholder.public_key.scheme.params(),
                "keygen_s": federation.keygen_s,
                **{f"{k}_bytes": v for k, v in federation.setup_bytes().items()},
                "statistics": [
                    RoundRecord.from_outcome(0, o, float("nan"), float("nan"))
                    for o in federation.setup_outcomes
                ],
                "executor": federation.executor.name,
                "startup_s": federation.executor.startup_s,
            }

        summary = run_federation(self.executor, setup, partitions, train, workers=self.workers)
        coef, intercept = summary.pop("coef"), summary.pop("intercept")
        self.history_ = history
        self.setup_ = {
            **summary,
            "client_sizes": [len(p[0]) for p in partitions],
            "fit_s": time.perf_counter() - started,
        }
        self.n_clients_ = len(ids)
        self._set_model(coef, intercept)

    def _set_model(self, coef: np.ndarray, intercept: float | np.ndarray) -> None:
        raise NotImplementedError


_PARAMS_DOC = """
    Parameters
    ----------
    scheme : str or Scheme, default="paillier-packed"
        Encryption scheme: ``"paillier-packed"``, ``"paillier"``, ``"ckks"``, or
        ``"plain"``. A name builds the scheme with ``clip``, ``key_bits``
        (Paillier) or ``ckks_preset`` (CKKS), ``max_weight``, and
        ``max_clients`` set to the number of groups. A :class:`Scheme` instance is
        used as given. ``"plain"`` is the insecure, unencrypted baseline.
    rounds : int, default=20
        Training rounds.
    local_epochs : int, default=5
        Epochs each client trains per round (1 with full batches is FedSGD).
    learning_rate : float or None, default=None
        Clients' step size on standardised data. None means 0.5 for logistic and
        0.1 for linear regression, which converge on all the built-in datasets.
    alpha : float, default=1e-4
        L2 penalty.
    batch_size : int or None, default=None
        Clients' mini-batch size; None is full batch.
    clip : float, default=4.0
        Each value of an update is clipped to ``[-clip, clip]`` before encryption.
    max_weight : int or None, default=None
        Largest sample count a client may hold (part of the encoding plan). None
        takes the smallest power of two that holds the largest group: fine in a
        simulation, which knows every size; a deployment declares a public bound
        instead, since a tight plan hints at the largest client's size.
    server_lr : float, default=1.0
        Server step applied to the mean update.
    min_clients : int, optional
        The key holder decrypts no aggregate of fewer contributions. Default: a
        majority of the clients (at least 2), so that no aggregate is far from
        the whole federation's.
    standardize : bool, default=True
        Standardise features with federated statistics computed from encrypted sums.
    dropout : float, default=0.0
        Probability that a client sits out a round.
    key_bits : int, default=2048
        Paillier modulus size.
    ckks_preset : str, default="aggregation-fast"
        CKKS parameters.
    allow_insecure : bool, default=False
        Accept Paillier keys under 2048 bits (tests and demos only).
    random_state : int, default=0
        Seed for local shuffling and dropouts.
    executor : {"inprocess", "processes", "flower"} or Executor, default="inprocess"
        Where clients run: here, one after another; in a pool of worker processes
        (same coefficients, faster when encryption dominates); or on Flower's
        simulation engine, one virtual SuperNode per client plus one for the key
        holder (``pip install "he-fed[flower]"``). See :mod:`he_fed.runtime`.
    workers : int or None, default=None
        Worker processes (``processes``) or simulation actors (``flower``);
        None means all cores.
    dp_epsilon : float or None, default=None
        Differential privacy's target epsilon (None: no DP), calibrated for ``rounds``
        releases of cohorts of ``min_clients`` (default: all, or a majority with dropout).
    dp_delta : float, default=1e-5
        The run's delta.
    dp_level : {"record", "client"}, default="record"
        ``record``: one DP-SGD step per round (per-record gradients clipped to
        ``dp_clip``; the step is ``learning_rate`` (default 4 logistic, 1 linear)
        times ``server_lr``;
        local epochs unused); ``client``:
        each client's update clipped to ``dp_clip``. See :mod:`he_fed.privacy`.
    dp_clip : float, default=1.0
        The L2 clip bound of one record's gradient or one client's update.
    dp_noise_multiplier : float or None, default=None
        Fix the noise instead of calibrating it; the run stops when the target is spent.
    feature_bounds, target_bounds : (low, high), optional
        Public bounds of the features (numbers or one per feature) and of a
        regression target, which a private fit needs instead of standardising.

    Attributes
    ----------
    coef_, intercept_
        The global model on raw (unstandardised) features.
    history_ : list of RoundRecord
        Per training round: ``metric``, ``loss`` (on ``eval_set``, else the training
        data), ``timings`` (seconds per phase, summed over clients), ``wall_s``
        (the round's wall-clock time), ``bytes_up`` and ``bytes_down`` per client,
        ``contributors``, ``dropped``, ``clipped``, ``skipped`` and, with DP,
        ``epsilon`` spent (``record.to_dict()`` for JSON).
    setup_ : dict
        Key generation time, key material sizes, the standardisation rounds (as
        ``RoundRecord`` with round 0 under ``"statistics"``), the
        executor's name and its start-up time (``startup_s``: spawning workers or
        waiting for Flower nodes), why training ``stopped`` early (or None) and the
        ``privacy`` summary (or None).
    n_clients_ : int
        Number of clients (distinct groups).
"""


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
        groups : array-like of shape (n_samples,)
            Which client holds each row.
        eval_set : (X, y), optional
            Held-out data for the per-round metrics in ``history_``.
        callback : callable, optional
            Called with each round's ``history_`` entry (for progress bars).

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        classes = np.unique(y)
        if classes.size < 2:
            raise ConfigurationError(
                f"y holds a single class ({classes[0].item()!r}); classification needs at least two"
            )
        if eval_set is not None:
            unseen = np.setdiff1d(np.unique(np.asarray(eval_set[1])), classes)
            if unseen.size:
                raise ConfigurationError(
                    f"eval_set holds class{'es' * (unseen.size > 1)} "
                    f"{', '.join(map(repr, unseen.tolist()))} absent from every client's "
                    "training data; a model cannot learn a class no client holds"
                )
        self.classes_ = classes
        self._federated_fit(X, y, groups, eval_set, callback, classes)
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
        groups : array-like of shape (n_samples,)
            Which client holds each row.
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
