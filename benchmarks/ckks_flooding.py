"""What noise flooding at CKKS decryption costs in accuracy.

Trains the federated estimators exactly as ``he-fed run`` does (same split,
partition, plan and defaults: 5 clients, 20 rounds, iid, seed 3) under the default
CKKS preset with ``flood_bits`` = 0 (off), 10, 20, 30 and 40, on breast_cancer
(logistic, accuracy) and diabetes (linear, R²). Flooding adds noise to every
decrypted aggregate, including the two standardisation rounds, whose plans have
wider clip bounds and so coarser scales and larger flooding noise.

Reported per setting: the test metric, its change from no flooding, the largest
change of a coefficient relative to the largest coefficient, the flooding noise's
standard deviation on one released training-round mean, and the statistical
distance bound per ciphertext it buys (about ``2**-(flood_bits + 1)``). A run the
noise breaks (for example, statistics no client can encode any more) is recorded
with its error.

Run::

    python benchmarks/ckks_flooding.py --json benchmarks/results/ckks_flooding.json \\
        --markdown benchmarks/results/ckks_flooding.md
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from he_fed import FederatedLinearRegression, FederatedLogisticRegression
from he_fed.bench.report import write_outputs
from he_fed.crypto import CKKS
from he_fed.data import load_dataset, partition, train_test
from he_fed.exceptions import HEFedError
from he_fed.experiment import ExperimentConfig, environment

FLOOD_BITS = (0, 10, 20, 30, 40)
DATASETS = ("breast_cancer", "diabetes")
SEED = 3


def _fit(dataset: str, flood_bits: int) -> dict[str, Any]:
    """One federated run as ``he-fed run --scheme ckks`` does it, with flooding."""
    config = ExperimentConfig(dataset=dataset, scheme="ckks", seed=SEED)
    data = load_dataset(dataset, random_state=SEED)
    task = data.task
    X_train, X_test, y_train, y_test = train_test(
        data.X, data.y, task=task, test_size=config.test_size, random_state=SEED
    )
    parts = partition(y_train, config.clients, method="iid", task=task, random_state=SEED)
    groups = np.empty(len(y_train), dtype=np.int64)
    for k, idx in enumerate(parts):
        groups[idx] = k
    largest = max(len(idx) for idx in parts)
    scheme = CKKS(
        clip=config.clip,
        max_clients=config.clients,
        max_weight=1 << (largest - 1).bit_length(),  # as the estimators choose it
        flood_bits=flood_bits,
    )
    cls = FederatedLogisticRegression if task == "classification" else FederatedLinearRegression
    estimator = cls(scheme=scheme, rounds=config.rounds, random_state=SEED)
    try:
        estimator.fit(X_train, y_train, groups)
    except HEFedError as exc:
        return {"flood_bits": flood_bits, "error": f"{type(exc).__name__}: {exc}"}
    weights = np.append(np.ravel(estimator.coef_), np.ravel(estimator.intercept_))
    total_weight = len(y_train)
    return {
        "flood_bits": flood_bits,
        "metric": float(estimator.score(X_test, y_test)),
        "weights": weights.tolist(),
        "mean_noise_std": scheme.error_budget.flood_std(config.clients) / total_weight,
        "statistical_distance": 2.0 ** -(flood_bits + 1) if flood_bits else None,
    }


def table() -> dict[str, list[dict[str, Any]]]:
    """Every dataset at every flooding setting."""
    out: dict[str, list[dict[str, Any]]] = {}
    for dataset in DATASETS:
        rows = [_fit(dataset, bits) for bits in FLOOD_BITS]
        base = rows[0]
        reference = np.asarray(base["weights"])
        for row in rows:
            if "error" in row:
                continue
            row["metric_change"] = row["metric"] - base["metric"]
            change = np.abs(np.asarray(row["weights"]) - reference)
            row["coef_change"] = float(change.max() / np.abs(reference).max())
        out[dataset] = rows
    return out


def headline(result: dict[str, Any], *, brief: bool = False) -> list[str]:
    """The accuracy-cost table; ``brief`` (README's) leaves out the distance column."""
    columns = [
        "dataset",
        "flood_bits",
        "metric",
        "change",
        "largest coefficient change",
        "noise std on a released mean",
    ]
    if not brief:
        columns.append("distance per ciphertext")
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for dataset, rows in result["flooding"].items():
        for r in rows:
            bits = r["flood_bits"]
            if "error" in r:
                empty = " |" * (len(columns) - 3)
                lines.append(f"| {dataset} | {bits} | failed: {r['error']} |{empty}")
                continue
            cells = [
                dataset,
                str(bits),
                f"{r['metric']:.4f}",
                f"{r['metric_change']:+.4f}",
                f"{r['coef_change']:.2%}",
                f"{r['mean_noise_std']:.2g}",
            ]
            if not brief:
                cells.append(f"2^-{bits + 1}" if bits else "none")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The committed table, from a result dict."""
    env = result["environment"]
    return (
        "\n".join(
            [
                "# The accuracy cost of noise flooding at CKKS decryption",
                "",
                f"{env['date']} · TenSEAL {env['packages']['tenseal']} · "
                "aggregation-fast, 5 clients, "
                "20 rounds, iid, seed 3. Metric: test accuracy (breast_cancer) or R² (diabetes). "
                "Coefficient change is relative to the largest coefficient without flooding.",
                "",
                *headline(result),
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "ckks_flooding",
        "environment": environment(),
        "flooding": table(),
    }
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
