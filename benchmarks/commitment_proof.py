"""What the commitments of a Paillier or CKKS update cost, against encryption.

Every Paillier update carries a proof that its maker knows its commitment's
randomness (``he_fed/crypto/_commitment_proof.py``) and a Pedersen commitment that
binds its plaintext slots (``he_fed/crypto/_binding.py``); see DESIGN.md "Rogue
commitments" and "Binding the plaintext". Every CKKS update carries the same kind
of commitment to its packed grid integers and a proof of knowledge of its opening
(``he_fed/crypto/_ckks_binding.py``, ``he_fed/crypto/_opening_proof.py``; DESIGN.md
"Binding the plaintext (CKKS)"). This measures, in one process and interleaved,
for packed and per-value Paillier and for CKKS (``aggregation-fast``) at several
vector lengths:

* encrypting one update (``public.encrypt``, one worker process);
* making its binding commitment (the client, once per update, on request);
* proving the randomness, or for CKKS the opening (the client, once per update);
* verifying the proof (the aggregator on arrival, and the key holder again);
* checking a decrypted sum against the binding (the key holder, once per round);
* the proof's and the binding's bytes against the update's ciphertext bytes.

Ratios divide by the encryption time measured in the same repetition.

Run::

    python benchmarks/commitment_proof.py --json benchmarks/results/commitment_proof.json \
        --markdown benchmarks/results/commitment_proof.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from he_fed.bench.measure import timed
from he_fed.bench.report import write_outputs
from he_fed.crypto import (
    CKKS,
    PackedPaillier,
    Paillier,
    _binding,
    _ckks_binding,
    _value_check,
    _value_range,
    _weight_range,
)
from he_fed.experiment import environment

CONTEXT = b"federation|round|task|client|fingerprint"
#: (scheme, vector lengths): per-value Paillier is one ciphertext per value, so its
#: long vectors are left to ``paillier_speed.py``.
GRID = (
    ("paillier-packed", (31, 1001, 10001)),
    ("paillier", (31, 301)),
    ("ckks", (31, 1001, 10001)),
)


def _scheme(name: str, key_bits: int) -> Any:
    if name == "ckks":
        return CKKS(clip=1.0, max_clients=100, max_weight=1000)
    plan = dict(key_bits=key_bits, max_clients=100, max_weight=1000, workers=1)
    return PackedPaillier(**plan) if name == "paillier-packed" else Paillier(**plan)


def _opening(public: Any, vector: Any, x: np.ndarray) -> tuple[list[int], int]:
    """The integers and blinding a fresh vector's binding commits to (what the key holder sums)."""
    if public.scheme.name == "ckks":
        return vector._packed()
    return vector._opening  # type: ignore[no-any-return]


