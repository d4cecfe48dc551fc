"""The Flower App he-fed ships: ``flwr run`` on it runs an he-fed experiment.

Every machine (SuperLink and SuperNodes) needs ``pip install "he-fed[flower]"``;
the app itself is only a ``pyproject.toml`` that points Flower at :data:`server`
and :data:`client` and declares the run configuration::

    he-fed flower-app ./hefed-app                      # writes ./hefed-app/pyproject.toml
    flwr run ./hefed-app my-superlink --stream --run-config "rounds=10 clients=3"

The run configuration has one key per :class:`~he_fed.experiment.ExperimentConfig`
field (``key-bits`` for ``key_bits``; ``0`` or ``""`` for "not set";
``categorical`` as one text, ``"ward=A,B,C;sex=f,m"``), plus
``out`` (a path on the ServerApp's machine for the result JSON),
``checkpoint`` (a directory on the ServerApp's machine: a later ``flwr run`` with
the same run configuration resumes from its last completed round; see
:mod:`he_fed.runtime.flower.resume`), ``start-timeout`` and ``reply-timeout``
(seconds), and ``nodes`` (SuperNodes to wait for; ``0``: the clients plus the key
holder, or plus the ``n`` share holders).

Nodes: one SuperNode with ``--node-config "role='keyholder' policy-file=...
identity-file=... secret-key-file=... state-file=..."`` (a deployed key holder
refuses key generation without ``state-file``), and one per
client with ``--node-config "partition-id=K"`` (its share of the run's built-in
dataset, dealt exactly as ``he-fed run`` deals it) or ``"data-path='own.csv'
target='label'"`` (its own CSV file). With ``threshold="t/n"``, no key holder:
``n`` share-holder nodes, each with ``--node-config "share-file='share-K.key'
policy-file='holder.json' identity-file='holder-K.identity' council-file='council.pin'
federation-file='holder-K.federation'"``
(:mod:`he_fed.runtime.flower.sharenode`); a client node may carry those too.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from he_fed._validation import check_bool, check_int
from he_fed.crypto.threshold import parse_threshold
from he_fed.exceptions import ConfigurationError
from he_fed.runtime.flower.nodes import make_client_app
from he_fed.runtime.flower.policy import KeyHolderPolicy

if TYPE_CHECKING:
    from he_fed.experiment import ExperimentConfig, ExperimentData
    from he_fed.federated import RoundRecord
    from he_fed.protocol.spec import FederationSetup

# Every message to a node is a fresh process that imports this module, most of them
# to nodes that never train (the key holder, the share holders): what only the
# ServerApp, the run configuration or a client's data need (the experiment, the
# data loaders, scikit-learn) is imported inside the functions that need it.

__all__ = [
    "RUN_CONFIG",
    "SPARE_TICKETS",
    "client",
    "config_from_run_config",
    "keyholder_policy",
    "node_data",
    "server",
    "write_app",
]

#: Federated evaluation and server optimizers are not carried by the key-holder
#: node's policy yet (the estimators refuse them on Flower), so no run config takes them.
#: FedProx's ``prox-mu`` is the clients' own hyperparameter: the plan's digest covers it.
_NOT_IN_RUN_CONFIG = (
    "executor",
    "workers",
    "validation_split",
    "validation_every",
    "early_stopping",
    "server_optimizer",
)
#: ``lr`` and ``l2`` take one value here (candidates need federated evaluation).
_CANDIDATES = " | tuple[float, ...]"
#: A tuple field (``categorical``) is one text in the run config: its items joined by ``;``.
_ITEMS = "tuple[str, ...]"
_SEPARATOR = ";"
_UNSET = {"int | None": 0, "float | None": 0.0, "str | None": ""}
#: Tickets a deployed key holder signs beyond its run's own (:func:`keyholder_policy`):
#: each restart of the ServerApp or the node mid-round redoes that round under one.
SPARE_TICKETS = 4


def _fields() -> list[dataclasses.Field[Any]]:
    from he_fed.experiment import ExperimentConfig

    return [f for f in dataclasses.fields(ExperimentConfig) if f.name not in _NOT_IN_RUN_CONFIG]


@lru_cache(maxsize=1)
def _default_run_config() -> dict[str, Any]:
    from he_fed.runtime.flower.server import REPLY_TIMEOUT_S, START_TIMEOUT_S

    extra = {
        "out": "",
        "checkpoint": "",
        "start-timeout": START_TIMEOUT_S,
        "reply-timeout": REPLY_TIMEOUT_S,
        "nodes": 0,
    }
    config: dict[str, Any] = {}
    for f in _fields():
        value = f.default
        if isinstance(value, tuple):  # categorical
            value = _SEPARATOR.join(value)
        kind = str(f.type).replace(_CANDIDATES, "")
        config[f.name.replace("_", "-")] = _UNSET[kind] if value is None else value
    return {**config, **extra}


#: The run configuration the app declares, with its defaults: built from
#: ExperimentConfig on first use, by the module's ``__getattr__`` (see the imports).
RUN_CONFIG: dict[str, Any]


def __getattr__(name: str) -> Any:
    if name == "RUN_CONFIG":
        return _default_run_config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def config_from_run_config(run_config: dict[str, Any]) -> ExperimentConfig:
    """The experiment a Flower run configuration describes (``0``/``""`` meaning unset).

    Raises
    ------
    ConfigurationError
        If a value has the wrong type or the experiment is invalid.
    """
    values: dict[str, Any] = {}
    for f in _fields():
        key = f.name.replace("_", "-")
        if key not in run_config:
            continue
        raw, kind = run_config[key], str(f.type).replace(" | None", "").replace(_CANDIDATES, "")
        if str(f.type).endswith("| None") and raw in (0, 0.0, ""):
            values[f.name] = None
            continue
        if kind == _ITEMS:
            values[f.name] = tuple(item for item in str(raw).split(_SEPARATOR) if item.strip())
            continue
        if kind == "bool":
            values[f.name] = check_bool(f"run config {key}", raw)
            continue
        # A TOML true is no count, and int(2.7) would be 2 without a word.
        inexact = kind == "int" and isinstance(raw, float) and not raw.is_integer()
        try:
            if isinstance(raw, bool) and kind != "str" or inexact:
                raise ValueError
            values[f.name] = {"int": int, "float": float, "str": str}[kind](raw)
        except (TypeError, ValueError, OverflowError):
            raise ConfigurationError(f"run config {key}={raw!r} is not a valid {kind}") from None
    from he_fed.experiment import ExperimentConfig

    return ExperimentConfig(**values, executor="flower")


@lru_cache(maxsize=2)
def _shared_data(config: ExperimentConfig) -> ExperimentData:
    from he_fed.experiment import experiment_data

    return experiment_data(config)


def keyholder_policy(
    run_config: dict[str, Any],
    *,
    trusted_clients: dict[str, bytes] | None = None,
    trust_on_first_use: bool = False,
    spare_tickets: int = SPARE_TICKETS,
) -> KeyHolderPolicy:
    """The policy the key-holder node of a deployment of this run configuration needs.

    Its operator writes it with :meth:`KeyHolderPolicy.write` and starts the node
    with ``--node-config "role='keyholder' policy-file='keyholder.json' ..."`` (with
    its identity, secret key and state file). The node refuses a run whose
    ServerApp asks for another scheme or plan.

    Parameters
    ----------
    run_config : dict
        Run-config keys that differ from the app's defaults (as for ``flwr run``;
        ``_`` may stand for ``-``, as in :func:`write_app`).
    trusted_clients : mapping of str to bytes, optional
        The clients' Ed25519 identities, provisioned out of band.
    trust_on_first_use : bool, default=False
        Without ``trusted_clients``, accept the identities the aggregator forwards.
    spare_tickets : int, default=SPARE_TICKETS
        Tickets beyond the run's own (two statistics rounds when it standardises,
        then one per training round) that the node signs for its federation
        (``max_tickets``): a ticket the node signed but no round completed, when
        the ServerApp or the node restarts mid-round, is redone under a new one.
    """
    from he_fed.experiment import run_experiment

    check_int("spare_tickets", spare_tickets, low=0)

    given = {key.replace("_", "-"): value for key, value in run_config.items()}
    config = config_from_run_config({**_default_run_config(), **given})
    try:  # the ServerApp's own path, up to the federation it asks the nodes for
        run_experiment(config, executor=_SetupProbe())  # type: ignore[arg-type]
    except _SetupFound as found:
        setup = found.setup
    else:  # pragma: no cover - a run always connects before its first round
        raise ConfigurationError("this run configuration sets no federation up")
    statistics = 2 if setup.run_plan.standardize else 0  # Flower runs no evaluation rounds
    return KeyHolderPolicy(
        setup.scheme,
        setup.run_plan,
        setup.min_clients,
        trusted_clients,
        trust_on_first_use,
        max_tickets=statistics + config.rounds + spare_tickets,
    )


class _SetupFound(Exception):  # noqa: N818 - not an error: the probe's answer
    def __init__(self, setup: FederationSetup) -> None:
        super().__init__("found the federation setup")
        self.setup = setup


class _SetupProbe:
    """An executor that stops a run where the ServerApp would ask the nodes for keys.

    So the policy names exactly the scheme, run plan and clients' plan that this run
    configuration's ServerApp asks for: the same code chooses them.
    """

    name = "flower"

    def start(self) -> float:
        return 0.0

    def connect(self, setup: FederationSetup) -> None:
        raise _SetupFound(setup)

    def collect(self, clients: object, message: bytes) -> list[object]:  # pragma: no cover
        raise ConfigurationError("the setup probe runs no round")

    def close(self) -> None:
        """Nothing to release."""


def node_data(context: Context) -> tuple[np.ndarray, np.ndarray]:
    """A client node's own data: its CSV file, or its partition of the run's dataset.

    ``--node-config "data-path='file.csv' target='column'"`` loads a CSV file
    with the node's own ``target``, ``delimiter``, ``missing`` (default ``error``)
    and ``categorical`` vocabularies (one text, ``"ward=A,B,C;sex=f,m"``), never
    the run configuration's: the ServerApp writes that, and a loader refusal under
    vocabularies it chose gave it the file's cells, one value a run (red team 47);
    ``--node-config "partition-id=K"`` takes the K-th client's share of the run
    configuration's built-in dataset, dealt exactly as ``he-fed run`` deals it
    (never a file: the run configuration is the ServerApp's).

    Raises
    ------
    ConfigurationError
        If the node was started with neither.
    """
    from he_fed.data import builtin_name, load_dataset, parse_categorical

    node = context.node_config
    if "data-path" in node:
        target, delimiter = node.get("target"), node.get("delimiter")
        vocabularies = [v for v in str(node.get("categorical", "")).split(";") if v.strip()]
        data = load_dataset(
            str(node["data-path"]),
            target=None if target is None else str(target),
            delimiter=None if delimiter is None else str(delimiter),
            missing=str(node.get("missing", "error")),
            categorical=parse_categorical(vocabularies),
        )
        return data.X, data.y
    if "partition-id" in node:
        config = config_from_run_config(dict(context.run_config))
        if builtin_name(config.dataset) is None:
            # The ServerApp writes the run configuration: a file it names on this
            # node's disk, read as it says, would answer it (red team 48).
            raise ConfigurationError(
                "a partition-id node trains on its share of a built-in dataset; a node "
                "with its own file names it in its node configuration: data-path=..."
            )
        return _shared_data(config).client_data(int(node["partition-id"]))  # type: ignore[arg-type]
    raise ConfigurationError(
        'a client node needs --node-config "partition-id=K" or "data-path=\'file.csv\'"'
    )


#: The ClientApp: a client or the key holder (see :mod:`he_fed.runtime.flower.nodes`).
client = make_client_app(node_data)

#: The ServerApp: the blind aggregator, driving the rounds.
server = ServerApp()


@server.main()
def _main(grid: Grid, context: Context) -> None:
    """Run the experiment of the run configuration over the connected nodes."""
    from he_fed.experiment import run_experiment
    from he_fed.runtime.flower.server import REPLY_TIMEOUT_S, START_TIMEOUT_S, FlowerExecutor

    run_config = dict(context.run_config)
    config = config_from_run_config(run_config)
    holders = 1 if config.threshold is None else parse_threshold(config.threshold)[1]
    executor = FlowerExecutor(
        grid,
        nodes=int(run_config.get("nodes", 0)) or config.clients + holders,
        start_timeout=float(run_config.get("start-timeout", START_TIMEOUT_S)),
        reply_timeout=float(run_config.get("reply-timeout", REPLY_TIMEOUT_S)),
    )

    def progress(entry: RoundRecord) -> None:
        print(
            f"he-fed round {entry.round}: metric {entry.metric:.4f} "
            f"wall {entry.wall_s:.2f} s contributors {entry.contributors}",
            flush=True,
        )

    checkpoint = str(run_config.get("checkpoint", "")) or None
    result = run_experiment(config, progress=progress, executor=executor, checkpoint=checkpoint)
    final = result.final
    print(
        f"he-fed done: {final['metric_name']}={final['metric']:.4f} "
        f"coef={json.dumps(np.asarray(final['coef']).tolist())} "
        f"intercept={final['intercept']!r}",
        flush=True,
    )
    out = str(run_config.get("out", ""))
    if out:
        Path(out).write_text(result.to_json(indent=2) + "\n", encoding="utf-8")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def write_app(directory: str | Path, **run_config: Any) -> Path:
    """Write the app's ``pyproject.toml`` into ``directory``; ``flwr run directory`` runs it.

    Parameters
    ----------
    directory : str or Path
        Where to write (created if missing).
    **run_config
        Defaults to change, by run-config key with ``_`` for ``-`` (for example
        ``clients=3``).

    Returns
    -------
    Path
        The ``pyproject.toml`` written.

    Raises
    ------
    ConfigurationError
        If a key is not part of the run configuration, or the configuration is one
        the ServerApp would refuse (:func:`config_from_run_config`).
    """
    values = dict(_default_run_config())
    for name, value in run_config.items():
        key = name.replace("_", "-")
        if key not in values:
            raise ConfigurationError(f"{key!r} is not a run-config key; see {sorted(values)}")
        values[key] = value
    config_from_run_config(values)  # an app whose run config the ServerApp refuses: none
    config_lines = "\n".join(f"{key} = {_toml_value(value)}" for key, value in values.items())
    text = f"""# A Flower App running he-fed's encrypted federated training (he-fed flower-app).
# Every SuperLink and SuperNode needs: pip install "he-fed[flower]"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "hefed-app"
version = "1.0.0"
description = "he-fed: secure aggregation with homomorphic encryption, on Flower"
license = "Apache-2.0"
dependencies = []  # he-fed[flower] is installed on every machine

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "he-fed"

[tool.flwr.app.components]
serverapp = "he_fed.runtime.flower.app:server"
clientapp = "he_fed.runtime.flower.app:client"

[tool.flwr.app.config]
{config_lines}
"""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    target = path / "pyproject.toml"
    target.write_text(text, encoding="utf-8")
    return target
