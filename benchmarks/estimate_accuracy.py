"""How close ``he-fed estimate`` comes to measured rounds, per scheme and model size.

For each scheme: calibrate (timed, into a fresh cache), then for each federation
(features × clients, 50 rows per client) run three training rounds in process and
compare the last round's wall time with the estimate's time per round.

Run::

    python benchmarks/estimate_accuracy.py --json benchmarks/results/estimate_accuracy.json \
        --markdown benchmarks/results/estimate_accuracy.md
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from he_fed.bench.estimate import estimate, load_calibration
from he_fed.bench.report import write_outputs
from he_fed.crypto import CKKS, PackedPaillier, Paillier
from he_fed.experiment import environment
from he_fed.federated import FederatedLogisticRegression

ROWS = 50
#: (scheme, [(features, clients)]): 1024-bit Paillier keys, CKKS's default preset.
GRID = (
    ("paillier", ((10, 4), (100, 3))),
    ("paillier-packed", ((100, 4), (1000, 4), (3000, 3))),
    ("ckks", ((100, 4), (1000, 3))),
)


def _scheme(name: str) -> Any:
    plan = dict(max_clients=8, max_weight=64)
    if name == "ckks":
        return CKKS(**plan)  # type: ignore[arg-type]
    cls = Paillier if name == "paillier" else PackedPaillier
    return cls(key_bits=1024, allow_insecure=True, **plan)  # type: ignore[arg-type]


def rows(seed: int, only: list[str] | None) -> list[dict[str, Any]]:
    out = []
    for name, configs in GRID:
        if only and name not in only:
            continue
        scheme = _scheme(name)
        with tempfile.TemporaryDirectory() as cache:
            os.environ["HE_FED_CACHE_DIR"] = cache
            started = time.perf_counter()
            calibration = load_calibration(scheme)
            calibrate_s = time.perf_counter() - started
        for features, clients in configs:
            rng = np.random.default_rng(seed)
            X = rng.normal(size=(clients * ROWS, features))
            y = (X[:, 0] > 0).astype(int)
            model = FederatedLogisticRegression(scheme=scheme, rounds=3, standardize=False)
            stamps: list[float] = []
            t0 = time.perf_counter()
            model.fit(
                X,
                y,
                np.arange(len(X)) % clients,
                callback=lambda _, s=stamps: s.append(time.perf_counter()),
            )
            measured = float(np.diff([t0, *stamps])[-1])
            predicted = estimate(
                scheme, calibration, features=features, clients=clients, rounds=3,
                samples_per_client=ROWS,
            ).time_per_round_s  # fmt: skip
            out.append(
                {
                    "scheme": name,
                    "features": features,
                    "clients": clients,
                    "calibrate_s": calibrate_s,
                    "measured_s": measured,
                    "estimated_s": predicted,
                    "ratio": predicted / measured,
                }
            )
            print(out[-1], flush=True)
    return out


def markdown(result: dict[str, Any]) -> str:
    """The committed table, from a result dict."""
    env = result["environment"]
    lines = [
        "# `he-fed estimate` against measured rounds",
        "",
        f"{env['date']} · {env['cpu']} · {env['cpu_count']} cores · Python {env['python']}. "
        f"Three training rounds in process, {ROWS} rows per client; the last round's wall "
        "time against the estimate's time per round, from a calibration made in the same "
        "run (1024-bit Paillier keys, CKKS's default preset).",
        "",
        "| scheme | features | clients | calibration s | measured s | estimated s "
        "| estimated ÷ measured |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['scheme']} | {r['features']:,} | {r['clients']} | {r['calibrate_s']:.0f} | "
            f"{r['measured_s']:.2f} | {r['estimated_s']:.2f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="schemes to run (default: all)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "estimate_accuracy",
        "environment": environment(),
        "rows": rows(args.seed, args.only),
    }
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
