"""``he-fed client``: a client answers a round ticket with a signed, encrypted update file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np
from he_fed.cli._errors import friendly_errors
from he_fed.cli._paths import check_output_file
from he_fed.cli._roles import (
    EXISTING_FILE,
    class_key,
    federation_option,
    pin_bytes,
    read_parsed,
    round_label,
    write_output,
)

from he_fed.crypto import load_public
from he_fed.data import load_dataset
from he_fed.exceptions import (
    ConfigurationError,
    InvalidSignature,
    KeyMismatchError,
    PolicyViolation,
)
from he_fed.protocol.client import Client
from he_fed.protocol.messages import EncryptedUpdate, RoundStart, decode
from he_fed.protocol.spec import ClientPlan
from he_fed.runtime.files import (
    ClientState,
    FederationFile,
    load_client_state,
    read_signing_key,
    save_client_state,
)


def _labels(plan: ClientPlan, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The file's labels as the plan's own class labels, and the plan's classes.

    A file's labels are text. One that reads as a number names the class with that
    number (``1.0`` in a file is the class ``1``), any other the class with that
    text. The client then holds the plan's very labels, so its plan, and the digest
    the key holder's tickets must name, is the federation's.
    """
    if plan.classes is None:
        return y.astype(np.float64), None
    classes = np.asarray(plan.classes)
    index: dict[object, int] = {}
    for i, label in enumerate(classes.tolist()):
        if index.setdefault(class_key(label), i) != i:
            raise ConfigurationError(
                f"the federation's classes {classes.tolist()} name one label twice"
            )
    labels = np.asarray(y).tolist()
    keys = [class_key(label) for label in labels]
    stray = sorted({str(v) for v, key in zip(labels, keys, strict=True) if key not in index})
    if stray:
        raise ConfigurationError(
            f"the data holds labels {stray} that are not the federation's classes "
            f"{classes.tolist()}"
        )
    return classes[[index[key] for key in keys]], classes


def _pinned(fed: FederationFile, state: ClientState | None, pin: str | None) -> bytes:
    expected = None if pin is None else pin_bytes(pin)
    if state is not None:
        trusted, source = state.keyholder, "the one this client pinned"
    else:
        trusted, source = expected or fed.keyholder, "the one --keyholder names"
    if expected is not None and expected != trusted:
        raise InvalidSignature("this client pinned another key holder than --keyholder names")
    if fed.keyholder != trusted:
        raise InvalidSignature(f"the federation file is signed by another key holder than {source}")
    if state is not None and state.federation != fed.federation:
        raise ConfigurationError(
            f"this client joined federation {state.federation.hex()[:16]}, not "
            f"{fed.federation.hex()[:16]}; a new federation needs a new --state"
        )
    return trusted


@click.command()
@click.argument("ticket", type=EXISTING_FILE)
@federation_option
@click.option(
    "--public-key",
    type=EXISTING_FILE,
    required=True,
    help="The federation's public.key.",
)
@click.option(
    "--identity",
    "identity_path",
    type=EXISTING_FILE,
    required=True,
    help="This client's NAME.id (from he-fed identity).",
)
@click.option(
    "--data",
    type=EXISTING_FILE,
    required=True,
    help="This client's CSV file.",
)
@click.option("--target", required=True, help="The CSV column to predict.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Update file."
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="This client's state [default: NAME.state beside the identity].",
)
@click.option(
    "--keyholder",
    "pin",
    metavar="HEX",
    default=None,
    help="The key holder's pin (64 hex digits), checked on the first round.",
)
@click.option("--allow-insecure", is_flag=True, help="Accept a public key under the bar.")
def client(
    ticket: Path,
    federation_path: Path,
    public_key: Path,
    identity_path: Path,
    data: Path,
    target: str,
    out: Path,
    state_path: Path | None,
    pin: str | None,
    allow_insecure: bool,
) -> None:
    """Answer TICKET: train on the local data, encrypt the update, sign it, write it to --out.

    The client answers only tickets signed by the key holder it pinned (on its
    first round: --keyholder, or the federation file's signer), each round once;
    its state records the round before the update is written.
    """
    with friendly_errors():
        check_output_file(out, "--out")  # before any state is saved
        fed = read_parsed(federation_path, "the federation file", FederationFile.from_bytes)
        name, identity = read_parsed(identity_path, "the identity", read_signing_key)
        if fed.clients.get(name) != identity.public_bytes:
            raise ConfigurationError(
                f"{name!r} is not registered in this federation with this identity"
            )
        state_file = state_path or identity_path.with_name(f"{name}.state")
        state = load_client_state(state_file, identity)
        keyholder = _pinned(fed, state, pin)
        first = state is None
        state = state or ClientState(name, keyholder, fed.federation)
        key_bytes, key = read_parsed(
            public_key,
            "the public key",
            lambda b: (b, load_public(b, allow_insecure=allow_insecure)),
        )
        if key.fingerprint != fed.fingerprint:
            raise KeyMismatchError("the public key is not the federation's")
        dataset = load_dataset(str(data), target=target)
        if dataset.X.shape[1] != fed.plan.n_features:
            raise ConfigurationError(
                f"{data} has {dataset.X.shape[1]} feature columns; the federation has "
                f"{fed.plan.n_features}"
            )
        plan = dataclasses.replace(fed.client_plan, allow_insecure=allow_insecure)
        y, classes = _labels(plan, dataset.y)
        role = Client(
            name,
            dataset.X,
            y,
            key_bytes,
            keyholder=keyholder,
            model=plan.model,
            local_epochs=plan.local_epochs,
            classes=classes,
            standardize_target=plan.standardize_target,
            identity=identity,
            allow_insecure=allow_insecure,
            last_round=state.last_round,
            phase=state.phase,
        )
        start, ticketed = read_parsed(ticket, "the ticket", lambda b: (b, decode(b, RoundStart)))
        if ticketed.federation != fed.federation:
            raise PolicyViolation("the ticket belongs to another federation")
        report = role.participate(start)
        answered = dataclasses.replace(state, last_round=role.last_round, phase=role.phase)
        save_client_state(state_file, answered, identity)  # before the update leaves
        write_output(out, report.update)
    if first and pin is None:
        click.echo(f"{name} pinned key holder {keyholder.hex()[:16]} (first use: check the pin)")
    answer = decode(report.update, EncryptedUpdate)
    click.echo(f"{name} answered {round_label(answer.round, answer.task)} -> {out}")
