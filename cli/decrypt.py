"""``he-fed decrypt``: the key holder checks an aggregate and releases the weighted mean."""

from __future__ import annotations

import json
from pathlib import Path

import click
from he_fed.cli._errors import friendly_errors
from he_fed.cli._paths import check_output_file
from he_fed.cli._roles import (
    KeyHolderFiles,
    keyholder_options,
    read_checked,
    round_label,
    write_output,
)

from he_fed.protocol.messages import Aggregate, EncryptedAggregate, decode
from he_fed.runtime.files import Release
from he_fed.runtime.keyholder_store import KeyHolderStore


@click.command()
@keyholder_options
@click.argument("aggregate", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Release file."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the release and the model's coefficients as JSON.",
)
def decrypt(
    secret_key: Path,
    identity_path: Path | None,
    state_path: Path | None,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    allow_insecure: bool,
    aggregate: Path,
    out: Path,
    json_path: Path | None,
) -> None:
    """Decrypt AGGREGATE if the key holder's policy allows, and write the signed release.

    The policy: the aggregate answers the open round, every receipt is signed by a
    registered client, the cohort is large enough and the ciphertext is their
    sum; the mean is released only if honest contributions can produce it. The
    state records the release before the file is written; given the same
    aggregate again, it writes the same release without decrypting.
    """
    files = KeyHolderFiles(
        secret_key, identity_path, state_path, passphrase_env, passphrase_file, allow_insecure
    )
    with friendly_errors():
        check_output_file(out, "--out")  # before any state is saved
        data = read_checked(aggregate, "the aggregate", lambda b: decode(b, EncryptedAggregate))
        keys, identity = files.keys(), files.identity()
        with KeyHolderStore.open(files.state_path, keys, identity) as store:
            released = store.decrypt_aggregate(data)
            holder = store.keyholder
            signed = Release.sign(identity, holder.federation, released)
            coef, intercept = holder.model.raw_model()
        write_output(out, signed.to_bytes())
        message = decode(released, Aggregate)
        if json_path is not None:
            record = {
                "federation": holder.federation.hex(),
                "round": message.round,
                "task": message.task.value,
                "contributors": message.contributors,
                "mean": message.mean.tolist(),
                "coef": coef.tolist(),  # one row per class for a multinomial model
                "intercept": intercept if isinstance(intercept, float) else intercept.tolist(),
            }
            write_output(json_path, (json.dumps(record, indent=2) + "\n").encode())
    click.echo(
        f"{round_label(message.round, message.task)} released: the weighted mean of "
        f"{message.contributors} contributions -> {out}"
    )
