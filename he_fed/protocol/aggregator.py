"""The blind aggregator: adds ciphertexts it can never read."""

from __future__ import annotations

import numpy as np

from he_fed.crypto import AggregationKey, EncryptedVector, PublicKey
from he_fed.exceptions import (
    ConfigurationError,
    InvalidSignature,
    MalformedMessage,
    ProtocolError,
    ShapeMismatchError,
    TrainingDiverged,
)
from he_fed.protocol import tasks
from he_fed.protocol._keys import public_material
from he_fed.protocol.messages import (
    Aggregate,
    EncryptedAggregate,
    EncryptedUpdate,
    Receipt,
    RoundStart,
    Task,
    decode,
    encode,
)
from he_fed.protocol.receipts import Registry, digest

__all__ = ["Aggregator"]

#: Weights on standardised data beyond this mean the model has diverged.
_DIVERGED = 1e12


class Aggregator:
    """Holds the global model and public material only; sums encrypted updates.

    Constructing one with a secret key (or bytes holding one) raises
    :class:`~he_fed.exceptions.SecretMaterialError`. Given a full public key, it
    keeps only the aggregation material (for CKKS, the parameters alone).

    Each :meth:`add` is validated completely (round, task, registered sender and
    signature, duplicate, key, plan, length, overflow) *before* it touches the
    running sum, so a bad update raises a typed error and loses nothing already
    aggregated. The aggregate it forwards carries a signed receipt per
    contribution, which the key holder checks (see :mod:`he_fed.protocol.receipts`).

    Parameters
    ----------
    key : bytes or AggregationKey
        Public material from the key holder.
    n_features : int
        Number of model features (the update holds one more value, the intercept).
    server_lr : float, default=1.0
        Server step: ``w <- w + server_lr * mean_update``.
    standardize : bool, default=True
        Whether training rounds standardise features with the federated statistics.
    standardize_target : bool, default=False
        Whether the target is standardised too (regression).
    clients : mapping of str to bytes, optional
        Registered clients' Ed25519 public keys (more with :meth:`register`).
    allow_insecure : bool, default=False
        Accept public material below the security bar.

    Attributes
    ----------
    weights : ndarray of shape (n_features + 1,)
        Global weights on standardised features (coefficients, then intercept).
    center, scale : ndarray of shape (n_columns,) or None
        Federated standardisation, once computed: one entry per feature, plus one
        for the target when it is standardised.
    """

    def __init__(
        self,
        key: bytes | AggregationKey,
        *,
        n_features: int,
        server_lr: float = 1.0,
        standardize: bool = True,
        standardize_target: bool = False,
        clients: dict[str, bytes] | None = None,
        allow_insecure: bool = False,
    ) -> None:
        material = public_material(key, role="aggregator", allow_insecure=allow_insecure)
        if isinstance(material, PublicKey):
            material = material.aggregation_key()
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise ConfigurationError("n_features must be a positive integer")
        if not np.isfinite(server_lr) or server_lr <= 0:
            raise ConfigurationError("server_lr must be positive")
        self._key = material
        self.n_features = n_features
        self.server_lr = float(server_lr)
        self.standardize = standardize
        self.n_columns = n_features + int(standardize and standardize_target)
        self.weights = np.zeros(n_features + 1)
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self._prescale: np.ndarray | None = None
        self._round = -1
        self._task: Task | None = None
        self._sum: EncryptedVector | None = None
        self._receipts: list[Receipt] = []
        self._registry = Registry(clients)

    def register(self, client_id: str, verify_key: bytes) -> None:
        """Register a client's Ed25519 public key; updates from others are refused."""
        self._registry.register(client_id, verify_key)

    @property
    def key(self) -> AggregationKey:
        """The public material held (never a secret)."""
        return self._key

    @property
    def round(self) -> int:
        """Id of the current round (-1 before the first)."""
        return self._round

    @property
    def contributors(self) -> tuple[str, ...]:
        """Clients whose updates the current sum holds."""
        return tuple(r.client_id for r in self._receipts)

    def start_round(self, task: Task = Task.TRAIN) -> bytes:
        """Open a new round and return the :class:`RoundStart` to broadcast.

        Raises
        ------
        ProtocolError
            If the task needs statistics that have not been computed yet.
        """
        task = Task(task)
        empty = np.empty(0)
        if task is Task.TRAIN:
            if self.standardize and self.center is None:
                raise ProtocolError("standardisation statistics must be computed before training")
            center = self.center if self.center is not None else empty
            scale = self.scale if self.scale is not None else empty
            message = RoundStart(self._round + 1, task, self.weights, center, scale)
        elif task is Task.MOMENTS:
            if self._prescale is None:
                raise ProtocolError("the magnitude round must come before the moments round")
            message = RoundStart(self._round + 1, task, empty, empty, self._prescale)
        else:
            message = RoundStart(self._round + 1, task, empty, empty, empty)
        self._round += 1
        self._task = task
        self._sum = None
        self._receipts = []
        return encode(message)

    def add(self, data: bytes) -> None:
        """Fold one encrypted update into the round's sum.

        Raises
        ------
        MalformedMessage
            If the bytes are not a well-formed update (or the vector has the wrong length).
        ProtocolError
            If the update answers another round or task, or its sender already contributed.
        InvalidSignature
            If the sender is not registered or the signature does not verify.
        KeyMismatchError
            If it was encrypted under another key or plan.
        EncodingOverflowError
            If the sum would exceed the plan's ``max_clients``.
        """
        if self._task is None:
            raise ProtocolError("no round is open")
        update = decode(data, EncryptedUpdate)
        if update.round != self._round or update.task is not self._task:
            raise ProtocolError(
                f"update for round {update.round} ({update.task.value}) arrived during "
                f"round {self._round} ({self._task.value})"
            )
        if update.client_id in self.contributors:
            raise ProtocolError(f"client {update.client_id!r} already contributed this round")
        if update.client_id not in self._registry:
            raise InvalidSignature(f"client {update.client_id!r} is not registered")
        key = tasks.plan_for(self._key, self._task)
        size = tasks.vector_size(self._task, self.n_features, self.n_columns)
        vector = key.load_vector(update.vector, size=size)
        if vector.count != 1:
            raise MalformedMessage("an update must hold exactly one contribution")
        receipt = Receipt(
            update.client_id, digest(update.vector), vector.commitment(), update.signature
        )
        if not self._registry.verify(
            receipt, round=self._round, task=self._task, fingerprint=key.fingerprint
        ):
            raise InvalidSignature(f"the update from {update.client_id!r} has a bad signature")
        total = vector if self._sum is None else self._sum + vector
        self._sum = total
        self._receipts.append(receipt)

    def finish_round(self) -> bytes:
        """Close the round and return the :class:`EncryptedAggregate` for the key holder.

        Raises
        ------
        ProtocolError
            If no update was added.
        """
        if self._task is None or self._sum is None:
            raise ProtocolError("no update was aggregated this round")
        message = EncryptedAggregate(
            self._round, self._task, tuple(self._receipts), self._sum.to_bytes()
        )
        return encode(message)

    def apply(self, data: bytes) -> None:
        """Apply the key holder's decrypted :class:`Aggregate` to the global state.

        Raises
        ------
        ProtocolError
            If it answers another round or task.
        MalformedMessage
            If it is malformed or has the wrong length.
        """
        aggregate = decode(data, Aggregate)
        if aggregate.round != self._round or aggregate.task is not self._task:
            raise ProtocolError(f"aggregate for round {aggregate.round} does not match this round")
        size = tasks.vector_size(aggregate.task, self.n_features, self.n_columns)
        if aggregate.mean.size != size:
            raise ShapeMismatchError(f"aggregate has {aggregate.mean.size} values, expected {size}")
        if aggregate.task is Task.TRAIN:
            weights = self.weights + self.server_lr * aggregate.mean
            if not np.all(np.abs(weights) < _DIVERGED):
                raise TrainingDiverged(
                    "the global model diverged; lower the learning rate or local epochs"
                )
            self.weights = weights
        elif aggregate.task is Task.MAGNITUDE:
            self._prescale = tasks.prescale(aggregate.mean)
        else:
            assert self._prescale is not None
            self.center, self.scale = tasks.standardization(aggregate.mean, self._prescale)
        self._task = None
        self._sum = None

    def raw_model(self) -> tuple[np.ndarray, float]:
        """``(coef, intercept)`` of the global model on raw (unstandardised) features."""
        return tasks.to_raw(self.weights, self.center, self.scale)
