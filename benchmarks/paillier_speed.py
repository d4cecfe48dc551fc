"""Paillier speed: naive phe against he-fed's per-value and packed schemes.

Everything runs in one process, on the same key size, interleaved repetition by
repetition, so that the ratios are fair on a shared, noisy machine:

* ``phe-naive``: one ``EncryptedNumber`` per value, exactly as python-paillier's
  documentation shows (``public_key.encrypt(x)``, ``+``, ``private_key.decrypt``).
* ``paillier``: he-fed's per-value scheme (DJN encryption, CRT decryption).
* ``paillier-packed``: he-fed's packed scheme (16-bit values, room for 1024
  clients, 78 values per 2048-bit ciphertext).
* ``paillier-packed-short``: the same with the opt-in short DJN exponent.

Per element: encrypt, aggregate (one homomorphic addition per client, per value)
and decrypt in microseconds, and bytes. The ratio columns divide the naive phe
figure by ours. Also: two-worker encryption of a long vector against one worker,
and the quantization error of a 100-client sum for several precisions.

Run::

    python benchmarks/paillier_speed.py --json benchmarks/results/paillier_speed.json \
        --markdown benchmarks/results/paillier_speed.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from phe import paillier as phe

from he_fed.bench.measure import median_spread, timed
from he_fed.bench.report import write_outputs
from he_fed.crypto import PackedPaillier, Paillier
from he_fed.experiment import environment

CLIENTS = 10  # contributions summed in the aggregation measurement


class _Naive:
    """python-paillier used as its documentation shows."""

    label = "phe-naive"

    def __init__(self, key_bits: int, d: int) -> None:
        self.public, self.private = phe.generate_paillier_keypair(n_length=key_bits)
        self.d = d
        self.bytes_per_element = (2 * key_bits + 7) // 8  # one bare ciphertext mod n^2

    def run(self, rng: np.random.Generator) -> dict[str, float]:
        xs = [rng.uniform(-1, 1, self.d) for _ in range(CLIENTS)]
        t_enc, first = timed(lambda: [self.public.encrypt(float(v)) for v in xs[0]])
        others = [[self.public.encrypt(float(v)) for v in x] for x in xs[1:]]

        def aggregate() -> list[Any]:
            total = list(first)
            for vector in others:
                total = [a + b for a, b in zip(total, vector, strict=False)]
            return total

        t_agg, total = timed(aggregate)
        t_dec, values = timed(lambda: [self.private.decrypt(c) for c in total])
        assert np.allclose(values, np.sum(xs, axis=0), atol=1e-9)
        return {
            "encrypt": t_enc / self.d,
            "aggregate": t_agg / ((CLIENTS - 1) * self.d),
            "decrypt": t_dec / self.d,
        }


class _Ours:
    """An he-fed scheme through its public interface (bytes included)."""

    def __init__(self, label: str, scheme: Any, d: int) -> None:
        self.label = label
        self.keys = scheme.keygen()
        self.d = d
        self.params = scheme.params()
        sample = self.keys.public.encrypt(np.zeros(d))
        self.bytes_per_element = len(sample.to_bytes()) / d
        self.ciphertexts = len(sample.ciphertexts)
        self.keys.public.encrypt(np.zeros(1))  # build the fixed-base table outside timing

    def run(self, rng: np.random.Generator) -> dict[str, float]:
        xs = [rng.uniform(-1, 1, self.d) for _ in range(CLIENTS)]
        t_enc, first = timed(lambda: self.keys.public.encrypt(xs[0]))
        others = [self.keys.public.encrypt(x) for x in xs[1:]]

        def aggregate() -> Any:
            total = first
            for vector in others:
                total = total + vector
            return total

        t_agg, total = timed(aggregate)
        t_dec, values = timed(lambda: self.keys.secret.decrypt(total))
        step = self.keys.public.scheme.quantizer.step
        assert np.max(np.abs(values - np.sum(xs, axis=0))) <= CLIENTS * step / 2 + 1e-12
        return {
            "encrypt": t_enc / self.d,
            "aggregate": t_agg / ((CLIENTS - 1) * self.d),
            "decrypt": t_dec / self.d,
        }


def speed_table(key_bits: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    """Per-element costs of the naive baseline and our schemes, interleaved."""
    packed = dict(key_bits=key_bits, clip=1.0, max_clients=1024, precision_bits=16, workers=1)
    slots = PackedPaillier(**packed).layout.slots
    contenders: list[Any] = [
        _Naive(key_bits, d=40),
        _Ours("paillier", Paillier(key_bits=key_bits, clip=1.0, workers=1), d=200),
        _Ours("paillier-packed", PackedPaillier(**packed), d=20 * slots - 1),
        _Ours(
            "paillier-packed-short",
            PackedPaillier(**packed, short_randomness=True),
            d=20 * slots - 1,
        ),
    ]
    rng = np.random.default_rng(seed)
    for c in contenders:  # warm-up
        c.run(rng)
    samples: dict[str, list[dict[str, float]]] = {c.label: [] for c in contenders}
    for _ in range(repeats):
        for c in contenders:
            samples[c.label].append(c.run(rng))
    rows = []
    for c in contenders:
        row: dict[str, Any] = {"scheme": c.label, "key_bits": key_bits, "d": c.d}
        for phase in ("encrypt", "aggregate", "decrypt"):
            med, spread = median_spread([s[phase] for s in samples[c.label]])
            row[f"{phase}_us_per_element"] = med * 1e6
            row[f"{phase}_us_spread"] = spread * 1e6
        row["bytes_per_element"] = c.bytes_per_element
        if c.label != "phe-naive":
            row["params"] = c.params
            row["ciphertexts"] = c.ciphertexts
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["ratio_vs_phe"] = {
            phase: base[f"{phase}_us_per_element"] / row[f"{phase}_us_per_element"]
            for phase in ("encrypt", "aggregate", "decrypt")
        }
        row["ratio_vs_phe"]["bytes"] = base["bytes_per_element"] / row["bytes_per_element"]
    return rows


def workers_table(key_bits: int, repeats: int) -> dict[str, Any]:
    """Encrypting one long packed vector with one worker process, then two."""
    plan = dict(key_bits=key_bits, clip=1.0, max_clients=1024)
    slots = PackedPaillier(**plan).layout.slots
    d = 1024 * slots - 1  # 1024 ciphertexts
    x = np.random.default_rng(0).uniform(-1, 1, d)
    times: dict[int, list[float]] = {1: [], 2: []}
    keys = {w: PackedPaillier(**plan, workers=w).keygen() for w in (1, 2)}
    for w in (1, 2):
        keys[w].public.encrypt(x)  # warm-up: tables, and the worker pool for w=2
    for _ in range(repeats):
        for w in (1, 2):
            times[w].append(timed(lambda w=w: keys[w].public.encrypt(x))[0])
    one, two = statistics.median(times[1]), statistics.median(times[2])
    return {
        "key_bits": key_bits,
        "d": d,
        "ciphertexts": 1024,
        "one_worker_s": one,
        "two_workers_s": two,
        "speedup": one / two,
    }


def quantization_table(seed: int) -> list[dict[str, Any]]:
    """Error of a 100-client sum of values in [-1, 1] for several precisions."""
    rng = np.random.default_rng(seed)
    rows = []
    clients, d = 100, 2000
    xs = rng.uniform(-1, 1, (clients, d))
    exact = xs.sum(axis=0)
    for bits in (8, 12, 16, 20, 24):
        scheme = PackedPaillier(
            key_bits=2048, clip=1.0, max_clients=clients, precision_bits=bits, workers=1
        )
        keys = scheme.keygen()
        total = sum(keys.public.encrypt(x) for x in xs)
        error = np.abs(keys.secret.decrypt(total) - exact)
        rows.append(
            {
                "precision_bits": bits,
                "clients": clients,
                "slots_per_ciphertext": scheme.layout.slots,
                "max_abs_error": float(error.max()),
                "mean_abs_error": float(error.mean()),
                "bound": clients * scheme.quantizer.step / 2,
            }
        )
    return rows


def speed_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The per-element table of one key size."""
    lines = [
        "| scheme | encrypt µs | aggregate µs | decrypt µs | bytes | encrypt × | aggregate × "
        "| decrypt × | bytes × |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["ratio_vs_phe"]
        lines.append(
            f"| {r['scheme']} | {r['encrypt_us_per_element']:.2f} | "
            f"{r['aggregate_us_per_element']:.3f} | {r['decrypt_us_per_element']:.2f} | "
            f"{r['bytes_per_element']:.2f} | {ratio['encrypt']:.0f} | {ratio['aggregate']:.0f}"
            f" | {ratio['decrypt']:.0f} | {ratio['bytes']:.1f} |"
        )
    return lines


def headline(result: dict[str, Any]) -> list[str]:
    """The 2048-bit table and the two-worker speed-up (what README shows)."""
    w = result["workers"]
    return [
        *speed_lines(result["speed"]["2048"]),
        "",
        f"Two worker processes encrypt a {w['ciphertexts']}-ciphertext vector "
        f"{w['speedup']:.2f}× faster than one ({w['one_worker_s']:.2f} s against "
        f"{w['two_workers_s']:.2f} s).",
    ]


def markdown(result: dict[str, Any]) -> str:
    """The committed tables, from a result dict."""
    lines = ["# Paillier speed (per gradient element)", ""]
    env = result["environment"]
    lines.append(
        f"{env['date']} · {env['cpu']} · Python {env['python']} · phe "
        f"{env['packages']['phe']} · gmpy2 {env['packages']['gmpy2']} · one core unless noted. "
        f"Medians of {result['repeats']} interleaved repetitions; ratios are naive phe ÷ ours, "
        f"measured in the same run. Aggregate is one homomorphic addition per client per value."
    )
    for key_bits, rows in result["speed"].items():
        lines += ["", f"## {key_bits}-bit keys", "", *speed_lines(rows)]
    w = result["workers"]
    lines += [
        "",
        "## Two worker processes",
        "",
        f"Encrypting {w['d']} values ({w['ciphertexts']} packed {w['key_bits']}-bit "
        f"ciphertexts): one worker {w['one_worker_s']:.2f} s, two workers "
        f"{w['two_workers_s']:.2f} s, speed-up {w['speedup']:.2f}×.",
        "",
        "## Quantization error of a 100-client sum (values in [-1, 1], clip 1)",
        "",
        "| precision bits | slots per 2048-bit ciphertext | max abs error | mean abs error "
        "| bound (K·step/2) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for q in result["quantization"]:
        lines.append(
            f"| {q['precision_bits']} | {q['slots_per_ciphertext']} | {q['max_abs_error']:.3g} | "
            f"{q['mean_abs_error']:.3g} | {q['bound']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, nargs="+", default=[2048, 3072])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "paillier_speed",
        "repeats": args.repeats,
        "clients": CLIENTS,
        "environment": environment(),
        "speed": {str(bits): speed_table(bits, args.repeats, args.seed) for bits in args.key_bits},
        "workers": workers_table(args.key_bits[0], args.repeats),
        "quantization": quantization_table(args.seed),
    }
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
