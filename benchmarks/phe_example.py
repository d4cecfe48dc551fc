"""python-paillier's federated example, end to end: he-fed against raw phe in one process.

The setting of ``examples/federated_learning_with_encryption.py`` (and of tutorial
06): diabetes, seed 42, 50 test rows, three hospitals holding contiguous blocks of
the shuffled training rows, 50 full-batch gradient steps, 11 weights, 2048-bit
Paillier. Two runs of it, interleaved repetition by repetition so that the ratio
is fair on a shared machine:

* ``phe``: the example re-implemented on raw phe as it meant to compute (each
  hospital's gradient counted once): every hospital encrypts its 11 summed
  gradient values with ``public_key.encrypt``, the server adds them and decrypts
  the sum, and every hospital steps by ``eta`` times the sum over 3. Key
  generation included, as in the script.
* ``he-fed``: ``FederatedLinearRegression`` with packed Paillier (32-bit values,
  room for 3 contributions of weight 256), FedSGD at the equivalent learning
  rate, no standardisation, in process: key generation, signed tickets, proofs,
  binding commitments and rounded releases included. The fixed-base tables of
  the binding commitments and of their range proofs (public constants, built
  once per process) are dropped before every repetition, so that each pays for
  building them too.

Reported: the median wall and CPU time of each, their ratios, and each run's
test MSE.

Run::

    python benchmarks/phe_example.py --repeats 3 --json /tmp/phe_example.json \\
        --markdown /tmp/phe_example.md

``--profile N`` instead samples this process's CPU time every 0.5 ms over ``N``
he-fed runs and prints the share of each stage (a stage's share includes what it
calls), so that what remains of a run can be read item by item without cProfile's
per-call overhead, which inflates Python-heavy stages.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from phe import paillier as phe
from sklearn.datasets import load_diabetes

from he_fed import FederatedLinearRegression
from he_fed.bench.report import write_outputs
from he_fed.crypto import PackedPaillier, _value_range
from he_fed.experiment import environment

KEY_BITS = 2048
CLIENTS = 3
ITERATIONS = 50
ETA = 0.01


def example_data() -> dict[str, Any]:
    """The example's split: training blocks per hospital and the 50 test rows."""
    np.random.seed(42)
    data = load_diabetes()
    X = np.c_[data.data, np.ones(data.data.shape[0])]  # a constant column for the intercept
    y = data.target
    perm = np.random.permutation(X.shape[0])
    X, y = X[perm, :], y[perm]
    test_idx = np.random.choice(X.shape[0], size=50, replace=False)
    train = np.ones(X.shape[0], dtype=bool)
    train[test_idx] = False
    X_train, y_train = X[train], y[train]
    step = X_train.shape[0] // CLIENTS
    blocks = [slice(step * c, step * (c + 1)) for c in range(CLIENTS)]
    return {
        "X_train": X_train,
        "y_train": y_train,
        "X_test": X[test_idx],
        "y_test": y[test_idx],
        "blocks": blocks,
    }


def run_phe(d: dict[str, Any], key_bits: int) -> tuple[float, float, float]:
    """The example on raw phe, each hospital counted once: (wall s, CPU s, test MSE)."""
    started, cpu = time.perf_counter(), time.process_time()
    public, private = phe.generate_paillier_keypair(n_length=key_bits)
    X, y = d["X_train"], d["y_train"]
    w = np.zeros(X.shape[1])
    for _ in range(ITERATIONS):
        encrypted = []
        for rows in d["blocks"]:
            gradient = (X[rows] @ w - y[rows]) @ X[rows]
            encrypted.append([public.encrypt(float(g)) for g in gradient])
        total = encrypted[0]
        for other in encrypted[1:]:
            total = [a + b for a, b in zip(total, other, strict=True)]
        summed = np.array([private.decrypt(c) for c in total])
        w = w - ETA * summed / CLIENTS
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    mse = float(np.mean((d["X_test"] @ w - d["y_test"]) ** 2))
    return seconds, cpu, mse


def run_he_fed(d: dict[str, Any], key_bits: int) -> tuple[float, float, float]:
    """The same training with he-fed, packed Paillier: (wall s, CPU s, test MSE)."""
    X = d["X_train"][:, :-1]  # he-fed fits its own intercept
    groups = np.full(len(X), -1)
    for k, rows in enumerate(d["blocks"]):
        groups[rows] = k
    used = groups >= 0
    Xf, yf, gf = X[used], d["y_train"][used], groups[used]
    _value_range.drop_tables()  # a cold process: built once per process, paid here
    started, cpu = time.perf_counter(), time.process_time()
    model = FederatedLinearRegression(
        scheme=PackedPaillier(
            key_bits=key_bits,
            precision_bits=32,
            clip=1e4,
            max_clients=CLIENTS,
            max_weight=256,
            allow_insecure=key_bits < KEY_BITS,  # --key-bits 1024 for a quick look only
        ),
        rounds=ITERATIONS,
        local_epochs=1,
        learning_rate=ETA * len(yf) / CLIENTS,
        alpha=0.0,
        standardize=False,
    ).fit(Xf, yf, groups=gf)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    mse = float(np.mean((model.predict(d["X_test"][:, :-1]) - d["y_test"]) ** 2))
    return seconds, cpu, mse


