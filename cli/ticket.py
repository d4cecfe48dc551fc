"""``he-fed ticket``: the key holder signs the next round's start."""

from __future__ import annotations

from pathlib import Path

import click
from he_fed.cli._errors import friendly_errors
from he_fed.cli._paths import check_output_file
from he_fed.cli._roles import KeyHolderFiles, keyholder_options, round_label, write_output

from he_fed.protocol.keyholder import KeyHolder
from he_fed.protocol.messages import RoundStart, Task, decode
from he_fed.runtime.keyholder_store import KeyHolderStore

_TASKS = ("auto", *(t.value for t in (Task.MAGNITUDE, Task.MOMENTS, Task.TRAIN)))


def next_task(holder: KeyHolder) -> Task:
    """The task the federation needs next: the statistics once, in order, then training."""
    model = holder.model
    if holder.plan.standardize and model.prescale is None:
        return Task.MAGNITUDE
    if holder.plan.standardize and model.center is None:
        return Task.MOMENTS
    return Task.TRAIN


@click.command()
@keyholder_options
@click.option(
    "--task",
    type=click.Choice(_TASKS),
    default="auto",
    show_default=True,
    help="auto: the standardisation statistics (once each), then training.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Ticket file."
)
def ticket(
    secret_key: Path,
    identity_path: Path | None,
    state_path: Path | None,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    allow_insecure: bool,
    task: str,
    out: Path,
) -> None:
    """Sign the next round's ticket (its id, task and global model); the previous round closes.

    The state records the round before the ticket is written, so a round id is
    never signed twice with different contents.
    """
    files = KeyHolderFiles(
        secret_key, identity_path, state_path, passphrase_env, passphrase_file, allow_insecure
    )
    with friendly_errors():
        check_output_file(out, "--out")  # before any state is saved
        with KeyHolderStore.open(files.state_path, files.keys(), files.identity()) as store:
            chosen = next_task(store.keyholder) if task == "auto" else Task(task)
            signed = store.start_round(chosen)
        write_output(out, signed)
    start = decode(signed, RoundStart)
    click.echo(f"{round_label(start.round, start.task)} ticket -> {out}")
