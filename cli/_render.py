"""The result tables ``he-fed run`` prints: summary, validation, phases and bytes."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from he_fed.experiment import ExperimentConfig, ExperimentResult

__all__ = ["RunConsole", "render"]


_PHASE_LABELS = {
    "train": "local training",
    "encrypt": "encode + encrypt",
    "sign": "commit, sign, prove",
    "serialize": "serialize",
    "aggregate": "aggregate",
    "decrypt": "decrypt",
}


class RunConsole(Console):
    """Rich's console, except that a closed pipe is left to the command group.

    Rich exits with status 1 when its reader goes away; ``he-fed run | head -1``
    is no failure, and the command group ends quietly (see :mod:`he_fed.cli`).
    """

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _scheme_label(config: ExperimentConfig) -> str:
    if config.scheme.startswith("paillier"):
        return f"{config.scheme} ({config.key_bits}-bit)"
    if config.scheme == "ckks":
        return f"ckks ({config.ckks_preset})"
    return "plain (INSECURE baseline, no encryption)"


def _validation_table(result: ExperimentResult, console: Console) -> None:
    """Per round: test metric, and the global validation figures the key holder released."""
    final = result.final
    name = "accuracy" if final["metric_name"] == "accuracy" else "R²"
    table = Table(title="federated validation, per round (released figures only)")
    for header in ("round", f"test {name}", f"validation {name}", "validation loss"):
        table.add_column(header, justify="right")
    for r in result.rounds:
        kept = " (kept)" if r.round == final["best_round"] else ""
        figures = [f"{v:.4f}" if v == v else "-" for v in (r.validation_metric, r.validation_loss)]
        table.add_row(f"{r.round}{kept}", f"{r.metric:.4f}", *figures)
    console.print(table)


def render(result: ExperimentResult, console: Console) -> None:
    """Print the result tables."""
    config, final, totals = result.config, result.final, result.totals
    rounds = result.rounds
    model = result.dataset["model"]
    if "classes" in final:
        model += f", {len(final['classes'])} classes (multinomial)"
    title = (
        f"{result.dataset['name']} · {model} · {_scheme_label(config)} · "
        f"{config.clients} clients · {config.rounds} rounds"
    )
    if config.executor != "inprocess":
        title += f" · {config.executor} executor"
    # One line each, however narrow the terminal: a header is read, then grepped.
    console.print(f"[bold]{title}[/bold]", soft_wrap=True)
    if result.model_reason:
        console.print(result.model_reason, highlight=False, markup=False, soft_wrap=True)
    summary = Table(show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    name = "accuracy" if final["metric_name"] == "accuracy" else "R²"
    summary.add_row(f"final test {name}", f"{final['metric']:.4f}")
    summary.add_row(f"centralised scikit-learn {name}", f"{final['reference_metric']:.4f}")
    summary.add_row(f"final test {final['loss_name'].replace('_', ' ')}", f"{final['loss']:.4f}")
    bytes_up = sum(r.bytes_up for r in rounds) / max(1, len(rounds))
    bytes_down = sum(r.bytes_down for r in rounds) / max(1, len(rounds))
    summary.add_row("uploaded per client per round", _bytes(bytes_up))
    summary.add_row("downloaded per client per round", _bytes(bytes_down))
    summary.add_row(
        "public key / aggregator key",
        (
            f"{_bytes(result.setup['public_key_bytes'])} / "
            f"{_bytes(result.setup['aggregation_key_bytes'])}"
        ),
    )
    council = result.setup.get("council")
    if council:
        summary.add_row(
            f"share holders (t={council['threshold']} of {council['holders']})",
            f"quorum {council['quorum']}: at most {council['tolerated_absences']} absent"
            + (f"; absent at the end: {council['absent']}" if council.get("absent") else ""),
        )
    if config.validation_split:
        summary.add_row("round kept", f"{final['best_round']} of {len(rounds)}")
    if isinstance(config.lr, tuple) or isinstance(config.l2, tuple):
        summary.add_row(
            "selected by validation loss", f"lr {final['learning_rate']:g}, l2 {final['l2']:g}"
        )
    if result.privacy is not None:
        p = result.privacy
        summary.add_row(
            f"privacy ({p['level']} level)",
            f"epsilon {p['epsilon']:.3f} of {p['target_epsilon']:g}, delta {p['delta']:g}",
        )
        summary.add_row(
            "noise multiplier / clip / releases",
            f"{p['noise_multiplier']:.3f} / {p['clip']:g} / {p['rounds_released']}",
        )
        if p.get("sampling_rate", 1.0) < 1:
            summary.add_row(
                "Poisson sampling rate / round delta",
                f"{p['sampling_rate']:g} / {p['round_delta']:.3g}",
            )
    counts = [r.clipped for r in rounds if r.clipped is not None]
    clipped = sum(counts) if len(counts) == len(rounds) else "kept by the clients"
    skipped = sum(1 for r in rounds if r.skipped)
    if clipped or skipped:
        summary.add_row("values clipped / rounds skipped", f"{clipped} / {skipped}")
    console.print(summary)
    if config.validation_split:
        _validation_table(result, console)

    console.print("time per phase, summed over clients (standardisation rounds included)")
    phases = Table()
    phases.add_column("phase")
    phases.add_column("total s", justify="right")
    phases.add_column("per round ms", justify="right")
    phases.add_column("share", justify="right")
    n_rounds = len(rounds) + len(result.setup["statistics"])
    busy = sum(totals[f"{p}_s"] or 0.0 for p in _PHASE_LABELS) + totals["keygen_s"]
    for phase, label in _PHASE_LABELS.items():
        seconds = totals[f"{phase}_s"]
        if seconds is None:  # Flower client nodes keep their seconds
            phases.add_row(label, "kept by the clients", "", "")
            continue
        share = seconds / busy if busy else 0.0
        phases.add_row(label, f"{seconds:.3f}", f"{1e3 * seconds / n_rounds:.1f}", f"{share:.0%}")
    keygen_share = f"{totals['keygen_s'] / busy:.0%}" if busy else ""
    phases.add_row("key generation", f"{totals['keygen_s']:.3f}", "", keygen_share)
    if totals.get("startup_s"):
        phases.add_row("executor start-up", f"{totals['startup_s']:.3f}", "", "")
    phases.add_row(
        "rounds, wall clock",
        f"{totals['round_wall_s']:.3f}",
        f"{1e3 * totals['round_wall_s'] / n_rounds:.1f}",
        "",
    )
    phases.add_row("wall clock", f"{totals['total_s']:.3f}", "", "", style="bold")
    console.print(phases)
