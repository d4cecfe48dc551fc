"""Copy the headline tables of the committed benchmark results into README.md.

README's figures must come from committed results files only. Each table sits
between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers and is
rebuilt here from ``benchmarks/results/``; ``tests/test_readme.py`` fails when
README and the results disagree.

Run::

    python benchmarks/update_readme.py
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _paillier_speed(data: dict[str, Any]) -> str:
    lines = [
        "| scheme | encrypt µs | aggregate µs | decrypt µs | bytes | encrypt × | aggregate × "
        "| decrypt × | bytes × |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["speed"]["2048"]:
        ratio = r["ratio_vs_phe"]
        lines.append(
            f"| {r['scheme']} | {r['encrypt_us_per_element']:.2f} | "
            f"{r['aggregate_us_per_element']:.3f} | {r['decrypt_us_per_element']:.2f} | "
            f"{r['bytes_per_element']:.2f} | {ratio['encrypt']:.0f} | {ratio['aggregate']:.0f} | "
            f"{ratio['decrypt']:.0f} | {ratio['bytes']:.1f} |"
        )
    w = data["workers"]
    lines += [
        "",
        f"Two worker processes encrypt a {w['ciphertexts']}-ciphertext vector "
        f"{w['speedup']:.2f}× faster than one ({w['one_worker_s']:.2f} s against "
        f"{w['two_workers_s']:.2f} s).",
    ]
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _ckks_speed(data: dict[str, Any]) -> str:
    lines = [
        "| contender | encrypt µs | add µs | decrypt µs | bytes | client material "
        "| aggregator material | max error, sum of 100 | encrypt × | decrypt × "
        "| decrypt to array × | bytes × |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["speed"]:
        ratio = r["ratio_vs_baseline"]
        lines.append(
            f"| {r['scheme']} | {r['encrypt_us_per_element']:.3f} | "
            f"{r['add_us_per_element']:.4f} | {r['decrypt_us_per_element']:.3f} | "
            f"{r['bytes_per_element']:.1f} | {_size(r['client_material_bytes'])} | "
            f"{_size(r['aggregator_material_bytes'])} | {r['errors']['100']['max']:.2g} | "
            f"{ratio['encrypt']:.2f} | {ratio['decrypt']:.2f} | "
            f"{ratio['decrypt_to_array']:.2f} | {ratio['bytes']:.2f} |"
        )
    names = {
        "bytes": "bytes per element, × smaller",
        "encrypt": "encrypt, × faster",
        "decrypt": "decrypt (raw side: TenSEAL's lists), × faster",
        "aggregator_material": "aggregator material, × smaller than a Galois-key context",
        "max_error_100": "max abs error of a 100-client sum",
    }
    lines += [
        "",
        "Issue 4's targets, aggregation-fast against tenseal-nvflare in the same run:",
        "",
        "| target | goal | measured | met |",
        "|---|---:|---:|:---:|",
    ]
    for key, t in data["targets"].items():
        error = key == "max_error_100"
        goal = f"≤ {t['target']:g}" if error else f"≥ {t['target']:g}"
        value = f"{t['measured']:.2g}" if error else f"{t['measured']:,.2f}"
        lines.append(f"| {names[key]} | {goal} | {value} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)


def _ckks_large(data: dict[str, Any]) -> str:
    def row(role: str, r: dict[str, Any]) -> str:
        return (
            f"| {role} | {r['seconds']:.2f} | {r['peak_above_baseline_mib']:.0f} | "
            f"{r['peak_rss_mib']:.0f} | {r['tracemalloc_peak_mib']:.1f} |"
        )

    clients = data["clients"]
    worst = max(clients, key=lambda r: r["peak_above_baseline_mib"])
    h = data["keyholder"]
    return "\n".join(
        [
            "| role | seconds | peak RSS above start of work, MiB | peak RSS, MiB "
            "| Python heap peak, MiB |",
            "|---|---:|---:|---:|---:|",
            row("client, encrypt_to (largest of 10)", worst),
            row("client, encrypt + write_to", data["client_two_steps"]["write_to"]),
            row("client, encrypt + to_bytes", data["client_two_steps"]["to_bytes"]),
            row(f"aggregator (sums {len(clients)} streams)", data["aggregator"]),
            row("key holder (reads, decrypts)", h),
            "",
            f"{data['size']:,} values per update, {data['ciphertexts']} ciphertexts, "
            f"{clients[0]['bytes'] / 2**20:.1f} MiB per update. Decrypted total weight "
            f"{h['total_weight']} (expected {h['expected_weight']}); the total is "
            f"{'exactly' if h['exact'] else 'NOT'} the weighted sum on the 2^-{h['grid_bits']} "
            f"grid, {h['max_error']:.2g} at most from the real sum (bound {h['bound']:.2g}).",
        ]
    )


def _scale(data: dict[str, Any]) -> str:
    s = data["speedup"]
    c = s["config"]
    inp, proc = s["inprocess"], s["processes"]
    lines = [
        f"`processes` against `inprocess`, {c['clients']} clients, per-value "
        f"{c['key_bits']}-bit Paillier, {c['features']} features (encryption dominates), "
        f"{s['workers']} workers, medians of {s['repeats']} interleaved runs:",
        "",
        "| | inprocess | processes | speed-up |",
        "|---|---:|---:|---:|",
        f"| training round, wall s | {inp['round_s']:.2f} | {proc['round_s']:.2f} | "
        f"{s['ratio_round']:.2f}× |",
        f"| whole run without start-up, s | {inp['run_s']:.2f} | {proc['run_s']:.2f} | "
        f"{s['ratio_run']:.2f}× |",
        f"| whole run with start-up, s | {inp['run_with_startup_s']:.2f} | "
        f"{proc['run_with_startup_s']:.2f} | {s['ratio_run_with_startup']:.2f}× |",
        f"| worker start-up (spawn and imports), s | – | {proc['startup_s']:.2f} | |",
        "",
        f"Identical coefficients: {'yes' if s['identical_coefficients'] else 'NO'}. "
        "Time per round and peak memory (summed PSS of the whole process tree) for packed "
        "2048-bit Paillier, logistic regression on 20 synthetic features:",
        "",
        "| clients | executor | s per round | vs inprocess | start-up s | peak memory MiB "
        "| same coefficients |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    base = {r["clients"]: r["round_s"] for r in data["macro"] if r["executor"] == "inprocess"}
    for r in data["macro"]:
        lines.append(
            f"| {r['clients']} | {r['executor']} | {r['round_s']:.2f} | "
            f"{base[r['clients']] / r['round_s']:.2f}× | {r['startup_s']:.1f} | "
            f"{r['peak_pss_mib']:.0f} | "
            f"{'yes' if r['same_coefficients_as_every_executor'] else 'NO'} |"
        )
    return "\n".join(lines)


def _bench(data: dict[str, Any]) -> str:
    from he_fed.bench.report import headline_markdown

    env = data["environment"]
    head = (
        f"`he-fed bench --{data['mode']}`, {env['date']}, {env['cpu']} "
        f"({env['cpu_count']} cores), Python {env['python']}; medians of "
        f"{data['grid']['repeats']} interleaved repetitions, {data['grid']['clients']} "
        "clients in the aggregation step."
    )
    measured = [r for r in data.get("macro", []) if r.get("measured")]
    errors = [abs(r["estimate_error"]) for r in measured if r["scheme"] != "plain"]
    tail = ""
    if errors:
        tail = (
            f"\n\n`he-fed estimate` against these {len(errors)} measured runs (plain aside): "
            f"largest error {100 * max(errors):.0f}%, "
            f"median {100 * sorted(errors)[len(errors) // 2]:.0f}%. "
            f"{sum(1 for r in data['macro'] if not r.get('measured'))} larger cells were "
            "estimated only (over the run budget); `benchmarks/results/bench.md` lists every cell."
        )

    def shown(row: dict[str, Any]) -> bool:  # README: 10 clients, and 1,000 features
        return row["clients"] == 10 or row["features"] == 1000

    return head + "\n\n" + headline_markdown(data, macro_filter=shown) + tail


#: Block name -> (results file, renderer).
BLOCKS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "paillier_speed": ("paillier_speed.json", _paillier_speed),
    "ckks_speed": ("ckks_speed.json", _ckks_speed),
    "ckks_large": ("ckks_large.json", _ckks_large),
    "scale": ("scale.json", _scale),
    "bench": ("bench.json", _bench),
}


def render(readme: str) -> str:
    """README text with every results block rebuilt from the committed files."""
    for name, (filename, renderer) in BLOCKS.items():
        data = json.loads((RESULTS / filename).read_text(encoding="utf-8"))
        pattern = re.compile(rf"(<!-- results:{name} -->).*?(<!-- /results:{name} -->)", re.DOTALL)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no results:{name} block")
        table = renderer(data)
        readme = pattern.sub(lambda m, t=table: f"{m.group(1)}\n{t}\n{m.group(2)}", readme)
    return readme


def main() -> None:
    path = ROOT / "README.md"
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
