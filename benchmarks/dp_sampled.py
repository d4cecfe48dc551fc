"""Accuracy of a Poisson-sampled private run on breast_cancer: many runs, in the clear.

The same replay as ``dp_repeats.py`` (the key holder's arithmetic in the clear:
each round the clipped gradient sum plus Gaussian noise of standard deviation
``z · C``, on the features mapped by the published ranges and seed 0's split,
step 4, clip 1, 20 rounds, epsilon 1, delta 1e-5), with Poisson sampling: each
round each record is kept with probability ``q``, and the sum is divided by the
expected batch ``q · N``, as the key holder divides it. ``z`` is calibrated with
the sampled accountant (:mod:`he_fed.privacy._sampled`) for each ``q``; ``q = 1``
is the unsampled run. The reported model is the mean of the last half of the
round models, as a run reports it. Sampling coins and noise come from numpy here
(a replay, not a run: runs draw both from ``secrets``).

Run::

    python benchmarks/dp_sampled.py --json benchmarks/results/dp_sampled.json \
        --markdown benchmarks/results/dp_sampled.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from he_fed._private_fit import tail_average
from he_fed.bench.report import write_outputs
from he_fed.experiment import ExperimentConfig, environment, experiment_data
from he_fed.models import LogisticRegressionGD
from he_fed.privacy import clipped_gradient_sum, privacy_estimate

RATES = (1.0, 0.5, 0.1)
ROUNDS, EPSILON, DELTA, STEP, CLIP = 20, 1.0, 1e-5, 4.0, 1.0


def rows(runs: int) -> list[dict[str, Any]]:
    """One row per sampling rate: accuracies of ``runs`` noisy, sampled trainings."""
    data = experiment_data(ExperimentConfig())
    X = np.concatenate([data.X_train, data.X_test])
    low, high = X.min(axis=0), X.max(axis=0)
    center, scale = (low + high) / 2, (high - low) / 2
    Z, Z_test = (data.X_train - center) / scale, (data.X_test - center) / scale
    n = len(Z)
    model = LogisticRegressionGD()
    rng = np.random.default_rng()
    out = []
    for q in RATES:
        plan = privacy_estimate(
            target_epsilon=EPSILON,
            delta=DELTA,
            rounds=ROUNDS,
            level="record",
            clip=CLIP,
            normaliser=n,
            sampling_rate=q,
        )
        z = float(plan["noise_multiplier"])
        accuracies = []
        for _ in range(runs):
            w = np.zeros(Z.shape[1] + 1)
            iterates = []
            for _ in range(ROUNDS):
                keep = rng.random(n) < q
                g, _ = clipped_gradient_sum(
                    model, Z[keep], data.y_train[keep], w, CLIP, np.array([0, 1])
                )
                w = w + STEP * (g + rng.normal(0.0, z * CLIP, w.size)) / (q * n)
                iterates.append(w)
            v = tail_average(iterates)
            predicted = (Z_test @ v[:-1] + v[-1] > 0).astype(int)
            accuracies.append(float(np.mean(predicted == data.y_test)))
        out.append(
            {
                "sampling_rate": q,
                "noise_multiplier": z,
                "epsilon": float(plan["epsilon"]),
                "mean": statistics.fmean(accuracies),
                "below_0_85": sum(a < 0.85 for a in accuracies) / runs,
                "below_0_90": sum(a < 0.90 for a in accuracies) / runs,
                "min": min(accuracies),
            }
        )
    return out


def markdown(result: dict[str, Any]) -> str:
    """The committed table, from a result dict."""
    env = result["environment"]
    lines = [
        "# Record-level DP with Poisson sampling on breast_cancer: accuracy over repeated noise",
        "",
        f"{env['date']} · Python {env['python']} · {result['runs']} runs per row, epsilon "
        f"{EPSILON:g}, delta {DELTA:g}, {ROUNDS} rounds, step {STEP:g}, clip {CLIP:g}, "
        "in the clear (see the script).",
        "",
        "| sampling rate | noise multiplier | epsilon | mean accuracy | runs below 0.85 "
        "| runs below 0.90 | lowest |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['sampling_rate']:g} | {r['noise_multiplier']:.2f} | {r['epsilon']:.3f} "
            f"| {r['mean']:.3f} | {100 * r['below_0_85']:.2f} % | {100 * r['below_0_90']:.2f} % "
            f"| {r['min']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "dp_sampled",
        "runs": args.runs,
        "environment": environment(),
        "rows": rows(args.runs),
    }
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
