"""A million-value CKKS update: encrypted, streamed, summed over 10 clients, decrypted.

Each role runs in its own process, so the memory figures are that role's alone:

* 10 ``client`` processes load the public key, draw a 1,000,000-value update in
  [-1, 1] and encrypt it, with their sample count as weight, straight into a file
  (``PublicKey.encrypt_to``: one ciphertext in memory at a time);
* two more client processes do the same in two steps, to show what streaming
  saves: ``encrypt`` then ``write_to`` (all ciphertexts in memory, streamed out),
  and ``encrypt`` then ``to_bytes`` (all ciphertexts, plus one buffer of them);
* the ``aggregator`` process loads the parameters-only key, reads the 10 streams
  one after the other (``read_vector_from``), adds them and streams the sum;
* the ``keyholder`` process reads the sum, decrypts it and compares it with the
  weighted sum of the values on the plan's grid (which it must equal exactly) and
  with the real weighted sum, both recomputed from the clients' seeds.

Memory is measured three ways, because TenSEAL allocates outside Python's heap:
the process's peak resident set (``VmHWM`` in ``/proc/self/status``), its
resident set just before the role's work starts (after imports, key loading and,
for clients, drawing the update), and ``tracemalloc``'s peak (Python objects only,
which misses every ciphertext).

Run::

    python benchmarks/ckks_large.py --json benchmarks/results/ckks_large.json \\
        --markdown benchmarks/results/ckks_large.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from he_fed.bench.measure import process_memory_mib, reset_peak_memory, timed
from he_fed.bench.report import write_outputs
from he_fed.crypto import CKKS, load_public
from he_fed.experiment import environment

SIZE = 1_000_000
CLIENTS = 10
PLAN: dict[str, Any] = {"clip": 1.0, "max_clients": CLIENTS, "max_weight": 16}


def _status(field: str) -> float:
    """A ``/proc/self/status`` memory field, in MiB (this benchmark needs Linux)."""
    mib = process_memory_mib(field)
    if mib is None:
        raise SystemExit(f"no {field} in /proc/self/status: this benchmark needs Linux")
    return mib


def _update(index: int) -> tuple[np.ndarray, int]:
    """Client ``index``'s update and weight (re-drawn by the key holder to check)."""
    rng = np.random.default_rng(1000 + index)
    return rng.uniform(-1, 1, SIZE), index + 1


def _measure(work: Any) -> dict[str, Any]:
    baseline = _status("VmRSS")
    tracemalloc.start()
    seconds, extra = timed(work)
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = _status("VmHWM")
    return {
        "seconds": seconds,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak,
        "peak_above_baseline_mib": peak - baseline,
        "tracemalloc_peak_mib": python_peak / 2**20,
        **extra,
    }


def client(workdir: Path, index: int, how: str) -> dict[str, Any]:
    """Encrypt one update into ``client{index}``: ``encrypt_to``, ``write_to`` or ``to_bytes``."""
    key: Any = load_public((workdir / "public.bin").read_bytes())
    x, weight = _update(index)

    def work() -> dict[str, Any]:
        with (workdir / f"client{index}").open("wb") as out:
            if how == "encrypt_to":
                return {"bytes": key.encrypt_to(out, x, weight=weight)}
            vector = key.encrypt(x, weight=weight)
            written = vector.write_to(out) if how == "write_to" else out.write(vector.to_bytes())
            return {"bytes": written}

    return _measure(work)


def aggregator(workdir: Path) -> dict[str, Any]:
    """Sum the clients' streams one at a time and stream the total."""
    key = load_public((workdir / "aggregation.bin").read_bytes())

    def work() -> dict[str, Any]:
        total = None
        for index in range(CLIENTS):
            with (workdir / f"client{index}").open("rb") as source:
                vector = key.read_vector_from(source, size=SIZE)
            total = vector if total is None else total + vector
        assert total is not None
        with (workdir / "total").open("wb") as out:
            written = total.write_to(out)
        return {"bytes": written}

    return _measure(work)


def keyholder(workdir: Path, keys: Any) -> dict[str, Any]:
    """Decrypt the streamed sum and compare it with the exact weighted sum."""
    # Runs in the parent (it holds the secret key): reset its peak to measure this role.
    reset_peak_memory()
    result: dict[str, Any] = {}

    def work() -> dict[str, Any]:
        with (workdir / "total").open("rb") as source:
            total = keys.public.read_vector_from(source, size=SIZE)
        result["sum"] = keys.secret.decrypt_weighted(total)
        return {}

    measured = _measure(work)
    real = np.zeros(SIZE)  # the weighted sum of the clients' values
    grid = np.zeros(SIZE)  # the weighted sum of what they encoded: the release must equal it
    quantizer = keys.public.scheme.quantizer
    for index in range(CLIENTS):
        x, weight = _update(index)
        real += weight * x
        grid += weight * quantizer.dequantize(quantizer.quantize(x))
    decrypted = result["sum"]
    budget = keys.public.scheme.error_budget
    error = np.abs(decrypted.total - real)
    weights = [i + 1 for i in range(CLIENTS)]
    measured.update(
        total_weight=decrypted.weight,
        expected_weight=sum(weights),
        exact=bool(np.array_equal(decrypted.total, grid)),
        grid_bits=keys.public.scheme.grid_bits,
        max_error=float(error.max()),
        rms_error=float(np.sqrt(np.mean(error**2))),
        predicted_rms=quantizer.step * float(np.sqrt(sum(w * w for w in weights) / 12)),
        bound=budget.bound(sum(weights)),
    )
    return measured


