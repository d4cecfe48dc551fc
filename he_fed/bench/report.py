"""Writing benchmark results: JSON, CSV, markdown tables and plots."""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from he_fed.bench.micro import contender_key, row_label
from he_fed.exceptions import ConfigurationError

__all__ = [
    "headline_markdown",
    "require_matplotlib",
    "threshold_markdown",
    "write_csv",
    "write_json",
    "write_outputs",
    "write_plots",
]

_MICRO_COLUMNS = (
    "encrypt_us_per_element",
    "serialize_us_per_element",
    "aggregate_us_per_element",
    "decrypt_us_per_element",
    "bytes_per_element",
)


def write_json(result: dict[str, Any], path: Path) -> None:
    """The whole result as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def write_outputs(
    result: dict[str, Any], text: str, json_path: Path | None, markdown_path: Path | None
) -> None:
    """What a script in ``benchmarks/`` writes: its result as JSON, its table as markdown."""
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(text)


def _flat(row: dict[str, Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind}
    for key, value in row.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                out[f"{key}.{sub}"] = inner
        else:
            out[key] = value
    return out


def write_csv(result: dict[str, Any], path: Path) -> None:
    """One row per micro, baseline and macro measurement (union of columns)."""
    rows = [_flat(r, "micro") for r in result.get("micro", [])]
    rows += [_flat(r, "baseline") for r in result.get("baselines", [])]
    rows += [_flat(r, "macro") for r in result.get("macro", [])]
    rows += [_flat(r, "threshold") for r in result.get("threshold", {}).get("rows", [])]
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _largest_common_size(result: dict[str, Any]) -> int:
    sizes = sorted({r["d"] for r in result["micro"]})
    return sizes[-1] if sizes[-1] <= 10_000 else max(s for s in sizes if s <= 10_000)


def headline_markdown(
    result: dict[str, Any], *, macro_filter: Callable[[dict[str, Any]], bool] | None = None
) -> str:
    """Per-element costs and ratios at one size, then the macro runs (all, or a selection)."""
    d = _largest_common_size(result)
    lines = [
        f"Micro, d = {d:,} values per update, µs per value (ratios: baseline ÷ he-fed, "
        "measured in the same run; above 1 means he-fed is faster or smaller):",
        "",
        "| scheme | encrypt | aggregate | decrypt | bytes | × phe-naive (enc / dec / bytes) "
        "| × tenseal-nvflare (enc / dec / bytes) |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for row in [r for r in result["micro"] if r["d"] == d] + [
        r for r in result["baselines"] if r["d"] == d
    ]:
        key = contender_key(row)
        cells = [
            f"{row['encrypt_us_per_element']:.3g}",
            f"{row['aggregate_us_per_element']:.3g}",
            f"{row['decrypt_us_per_element']:.3g}",
            f"{row['bytes_per_element']:.3g}",
        ]
        ratio_cells = []
        for base in ("phe-naive", "tenseal-nvflare"):
            r = None if row.get("baseline") else result["ratios"].get(key, {}).get(base, {})
            r = r.get(str(d)) if r else None
            ratio_cells.append(
                f"{r['encrypt']:.3g} / {r['decrypt']:.3g} / {r['bytes']:.3g}" if r else "—"
            )
        lines.append(f"| {row_label(row)} | " + " | ".join(cells + ratio_cells) + " |")
    macro = [r for r in result.get("macro", []) if macro_filter is None or macro_filter(r)]
    if macro:
        lines += [
            "",
            "Macro, whole in-process runs: seconds per round, overhead against plain, bytes up "
            "per client per round, and the error of `he-fed estimate`'s prediction. Rows "
            "marked *estimated* were over the run budget and were predicted, not run:",
            "",
            "| scheme | clients | features | s / round | × plain | bytes up | estimate error |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in macro:
            if not r.get("measured"):
                lines.append(
                    f"| {r['scheme']} | {r['clients']} | {r['features']:,} | "
                    f"*estimated* {r['estimate_s_per_round']:.3g} | | "
                    f"{r['estimate_bytes_up']:,} | |"
                )
                continue
            overhead = r.get("overhead_vs_plain", 1.0)
            lines.append(
                f"| {r['scheme']} | {r['clients']} | {r['features']:,} | "
                f"{r['time_per_round_s']:.3g} | {overhead:.3g} | {r['bytes_up']:,} | "
                f"{100 * r['estimate_error']:+.0f}% |"
            )
    if "threshold" in result:
        lines += ["", *threshold_markdown(result["threshold"])]
    return "\n".join(lines)


def threshold_markdown(section: dict[str, Any]) -> list[str]:
    """The threshold rows: each step per ciphertext and per value, ÷ one key holder's."""
    kg = section["keygen"]
    lines = [
        f"Threshold decryption, {section['key_bits']}-bit packed Paillier "
        f"({section['values_per_ciphertext']} values per ciphertext), against one key "
        "holder's CRT decryption in the same run (× = step ÷ that decryption). A releasing "
        "share holder computes its partial, verifies t − 1 others' and combines:",
        "",
        "| t of n | quorum | step | ms / ciphertext | µs / value | × one key holder |",
        "|---|---:|---|---:|---:|---:|",
    ]
    names = (
        ("decrypt", "one key holder decrypts (baseline)"),
        ("partial", "partial decryption + proof"),
        ("verify", "verify one partial"),
        ("combine", "combine t partials"),
        ("holder", "a releasing holder, in all"),
    )
    for r in section["rows"]:
        for step, name in names:
            ratio = "1" if step == "decrypt" else f"{r['over_decrypt'][step]:.3g}"
            lines.append(
                f"| {r['t']} of {r['n']} | {r['quorum']} | {name} | "
                f"{r[f'{step}_ms_per_ciphertext']:.3g} | {r[f'{step}_us_per_value']:.3g} | "
                f"{ratio} |"
            )
    lines += [
        "",
        f"Key ceremony ({kg['t']}-of-{kg['n']}, two safe primes): {kg['dealer_s']:.3g} s, "
        f"{kg['dealer_over_single']:.3g} × one key's generation ({kg['single_s']:.3g} s).",
    ]
    return lines