def measure(repeats: int, key_bits: int) -> dict[str, Any]:
    """Both runs, interleaved ``repeats`` times."""
    d = example_data()
    load_before = os.getloadavg()[0]
    runs: dict[str, list[tuple[float, float, float]]] = {"he-fed": [], "phe": []}
    for _ in range(repeats):
        runs["he-fed"].append(run_he_fed(d, key_bits))
        runs["phe"].append(run_phe(d, key_bits))
        print({k: v[-1] for k, v in runs.items()}, flush=True)
    out: dict[str, Any] = {"key_bits": key_bits, "repeats": repeats}
    for name, got in runs.items():
        out[name] = {
            "seconds": statistics.median(s for s, _, _ in got),
            "cpu_seconds": statistics.median(c for _, c, _ in got),
            "all_seconds": [s for s, _, _ in got],
            "mse": sorted({round(m, 2) for _, _, m in got}),
        }
    out["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    out["ratio"] = out["phe"]["seconds"] / out["he-fed"]["seconds"]
    out["ratio_cpu"] = out["phe"]["cpu_seconds"] / out["he-fed"]["cpu_seconds"]
    return out


def markdown(result: dict[str, Any]) -> str:
    """The table of one result."""
    env, m = result["environment"], result["measurement"]
    lines = [
        "# python-paillier's federated example, end to end",
        "",
        f"{env['date']} · {env['cpu']} · {env['cpu_count']} cores · Python {env['python']}. "
        f"Diabetes, {CLIENTS} hospitals, {ITERATIONS} full-batch rounds, 11 weights, "
        f"{m['key_bits']}-bit Paillier; medians of {m['repeats']} interleaved repetitions "
        "in one process, key generation included; CPU s is this process's CPU time, "
        "which a busy machine disturbs less than the wall time.",
        "",
        "| | wall s | CPU s | test MSE |",
        "|---|---:|---:|---:|",
        *(
            f"| {label} | {m[name]['seconds']:.2f} | {m[name]['cpu_seconds']:.2f} | "
            f"{', '.join(f'{v:.2f}' for v in m[name]['mse'])} |"
            for name, label in (
                ("phe", "raw phe (the example, each hospital once)"),
                ("he-fed", "he-fed, packed Paillier"),
            )
        ),
        "",
        f"he-fed is {m['ratio']:.1f}× faster than raw phe in wall time, "
        f"{m['ratio_cpu']:.1f}× in CPU time.",
    ]
    if "load_average" in m:  # other work on the machine slows the wall time
        before, after = m["load_average"]
        lines += ["", f"Load average (1 min) {before:.2f} before the runs, {after:.2f} after."]
    return "\n".join(lines) + "\n"


#: Stages of a he-fed run: (label, functions that must all be on the stack), each
#: function as ``file:name``.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("key generation", ("paillier.py:keygen",)),
    ("fixed-base tables built (randomisers, proofs)", ("_djn.py:_fixed_base",)),
    ("encryption randomisers", ("_paillier_keys.py:_randomisers",)),
    ("ciphertext proofs made (clients)", ("_commitment_proof.py:prove",)),
    (
        "ciphertext proofs checked by the aggregator",
        ("aggregator.py:add", "_commitment_proof.py:verify"),
    ),
    (
        "ciphertext proofs checked by the key holder",
        ("admission.py:check_receipts", "_commitment_proof.py:verify"),
    ),
    ("weight range proofs made (clients)", ("_weight_range.py:prove_linked",)),
    ("values' range proofs made (clients)", ("_value_range.py:prove",)),
    ("range proofs checked by the aggregator", ("aggregator.py:add", "_value_check.py:verify_all")),
    ("", ("aggregator.py:add", "_weight_range.py:verified_rest")),
    (
        "range proofs checked by the key holder (one batch)",
        ("admission.py:check_receipts", "_value_check.py:verify_all"),
    ),
    ("", ("admission.py:check_receipts", "_weight_range.py:verified_rest")),
    ("binding commitments made (clients)", ("client.py:participate", "_binding.py:commit")),
    ("binding checks (key holder)", ("_binding.py:check",)),
    ("decryption (CRT)", ("_djn.py:decrypt",)),
    ("Ed25519 signatures (receipts)", ("receipts.py:sign",)),
    ("", ("receipts.py:verify",)),
    ("local training (clone, fit)", ("client.py:_train",)),
    ("per-round metrics (r2, MSE)", ("federated.py:_metrics",)),
    ("message encoding and decoding", ("messages.py:encode",)),
    ("", ("messages.py:decode",)),
)


def profile(d: dict[str, Any], key_bits: int, runs: int) -> list[tuple[str, float]]:
    """Each stage's share of the CPU time of ``runs`` he-fed runs, by sampling."""
    stacks: collections.Counter[frozenset[str]] = collections.Counter()

    def sample(_signum: int, frame: Any) -> None:
        names = set()
        while frame is not None:
            code = frame.f_code
            names.add(f"{Path(code.co_filename).name}:{code.co_name}")
            frame = frame.f_back
        stacks[frozenset(names)] += 1

    run_he_fed(d, key_bits)  # imports and first-call costs out of the way
    previous = signal.signal(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, 0.0005, 0.0005)
    try:
        for _ in range(runs):
            run_he_fed(d, key_bits)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, previous)
    total = sum(stacks.values())
    shares: dict[str, float] = {}
    label = ""
    for name, needed in STAGES:
        label = name or label  # an empty label adds to the stage above
        hits = sum(n for stack, n in stacks.items() if all(f in stack for f in needed))
        shares[label] = shares.get(label, 0.0) + hits / total
    shares["everything else"] = 1.0 - sum(shares.values())
    return list(shares.items())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--key-bits", type=int, default=KEY_BITS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--profile", type=int, metavar="N", help="sample N he-fed runs")
    args = parser.parse_args(argv)
    if args.profile:
        shares = profile(example_data(), args.key_bits, args.profile)
        for label, share in shares:
            print(f"{share * 100:5.1f} %  {label}")
        return {"profile": shares}
    result = {
        "benchmark": "phe_example",
        "environment": environment(),
        "measurement": measure(args.repeats, args.key_bits),
    }
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
