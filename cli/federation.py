"""``he-fed federation init``: the key holder sets up a federation run over files."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from he_fed.cli._errors import friendly_errors
from he_fed.cli._paths import check_output_file
from he_fed.cli._roles import (
    KeyHolderFiles,
    class_key,
    keyholder_options,
    read_parsed,
    write_output,
)

from he_fed._validation import check_int
from he_fed.exceptions import ConfigurationError
from he_fed.experiment import RUN_DEFAULTS
from he_fed.federated import FederatedLinearRegression, FederatedLogisticRegression
from he_fed.protocol.keyholder import majority
from he_fed.protocol.model import RunPlan
from he_fed.protocol.spec import ClientPlan
from he_fed.runtime.files import FederationFile, read_verify_key
from he_fed.runtime.keyholder_store import KeyHolderStore

_ESTIMATORS = {"logistic": FederatedLogisticRegression, "linear": FederatedLinearRegression}


def _registered(paths: tuple[Path, ...]) -> dict[str, bytes]:
    clients: dict[str, bytes] = {}
    for path in paths:
        name, key = read_parsed(path, "the verify key", read_verify_key)
        if name in clients:
            raise ConfigurationError(f"{path}: client {name!r} is named twice")
        clients[name] = key
    if not clients:
        raise ConfigurationError("register the clients: --client NAME.pub, once per client")
    return clients


def _classes(model: str, text: str | None) -> np.ndarray | None:
    if model == "linear":
        if text is not None:
            raise ConfigurationError("--classes is for --model logistic")
        return None
    labels = [] if text is None else [c.strip() for c in text.split(",")]
    if len(labels) < 2 or len({class_key(c) for c in labels}) != len(labels) or not all(labels):
        raise ConfigurationError(
            "--model logistic needs --classes NEGATIVE,POSITIVE (or three labels or more, for "
            "a multinomial model): the distinct labels, as the clients' files write them"
        )
    return np.array(labels)


@click.group()
def federation() -> None:
    """Set up a federation whose roles exchange files."""


@federation.command("init")
@keyholder_options
@click.option("--features", type=int, required=True, help="Number of feature columns.")
@click.option("--model", type=click.Choice(sorted(_ESTIMATORS)), default="logistic")
@click.option(
    "--classes",
    default=None,
    help="logistic: NEGATIVE,POSITIVE labels, or three or more (a multinomial model).",
)
@click.option(
    "--client",
    "client_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A client's NAME.pub (from he-fed identity); once per client.",
)
@click.option("--local-epochs", type=int, default=RUN_DEFAULTS["local_epochs"], show_default=True)
@click.option("--lr", type=float, default=None, help="[default: 0.5 logistic, 0.1 linear]")
@click.option("--l2", type=float, default=RUN_DEFAULTS["l2"], show_default=True)
@click.option("--batch-size", type=int, default=None, help="[default: full batch]")
@click.option("--server-lr", type=float, default=RUN_DEFAULTS["server_lr"], show_default=True)
@click.option("--min-clients", type=int, default=None, help="[default: a majority]")
@click.option("--standardize/--no-standardize", default=True, show_default=True)
@click.option("--seed", type=int, default=RUN_DEFAULTS["seed"], show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("federation.hefed"),
    show_default=True,
    help="The federation file, for the clients and the aggregator.",
)
@click.option("--force", is_flag=True, help="Replace an existing key holder state.")
def init(
    secret_key: Path,
    identity_path: Path | None,
    state_path: Path | None,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    allow_insecure: bool,
    features: int,
    model: str,
    classes: str | None,
    client_files: tuple[Path, ...],
    local_epochs: int,
    lr: float | None,
    l2: float,
    batch_size: int | None,
    server_lr: float,
    min_clients: int | None,
    standardize: bool,
    seed: int,
    out: Path,
    force: bool,
) -> None:
    """Make the key holder's identity and state, register the clients, sign the federation file.

    The state (beside the secret key) is where every later ticket and release is
    recorded; it exists once per federation, and --force starts a new one.
    """
    files = KeyHolderFiles(
        secret_key, identity_path, state_path, passphrase_env, passphrase_file, allow_insecure
    )
    with friendly_errors():
        check_output_file(out, "--out")  # before any state is saved
        clients = _registered(client_files)
        keys = files.keys()
        if len(clients) > keys.public.scheme.max_clients:
            raise ConfigurationError(
                f"{len(clients)} clients, but the key's plan sums at most "
                f"{keys.public.scheme.max_clients}; make keys with --max-clients {len(clients)}"
            )
        if min_clients is not None and not 1 <= min_clients <= len(clients):
            raise ConfigurationError(f"--min-clients must be in [1, {len(clients)}]")
        if min_clients is None and majority(len(clients)) > len(clients):
            raise ConfigurationError(
                f"{len(clients)} client(s) cannot make the default minimum cohort of "
                f"{majority(len(clients))}: register more with --client"
            )
        # The clients check the seed in the federation file: refuse it here, not there.
        check_int("--seed", seed, low=0, high=2**32 - 1)
        estimator = _ESTIMATORS[model](
            learning_rate=lr, alpha=l2, batch_size=batch_size, random_state=seed
        )
        local = estimator.local_model()
        local._check_params()
        check_int("local_epochs", local_epochs, low=1)
        labels = _classes(model, classes)
        standardize_target = standardize and model == "linear"
        client_plan = ClientPlan(
            model=local,
            local_epochs=local_epochs,
            classes=labels,
            standardize_target=standardize_target,
            allow_insecure=bool(getattr(keys.public.scheme, "allow_insecure", False)),
        )
        plan = RunPlan(  # refuses a recipe that cannot travel, before any file
            n_features=features,
            server_lr=server_lr,
            standardize=standardize,
            standardize_target=standardize_target,
            n_outputs=len(labels) if labels is not None and len(labels) > 2 else 1,
            client_plan=client_plan.digest(),
        )
        identity, new = files.identity_or_new()
        with KeyHolderStore.create(
            files.state_path,
            keys,
            identity,
            plan=plan,
            clients=clients,
            min_clients=min_clients,
            force=force,
        ) as store:
            holder = store.keyholder
            signed = FederationFile.sign(
                identity,
                federation=holder.federation,
                key=keys.public,
                plan=plan,
                client_plan=client_plan,
                min_clients=holder.min_clients,
                clients=clients,
            )
            write_output(out, signed.to_bytes())
    click.echo(
        f"federation {holder.federation.hex()[:16]}: {model} regression on {features} features, "
        f"minimum cohort {holder.min_clients}"
    )
    click.echo(f"  clients              {', '.join(sorted(clients))}")
    note = "new, mode 0600" if new else "existing"
    click.echo(f"  key holder identity  {files.identity_path}  ({note})")
    click.echo(f"  key holder state     {files.state_path}")
    click.echo(f"  federation file      {out}  (for the clients and the aggregator)")
    click.echo(f"  pin                  {identity.public_bytes.hex()}")
