"""Plain-data descriptions of a federation, for executors that run roles elsewhere.

A worker process or a Flower node cannot be handed a Python object: it receives
plain data (bytes, arrays, dicts of primitives) and builds its role from that,
with the builders in :mod:`he_fed.protocol.setup`. This module holds those
descriptions and their conversion to and from flat dicts of primitives, the form
a Flower ``ConfigRecord`` carries. Nothing here is pickled and nothing here holds
secret material.

* :class:`ClientPlan`: the local training recipe every client is given (model
  and hyperparameters, local epochs, class labels).
* :class:`ClientSpec`: one client: its id, its data, the public key and the plan.
* :class:`FederationSetup`: everything a federation is built from, except the
  clients' data (which a deployment never sees in one place).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from he_fed._validation import check_float, check_int
from he_fed.crypto import SCHEMES, Scheme, wire
from he_fed.exceptions import ConfigurationError, MalformedMessage
from he_fed.privacy import DPMechanism, PrivacyBudget
from he_fed.protocol._plan_bytes import write_config
from he_fed.protocol.model import MAX_OUTPUTS, RunPlan

if TYPE_CHECKING:
    from he_fed.models import BaseGD

__all__ = [
    "MAX_LOCAL_EPOCHS",
    "ClientPlan",
    "ClientSpec",
    "FederationSetup",
    "model_kinds",
    "scheme_from_config",
    "scheme_to_config",
]


def model_kinds() -> dict[str, type[BaseGD]]:
    """Local models by the name plans use for them.

    A function, not a constant: the models are scikit-learn estimators, and the key
    holder's processes read plans (their scheme, their run plan) without training.
    """
    from he_fed.models import LinearRegressionGD, LogisticRegressionGD

    return {"logistic": LogisticRegressionGD, "linear": LinearRegressionGD}


#: A value a flat config may hold (what a Flower ConfigRecord holds).
ConfigValue = bool | int | float | str | bytes | list[Any]

_PARAM = "param."
_DIGEST_DOMAIN = b"he-fed/client-plan/v1"
_TICKET_PLAN_DOMAIN = b"he-fed/ticket-plan/v1"


def _model_kind(model: BaseGD) -> str:
    kinds = model_kinds()
    for kind, cls in kinds.items():
        if type(model) is cls:
            return kind
    raise ConfigurationError(
        f"only {sorted(kinds)} models can be described as plain data, not {type(model).__name__}"
    )


def _primitive(name: str, value: object) -> bool | int | float | str | None:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    raise ConfigurationError(
        f"model parameter {name}={value!r} cannot travel as plain data; use an int, a "
        "float, a string or None (for random_state: an integer seed)"
    )


#: Most local epochs a client plan may ask of a client each round.
MAX_LOCAL_EPOCHS = 10_000


def _exactly(config: Mapping[str, Any], key: str, kind: type) -> Any:
    """``config[key]``, which must be exactly of ``kind`` (``bool("no")`` is True, and a
    ``bool`` is an ``int`` to ``isinstance``)."""
    value = config[key]
    if type(value) is not kind:
        raise TypeError(f"{key!r} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _classes(values: object) -> np.ndarray | None:
    """A plan's class labels: distinct plain values, at most ``MAX_OUTPUTS`` of them."""
    if values is None:
        return None
    if not isinstance(values, (list, tuple)) or not 2 <= len(values) <= MAX_OUTPUTS:
        raise ValueError(f"classes must be a list of 2 to {MAX_OUTPUTS} labels")
    if any(not isinstance(v, (int, float, str)) for v in values) or len(set(values)) < len(values):
        raise ValueError("classes must be distinct numbers or text")
    return np.asarray(list(values))


