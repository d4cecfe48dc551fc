"""Server optimizers against FedAvg on non-IID splits: rounds to a target and final accuracy.

For each dataset (breast_cancer, wine, digits), Dirichlet label split
(``alpha`` 0.1 and 1.0, 5 clients) and seed, this trains ``he-fed run``'s
experiment with each server rule: FedAvg, FedAvgM, FedAdam, FedYogi
(``--server-optimizer``) and FedAvg with FedProx's client term
(``--prox-mu 0.1``). Each rule's server step is chosen from ``{0.1, 0.3, 1.0}``
by the federated validation loss (``--validation-split 0.2``, the lowest loss
over the rounds), never by the test set, as a user of ``--lr 0.1,0.3,1.0`` would.
The chosen run's test accuracy per round gives:

* **rounds to target**: the first round whose test accuracy reaches 98% of the
  centralised scikit-learn accuracy on the same split (``-`` if none does);
* **final**: the test accuracy of the model kept at the last round.

The optimizer arithmetic is the same on every scheme, so the runs use ``plain``
for speed; encryption changes each released mean by at most half a grid step
(DESIGN.md, "Releases hide the total weight").

Run::

    python benchmarks/optimizers.py --json benchmarks/results/optimizers.json \
        --markdown benchmarks/results/optimizers.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from he_fed.bench.report import write_outputs
from he_fed.exceptions import HEFedError
from he_fed.experiment import ExperimentConfig, environment, run_experiment

DATASETS = ("breast_cancer", "wine", "digits")
ALPHAS = (0.1, 1.0)
#: (label, server optimizer, FedProx mu).
RULES = (
    ("FedAvg", "avg", 0.0),
    ("FedAvgM", "avgm", 0.0),
    ("FedAdam", "adam", 0.0),
    ("FedYogi", "yogi", 0.0),
    ("FedProx", "avg", 0.1),
)
SERVER_LRS = (0.1, 0.3, 1.0)
#: Fraction of the centralised accuracy a run must reach to count as "there".
TARGET = 0.98


def _run(
    dataset: str, alpha: float, seed: int, rule: tuple[str, str, float], lr: float, rounds: int
):
    config = ExperimentConfig(
        dataset=dataset,
        scheme="plain",
        clients=5,
        rounds=rounds,
        partition="dirichlet",
        dirichlet_alpha=alpha,
        seed=seed,
        validation_split=0.2,
        server_optimizer=rule[1],
        server_lr=lr,
        prox_mu=rule[2],
    )
    return run_experiment(config)


def cell(dataset: str, alpha: float, seed: int, rule: tuple[str, str, float], rounds: int) -> dict:
    """One rule on one split: the server step chosen by validation loss, and its figures."""
    runs = []
    for lr in SERVER_LRS:
        try:
            result = _run(dataset, alpha, seed, rule, lr, rounds)
        except HEFedError as exc:  # e.g. a diverged model at a large step
            runs.append({"server_lr": lr, "error": str(exc)})
            continue
        losses = [r.validation_loss for r in result.rounds]
        accuracy = [r.metric for r in result.rounds]
        target = TARGET * result.final["reference_metric"]
        reached = next((i + 1 for i, a in enumerate(accuracy) if a >= target), None)
        runs.append(
            {
                "server_lr": lr,
                "validation_loss": min(losses),
                "final_accuracy": accuracy[-1],
                "rounds_to_target": reached,
                "reference": result.final["reference_metric"],
            }
        )
    usable = [r for r in runs if "error" not in r]
    chosen = min(usable, key=lambda r: r["validation_loss"]) if usable else None
    return {
        "dataset": dataset,
        "alpha": alpha,
        "seed": seed,
        "rule": rule[0],
        "runs": runs,
        "chosen": chosen,
    }


def markdown(result: dict[str, Any]) -> str:
    """The committed table: per dataset and alpha, each rule's median over seeds."""
    env = result["environment"]
    lines = [
        "# Server optimizers on Dirichlet splits",
        "",
        f"{env['date']} · {env['cpu']} · Python {env['python']}. {len(result['seeds'])} seeds, "
        f"{result['rounds']} rounds, 5 clients, plain scheme; each rule's server step "
        f"chosen from {{{', '.join(f'{v:g}' for v in SERVER_LRS)}}} by the federated "
        "validation loss. Rounds to reach "
        f"{TARGET:.0%} of centralised scikit-learn's test accuracy (median over seeds; "
        "`-`: reached by half the seeds or fewer) and final test accuracy (median).",
        "",
        "| dataset | alpha | " + " | ".join(label for label, *_ in RULES) + " |",
        "|---|---:|" + "---:|" * len(RULES),
    ]
    for dataset in result["datasets"]:
        for alpha in result["alphas"]:
            cells = []
            for label, *_ in RULES:
                chosen = [
                    c["chosen"]
                    for c in result["cells"]
                    if c["dataset"] == dataset and c["alpha"] == alpha and c["rule"] == label
                ]
                finals = [c["final_accuracy"] for c in chosen if c is not None]
                reached = [c["rounds_to_target"] for c in chosen if c is not None]
                hits = sorted(r for r in reached if r is not None)
                rounds_text = (
                    f"{statistics.median(hits + [10**9] * (len(reached) - len(hits))):.0f}"
                    if len(hits) * 2 > len(reached)
                    else "-"
                )
                final_text = f"{statistics.median(finals):.3f}" if finals else "failed"
                cells.append(f"{rounds_text} / {final_text}")
            lines.append(f"| {dataset} | {alpha:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def headline(result: dict[str, Any]) -> list[str]:
    """README's block: the same table without its title."""
    return markdown(result).splitlines()[2:]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    cells = [
        cell(dataset, alpha, seed, rule, args.rounds)
        for dataset in args.datasets
        for alpha in ALPHAS
        for seed in range(args.seeds)
        for rule in RULES
    ]
    result = {
        "environment": environment(),
        "rounds": args.rounds,
        "seeds": list(range(args.seeds)),
        "datasets": args.datasets,
        "alphas": list(ALPHAS),
        "cells": cells,
    }
    text = markdown(result)
    write_outputs(result, text, args.json, args.markdown)
    print(text)
    return result


if __name__ == "__main__":
    main()
