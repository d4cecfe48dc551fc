"""What checking a round's receipts in one batch saves the key holder.

The key holder checks every receipt's proofs (weight pin and link, values' range,
and the Paillier proof of knowledge or the CKKS opening proof). The values' range
proofs of a round share their bases, so ``AggregationKey.verify_commitment_proofs``
checks them in one product of powers (``he_fed/crypto/_value_check.py``; DESIGN.md
"Batch verification of the values' range proofs"). This measures, in one process
and interleaved, a round of ``k`` receipts checked one by one
(``verify_commitment_proof`` each, as the aggregator does on arrival) against the
batch, and reports the ratio.

Run::

    python benchmarks/batch_verify.py --json benchmarks/results/batch_verify.json \
        --markdown benchmarks/results/batch_verify.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from he_fed.bench.measure import timed
from he_fed.bench.report import write_outputs
from he_fed.crypto import CKKS, PackedPaillier
from he_fed.experiment import environment

#: (scheme, values per update, receipts per round).
GRID = (("paillier-packed", 31, 10), ("paillier-packed", 2001, 10), ("ckks", 31, 10))


def _public(name: str, key_bits: int) -> Any:
    if name == "ckks":
        return CKKS(clip=1.0, max_clients=100, max_weight=1000).keygen().public
    plan = dict(key_bits=key_bits, max_clients=100, max_weight=1000, workers=1)
    return PackedPaillier(**plan).keygen().public  # type: ignore[arg-type]


def rows(key_bits: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    """One row per (scheme, values, receipts): medians of ``repeats`` interleaved runs."""
    rng = np.random.default_rng(seed)
    out = []
    for name, d, k in GRID:
        public = _public(name, key_bits)
        claims = []
        for i in range(k):
            vector = public.encrypt(rng.uniform(-1, 1, d), weight=int(rng.integers(1, 100)))
            context = b"federation|round|task|client-%d|fingerprint" % i
            proof = vector.prove_commitment(context, {})
            claims.append((vector.commitment(), proof, context, vector.binding()))
        public.verify_commitment_proofs(claims[:1], d)  # warm-up: tables, generators
        times: dict[str, list[float]] = {"one_by_one": [], "batch": []}
        for _ in range(repeats):
            t_each, each = timed(
                lambda p=public, c=claims, d=d: [
                    p.verify_commitment_proof(m, pr, d, x, binding=b) for m, pr, x, b in c
                ]
            )
            t_batch, held = timed(lambda p=public, c=claims, d=d: p.verify_commitment_proofs(c, d))
            assert all(each) and held
            times["one_by_one"].append(t_each)
            times["batch"].append(t_batch)
        med = {key: statistics.median(v) for key, v in times.items()}
        out.append(
            {
                "scheme": name,
                "d": d,
                "receipts": k,
                "one_by_one_ms": med["one_by_one"] * 1e3,
                "batch_ms": med["batch"] * 1e3,
                "ratio": med["one_by_one"] / med["batch"],
            }
        )
    return out


def markdown(result: dict[str, Any]) -> str:
    """The committed table, from a result dict."""
    env = result["environment"]
    lines = [
        "# The key holder's check of a round's receipts: one by one against one batch",
        "",
        f"{env['date']} · {env['cpu']} · Python {env['python']} · one core. Medians of "
        f"{result['repeats']} interleaved repetitions; every proof of the round checked "
        "(weight, values' range, Paillier knowledge or CKKS opening). CKKS: "
        "aggregation-fast.",
        "",
        "| scheme | values per update | receipts | one by one ms | batch ms | one by one ÷ batch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['scheme']} | {r['d']:,} | {r['receipts']} | {r['one_by_one_ms']:.0f} | "
            f"{r['batch_ms']:.0f} | {r['ratio']:.2f}× |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "batch_verify",
        "repeats": args.repeats,
        "environment": environment(),
        "rows": rows(args.key_bits, args.repeats, args.seed),
    }
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
