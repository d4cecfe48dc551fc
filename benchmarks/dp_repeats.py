"""How much a private run's accuracy varies with its noise: many runs, in the clear.

The acceptance run (``he-fed run --dp-epsilon 1 --dp-delta 1e-5``: breast_cancer,
5 clients, 20 rounds, record level, clip 1) draws fresh noise every time, so its
accuracy is a random variable. Encryption changes nothing in it (the sums are
exact on the grid), so this replays the key holder's arithmetic in the clear, many
times: each round, the sum of every record's clipped gradient plus Gaussian noise
of standard deviation ``z · C`` (the planned noise of a release; the grid's
discrete Gaussian differs from it by nothing measurable at shares of millions of
grid units), divided by the record count and stepped by the run's step, on the
features mapped by the dataset's published ranges and seed 0's split, as
``he-fed run`` does. The reported model is the run's: the mean of the last half of
the round models (:func:`he_fed._private_fit.tail_average`, post-processing); the
last round's model is shown beside it. Reported per step and clip: the mean test
accuracy, the share of runs below 0.90 and the lowest.

Run::

    python benchmarks/dp_repeats.py --json benchmarks/results/dp_repeats.json \
        --markdown benchmarks/results/dp_repeats.md
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

#: (step, clip): the default (1 / curvature of the log loss = 4, clip 1) and others.
GRID = ((4.0, 1.0), (8.0, 0.5))
ROUNDS, EPSILON, DELTA = 20, 1.0, 1e-5


def rows(runs: int) -> list[dict[str, Any]]:
    """One row per (step, clip): accuracies of ``runs`` noisy trainings."""
    data = experiment_data(ExperimentConfig())
    X = np.concatenate([data.X_train, data.X_test])
    low, high = X.min(axis=0), X.max(axis=0)
    center, scale = (low + high) / 2, (high - low) / 2
    Z, Z_test = (data.X_train - center) / scale, (data.X_test - center) / scale
    n = len(Z)
    model = LogisticRegressionGD()
    rng = np.random.default_rng()  # fresh noise, as a run's CSPRNG
    out = []
    for step, clip in GRID:
        z = privacy_estimate(
            target_epsilon=EPSILON,
            delta=DELTA,
            rounds=ROUNDS,
            level="record",
            clip=clip,
            normaliser=n,
        )["noise_multiplier"]
        reported, last = [], []
        for _ in range(runs):
            w = np.zeros(Z.shape[1] + 1)
            iterates = []
            for _ in range(ROUNDS):
                g, _ = clipped_gradient_sum(model, Z, data.y_train, w, clip, np.array([0, 1]))
                w = w + step * (g + rng.normal(0.0, z * clip, w.size)) / n
                iterates.append(w)
            for accuracies, v in ((reported, tail_average(iterates)), (last, w)):
                predicted = (Z_test @ v[:-1] + v[-1] > 0).astype(int)
                accuracies.append(float(np.mean(predicted == data.y_test)))
        for model_name, accuracies in (("mean of last half", reported), ("last round", last)):
            out.append(
                {
                    "step": step,
                    "clip": clip,
                    "model": model_name,
                    "noise_multiplier": z,
                    "mean": statistics.fmean(accuracies),
                    "below_0_90": sum(a < 0.90 for a in accuracies) / runs,
                    "min": min(accuracies),
                }
            )
    return out


def markdown(result: dict[str, Any]) -> str:
    """The committed table, from a result dict."""
    env = result["environment"]
    lines = [
        "# Record-level DP on breast_cancer: accuracy over repeated noise",
        "",
        f"{env['date']} · Python {env['python']} · {result['runs']} runs per row, epsilon "
        f"{EPSILON:g}, delta {DELTA:g}, {ROUNDS} rounds, in the clear (see the script).",
        "",
        "| step | clip | model | noise multiplier | mean accuracy | runs below 0.90 | lowest |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['step']:g} | {r['clip']:g} | {r['model']} | {r['noise_multiplier']:.2f} "
            f"| {r['mean']:.3f} | {100 * r['below_0_90']:.2f} % | {r['min']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "dp_repeats",
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
