"""What t-of-n threshold decryption costs, against one key holder's decryption.

Measured in one process, interleaved, per ciphertext of a packed update (and so
per gradient value, dividing by the values a ciphertext holds):

* the dealer's key generation (two safe primes; ``deal``) against a single key's
  ``keygen``, each ``--keygen-repeats`` times;
* one key holder's CRT decryption (the baseline);
* one share holder's partial decryption with its Chaum-Pedersen proof;
* verifying one partial's proof (each releasing holder checks ``t − 1`` others');
* combining ``t`` partials (Lagrange exponentiations).

The measurement is ``he_fed.bench.threshold.council_times``, which ``he-fed bench``
also runs (3-of-5 in ``--quick``, these three councils in ``--full``). Whole
rounds at 1,000 and 100,000 features are *extrapolated* from these per-ciphertext
costs (the ciphertext count times the per-ciphertext cost), not
measured: per releasing holder, ``partial + (t − 1)·verify + combine``, holders
working in parallel; bytes a holder sends are ``n − 1`` sealed copies of its
partial. The safe primes of the per-ciphertext rows are drawn once and reused
for every ``(t, n)``; only the keygen rows run the whole ceremony.

Run::

    python benchmarks/threshold.py --json benchmarks/results/threshold.json \
        --markdown benchmarks/results/threshold.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from he_fed.bench.measure import timed
from he_fed.bench.report import write_outputs
from he_fed.bench.threshold import council_times
from he_fed.crypto import PackedPaillier
from he_fed.crypto._safe_primes import safe_prime
from he_fed.crypto.threshold import deal
from he_fed.experiment import environment

GRID = ((2, 3), (3, 5), (5, 9))
FEATURES = (1_000, 100_000)
#: Values per measured update: enough ciphertexts for a stable median.
MEASURED_VALUES = 1_001


def _scheme(key_bits: int) -> PackedPaillier:
    return PackedPaillier(
        key_bits=key_bits,
        max_clients=100,
        max_weight=1000,
        workers=1,
        allow_insecure=key_bits < 2048,  # --key-bits 1024 for a quick look only
    )


def keygen_rows(key_bits: int, repeats: int) -> dict[str, Any]:
    """Seconds of the dealer's ceremony (3-of-5) and of one single key, each repetition."""
    scheme = _scheme(key_bits)
    dealer, single = [], []
    for _ in range(repeats):
        dealer.append(timed(lambda: deal(scheme, threshold=3, holders=5))[0])
        single.append(timed(scheme.keygen)[0])
    return {"dealer_s": dealer, "single_s": single}


def rows(key_bits: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    """One row per ``(t, n)``: medians of ``repeats`` interleaved repetitions."""
    rng = np.random.default_rng(seed)
    scheme = _scheme(key_bits)
    half = key_bits // 2
    primes = (safe_prime(half), safe_prime(key_bits - half))
    single = scheme.keygen()
    x = rng.uniform(-1, 1, MEASURED_VALUES)
    out = []
    for t, n in GRID:
        keys = deal(scheme, threshold=t, holders=n, primes=primes)
        times, partial_bytes, k = council_times(keys, single, x, repeats)
        per_ct = {name: statistics.median(v) / k for name, v in times.items()}
        slots = scheme.layout.slots
        row: dict[str, Any] = {
            "t": t,
            "n": n,
            "key_bits": key_bits,
            "values_per_ciphertext": slots,
            **{f"{name}_ms_per_ciphertext": v * 1e3 for name, v in per_ct.items()},
            "partial_bytes_per_ciphertext": partial_bytes / k,
        }
        holder = per_ct["partial"] + (t - 1) * per_ct["verify"] + per_ct["combine"]
        row["holder_over_decrypt"] = holder / per_ct["decrypt"]
        for d in FEATURES:
            cts = scheme.ciphertexts_for(d)
            row[f"round_{d}"] = {
                "ciphertexts": cts,
                "single_s": cts * per_ct["decrypt"],
                "holder_s": cts * holder,
                "holder_sends_bytes": (n - 1) * cts * partial_bytes / k,
            }
        out.append(row)
    return out


def markdown(result: dict[str, Any]) -> str:
    """The committed tables, from a result dict."""
    env = result["environment"]
    kg = result["keygen"]
    lines = [
        "# Threshold Paillier decryption against one key holder",
        "",
        f"{env['date']} · {env['cpu']} · Python {env['python']} · one core · "
        f"{result['key_bits']}-bit keys, packed plan of 100 clients of weight up to 1000. "
        f"Medians of {result['repeats']} interleaved repetitions.",
        "",
        f"Key generation ({len(kg['dealer_s'])} runs each): dealer (two safe primes, 3-of-5) "
        f"median {statistics.median(kg['dealer_s']):.1f} s (min {min(kg['dealer_s']):.1f}, "
        f"max {max(kg['dealer_s']):.1f}); single key median "
        f"{statistics.median(kg['single_s']):.2f} s.",
        "",
        "Per ciphertext (divide by values per ciphertext for per value):",
        "",
        "| t of n | values / ct | decrypt ms (one key) | partial + proof ms | verify ms "
        "| combine ms | holder ÷ decrypt | partial bytes / ct |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['t']} of {r['n']} | {r['values_per_ciphertext']} | "
            f"{r['decrypt_ms_per_ciphertext']:.2f} | {r['partial_ms_per_ciphertext']:.1f} | "
            f"{r['verify_ms_per_ciphertext']:.1f} | {r['combine_ms_per_ciphertext']:.1f} | "
            f"{r['holder_over_decrypt']:.0f}× | {r['partial_bytes_per_ciphertext']:.0f} |"
        )
    lines += [
        "",
        "Whole round, extrapolated from the per-ciphertext costs (a releasing holder: "
        "partial + (t − 1) verifications + combination; holders in parallel):",
        "",
        "| t of n | features | ciphertexts | one key holder s | each share holder s "
        "| each holder sends MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        for d in FEATURES:
            w = r[f"round_{d}"]
            lines.append(
                f"| {r['t']} of {r['n']} | {d:,} | {w['ciphertexts']:,} | {w['single_s']:.3f} | "
                f"{w['holder_s']:.2f} | {w['holder_sends_bytes'] / 2**20:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keygen-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "threshold",
        "key_bits": args.key_bits,
        "repeats": args.repeats,
        "environment": environment(),
        "keygen": keygen_rows(args.key_bits, args.keygen_repeats),
        "rows": rows(args.key_bits, args.repeats, args.seed),
    }
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