@dataclass(frozen=True, eq=False)
class ClientPlan:
    """The local training recipe every client is given.

    Parameters
    ----------
    model : LinearRegressionGD or LogisticRegressionGD
        Unfitted estimator with the local hyperparameters; clients clone it.
    local_epochs : int, default=1
        Epochs per round.
    classes : array-like of shape (n_classes,), optional
        The federation's class labels (classification); three or more make the
        multinomial model.
    standardize_target : bool, default=False
        Clients include the target in the standardisation statistics.
    allow_insecure : bool, default=False
        Clients accept a public key below the security bar.
    validation_split : float, default=0.0
        Fraction of each client's rows held out for federated evaluation.
    privacy : DPMechanism, optional
        The noise every client adds (a differentially private run).
    """

    model: BaseGD
    local_epochs: int = 1
    classes: np.ndarray | None = None
    standardize_target: bool = False
    allow_insecure: bool = False
    validation_split: float = 0.0
    privacy: DPMechanism | None = None

    def to_config(self) -> dict[str, ConfigValue]:
        """The plan as a flat dict of primitives (keys like ``"local-epochs"``).

        Raises
        ------
        ConfigurationError
            If the model or one of its parameters cannot be described as plain data.
        """
        config: dict[str, ConfigValue] = {
            "model": _model_kind(self.model),
            "local-epochs": int(self.local_epochs),
            "standardize-target": bool(self.standardize_target),
            "allow-insecure": bool(self.allow_insecure),
        }
        if self.validation_split:
            config["validation-split"] = float(self.validation_split)
        unset: list[str] = []
        for name, value in sorted(self.model.get_params(deep=False).items()):
            plain = _primitive(name, value)
            if plain is None:
                unset.append(name)
            else:
                config[_PARAM + name] = plain
        if unset:
            config["unset-params"] = unset
        if self.classes is not None:
            config["classes"] = [_primitive("classes", c) for c in np.asarray(self.classes)]
        if self.privacy is not None:
            m = self.privacy
            config.update(
                {
                    "dp-level": m.level,
                    "dp-clip": m.clip,
                    "dp-noise-multiplier": m.noise_multiplier,
                    "dp-min-cohort": m.min_cohort,
                    "dp-size": m.size,
                    "dp-step": m.step,
                    "dp-sampling-rate": m.sampling_rate,
                }
            )
        return config

    def digest(self) -> bytes:
        """SHA-256 of the plan's canonical bytes: what a key holder's run plan names.

        Every ticket carries it (:attr:`RunPlan.client_plan`), and a client trains
        only on tickets that name the digest of its own plan, so all of a round's
        contributors trained under one plan, the one the key holder's plan names.
        ``allow_insecure`` is left out: it is each client's own opt-in to a weak
        key, and the ticket names the key itself (its fingerprint). Class labels
        are hashed as typed: ``1``, ``1.0`` and ``"1"`` make three plans, so clients
        under one digest hold the very same labels.
        """
        config = self.to_config()
        del config["allow-insecure"]
        w = wire.Writer()
        write_config(w, config)
        return hashlib.sha256(_DIGEST_DOMAIN + w.getvalue()).digest()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClientPlan:
        """Rebuild a plan written by :meth:`to_config`.

        Raises
        ------
        MalformedMessage
            If the dict does not describe a plan.
        """
        try:
            model_cls = model_kinds()[_exactly(config, "model", str)]
            params: dict[str, Any] = {
                key[len(_PARAM) :]: value for key, value in config.items() if key.startswith(_PARAM)
            }
            params.update(dict.fromkeys(config.get("unset-params", [])))
            model = model_cls(**params)
            model._check_params()  # a bad hyperparameter is refused here, not at the first fit
            seed = model.random_state
            if not (seed is None or (type(seed) is int and 0 <= seed < 1 << 32)):
                raise ValueError("random_state must be an integer seed in [0, 2**32) or None")
            privacy = None
            if "dp-level" in config:
                privacy = DPMechanism(
                    str(config["dp-level"]),
                    float(config["dp-clip"]),
                    float(config["dp-noise-multiplier"]),
                    int(config["dp-min-cohort"]),
                    int(config["dp-size"]),
                    float(config["dp-step"]),
                    float(config.get("dp-sampling-rate", 1.0)),
                )
            return cls(
                model=model,
                local_epochs=check_int(
                    "local-epochs",
                    _exactly(config, "local-epochs", int),
                    low=1,
                    high=MAX_LOCAL_EPOCHS,
                    error=MalformedMessage,
                ),
                classes=_classes(config.get("classes")),
                standardize_target=_exactly(config, "standardize-target", bool),
                allow_insecure=_exactly(config, "allow-insecure", bool),
                validation_split=float(_exactly(config, "validation-split", float))
                if "validation-split" in config
                else 0.0,
                privacy=privacy,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise MalformedMessage(f"not a client plan: {exc}") from None


@dataclass(frozen=True, eq=False)
class ClientSpec:
    """Everything one client is built from (see :func:`he_fed.protocol.setup.build_client`).

    Attributes
    ----------
    client_id : str
        The client's name.
    X : ndarray of shape (n_samples, n_features)
        Its features.
    y : ndarray of shape (n_samples,)
        Its targets.
    public_key : bytes
        The federation's encoded public key.
    plan : ClientPlan
        The local training recipe.
    keyholder : bytes
        The key holder's Ed25519 public key (32 bytes), which the client pins.
    signing_key : bytes, optional
        The client's own Ed25519 private key (32 bytes), so that a client rebuilt
        elsewhere keeps the identity it registered. It belongs to the client and
        travels only within the client's own trust domain (its worker process, its
        node's state); a fresh identity is made when it is absent.
    last_round : int, default=-1
        The last round the client answered; it answers only newer ones.
    phase : int, default=0
        How far the client got (see :class:`~he_fed.protocol.client.Client`).
    """

    client_id: str
    X: np.ndarray
    y: np.ndarray
    public_key: bytes
    plan: ClientPlan
    keyholder: bytes
    signing_key: bytes | None = None
    last_round: int = -1
    phase: int = 0


def ticket_plan(client_plan: bytes, scheme: Scheme) -> bytes:
    """What a ticket's ``plan`` names: the clients' training plan under the key's encoding plan.

    A key's fingerprint covers its key material, not its encoding plan (``clip``,
    ``precision_bits``, ``max_clients``, ``max_weight``), and a client takes both
    from whoever relays its setup. Red team 42 gave the other clients the very key
    under a clip of ``2**64``, so their updates encoded to zero and still counted
    towards ``min_clients``. The key holder names this digest of its own key's plan
    in every ticket, and a client answers only a ticket naming the digest of its own.

    Parameters
    ----------
    client_plan : bytes
        :meth:`ClientPlan.digest`, as :attr:`RunPlan.client_plan` names it (``b""``:
        none, and then so is this).
    scheme : Scheme
        The scheme and encoding plan of the federation's public key.
    """
    if not client_plan:
        return b""
    w = wire.Writer()
    w.blob(client_plan)
    w.text(scheme.name)
    w.text(scheme.params_text(), length_bytes=4)
    return hashlib.sha256(_TICKET_PLAN_DOMAIN + w.getvalue()).digest()


def scheme_to_config(scheme: Scheme) -> dict[str, ConfigValue]:
    """A scheme and its plan as primitives: name, canonical parameters, opt-in flag."""
    return {
        "scheme": scheme.name,
        "params": scheme.params_text(),
        "allow-insecure": bool(getattr(scheme, "allow_insecure", False)),
    }


def scheme_from_config(config: Mapping[str, Any]) -> Scheme:
    """Rebuild a scheme written by :func:`scheme_to_config`.

    Raises
    ------
    MalformedMessage
        If the dict does not describe a scheme.
    InsecureParameters
        If the parameters are below the bar without the opt-in.
    """
    cls = SCHEMES.get(str(config.get("scheme")))
    if cls is None:
        raise MalformedMessage(f"unknown scheme {config.get('scheme')!r}")
    allow_insecure, params = config.get("allow-insecure", False), config.get("params", "")
    if type(allow_insecure) is not bool or type(params) is not str:
        # bool("no") is True: a flag that is not a boolean would opt in to weak keys
        raise MalformedMessage("a scheme's params must be text and its allow-insecure a boolean")
    return cls.from_params(params, allow_insecure=allow_insecure)


@dataclass(frozen=True, eq=False)
class FederationSetup:
    """Everything a federation is built from, except the clients' data.

    Parameters
    ----------
    scheme : Scheme
        Scheme and encoding plan; the key holder generates keys under it.
    plan : ClientPlan
        What every client trains with.
    n_features : int
        Number of model features.
    client_ids : tuple of str
        The clients' names, in order.
    min_clients : int, optional
        Smallest cohort the key holder decrypts (default: a majority of the
        clients, at least 2). This is the key holder's own policy: on Flower the
        key-holder node takes it from its own configuration.
    server_lr : float, default=1.0
        Server step.
    standardize : bool, default=True
        Standardise features with federated statistics.
    threshold : tuple of int, optional
        ``(t, n)``: no key holder, but ``n`` share holders any ``t`` of which
        decrypt (:mod:`he_fed.protocol.decryptor`); Paillier schemes only.
    server_optimizer : {"avg", "avgm", "adam", "yogi"}, default="avg"
        Server optimizer (:mod:`he_fed.protocol.optimizers`).
    privacy : PrivacyBudget, optional
        The key holder's differential-privacy budget; its mechanism is the
        clients' (``plan.privacy``).
    """

    scheme: Scheme
    plan: ClientPlan
    n_features: int
    client_ids: tuple[str, ...]
    min_clients: int | None = None
    server_lr: float = 1.0
    standardize: bool = True
    threshold: tuple[int, int] | None = None
    server_optimizer: str = "avg"
    privacy: PrivacyBudget | None = None

    @property
    def regression(self) -> bool:
        """Whether the model is a regressor (its target is standardised too)."""
        return _is_regressor(self.plan.model)

    @property
    def n_outputs(self) -> int:
        """Rows of weights: one per class of a multinomial model, else 1."""
        classes = self.plan.classes
        return len(classes) if classes is not None and len(classes) > 2 else 1

    @property
    def run_plan(self) -> RunPlan:
        """The public plan that fixes every round's global model, naming the clients' plan."""
        return RunPlan(
            n_features=self.n_features,
            server_lr=self.server_lr,
            standardize=self.standardize,
            standardize_target=self.standardize and self.regression,
            n_outputs=self.n_outputs,
            server_optimizer=self.server_optimizer,
            evaluation=(
                None
                if not self.plan.validation_split
                else "regression"
                if self.regression
                else "classification"
            ),
            client_plan=self.plan.digest(),
        )

    @classmethod
    def from_partitions(
        cls,
        partitions: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        scheme: Scheme,
        model: BaseGD,
        local_epochs: int = 1,
        classes: np.ndarray | None = None,
        min_clients: int | None = None,
        server_lr: float = 1.0,
        standardize: bool = True,
        client_ids: Sequence[str] | None = None,
        threshold: tuple[int, int] | None = None,
        validation_split: float = 0.0,
        server_optimizer: str = "avg",
        privacy: PrivacyBudget | None = None,
    ) -> FederationSetup:
        """Describe a federation over ``partitions`` (see :meth:`Federation.create`).

        Raises
        ------
        ConfigurationError
            If there are no clients, the ids are not unique, or the clients disagree
            on the number of features.
        """
        if len(partitions) < 1:
            raise ConfigurationError("a federation needs at least one client")
        ids = (
            list(client_ids)
            if client_ids is not None
            else [f"client-{i}" for i in range(len(partitions))]
        )
        if len(ids) != len(partitions) or len(set(ids)) != len(ids):
            raise ConfigurationError("client_ids must be unique, one per partition")
        widths = {np.asarray(X).shape[1] for X, _ in partitions}
        if len(widths) != 1:
            raise ConfigurationError(f"clients disagree on the number of features: {widths}")
        # The clients' hyperparameters are checked here, once, so that a bad value is
        # one clear error before any work, not a failure in every client's round.
        model._check_params()
        check_float("validation_split", validation_split, low=0, high=0.9)
        plan = ClientPlan(
            model=model,
            local_epochs=local_epochs,
            classes=classes,
            standardize_target=_is_regressor(model) and standardize,
            allow_insecure=bool(getattr(scheme, "allow_insecure", False)),
            validation_split=validation_split,
            privacy=None if privacy is None else privacy.mechanism,
        )
        return cls(
            scheme=scheme,
            plan=plan,
            n_features=widths.pop(),
            client_ids=tuple(str(i) for i in ids),
            min_clients=min_clients,
            server_lr=server_lr,
            standardize=standardize,
            threshold=threshold,
            server_optimizer=server_optimizer,
            privacy=privacy,
        )


def _is_regressor(model: Any) -> bool:
    # Imported here: a model exists only where scikit-learn is loaded already, and
    # the key holder's processes read this module without ever training.
    from sklearn.base import is_regressor

    return bool(is_regressor(model))