def rows(key_bits: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    """One row per (scheme, length): medians of ``repeats`` interleaved repetitions."""
    rng = np.random.default_rng(seed)
    out = []
    for name, lengths in GRID:
        public = _scheme(name, key_bits).keygen().public
        for d in lengths:
            x = rng.uniform(-1, 1, d)
            pins: dict[Any, Any] = {}  # the client's: its weight is range-proven once
            warm = public.encrypt(x, weight=7)  # warm-up: the fixed-base tables, the pin
            public.verify_commitment_proof(
                warm.commitment(),
                warm.prove_commitment(CONTEXT, pins),
                d,
                CONTEXT,
                binding=warm.binding(),
            )
            times: dict[str, list[float]] = {
                "encrypt": [],
                "bind": [],
                "prove": [],
                "verify": [],
                "check": [],
            }
            for _ in range(repeats):
                t_enc, vector = timed(lambda k=public, x=x: k.encrypt(x, weight=7))
                integers, rho = _opening(public, vector, x)
                t_bind, binding = timed(
                    lambda i=integers, r=rho: _weight_range.bind(_binding.commit(i, r), 7, r)
                )
                vector._binding = binding  # the CKKS proof hashes it; made once per update
                t_prove, proof = timed(lambda v=vector, p=pins: v.prove_commitment(CONTEXT, p))
                commitment = vector.commitment()
                t_verify, ok = timed(
                    lambda k=public, c=commitment, p=proof, d=d, b=binding: (
                        k.verify_commitment_proof(c, p, d, CONTEXT, binding=b)
                    )
                )
                assert ok
                t_check, opened = timed(
                    lambda i=integers, r=rho, b=binding: (
                        _binding.check(i, r, b[: _binding.WIDTH]) and _weight_range.opens(b, 7, r)
                    )
                )
                assert opened
                times["bind"].append(t_bind)
                times["check"].append(t_check)
                times["encrypt"].append(t_enc)
                times["prove"].append(t_prove)
                times["verify"].append(t_verify)
            med = {k: statistics.median(v) for k, v in times.items()}
            out.append(
                {
                    "scheme": name,
                    "key_bits": key_bits,
                    "d": d,
                    "ciphertexts": _ciphertexts(vector),
                    **_speeds(med),
                    "bind_ms": med["bind"] * 1e3,
                    "check_ms": med["check"] * 1e3,
                    "bind_over_encrypt": med["bind"] / med["encrypt"],
                    "check_over_encrypt": med["check"] / med["encrypt"],
                    "binding_bytes": len(vector.binding()),
                    "proof_bytes": len(proof),
                    "update_bytes": len(vector.to_bytes()),
                    "blinding_slots": (
                        _ckks_binding.blinding_slots(public.scheme) if name == "ckks" else 0
                    ),
                }
            )
    return out


def pin_row(repeats: int, max_weight: int = 1000) -> dict[str, Any]:
    """A client's weight pin: its range proof, made and checked once per client and weight."""
    times: dict[str, list[float]] = {"prove": [], "verify": []}
    for _ in range(repeats):
        t_prove, proof = timed(lambda: _weight_range.prove(7, 12345, max_weight, CONTEXT))
        commitment = _weight_range.commit(7, 12345)
        t_verify, ok = timed(
            lambda p=proof, c=commitment: _weight_range.verify(c, p, max_weight, CONTEXT)
        )
        assert ok
        times["prove"].append(t_prove)
        times["verify"].append(t_verify)
    return {
        "max_weight": max_weight,
        "bits": len(_weight_range.coefficients(max_weight)),
        "prove_ms": statistics.median(times["prove"]) * 1e3,
        "verify_ms": statistics.median(times["verify"]) * 1e3,
        "bytes": _weight_range.WIDTH + _weight_range.proof_size(max_weight),
    }


#: Values' range proofs alone: (scheme, vector lengths).
VALUE_GRID = (("paillier-packed", (11, 31, 650)), ("ckks", (31, 650)))


def value_rows(key_bits: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    """The values' range proof of one update, made and checked, against its encryption.

    Interleaved per repetition: encrypt the update, then prove and verify its values
    (``he_fed/crypto/_value_range.py``) with the layout its scheme gives.
    """
    rng = np.random.default_rng(seed)
    out = []
    for name, lengths in VALUE_GRID:
        public = _scheme(name, key_bits).keygen().public
        scheme = public.scheme
        for d in lengths:
            x = rng.uniform(-1, 1, d)
            if name == "ckks":
                layout = _ckks_binding.value_layout(scheme, d)
            else:
                layout = scheme.value_layout(d)
            times: dict[str, list[float]] = {"encrypt": [], "prove": [], "verify": []}
            for repeat in range(repeats + 1):  # the first warms tables and generators
                t_enc, vector = timed(lambda k=public, x=x: k.encrypt(x, weight=7))
                binding = vector.binding()
                half = _binding.WIDTH
                if name == "ckks":
                    digits = _ckks_binding.value_digits(scheme, x, 7)
                    rho = vector._opening[2]
                else:
                    integers, rho = vector._opening
                    digits = scheme.value_digits(integers, 7)
                b, c = binding[:half], binding[half:]
                t_prove, proof = timed(
                    lambda lay=layout, y=digits, r=rho, b=b, c=c: _value_range.prove(
                        lay, y, 7, r, b, c, CONTEXT
                    )
                )
                t_verify, ok = timed(
                    lambda lay=layout, b=b, c=c, p=proof: _value_check.verify(lay, b, c, p, CONTEXT)
                )
                assert ok
                for phase, seconds in zip(times, (t_enc, t_prove, t_verify), strict=True):
                    times[phase] += [seconds] if repeat else []
            sizes = {"bits": _value_range.bit_count(layout), "bytes": len(proof)}
            medians = {k: statistics.median(v) for k, v in times.items()}
            out.append({"scheme": name, "d": d, **sizes, **_speeds(medians)})
    return out


def _speeds(med: dict[str, float]) -> dict[str, float]:
    """Encrypt, prove and verify medians in ms, and prove and verify over encrypt."""
    return {
        "encrypt_ms": med["encrypt"] * 1e3,
        "prove_ms": med["prove"] * 1e3,
        "verify_ms": med["verify"] * 1e3,
        "prove_over_encrypt": med["prove"] / med["encrypt"],
        "verify_over_encrypt": med["verify"] / med["encrypt"],
    }


def _ciphertexts(vector: Any) -> int:
    return len(vector.parts) if hasattr(vector, "parts") else len(vector.ciphertexts)


def markdown(result: dict[str, Any]) -> str:
    """The committed table, from a result dict."""
    env = result["environment"]
    lines = [
        "# Commitments of a Paillier or CKKS update: proof of knowledge and binding",
        "",
        f"{env['date']} · {env['cpu']} · Python {env['python']} · one core. Medians of "
        f"{result['repeats']} interleaved repetitions; ratios divide by the same "
        "repetition's encryption of the update. CKKS: aggregation-fast; the proof is of "
        "the binding's opening, and its blinding rides in extra slots of the update.",
        "",
        "| scheme | values | ciphertexts | encrypt ms | bind ÷ encrypt | prove ÷ encrypt "
        "| verify ÷ encrypt | check ÷ encrypt | proof + binding bytes | update bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['scheme']} | {r['d']:,} | {r['ciphertexts']:,} | {r['encrypt_ms']:.2f} | "
            f"{r['bind_over_encrypt']:.2f} | {r['prove_over_encrypt']:.2f} | "
            f"{r['verify_over_encrypt']:.2f} | {r['check_over_encrypt']:.2f} | "
            f"{r['proof_bytes'] + r['binding_bytes']} | {r['update_bytes']:,} |"
        )
    values = result.get("values")
    if values:
        lines += [
            "",
            "The values' range proof alone (every value within its weight times the clip; in "
            "the prove and verify columns above too):",
            "",
            "| scheme | values | bits | proof bytes | encrypt ms | prove ms | verify ms "
            "| prove ÷ encrypt | verify ÷ encrypt |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in values:
            lines.append(
                f"| {r['scheme']} | {r['d']:,} | {r['bits']:,} | {r['bytes']:,} | "
                f"{r['encrypt_ms']:.2f} | {r['prove_ms']:.1f} | {r['verify_ms']:.1f} | "
                f"{r['prove_over_encrypt']:.1f} | {r['verify_over_encrypt']:.1f} |"
            )
    pin = result.get("pin")
    if pin:
        lines += [
            "",
            f"Each client's weight is range-proven once, its *pin* (max_weight "
            f"{pin['max_weight']:,}, {pin['bits']} bit proofs, {pin['bytes']:,} bytes): "
            f"{pin['prove_ms']:.1f} ms to make, {pin['verify_ms']:.1f} ms to check once per "
            "process; every update links to it (in the prove and verify columns above).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "commitment_proof",
        "repeats": args.repeats,
        "environment": environment(),
        "rows": rows(args.key_bits, args.repeats, args.seed),
        "pin": pin_row(args.repeats),
        "values": value_rows(args.key_bits, args.repeats, args.seed),
    }
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
