"""What differential privacy costs: the final test metric against epsilon.

For ``breast_cancer`` (accuracy), ``diabetes`` (R²) and ``wine`` (accuracy, three
classes), 5 clients and 20 rounds, at both levels (``record``: one DP-SGD step per
round; ``client``: whole updates clipped), at epsilon 0.5, 1, 2, 4 and 8 (delta
1e-5, noise calibrated to the 20 rounds, clip 1), next to the same run without DP
(standardised, as ``he-fed run`` trains by default). Every cell is ``he-fed run``'s
own arithmetic (``run_experiment``), on packed Paillier; the noise comes from the
CSPRNG, so each private cell is the mean and standard deviation of ``--repeats``
runs on the same split (seed 0) as the run without DP. The key size changes no
metric (sums are exact on the grid): the default 1024-bit keys (``allow_insecure``)
only make the grid quicker to run.

Run::

    python benchmarks/dp_tradeoff.py --json benchmarks/results/dp_tradeoff.json \
        --markdown benchmarks/results/dp_tradeoff.md --plot benchmarks/results/dp_tradeoff.png
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from he_fed.bench.report import write_outputs
from he_fed.experiment import ExperimentConfig, environment, run_experiment

DATASETS = ("breast_cancer", "diabetes", "wine")
LEVELS = ("record", "client")
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)


def _metric(dataset: str, key_bits: int, seed: int, **dp: Any) -> float:
    config = ExperimentConfig(
        dataset=dataset,
        key_bits=key_bits,
        allow_insecure=key_bits < 2048,
        clients=5,
        rounds=20,
        seed=seed,
        **dp,
    )
    return float(run_experiment(config).final["metric"])


def rows(key_bits: int, repeats: int) -> list[dict[str, Any]]:
    """One row per dataset and level: the metric at each epsilon, and without DP."""
    out = []
    for dataset in DATASETS:
        baseline = _metric(dataset, key_bits, 0)
        for level in LEVELS:
            cells = {}
            for epsilon in EPSILONS:
                values = [
                    _metric(dataset, key_bits, 0, dp_epsilon=epsilon, dp_level=level)
                    for _ in range(repeats)
                ]
                cells[str(epsilon)] = {
                    "mean": statistics.fmean(values),
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "values": values,
                }
            out.append({"dataset": dataset, "level": level, "cells": cells, "no_dp": baseline})
    return out


def _metric_name(dataset: str) -> str:
    return "R²" if dataset == "diabetes" else "accuracy"


def headline(result: dict[str, Any]) -> list[str]:
    """The table's lines (the README shows them as they are)."""
    env = result["environment"]
    lines = [
        f"{env['date']} · {env['cpu']} · Python {env['python']} · {result['key_bits']}-bit "
        f"packed Paillier, 5 clients, 20 rounds, delta 1e-5, clip 1; mean ± sd of "
        f"{result['repeats']} runs per private cell (seed 0's split, fresh noise each run).",
        "",
        "| dataset | metric | level | "
        + " | ".join(f"ε = {e:g}" for e in EPSILONS)
        + " | no DP (ε = ∞) |",
        "|---|---|---|" + "---:|" * (len(EPSILONS) + 1),
    ]
    for r in result["rows"]:
        cells = " | ".join(
            f"{r['cells'][str(e)]['mean']:.3f} ± {r['cells'][str(e)]['sd']:.3f}" for e in EPSILONS
        )
        lines.append(
            f"| {r['dataset']} | {_metric_name(r['dataset'])} | {r['level']} | {cells} "
            f"| {r['no_dp']:.3f} |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The committed table, from a result dict."""
    return (
        "\n".join(["# Differential privacy: final metric against epsilon", "", *headline(result)])
        + "\n"
    )


def plot(result: dict[str, Any], path: Path) -> None:
    """Metric against epsilon, one panel per dataset, one line per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(12, 3.6))
    for ax, dataset in zip(axes, DATASETS, strict=True):
        for r in (r for r in result["rows"] if r["dataset"] == dataset):
            means = [r["cells"][str(e)]["mean"] for e in EPSILONS]
            sds = [r["cells"][str(e)]["sd"] for e in EPSILONS]
            ax.errorbar(EPSILONS, means, yerr=sds, marker="o", capsize=3, label=r["level"])
            baseline = r["no_dp"]
        ax.axhline(baseline, color="grey", linestyle="--", label="no DP")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("epsilon (delta 1e-5)")
        ax.set_ylabel(_metric_name(dataset))
        ax.set_title(dataset)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "dp_tradeoff",
        "key_bits": args.key_bits,
        "repeats": args.repeats,
        "environment": environment(),
        "rows": rows(args.key_bits, args.repeats),
    }
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    if args.plot:
        plot(result, args.plot)
    return result


if __name__ == "__main__":
    main()