def require_matplotlib() -> None:
    """Raise now, not after a benchmark, if :func:`write_plots` could not run.

    Raises
    ------
    ConfigurationError
        If matplotlib is not installed (``pip install "he-fed[bench]"``).
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigurationError('plots need matplotlib: pip install "he-fed[bench]"')


def write_plots(result: dict[str, Any], directory: Path) -> list[Path]:
    """PNG plots: time and bytes against d (log-log), overhead against K, accuracy cost.

    Raises
    ------
    ConfigurationError
        If matplotlib is not installed (``pip install "he-fed[bench]"``).
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    rows = result["micro"] + result["baselines"]
    keys = sorted({row_label(r) for r in rows})
    written = []

    def series(key: str, column: str) -> tuple[list[int], list[float]]:
        points = sorted((r["d"], r[column]) for r in rows if row_label(r) == key)
        return [p[0] for p in points], [p[1] for p in points]

    for column, name, ylabel in (
        ("encrypt_us_per_element", "time_vs_d.png", "client time per update (s)"),
        ("bytes_per_element", "bytes_per_element.png", "bytes per value"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key in keys:
            ds, values = series(key, column)
            if column == "encrypt_us_per_element":
                values = [v * d / 1e6 for v, d in zip(values, ds, strict=False)]
            ax.plot(ds, values, marker="o", label=key)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("values per update (d)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(directory / name, dpi=110)
        plt.close(fig)
        written.append(directory / name)
    macro = [r for r in result.get("macro", []) if r.get("measured") and "overhead_vs_plain" in r]
    if macro:
        for column, name, ylabel in (
            ("overhead_vs_plain", "overhead_vs_clients.png", "time per round ÷ plain"),
            ("metric_diff_vs_plain", "accuracy_difference.png", "accuracy − plain accuracy"),
        ):
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for scheme in sorted({r["scheme"] for r in macro}):
                for features in sorted({r["features"] for r in macro}):
                    points = sorted(
                        (r["clients"], r[column])
                        for r in macro
                        if r["scheme"] == scheme and r["features"] == features
                    )
                    if points:
                        ax.plot(
                            [p[0] for p in points],
                            [p[1] for p in points],
                            marker="o",
                            label=f"{scheme}, d={features:,}",
                        )
            ax.set_xscale("log")
            if column == "overhead_vs_plain":
                ax.set_yscale("log")
            ax.set_xlabel("clients (K)")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(directory / name, dpi=110)
            plt.close(fig)
            written.append(directory / name)
    return written
