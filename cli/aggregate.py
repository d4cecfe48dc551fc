"""``he-fed aggregate``: the blind aggregator sums update files into an aggregate file."""

from __future__ import annotations

from pathlib import Path

import click
from he_fed.cli._errors import friendly_errors
from he_fed.cli._paths import check_output_file
from he_fed.cli._roles import (
    EXISTING_FILE,
    federation_option,
    pin_bytes,
    read_input,
    read_parsed,
    round_label,
    write_output,
)

from he_fed.crypto import AggregationKey, load_public
from he_fed.exceptions import (
    HEFedError,
    InvalidSignature,
    KeyMismatchError,
    PolicyViolation,
    StateError,
)
from he_fed.protocol.aggregator import Aggregator
from he_fed.protocol.messages import RoundStart, decode
from he_fed.runtime.files import FederationFile, Release, load_aggregator, save_aggregator

#: The aggregator's state, beside its key by default.
STATE_FILE = "aggregator.state"


def _aggregator(
    fed: FederationFile,
    key: AggregationKey,
    state: Path,
    pin: str | None,
    allow_insecure: bool,
) -> tuple[Aggregator, bool]:
    """The aggregator restored from ``state``, or a new one for ``fed``; and whether it is new."""
    restored = load_aggregator(state, key, allow_insecure=allow_insecure)
    aggregator = restored or Aggregator(
        key,
        plan=fed.plan,
        keyholder=pin_bytes(pin) if pin is not None else fed.keyholder,
        clients=dict(fed.clients),
        allow_insecure=allow_insecure,
    )
    if aggregator.key.fingerprint != fed.fingerprint:
        raise KeyMismatchError("the aggregation key is not the federation's")
    if aggregator.federation not in (b"", fed.federation):
        raise StateError(
            f"the aggregator state {state} belongs to federation "
            f"{aggregator.federation.hex()[:16]}; a new federation needs a new --state"
        )
    if pin is not None and pin_bytes(pin) != aggregator.keyholder:
        raise InvalidSignature("this aggregator pinned another key holder than --keyholder names")
    if aggregator.keyholder != fed.keyholder:
        raise InvalidSignature(
            "the federation file is signed by another key holder than the one this "
            "aggregator pinned"
        )
    return aggregator, restored is None


def _sum(
    aggregator: Aggregator, updates: tuple[Path, ...], drop_refused: bool, min_clients: int
) -> None:
    refused = []
    for path in updates:
        try:
            aggregator.add(read_input(path, "the update"))
        except HEFedError as exc:
            refused.append(f"{path} ({type(exc).__name__}: {exc})")
    if refused and not drop_refused:
        raise click.ClickException(
            f"refused {len(refused)} of {len(updates)} update(s), nothing written: "
            + "; ".join(refused)
        )
    for line in refused:
        click.echo(f"refused {line}", err=True)
    if len(aggregator.contributors) < min_clients:
        raise click.ClickException(
            f"{len(aggregator.contributors)} update(s) accepted; the key holder decrypts "
            f"cohorts of at least {min_clients}, so nothing was written"
        )


@click.command()
@click.argument("updates", nargs=-1, type=EXISTING_FILE)
@federation_option
@click.option(
    "--key",
    type=EXISTING_FILE,
    required=True,
    help="The aggregator.key (public material only).",
)
@click.option(
    "--ticket",
    "ticket_path",
    type=EXISTING_FILE,
    default=None,
    help="The round's ticket, which the updates answer.",
)
@click.option(
    "--release",
    "releases",
    multiple=True,
    type=EXISTING_FILE,
    help="The previous round's release, applied to the model chain first.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Aggregate file."
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"The aggregator's state [default: {STATE_FILE} beside the key].",
)
@click.option("--keyholder", "pin", metavar="HEX", default=None, help="The key holder's pin.")
@click.option(
    "--drop-refused",
    is_flag=True,
    help="Sum the updates that pass and name the refused ones, instead of writing nothing.",
)
@click.option("--allow-insecure", is_flag=True, help="Accept a key under the bar.")
def aggregate(
    updates: tuple[Path, ...],
    federation_path: Path,
    key: Path,
    ticket_path: Path | None,
    releases: tuple[Path, ...],
    out: Path | None,
    state_path: Path | None,
    pin: str | None,
    drop_refused: bool,
    allow_insecure: bool,
) -> None:
    """Sum UPDATES for the round --ticket opens, and write the encrypted aggregate.

    Each update is checked (round, sender, both signatures, key, plan, length,
    duplicate) before it is added; a refused one is named, and by default nothing
    is written. The aggregator follows the model chain (--release applies the key
    holder's signed release of the previous round) and refuses a ticket whose
    model the releases do not determine.
    """
    with friendly_errors():
        if ticket_path is None and (updates or out is not None):
            raise click.UsageError("summing updates needs the round's --ticket and --out")
        if ticket_path is not None and (not updates or out is None):
            raise click.UsageError("give the round's update files and --out")
        check_output_file(out, "--out")  # before any state is saved
        fed = read_parsed(federation_path, "the federation file", FederationFile.from_bytes)
        state = state_path or key.with_name(STATE_FILE)
        loaded = read_parsed(
            key, "the key", lambda b: load_public(b, allow_insecure=allow_insecure)
        )
        aggregator, new = _aggregator(fed, loaded, state, pin, allow_insecure)
        done: list[str] = []
        for path in releases:
            release = read_parsed(path, "the release", Release.from_bytes)
            try:
                release.verified(fed.keyholder, fed.federation)
                applied = aggregator.apply(release.aggregate)
            except HEFedError as exc:
                raise click.ClickException(f"{path}: {type(exc).__name__}: {exc}") from None
            done.append(f"applied the release of {round_label(applied.round, applied.task)}")
        if ticket_path is not None:
            start_bytes, start = read_parsed(
                ticket_path, "the ticket", lambda b: (b, decode(b, RoundStart))
            )
            if start.federation != fed.federation:
                raise PolicyViolation("the ticket belongs to another federation")
            try:
                aggregator.open_round(start_bytes)
            except PolicyViolation as exc:
                hint = "" if releases else " (apply the previous round's --release first?)"
                raise PolicyViolation(f"{exc}{hint}") from None
            assert out is not None
            _sum(aggregator, updates, drop_refused, fed.min_clients or 1)
            encrypted = aggregator.finish_round()
            save_aggregator(state, aggregator)
            write_output(out, encrypted)
        else:
            save_aggregator(state, aggregator)
    if new and pin is None:
        pinned = aggregator.keyholder.hex()[:16]
        click.echo(f"the aggregator pinned key holder {pinned} (first use: check the pin)")
    for line in done:
        click.echo(line)
    if ticket_path is not None:
        names = ", ".join(aggregator.contributors)
        click.echo(
            f"{round_label(start.round, start.task)}: summed {len(aggregator.contributors)} "
            f"updates ({names}) -> {out}"
        )
    elif not releases:
        click.echo(f"nothing to do; the model chain is at round {aggregator.round}", err=True)
