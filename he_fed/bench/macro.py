"""The macro benchmark: whole federated runs, each scheme against ``plain``, with estimates.

Each cell is a real in-process run (synthetic binary classification, IID, full-batch
FedSGD, no standardisation rounds, so that every round is a training round). A cell
whose estimated cost exceeds the grid's budget is not run; its row carries only
the estimate and says so (``"measured": false``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.datasets import make_classification

from he_fed.bench.estimate import estimate, load_calibration
from he_fed.crypto import CKKS, PackedPaillier, Paillier, Plain, Scheme
from he_fed.crypto.ckks import PRESETS
from he_fed.federated import FederatedLogisticRegression

__all__ = ["MacroGrid", "macro_schemes", "run_macro"]

PHASES = ("train", "encrypt", "sign", "serialize", "aggregate", "decrypt")


@dataclass(frozen=True)
class MacroGrid:
    """What the macro benchmark runs.

    Parameters
    ----------
    clients : tuple of int
        Numbers of clients ``K``.
    features : tuple of int
        Model sizes.
    rounds : int
        Training rounds per run (the first is not timed: it warms caches).
    budget_s : float
        Cells whose estimated run time exceeds this are estimated, not run.
    """

    clients: tuple[int, ...]
    features: tuple[int, ...]
    rounds: int
    budget_s: float


QUICK = MacroGrid(clients=(2,), features=(30,), rounds=3, budget_s=10.0)
FULL = MacroGrid(
    clients=(2, 10, 50, 100), features=(30, 1000, 10_000, 100_000), rounds=4, budget_s=90.0
)


def _samples_per_client(features: int) -> int:
    return 40 if features <= 1000 else 8


def macro_schemes(
    clients: int,
    samples: int,
    key_bits: int = 2048,
    only: tuple[str, ...] | None = None,
    allow_insecure: bool = False,
) -> list[tuple[str, Scheme]]:
    """Every scheme under the plan a run with ``clients`` clients of ``samples`` rows needs."""
    plan = {"max_clients": clients, "max_weight": 1 << (samples - 1).bit_length()}
    paillier = {"key_bits": key_bits, "workers": 1, "allow_insecure": allow_insecure, **plan}
    out: list[tuple[str, Scheme]] = [
        ("plain", Plain(**plan)),
        ("paillier", Paillier(**paillier)),
        ("paillier-packed", PackedPaillier(**paillier)),
    ]
    out += [(f"ckks/{p}", CKKS(preset=p, **plan)) for p in PRESETS]
    return [(label, s) for label, s in out if only is None or label.split("/")[0] in only]


def _run_cell(
    scheme: Scheme, clients: int, features: int, rounds: int, seed: int
) -> dict[str, Any]:
    samples = _samples_per_client(features)
    X, y = make_classification(
        n_samples=clients * samples,
        n_features=features,
        n_informative=min(features, 10),
        n_redundant=0,
        random_state=seed,
    )
    groups = np.arange(len(y)) % clients
    stamps: list[float] = []
    model = FederatedLogisticRegression(
        scheme=scheme,
        rounds=rounds,
        local_epochs=1,
        learning_rate=0.5,
        standardize=False,
        random_state=seed,
    )
    start = time.perf_counter()
    model.fit(X, y, groups, callback=lambda entry: stamps.append(time.perf_counter()))
    walls = np.diff([start, *stamps])[1:]  # round 1 warms tables and caches
    history = model.history_[1:]
    return {
        "time_per_round_s": float(np.median(walls)),
        "phases": {p: float(np.median([h.timings[p] for h in history])) for p in PHASES},
        "bytes_up": int(np.median([h.bytes_up for h in history])),
        "bytes_down": int(np.median([h.bytes_down for h in history])),
        "metric": float(model.score(X, y)),
        "samples_per_client": samples,
    }


def run_macro(
    grid: MacroGrid,
    *,
    key_bits: int = 2048,
    allow_insecure: bool = False,
    schemes: tuple[str, ...] | None = None,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Run (or, over budget, only estimate) every cell of the grid.

    Returns
    -------
    list of dict
        One row per scheme, ``clients`` and ``features``: measured time per round
        and per phase, bytes up and down per client per round, the estimate and its
        error, the overhead against ``plain`` and the metric difference from it.
    """
    rows: list[dict[str, Any]] = []
    for clients in grid.clients:
        for features in grid.features:
            samples = _samples_per_client(features)
            plain_row: dict[str, Any] | None = None
            for label, scheme in macro_schemes(
                clients, samples, key_bits, schemes or None, allow_insecure
            ):
                if progress:
                    progress(f"K={clients} d={features} {label}")
                calibration = load_calibration(scheme)
                predicted = estimate(
                    scheme,
                    calibration,
                    features=features,
                    clients=clients,
                    rounds=grid.rounds,
                    samples_per_client=samples,
                    local_epochs=1,
                )
                row: dict[str, Any] = {
                    "scheme": label,
                    "clients": clients,
                    "features": features,
                    "estimate_s_per_round": predicted.time_per_round_s,
                    "estimate_bytes_up": predicted.bytes_up_per_client,
                    "units": predicted.units,
                }
                if predicted.total_s > grid.budget_s and label != "plain":
                    row["measured"] = False
                else:
                    row.update(_run_cell(scheme, clients, features, grid.rounds, seed))
                    row["measured"] = True
                    row["estimate_error"] = (
                        predicted.time_per_round_s - row["time_per_round_s"]
                    ) / row["time_per_round_s"]
                if label == "plain":
                    plain_row = row
                elif row["measured"] and plain_row is not None and plain_row["measured"]:
                    row["overhead_vs_plain"] = (
                        row["time_per_round_s"] / plain_row["time_per_round_s"]
                    )
                    row["metric_diff_vs_plain"] = row["metric"] - plain_row["metric"]
                rows.append(row)
    return rows