def _subprocess(role: str, workdir: Path, index: int = 0) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--role",
            role,
            "--workdir",
            str(workdir),
            "--index",
            str(index),
            "--size",
            str(SIZE),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> dict[str, Any]:
    """The whole pipeline; each role's figures."""
    scheme = CKKS(**PLAN)
    keys = scheme.keygen()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "public.bin").write_bytes(keys.public.to_bytes())
        (workdir / "aggregation.bin").write_bytes(keys.public.aggregation_key().to_bytes())
        two_steps = {how: _subprocess(how, workdir, 0) for how in ("to_bytes", "write_to")}
        clients = [_subprocess("encrypt_to", workdir, k) for k in range(CLIENTS)]
        aggregate = _subprocess("aggregator", workdir)
        holder = keyholder(workdir, keys)
    return {
        "preset": "aggregation-fast",
        "plan": PLAN,
        "size": SIZE,
        "ciphertexts": -(-(SIZE + 1) // scheme.values_per_ciphertext),
        "clients": clients,
        "client_two_steps": two_steps,
        "aggregator": aggregate,
        "keyholder": holder,
        "correct": holder["total_weight"] == holder["expected_weight"]
        and holder["exact"]
        and holder["max_error"] <= holder["bound"],
    }


#: Columns of the memory table: (heading, figure, format). README shows the brief set.
_COLUMNS = (
    ("seconds", "seconds", "{:.2f}"),
    ("RSS before work, MiB", "baseline_rss_mib", "{:.0f}"),
    ("peak RSS, MiB", "peak_rss_mib", "{:.0f}"),
    ("peak above before, MiB", "peak_above_baseline_mib", "{:.0f}"),
    ("Python heap peak, MiB", "tracemalloc_peak_mib", "{:.1f}"),
)
_BRIEF_COLUMNS = (
    ("seconds", "seconds", "{:.2f}"),
    ("peak RSS above start of work, MiB", "peak_above_baseline_mib", "{:.0f}"),
    ("peak RSS, MiB", "peak_rss_mib", "{:.0f}"),
    ("Python heap peak, MiB", "tracemalloc_peak_mib", "{:.1f}"),
)


def headline(result: dict[str, Any], *, brief: bool = False) -> list[str]:
    """The memory table, and what the key holder decrypted.

    ``brief`` is README's version: no RSS before work, and no RMS error.
    """
    clients = result["clients"]
    h = result["keyholder"]
    roles = [
        (
            "client, encrypt_to (largest of 10)",
            max(clients, key=lambda r: r["peak_above_baseline_mib"]),
        ),
        ("client, encrypt + write_to", result["client_two_steps"]["write_to"]),
        ("client, encrypt + to_bytes", result["client_two_steps"]["to_bytes"]),
        (f"aggregator (sums {len(clients)} streams)", result["aggregator"]),
        ("key holder (reads, decrypts)", h),
    ]
    columns = _BRIEF_COLUMNS if brief else _COLUMNS
    lines = [
        "| role | " + " | ".join(heading for heading, _, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for role, r in roles:
        cells = [form.format(r[figure]) for _, figure, form in columns]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    error = f"largest error {h['max_error']:.2g}"
    if brief:
        error += f" (bound {h['bound']:.2g})"
    else:
        error += (
            f", RMS {h['rms_error']:.2g} (predicted {h['predicted_rms']:.2g}, "
            f"bound {h['bound']:.2g})"
        )
    return [
        *lines,
        "",
        f"{result['size']:,} values per update, {result['ciphertexts']} ciphertexts, "
        f"{clients[0]['bytes'] / 2**20:.1f} MiB per {'update' if brief else 'streamed update'}. "
        f"Decrypted total weight {h['total_weight']} (expected {h['expected_weight']}); the "
        f"total is {'exactly' if h['exact'] else 'NOT'} the weighted sum of the values on the "
        f"2^-{h['grid_bits']} grid, and errs from the real sum by at most "
        f"{h['max_error']:.2g}, RMS {h['rms_error']:.2g} (the grid's rounding: predicted "
        f"{h['predicted_rms']:.2g}, bound {h['bound']:.2g}).",
    ]


def markdown(result: dict[str, Any]) -> str:
    """The committed table, from a result dict."""
    env = result["environment"]
    return (
        "\n".join(
            [
                "# A million-value CKKS update across 10 clients",
                "",
                f"{env['date']} · {env['cpu']} · Python {env['python']} · TenSEAL "
                f"{env['packages']['tenseal']} · preset {result['preset']}, plan {result['plan']}. "
                "Each role is its own process; RSS is VmHWM/VmRSS from /proc/self/status "
                "(TenSEAL's memory included), the Python heap peak is tracemalloc's (TenSEAL's "
                "ciphertexts are invisible to it).",
                "",
                *headline(result),
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    global SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["encrypt_to", "write_to", "to_bytes", "aggregator"])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--size", type=int, default=SIZE, help="values per update")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    SIZE = args.size
    if args.role is not None:
        if args.role == "aggregator":
            figures = aggregator(args.workdir)
        else:
            figures = client(args.workdir, args.index, args.role)
        print(json.dumps(figures))
        return None
    result: dict[str, Any] = {"benchmark": "ckks_large", "environment": environment(), **run()}
    text = markdown(result)
    print(text)
    write_outputs(result, text, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
