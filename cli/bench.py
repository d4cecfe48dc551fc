"""``he-fed bench``: benchmark the encryption overhead, in one command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from he_fed.cli._errors import friendly_errors
from he_fed.cli._paths import check_output_dir, check_output_file
from he_fed.cli._verbosity import verbose_option
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from he_fed.bench import macro, micro, report, threshold
from he_fed.crypto import SCHEMES
from he_fed.experiment import environment


def _ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise click.BadParameter(
            f"expected comma-separated positive integers, got {text!r}", param_hint=flag
        )
    return values


def _schemes(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(set(names) - set(SCHEMES))
    if not names or unknown:
        raise click.BadParameter(
            f"unknown scheme(s) {', '.join(map(repr, unknown))}; choose from {', '.join(SCHEMES)}",
            param_hint="--schemes",
        )
    return names


@click.command()
@click.option(
    "--quick",
    "mode",
    flag_value="quick",
    default=True,
    help="Every scheme on a small grid, in under a minute (the default).",
)
@click.option("--full", "mode", flag_value="full", help="The whole grid (tens of minutes).")
@click.option("--sizes", default=None, help="Override the micro sizes, e.g. 10,1000.")
@click.option(
    "--repeats", type=click.IntRange(min=1), default=None, help="Override the repetitions."
)
@click.option("--clients", default=None, help="Override the macro client counts, e.g. 2,10.")
@click.option("--features", default=None, help="Override the macro model sizes, e.g. 30,1000.")
@click.option(
    "--schemes",
    default=None,
    help="Only these schemes, e.g. plain,paillier-packed (baselines always run).",
)
@click.option("--key-bits", type=int, default=2048, show_default=True)
@click.option("--allow-insecure", is_flag=True, help="Accept Paillier keys under 2048 bits.")
@click.option("--no-macro", is_flag=True, help="Skip the whole-run benchmark.")
@click.option(
    "--no-threshold",
    is_flag=True,
    help="Skip threshold decryption (t-of-n share holders against one key holder).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write PNG plots here (needs matplotlib).",
)
@verbose_option
def bench(
    mode: str,
    sizes: str | None,
    repeats: int | None,
    clients: str | None,
    features: str | None,
    schemes: str | None,
    key_bits: int,
    allow_insecure: bool,
    no_macro: bool,
    no_threshold: bool,
    json_path: Path | None,
    csv_path: Path | None,
    markdown_path: Path | None,
    plot_dir: Path | None,
) -> None:
    """Measure what encryption costs against plaintext, naive phe and raw TenSEAL.

    Micro: per-value cost of encrypting, serializing, aggregating and decrypting, for
    every scheme and vector size, with ratios against baselines measured in the same
    run (medians of interleaved repetitions). Macro: whole federated runs against
    plain, with the estimator's prediction and its error. Threshold: a share
    holder's partial decryption, proof verification and combination, and the
    dealer's ceremony, against one key holder's decryption and keygen in the same
    run, per ciphertext and per value (3-of-5 in --quick; 2/3, 3/5 and 5/9 in --full).
    """
    threshold_grid = threshold.QUICK if mode == "quick" else threshold.FULL
    micro_grid = micro.QUICK if mode == "quick" else micro.FULL
    macro_grid = macro.QUICK if mode == "quick" else macro.FULL
    micro_grid = micro.MicroGrid(
        sizes=_ints(sizes, "--sizes") or micro_grid.sizes,
        repeats=repeats or micro_grid.repeats,
        clients=micro_grid.clients,
        per_value_cap=micro_grid.per_value_cap,
    )
    macro_grid = macro.MacroGrid(
        clients=_ints(clients, "--clients") or macro_grid.clients,
        features=_ints(features, "--features") or macro_grid.features,
        rounds=macro_grid.rounds,
        budget_s=macro_grid.budget_s,
    )
    only = _schemes(schemes)
    with friendly_errors():  # every output before the benchmark, not after it
        for path, flag in (
            (json_path, "--json"),
            (csv_path, "--csv"),
            (markdown_path, "--markdown"),
        ):
            check_output_file(path, flag, make_parents=True)
        check_output_dir(plot_dir, "--plot")
        if plot_dir is not None:
            report.require_matplotlib()
    console = Console(stderr=True)
    started = time.perf_counter()
    with (
        friendly_errors(),
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("micro benchmark")

        def say(text: str) -> None:
            progress.update(task, description=text)

        result: dict[str, Any] = {"mode": mode, "environment": environment()}
        result.update(
            micro.run_micro(
                micro_grid,
                key_bits=key_bits,
                allow_insecure=allow_insecure,
                schemes=only,
                progress=say,
            )
        )
        if not no_macro:
            result["macro"] = macro.run_macro(
                macro_grid,
                key_bits=key_bits,
                allow_insecure=allow_insecure,
                schemes=only,
                progress=say,
            )
            result["macro_grid"] = {
                "clients": list(macro_grid.clients),
                "features": list(macro_grid.features),
                "rounds": macro_grid.rounds,
                "budget_s": macro_grid.budget_s,
            }
        if not no_threshold and (only is None or {"paillier", "paillier-packed"} & set(only)):
            result["threshold"] = threshold.run_threshold(
                threshold_grid, key_bits=key_bits, allow_insecure=allow_insecure, progress=say
            )
        result["elapsed_s"] = time.perf_counter() - started
        if json_path:
            report.write_json(result, json_path)
        if csv_path:
            report.write_csv(result, csv_path)
        table = report.headline_markdown(result)
        if markdown_path:
            markdown_path.parent.mkdir(parents=True, exist_ok=True)
            markdown_path.write_text(table + "\n", encoding="utf-8")
        plots = report.write_plots(result, plot_dir) if plot_dir else []
    click.echo(table)
    click.echo(f"\n{mode} benchmark: {result['elapsed_s']:.1f} s")
    for path in (json_path, csv_path, markdown_path, *plots):
        if path:
            click.echo(f"wrote {path}")
