"""``he-fed run``: one federated experiment, with a progress bar and a result table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from he_fed.cli._errors import friendly_errors
from he_fed.cli._flags import check_run_flags
from he_fed.cli._paths import check_output_file
from he_fed.cli._render import RunConsole, render
from he_fed.cli._verbosity import verbose_option
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from he_fed.crypto import SCHEMES
from he_fed.crypto.ckks import PRESETS
from he_fed.data import BUILTIN_DATASETS, MISSING_POLICIES, PARTITIONERS
from he_fed.experiment import (
    MODELS,
    RUN_DEFAULTS,
    ExperimentConfig,
    run_experiment,
)
from he_fed.federated import RoundRecord
from he_fed.privacy import LEVELS
from he_fed.protocol.optimizers import OPTIMIZERS
from he_fed.runtime import EXECUTORS
from he_fed.runtime.checkpoint import peek_progress
from he_fed.runtime.server_checkpoint import peek


class _FloatList(click.ParamType):
    """A float, or comma-separated candidates (``0.1,0.3,1.0``) as a tuple."""

    name = "FLOAT[,FLOAT...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | tuple[float, ...] | None:
        if value is None or isinstance(value, (float, tuple)):
            return value
        try:
            items = tuple(float(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a number or a comma-separated list of numbers")
        return items[0] if len(items) == 1 else items


def _resuming(checkpoint: Path | None) -> int | None:
    """The training rounds a checkpoint holds, if there is one (read unverified: the
    run verifies it, and says so on stderr only once it did)."""
    progress = None if checkpoint is None else peek_progress(checkpoint) or peek(checkpoint)
    return None if progress is None else progress.training_rounds


@click.command()
@click.option(
    "--scheme",
    type=click.Choice(sorted(SCHEMES)),
    default=RUN_DEFAULTS["scheme"],
    show_default=True,
    help="Encryption scheme; 'plain' is the insecure baseline.",
)
@click.option(
    "--dataset",
    default=RUN_DEFAULTS["dataset"],
    show_default=True,
    help=f"One of {', '.join(BUILTIN_DATASETS)} (- or _ alike), or a path to a .csv or .tsv file.",
)
@click.option(
    "--target",
    default=RUN_DEFAULTS["target"],
    help="Target column of a CSV dataset (CSV files only).",
)
@click.option(
    "--delimiter",
    default=RUN_DEFAULTS["delimiter"],
    help="Field separator of a CSV dataset, one character or 'tab' [',', tab for .tsv].",
)
@click.option(
    "--missing",
    type=click.Choice(MISSING_POLICIES),
    default=RUN_DEFAULTS["missing"],
    show_default=True,
    help="A CSV row with an empty, NA, NaN, null, None or ? cell: an error naming its "
    "line, or dropped.",
)
@click.option(
    "--categorical",
    multiple=True,
    default=RUN_DEFAULTS["categorical"],
    metavar="COLUMN=v1,v2,...",
    help="One-hot encode a CSV column under this declared vocabulary (repeatable).",
)
@click.option(
    "--samples",
    type=int,
    default=RUN_DEFAULTS["samples"],
    help="Rows of a synthetic dataset [1000] (synthetic datasets only).",
)
@click.option(
    "--features",
    type=int,
    default=RUN_DEFAULTS["features"],
    help="Columns of a synthetic dataset [20] (synthetic datasets only).",
)
@click.option(
    "--model", type=click.Choice(MODELS), default=RUN_DEFAULTS["model"], show_default=True
)
@click.option("--clients", type=int, default=RUN_DEFAULTS["clients"], show_default=True)
@click.option("--rounds", type=int, default=RUN_DEFAULTS["rounds"], show_default=True)
@click.option(
    "--local-epochs",
    type=int,
    default=RUN_DEFAULTS["local_epochs"],
    show_default=True,
    help="Epochs each client trains per round. 1 is FedSGD: each record's gradient is "
    "clipped, so aggregates are functions of the cohort's pooled rows up to rounding.",
)
@click.option(
    "--lr",
    type=_FloatList(),
    default=RUN_DEFAULTS["lr"],
    help="Client learning rate [0.5 logistic, 0.1 linear]; several (0.1,0.3,1.0) are "
    "candidates, chosen by federated validation loss (needs --validation-split).",
)
@click.option(
    "--batch-size",
    type=int,
    default=RUN_DEFAULTS["batch_size"],
    help="Client mini-batch size [full batch].",
)
@click.option(
    "--l2",
    type=_FloatList(),
    default=RUN_DEFAULTS["l2"],
    show_default=True,
    help="L2 penalty; several are candidates, as for --lr.",
)
@click.option(
    "--validation-split",
    type=float,
    default=RUN_DEFAULTS["validation_split"],
    show_default=True,
    help="Fraction of each client's rows held out; every round's model is scored on them "
    "under encryption and only the global figures are released.",
)
@click.option(
    "--validation-every",
    type=int,
    default=RUN_DEFAULTS["validation_every"],
    show_default=True,
    metavar="K",
    help="Score every K-th round's model (and the last round's) with --validation-split.",
)
@click.option(
    "--early-stopping",
    type=int,
    default=RUN_DEFAULTS["early_stopping"],
    metavar="PATIENCE",
    help="Stop after this many rounds without a lower federated validation loss, keeping "
    "the best round's model (needs --validation-split).",
)
@click.option(
    "--server-optimizer",
    type=click.Choice(OPTIMIZERS),
    default=RUN_DEFAULTS["server_optimizer"],
    show_default=True,
    help="How the released mean update moves the model: FedAvg, FedAvgM, FedAdam, FedYogi.",
)
@click.option(
    "--server-lr",
    type=float,
    default=RUN_DEFAULTS["server_lr"],
    show_default=True,
    help="Server step (try 0.1 with adam or yogi).",
)
@click.option(
    "--prox-mu",
    type=float,
    default=RUN_DEFAULTS["prox_mu"],
    show_default=True,
    help="FedProx's proximal term on the clients (0: off).",
)
@click.option(
    "--clip",
    type=float,
    default=RUN_DEFAULTS["clip"],
    show_default=True,
    help="Clip bound on each update value.",
)
@click.option(
    "--partition",
    type=click.Choice(PARTITIONERS),
    default=RUN_DEFAULTS["partition"],
    show_default=True,
)
@click.option(
    "--alpha",
    "dirichlet_alpha",
    type=float,
    default=RUN_DEFAULTS["dirichlet_alpha"],
    show_default=True,
    help="Dirichlet concentration (with --partition dirichlet only).",
)
@click.option(
    "--dropout",
    type=float,
    default=RUN_DEFAULTS["dropout"],
    show_default=True,
    help=(
        "Probability that a client sits out a training round (every client scores "
        "evaluations; without --dp-epsilon a round someone sits out is refused)."
    ),
)
@click.option("--seed", type=int, default=RUN_DEFAULTS["seed"], show_default=True)
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
@click.option(
    "--allow-insecure",
    is_flag=True,
    help="Accept Paillier keys under 2048 bits (tests and demos only).",
)
@click.option(
    "--min-clients",
    type=int,
    default=RUN_DEFAULTS["min_clients"],
    help="Smallest cohort the key holder will decrypt [default: a majority of the clients, "
    "at least 2, and all three of three].",
)
@click.option("--no-standardize", is_flag=True, help="Skip the federated feature standardisation.")
@click.option(
    "--threshold",
    metavar="T/N",
    default=RUN_DEFAULTS["threshold"],
    help="No single key holder: N share holders, any T of which decrypt, each enforcing "
    "the policy; a quorum of ceil((N+T)/2) takes part in every round, so 3/5 tolerates "
    "one absent holder (Paillier schemes; every executor).",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default=RUN_DEFAULTS["executor"],
    show_default=True,
    help="Where clients run: here, in a pool of worker processes, or on Flower's "
    'simulation engine (needs pip install "he-fed[flower]").',
)
@click.option(
    "--workers",
    type=int,
    default=RUN_DEFAULTS["workers"],
    help="Worker processes (processes) or simulation actors (flower) [all cores]; "
    "inprocess ignores it, with a warning.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the full result as JSON to this file (in an existing directory; checked "
    "before the run).",
)
@click.option(
    "--checkpoint",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Save after every round in this directory, and resume from it: the same command "
    "again continues from the last completed round. It holds secret keys (mode 0600).",
)
@click.option(
    "--dp-epsilon",
    type=float,
    default=RUN_DEFAULTS["dp_epsilon"],
    help="Differential privacy: the target epsilon; the key holder calibrates the noise "
    "for --rounds and releases nothing past it [no DP].",
)
@click.option(
    "--dp-delta", type=float, default=RUN_DEFAULTS["dp_delta"], show_default=True, help="DP delta."
)
@click.option(
    "--dp-level",
    type=click.Choice(LEVELS),
    default=RUN_DEFAULTS["dp_level"],
    show_default=True,
    help="What DP protects: one record (one gradient step per round) or one client.",
)
@click.option(
    "--dp-clip",
    type=float,
    default=RUN_DEFAULTS["dp_clip"],
    show_default=True,
    help="L2 clip bound of one record's gradient (or one client's update) under DP.",
)
@click.option(
    "--dp-noise-multiplier",
    type=float,
    default=RUN_DEFAULTS["dp_noise_multiplier"],
    help="Fix the DP noise instead of calibrating it to --rounds; the key holder stops the "
    "run when --dp-epsilon is spent [calibrated].",
)
@click.option(
    "--dp-sampling-rate",
    type=float,
    default=RUN_DEFAULTS["dp_sampling_rate"],
    help="Poisson sampling under --dp-level record: each record takes part in a round with "
    "this probability, and the accountant amplifies it [every record].",
)
@click.option("--quiet", is_flag=True, help="No progress bar and no tables; one summary line.")
@verbose_option
def run(
    json_path: Path | None,
    checkpoint: Path | None,
    quiet: bool,
    no_standardize: bool,
    **options: Any,
) -> None:
    """Train a model across clients with encrypted secure aggregation.

    With no flags: logistic regression on scikit-learn's breast-cancer data, split
    across 5 clients, 20 rounds, packed 2048-bit Paillier.
    """
    with friendly_errors():
        check_output_file(json_path, "--json")  # before the run, not after it
        for warning in check_run_flags(click.get_current_context(), options):
            click.echo(f"Warning: {warning}", err=True)
        # Every other option is named after its ExperimentConfig field.
        config = ExperimentConfig(**options, standardize=not no_standardize)
        done = _resuming(checkpoint)
        console = RunConsole()
        if quiet or not console.is_terminal:
            # Piped or redirected: no progress bar (it would leave an empty line).
            result = run_experiment(config, checkpoint=checkpoint)
        else:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,  # on an error, only the one-line message remains
            ) as bar:
                first = "keys + statistics" if done is None else f"resuming from round {done}"
                task = bar.add_task(first, total=config.rounds, completed=done or 0, status="")

                def advance(entry: RoundRecord) -> None:
                    status = f"metric {entry.metric:.4f}"
                    if entry.epsilon is not None:
                        status += f" epsilon {entry.epsilon:.3f}"
                    if entry.skipped:
                        status = "skipped"
                    bar.update(task, advance=1, description=f"round {entry.round}", status=status)

                result = run_experiment(config, progress=advance, checkpoint=checkpoint)
        if json_path is not None:
            json_path.write_text(result.to_json(indent=2) + "\n", encoding="utf-8")
    if done is not None:
        click.echo(f"resumed from round {done} of {config.rounds} ({checkpoint})", err=True)
    if result.setup.get("stopped"):
        click.echo(f"training stopped after {len(result.rounds)} rounds: {result.setup['stopped']}")
    if result.rounds and all(entry.skipped for entry in result.rounds):
        # The model is the one training started from: not a result to report as one.
        raise click.ClickException(
            f"no round released an aggregate: all {len(result.rounds)} were skipped "
            f"(round {result.rounds[-1].round}: {result.rounds[-1].skipped})"
        )
    if quiet:
        final = result.final
        privacy = f" epsilon={result.privacy['epsilon']:.4f}" if result.privacy else ""
        click.echo(
            f"{final['metric_name']}={final['metric']:.4f} loss={final['loss']:.4f} "
            f"total_s={result.totals['total_s']:.2f} bytes_up={result.totals['bytes_up']}{privacy}"
        )
    else:
        render(result, console)
        if json_path is not None:
            console.print(f"wrote {json_path}")
