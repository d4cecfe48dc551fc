"""The client: trains on its own data and sends only an encrypted update."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from he_fed._validation import check_client_id, check_float, check_int
from he_fed.crypto import PublicKey
from he_fed.data._features import check_features
from he_fed.exceptions import (
    ConfigurationError,
    EncodingOverflowError,
    MalformedMessage,
    ProtocolError,
)
from he_fed.models import BaseGD
from he_fed.privacy import (
    DPMechanism,
    clip_update,
    clipped_gradient_mean,
    clipped_gradient_sum,
    fedsgd_step,
    value_range,
)
from he_fed.protocol import evaluation, tasks
from he_fed.protocol._keys import client_key
from he_fed.protocol.council import is_pin
from he_fed.protocol.messages import EncryptedUpdate, RoundStart, Task, encode
from he_fed.protocol.receipts import (
    Identity,
    contribution_payloads,
)
from he_fed.protocol.spec import MAX_LOCAL_EPOCHS, ClientPlan, ClientSpec, ticket_plan
from he_fed.protocol.ticket_check import PHASE, checked_ticket

__all__ = ["Client", "ClientReport"]

#: Seconds per phase, which a report may leave out, like its clipped count.
_SECONDS = ("train_s", "encrypt_s", "sign_s", "serialize_s")


@dataclass(frozen=True)
class ClientReport:
    """What a client hands its executor after a round.

    Only :attr:`update` travels to the aggregator; the rest is local bookkeeping
    for the experiment's report.

    Attributes
    ----------
    round : int
        The round answered.
    update : bytes
        The encoded :class:`~he_fed.protocol.messages.EncryptedUpdate`.
    train_s, encrypt_s, sign_s, serialize_s : float or None
        Seconds spent training (or computing statistics), encoding and
        encrypting, committing, signing and proving, and serializing. None where
        the client keeps them: a Flower client node does not send them, since
        training time grows with its rows.
    clipped : int or None
        Values clipped to the plan's bound before encryption (for FedSGD, record
        gradient coordinates clipped; for a private run, what its clipping counts).
        None where the client keeps it: a Flower client node does not send it.
    """

    round: int
    update: bytes
    train_s: float | None
    encrypt_s: float | None
    sign_s: float | None
    serialize_s: float | None
    clipped: int | None

    def to_record(self) -> dict[str, int | float | bytes]:
        """The report as a flat record of ints, floats and bytes, keyed by field name.

        What executors send across a process or network boundary (a worker's
        return value, a Flower reply); :meth:`from_record` reads it back. A field
        the client kept (None) is left out.
        """
        fields = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        return {name: value for name, value in fields if value is not None}

    def kept(self) -> ClientReport:
        """This report without what tells of the client's data: its clipped count
        (red team 43) and its seconds per phase, which grow with its rows (50)."""
        return dataclasses.replace(self, clipped=None, **dict.fromkeys(_SECONDS))

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> ClientReport:
        """Rebuild a report from :meth:`to_record`'s output, checking every field.

        Raises
        ------
        MalformedMessage
            If a field is missing or of the wrong type.
        """
        try:
            update = record["update"]
            if not isinstance(update, (bytes, bytearray, memoryview)):
                raise MalformedMessage("a client report's update must be bytes")
            seconds = {  # absent: the client kept it
                name: check_float(name, record[name], finite=False, error=MalformedMessage)
                if name in record
                else None
                for name in _SECONDS
            }
            clipped = record.get("clipped")
            if "clipped" in record:
                clipped = check_int("clipped", clipped, error=MalformedMessage)
            round_id = check_int("round", record["round"], error=MalformedMessage)
            return cls(round=round_id, update=bytes(update), clipped=clipped, **seconds)
        except KeyError as exc:
            raise MalformedMessage(f"a client report lacks {exc}") from None


class Client:
    """A data owner. Holds its data and the public key, never the secret key.

    It trusts one key holder, whose Ed25519 public key it was provisioned with
    (``keyholder``), and answers only that key holder's signed round tickets
    (:class:`~he_fed.protocol.messages.RoundStart`), each round id once and in
    increasing order, under the public key and for the training plan the ticket
    names (:meth:`ClientPlan.digest`). So an aggregator can neither make it train
    from weights or a recipe of its choosing, nor replay a round to a smaller
    cohort, nor have it encrypt under a key the aggregator made.

    Each round it trains ``local_epochs`` epochs from the global weights (one row
    of coefficients and intercept, or one row per class for more than two
    classes, flattened row by row), clips the change to the plan's bound, and
    encrypts ``[n_k * delta_k, n_k]``: the sample
    count rides along, so the aggregate is a correctly weighted FedAvg mean while
    each client's weight stays secret. With one epoch of full-batch descent at a
    fixed learning rate (FedSGD), it clips each record's gradient instead
    (:func:`~he_fed.privacy.clipped_gradient_mean`), so that the aggregate is a
    function of the cohort's pooled rows up to each client's rounding.

    Parameters
    ----------
    client_id : str
        Unique name of this client.
    X : array-like of shape (n_samples, n_features)
        Local features.
    y : array-like of shape (n_samples,)
        Local targets.
    public_key : bytes or PublicKey
        The federation's public key. It is used only if the key holder's tickets
        name its fingerprint.
    keyholder : bytes
        The key holder's Ed25519 public key (32 bytes), provisioned out of band.
    model : LinearRegressionGD or LogisticRegressionGD
        Unfitted estimator carrying the local hyperparameters (learning rate,
        penalty, batch size, seed). It is cloned every round.
    local_epochs : int, default=1
        Epochs per round (``1`` with full batches and a numeric learning rate is
        FedSGD, whose aggregates are pooled figures up to rounding).
    classes : array-like of shape (n_classes,), optional
        The federation's class labels, for classification. Three or more make
        the multinomial model, whose weights have one row per class.
    standardize_target : bool, default=False
        Include the target in the standardisation statistics (regression).
    identity : Identity, optional
        The client's Ed25519 signing identity (generated when omitted). Register
        :attr:`verify_key` with the key holder and the aggregator.
    allow_insecure : bool, default=False
        Accept a public key below the security bar.
    last_round : int, default=-1
        The last round this client answered (for a client restored from storage).
    phase : int, default=0
        How far the client got (for a client restored from storage): 1 after the
        magnitude round, 2 after the moments round, 3 after a training round. It
        answers each statistics round once, and none after training started, so
        no one can probe its data with statistics tickets of their choosing.
    validation_split : float, default=0.0
        Fraction of the rows held out to score each global model on
        (:attr:`Task.EVALUATE`; :func:`he_fed.protocol.evaluation.validation_rows`
        picks them); they are never trained on nor counted in the statistics.
    privacy : DPMechanism, optional
        Differential privacy: the client clips (each record's gradient, for one
        gradient step per round, at ``record`` level; its whole update at
        ``client`` level), adds its share of the noise on the grid, and encrypts
        with weight 1 (:mod:`he_fed.privacy`). At ``record`` level its rows must
        fit the plan's range (:func:`~he_fed.privacy.value_range`), or it is
        refused here with :class:`~he_fed.exceptions.EncodingOverflowError`, as
        a client holding more than ``max_weight`` samples is without privacy.
    """

    def __init__(
        self,
        client_id: str,
        X: np.ndarray,
        y: np.ndarray,
        public_key: bytes | PublicKey,
        *,
        keyholder: bytes,
        model: BaseGD,
        local_epochs: int = 1,
        classes: np.ndarray | None = None,
        standardize_target: bool = False,
        identity: Identity | None = None,
        allow_insecure: bool = False,
        last_round: int = -1,
        phase: int = 0,
        validation_split: float = 0.0,
        privacy: DPMechanism | None = None,
    ) -> None:
        check_client_id(client_id)
        if not is_pin(keyholder):
            raise ConfigurationError(
                "the key holder's identity is a 32-byte Ed25519 public key or a council pin"
            )
        key = client_key(public_key, allow_insecure=allow_insecure)
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or len(X) == 0:
            raise ConfigurationError(
                f"client {client_id!r} needs X of shape (n, d) and y of n labels, "
                f"got {X.shape} and {y.shape}"
            )
        check_features(X, f"client {client_id!r}")
        if classes is None and np.issubdtype(y.dtype, np.number):  # summed and squared too
            check_features(y.astype(np.float64)[:, None], f"client {client_id!r}", ["target"])
        stray = set() if classes is None else set(y.tolist()) - set(np.asarray(classes).tolist())
        if stray:  # trained as "no class", they would zero this client's gradients
            raise ConfigurationError(
                f"client {client_id!r} holds labels {', '.join(sorted(map(repr, stray)))}, "
                f"not among the federation's classes {np.asarray(classes).tolist()!r}"
            )
        self._validation_split = check_float("validation_split", validation_split, low=0, high=0.9)
        held_out = evaluation.validation_rows(len(X), self._validation_split, client_id)
        self._X_val, self._y_val = X[held_out], y[held_out]
        if held_out.size:
            kept = np.setdiff1d(np.arange(len(X)), held_out)
            X, y = X[kept], y[kept]
        if privacy is None and len(X) > key.scheme.max_weight:
            raise EncodingOverflowError(
                f"client {client_id!r} holds {len(X)} samples, more than the plan's "
                f"max_weight={key.scheme.max_weight}"
            )
        if privacy is not None and privacy.level == "record":
            # Weight 1, but one clipped gradient per row: the plan's range must hold them.
            p = privacy
            reach = value_range(p.level, p.clip, p.noise_multiplier, p.min_cohort, len(X))
            if reach > key.scheme.clip:
                raise EncodingOverflowError(
                    f"client {client_id!r} holds {len(X)} samples: their clipped gradients "
                    f"and noise reach {reach:g}, beyond the plan's clip bound "
                    f"{key.scheme.clip:g} (plan the run for this many rows a client)"
                )
        check_int("local_epochs", local_epochs, low=1, high=MAX_LOCAL_EPOCHS)
        self.client_id = client_id
        self._X = X
        self._y = y
        self._key: PublicKey = key
        self._key_bytes = bytes(public_key) if isinstance(public_key, (bytes, bytearray)) else None
        self._model = model
        self._epochs = local_epochs
        self._classes = classes
        self._identity = identity or Identity()
        self._keyholder = keyholder
        self._last_round = int(last_round)
        self._phase = int(phase)
        self._privacy = privacy
        self._plan = ClientPlan(
            model, local_epochs, classes, standardize_target, allow_insecure,
            self._validation_split, privacy,
        )  # fmt: skip
        self._plan_digest = ticket_plan(self._plan.digest(), key.scheme)  # tickets name it
        #: This client's weight pins (:meth:`EncryptedVector.prove_commitment`): each
        #: weight it sends is range-proven once, in the first round that needs it.
        self._weight_pins: dict[object, object] = {}
        self._columns = np.column_stack([X, y.astype(np.float64)]) if standardize_target else X

    @property
    def verify_key(self) -> bytes:
        """The public half of the client's signing identity (32 bytes)."""
        return self._identity.public_bytes

    @property
    def n_samples(self) -> int:
        """Number of local samples (the client's FedAvg weight)."""
        return len(self._X)

    @property
    def last_round(self) -> int:
        """The last round this client answered (-1 before the first)."""
        return self._last_round

    @property
    def phase(self) -> int:
        """0 before any round, 1 after magnitude, 2 after moments, 3 after training."""
        return self._phase

    def mark_answered(self, round_id: int, phase: int) -> None:
        """Record what this client answered elsewhere (in a worker process)."""
        self._last_round = max(self._last_round, int(round_id))
        self._phase = max(self._phase, int(phase))

    def spec(self) -> ClientSpec:
        """This client as plain data, for an executor that runs it in another process.

        :func:`he_fed.protocol.setup.build_client` turns it back into an equal client.
        """
        if self._key_bytes is None:
            self._key_bytes = self._key.to_bytes()
        held_out = evaluation.validation_rows(
            len(self._X) + len(self._X_val), self._validation_split, self.client_id
        )
        X = np.empty((len(self._X) + len(self._X_val), self._X.shape[1]))
        y = np.empty(len(X), dtype=np.result_type(self._y, self._y_val))
        kept = np.setdiff1d(np.arange(len(X)), held_out)
        X[kept], X[held_out], y[kept], y[held_out] = self._X, self._X_val, self._y, self._y_val
        return ClientSpec(
            self.client_id,
            X,
            y,
            self._key_bytes,
            self._plan,
            keyholder=self._keyholder,
            signing_key=self._identity.private_bytes(),
            last_round=self._last_round,
            phase=self._phase,
        )

    def participate(self, message: bytes) -> ClientReport:
        """Answer a :class:`RoundStart` with an encrypted update.

        Parameters
        ----------
        message : bytes
            The encoded round start.

        Returns
        -------
        ClientReport
        """
        start = checked_ticket(
            message,
            client_id=self.client_id,
            keyholder=self._keyholder,
            plan=self._plan_digest,
            key=self._key,
            last_round=self._last_round,
            phase=self._phase,
        )
        key = tasks.plan_for(self._key, start.task)
        self._last_round = start.round  # an attempt counts, even if it fails below
        self._phase = max(self._phase, PHASE[start.task])
        t0 = time.perf_counter()
        values, clipped = self._compute(start, key.scheme.clip)
        t1 = time.perf_counter()
        if start.task is Task.EVALUATE:
            weight = len(self._X_val)
        else:
            weight = self.n_samples if self._privacy is None else 1
        vector = key.encrypt(values, weight=weight)  # type: ignore[attr-defined]
        t2 = time.perf_counter()
        vector_bytes = vector.to_bytes()
        t3 = time.perf_counter()
        whole, alone = contribution_payloads(
            federation=start.federation,
            round=start.round,
            task=start.task,
            client_id=self.client_id,
            fingerprint=key.fingerprint,
            vector=vector_bytes,
            commitment=vector.commitment(),
            binding=vector.binding(),
        )
        signature = self._identity.sign(whole)
        commitment_signature = self._identity.sign(alone)
        proof = vector.prove_commitment(alone, self._weight_pins)
        t4 = time.perf_counter()
        update = EncryptedUpdate(
            start.round,
            start.task,
            self.client_id,
            vector_bytes,
            signature,
            commitment_signature,
            proof,
            vector.binding(),
        )
        data = encode(update)
        t5 = time.perf_counter()
        return ClientReport(
            start.round, data, t1 - t0, t2 - t1, t4 - t3, (t3 - t2) + (t5 - t4), clipped
        )

    def _compute(self, start: RoundStart, bound: float) -> tuple[np.ndarray, int]:
        d = self._X.shape[1]
        if start.task is Task.MAGNITUDE:
            return tasks.magnitude(self._columns)
        if start.task is Task.MOMENTS:
            width = self._columns.shape[1]
            values = tasks.moments(self._columns, self._checked(start.scale, width, "pre-scale"))
            # Clamped, not refused: whether a client answers must not depend on its
            # data, or a ticket's pre-scale could probe it (one bit per round). The
            # key holder's pre-scale leaves honest moments within the bound.
            clipped = int(np.count_nonzero(np.abs(values) > bound))
            return np.clip(values, -bound, bound), clipped
        if start.task is Task.EVALUATE:
            return self._evaluate(start, d)
        return self._train(start, d)

    def _standardized(
        self, start: RoundStart, X: np.ndarray, y: np.ndarray, d: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``X`` and ``y`` standardised as the ticket says (unchanged without statistics)."""
        if not start.center.size:
            return X, y
        width = self._columns.shape[1]
        center = self._checked(start.center, width, "center")
        scale = self._checked(start.scale, width, "scale")
        X = (X - center[:d]) / scale[:d]
        if width > d:
            y = (y - center[d]) / scale[d]
        return X, y

    def _evaluate(self, start: RoundStart, d: int) -> tuple[np.ndarray, int]:
        """The dithered metric means of the ticket's model on the validation rows."""
        if not len(self._X_val):
            raise ProtocolError(
                f"client {self.client_id!r} holds no validation rows (validation_split=0)"
            )
        rows = self._rows()
        weights = self._checked(start.weights, rows * (d + 1), "weight vector")
        if self._classes is None:
            X, y = self._standardized(start, self._X_val, self._y_val.astype(np.float64), d)
            kind = "regression"
        else:
            X, _ = self._standardized(start, self._X_val, self._y_val, d)
            index = {label: i for i, label in enumerate(np.asarray(self._classes).tolist())}
            y = np.array([index[v] for v in self._y_val.tolist()], dtype=np.int64)
            kind = "classification"
        values, clipped = evaluation.local_means(kind, X, y, weights, rows)
        key = self._identity.private_bytes()
        dithered = evaluation.dither(
            values, len(X), key=key, federation=start.federation, round_id=start.round
        )
        return dithered, clipped

    def _rows(self) -> int:
        classes = 0 if self._classes is None else len(self._classes)
        return classes if classes > 2 else 1

    @staticmethod
    def _checked(values: np.ndarray, size: int, what: str) -> np.ndarray:
        if values.size != size:
            raise ConfigurationError(f"round start carries a {what} of {values.size}, not {size}")
        if not np.all(np.isfinite(values)):
            raise ConfigurationError(f"round start carries a non-finite {what}")
        if what in ("scale", "pre-scale") and not np.all(values > 0):
            raise ConfigurationError(f"round start carries a {what} that is not positive")
        return values

    def _train(self, start: RoundStart, d: int) -> tuple[np.ndarray, int]:
        rows = self._rows()
        weights = self._checked(start.weights, rows * (d + 1), "weight vector")
        X, y = self._standardized(start, self._X, self._y, d)
        if self._privacy is not None and self._privacy.level == "record":
            # One DP-SGD step: the negated sum of clipped gradients of this round's
            # Poisson sample (every record unless q < 1; an empty sample adds zero).
            X, y = self._privacy.sample(X, y)
            step, clipped = clipped_gradient_sum(
                self._model, X, y, weights, self._privacy.clip, self._classes
            )
            return self._privacy.noisy(step), clipped
        step = fedsgd_step(self._model, self._epochs) if self._privacy is None else None
        if step is not None:
            return clipped_gradient_mean(
                self._model, X, y, weights, step, self._key.scheme.clip, self._classes
            )
        model = clone(self._model).set_params(max_iter=self._epochs)
        if rows == 1:
            fit_params = {"coef_init": weights[:-1], "intercept_init": weights[-1]}
        else:
            matrix = weights.reshape(rows, d + 1)
            fit_params = {"coef_init": matrix[:, :-1], "intercept_init": matrix[:, -1]}
        if self._classes is not None:
            fit_params["classes"] = self._classes
        model.fit(X, y, **fit_params)
        if rows == 1:
            new = np.append(np.ravel(model.coef_), np.ravel(model.intercept_)[0])
        else:
            new = np.column_stack([model.coef_, model.intercept_]).ravel()
        delta = new - weights
        if self._privacy is not None:
            update, clipped = clip_update(delta, self._privacy.clip)
            return self._privacy.noisy(update), clipped
        bound = self._key.scheme.clip
        clipped = int(np.count_nonzero(np.abs(delta) > bound))
        return np.clip(delta, -bound, bound), clipped
