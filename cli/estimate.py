"""``he-fed estimate``: predicted time and bytes of a run, before running it."""

from __future__ import annotations

import click
from he_fed.cli._errors import friendly_errors
from he_fed.cli._flags import check_scheme_flags
from he_fed.cli._verbosity import verbose_option

from he_fed.bench.estimate import estimate as predict
from he_fed.bench.estimate import load_calibration
from he_fed.crypto import SCHEMES, scheme_from_options
from he_fed.crypto.ckks import PRESETS
from he_fed.exceptions import ConfigurationError
from he_fed.experiment import RUN_DEFAULTS
from he_fed.privacy import GRID_SCHEMES, LEVELS, privacy_estimate

#: Counts that must be at least 1 (0 would estimate nothing).
_POSITIVE = click.IntRange(min=1)


@click.command()
@click.option(
    "--scheme",
    type=click.Choice(sorted(SCHEMES)),
    default=RUN_DEFAULTS["scheme"],
    show_default=True,
)
@click.option("--features", type=_POSITIVE, default=30, show_default=True)
@click.option(
    "--classes",
    type=click.IntRange(min=2),
    default=2,
    show_default=True,
    help="Classes of the target. 2 (binary, or regression) trains one row of weights; "
    "more train a multinomial model with one row per class (--dataset wine: 3, digits: 10).",
)
@click.option("--clients", type=_POSITIVE, default=RUN_DEFAULTS["clients"], show_default=True)
@click.option("--rounds", type=_POSITIVE, default=RUN_DEFAULTS["rounds"], show_default=True)
@click.option("--samples-per-client", type=_POSITIVE, default=100, show_default=True)
@click.option(
    "--local-epochs",
    type=click.IntRange(min=1),
    default=RUN_DEFAULTS["local_epochs"],
    show_default=True,
)
@click.option(
    "--key-bits",
    type=int,
    default=RUN_DEFAULTS["key_bits"],
    show_default=True,
    help="Paillier modulus size (Paillier schemes only).",
)
@click.option(
    "--ckks-preset",
    type=click.Choice(sorted(PRESETS)),
    default=RUN_DEFAULTS["ckks_preset"],
    show_default=True,
    help="CKKS parameters (--scheme ckks only).",
)
@click.option("--clip", type=float, default=RUN_DEFAULTS["clip"], show_default=True)
@click.option(
    "--no-standardize",
    is_flag=True,
    help="As he-fed run's flag: round starts carry no standardisation statistics.",
)
@click.option("--allow-insecure", is_flag=True)
@click.option(
    "--dp-epsilon",
    type=float,
    default=None,
    help="Also answer: what noise and what epsilon for this run under DP (as he-fed run).",
)
@click.option("--dp-delta", type=float, default=RUN_DEFAULTS["dp_delta"], show_default=True)
@click.option(
    "--dp-level", type=click.Choice(LEVELS), default=RUN_DEFAULTS["dp_level"], show_default=True
)
@click.option("--dp-clip", type=float, default=RUN_DEFAULTS["dp_clip"], show_default=True)
@click.option("--dp-noise-multiplier", type=float, default=None, help="Fixed noise [calibrated].")
@click.option(
    "--dp-sampling-rate",
    type=float,
    default=None,
    help="Poisson sampling of records per round (as he-fed run) [every record].",
)
@click.option(
    "--privacy-only", is_flag=True, help="With --dp-epsilon: the privacy line only, no timing."
)
@click.option(
    "--recalibrate",
    is_flag=True,
    help="Measure this machine again instead of using the cached calibration.",
)
@verbose_option
def estimate(
    scheme: str,
    features: int,
    classes: int,
    clients: int,
    rounds: int,
    samples_per_client: int,
    local_epochs: int,
    key_bits: int,
    ckks_preset: str,
    clip: float,
    no_standardize: bool,
    allow_insecure: bool,
    recalibrate: bool,
    dp_epsilon: float | None,
    dp_delta: float,
    dp_level: str,
    dp_clip: float,
    dp_noise_multiplier: float | None,
    dp_sampling_rate: float | None,
    privacy_only: bool,
) -> None:
    """Predict time per round, bytes per client and total time, without running.

    The defaults are those of ``he-fed run``. The first call for a scheme and its key
    parameters (--key-bits, --ckks-preset) calibrates this machine (minutes; it says so
    on standard error) and caches the result (in $HE_FED_CACHE_DIR, else
    ~/.cache/he-fed); other --clients, --samples-per-client, --features or --clip
    reuse it.
    """
    with friendly_errors():
        check_scheme_flags(click.get_current_context(), scheme)
        if dp_epsilon is not None and scheme not in GRID_SCHEMES:
            raise ConfigurationError(
                f"differential privacy needs an integer-grid scheme ({', '.join(GRID_SCHEMES)}); "
                f"{scheme} is refused"
            )
        if dp_epsilon is not None:
            records = clients * samples_per_client
            dp = privacy_estimate(
                target_epsilon=dp_epsilon,
                delta=dp_delta,
                rounds=rounds,
                level=dp_level,
                clip=dp_clip,
                normaliser=records if dp_level == "record" else clients,
                noise_multiplier=dp_noise_multiplier,
                sampling_rate=dp_sampling_rate,
            )
            sampled = (
                f", Poisson sampling rate {dp['sampling_rate']:g} (round delta "
                f"{dp['round_delta']:.3g})"
                if "round_delta" in dp
                else ""
            )
            click.echo(
                f"privacy ({dp_level} level, clip {dp_clip:g}{sampled}): noise multiplier "
                f"{dp['noise_multiplier']:.4g}, noise std {dp['sum_std']:.4g} per released sum "
                f"({dp['mean_std']:.3g} per released value); epsilon {dp['epsilon']:.4g} at "
                f"delta {dp_delta:g} after {rounds} rounds; the key holder allows "
                f"{dp['rounds_within_target']} rounds within epsilon {dp_epsilon:g}"
            )
        if privacy_only:
            if dp_epsilon is None:
                raise ConfigurationError(
                    "--privacy-only answers the privacy question of --dp-epsilon"
                )
            return
        weight = 1 << max(0, samples_per_client - 1).bit_length()
        chosen = scheme_from_options(
            scheme,
            clip=clip,
            max_clients=clients,
            max_weight=weight,
            key_bits=key_bits,
            ckks_preset=ckks_preset,
            allow_insecure=allow_insecure,
        )
        calibration = load_calibration(
            chosen, refresh=recalibrate, announce=lambda text: click.echo(text, err=True)
        )
        result = predict(
            chosen,
            calibration,
            features=features,
            clients=clients,
            rounds=rounds,
            samples_per_client=samples_per_client,
            local_epochs=local_epochs,
            standardize=not no_standardize,
            classes=classes,
        )
    shape = f"{features} features" + (f", {classes} classes" if classes > 2 else "")
    click.echo(
        f"{scheme}: {clients} clients, {shape}, {rounds} rounds "
        f"(calibrated {calibration.created} on {calibration.machine})"
    )
    click.echo(f"  time per round      {result.time_per_round_s:.3f} s")
    for phase, seconds in result.phases.items():
        click.echo(f"    {phase:<17} {seconds:.3f} s")
    click.echo(f"  bytes up / client   {result.bytes_up_per_client:,} per round")
    click.echo(f"  bytes down / client {result.bytes_down_per_client:,} per round")
    click.echo(
        f"  total               {result.total_s:.1f} s ({result.units} ciphertext units per update)"
    )
