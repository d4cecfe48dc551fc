"""``he-fed flower-app``: write the Flower App that runs he-fed, for ``flwr run``."""

from __future__ import annotations

from pathlib import Path

import click
from he_fed.cli._errors import friendly_errors
from he_fed.cli._paths import check_output_dir
from he_fed.cli._verbosity import verbose_option

from he_fed._files import write_atomic


def _settings(values: tuple[str, ...]) -> dict[str, object]:
    """``KEY=VALUE`` pairs as typed run-config values (ints, floats, true/false, text)."""
    out: dict[str, object] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        value: object = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    continue
        out[key.strip()] = value
    return out


@click.command("flower-app")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A run-config default of the app (repeatable), e.g. --set clients=3 --set rounds=10.",
)
@click.option(
    "--provision",
    is_flag=True,
    help="Also write the key-holder node's policy (keyholder.json), Ed25519 identity "
    "(keyholder.id, secret) and secret key (secret.key), and print the node configs "
    "that pin it (the key holder's with a state-file, which a deployed node needs).",
)
@verbose_option
def flower_app(directory: Path, settings: tuple[str, ...], provision: bool) -> None:
    """Write the Flower App that runs he-fed (DIRECTORY/pyproject.toml).

    Its ServerApp is the blind aggregator, its ClientApps are the clients, and one
    SuperNode is the key holder. In a deployment the key-holder node takes its
    policy, identity and secret key from its own files (--provision writes them)
    and records its federation in a state-file, and each client node pins the key
    holder's identity. Run it with:
    flwr run DIRECTORY <superlink> --stream. Needs pip install "he-fed[flower]"
    on every machine.
    """
    try:
        from he_fed.protocol import Identity
        from he_fed.runtime.flower.app import keyholder_policy, write_app
    except ImportError as exc:
        raise click.ClickException(
            f'Flower is not installed: pip install "he-fed[flower]" ({exc})'
        ) from None
    run_config = _settings(settings)
    with friendly_errors():
        check_output_dir(directory, "DIRECTORY")
        try:
            # The policy first: a run config it refuses writes nothing.
            policy = keyholder_policy(run_config, trust_on_first_use=True) if provision else None
            path = write_app(directory, **run_config)
            if policy is not None:
                policy_path = policy.write(directory / "keyholder.json")
                identity = Identity()
                identity_path = directory / "keyholder.id"
                write_atomic(identity_path, identity.private_bytes().hex().encode() + b"\n")
                key_path = directory / "secret.key"
                write_atomic(key_path, policy.scheme.keygen().secret.to_bytes(), mode=0o600)
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path}")  # output after the work: a closed pipe is no error
    if policy is None:
        return
    pin = identity.public_bytes.hex()
    click.echo(
        f"wrote {policy_path} (the key holder's policy), {identity_path} and {key_path} (secret)"
    )
    click.echo(
        f"The key holder signs at most {policy.max_tickets} tickets for its federation "
        "(max-tickets in keyholder.json: the run's rounds, with its statistics rounds and "
        "a few spare for restarts)."
    )
    click.echo("key-holder node (its state-file is created at the first run's setup):")
    click.echo(
        f"  --node-config \"role='keyholder' policy-file='{policy_path}' "
        f"identity-file='{identity_path}' secret-key-file='{key_path}' "
        f"state-file='{directory / 'keyholder.state'}'\""
    )
    click.echo("client node K:")
    click.echo(
        f"  --node-config \"partition-id=K keyholder-identity='{pin}' "
        "round-file='client-K.rounds'\" (its rounds, on its own disk)"
    )
    click.echo(
        "The policy trusts the client identities the ServerApp forwards at setup; to "
        'provision them instead, add "trusted-clients" to keyholder.json '
        "(see he_fed.runtime.flower.KeyHolderPolicy)."
    )
