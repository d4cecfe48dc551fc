"""The micro benchmark: per-element cost of each step, every scheme against the baselines."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from he_fed.bench.contenders import BASELINES, Contender, scheme_contenders
from he_fed.bench.measure import PeakMemory, median_spread, timed

__all__ = ["MicroGrid", "contender_key", "ratios", "row_label", "run_micro"]

_METRICS = ("encrypt", "serialize", "aggregate", "decrypt")


@dataclass(frozen=True)
class MicroGrid:
    """What the micro benchmark runs.

    Parameters
    ----------
    sizes : tuple of int
        Vector lengths ``d``.
    repeats : int
        Timed repetitions per cell (interleaved across contenders).
    clients : int
        Contributions added in the aggregation step.
    per_value_cap : int
        Per-value schemes (one ciphertext per element, so cost is linear in ``d``)
        are measured on at most this many elements and reported per element; the
        row records ``measured_d``. ``phe-naive`` gets a fifth of it.
    """

    sizes: tuple[int, ...]
    repeats: int
    clients: int
    per_value_cap: int


QUICK = MicroGrid(sizes=(10, 1000), repeats=3, clients=4, per_value_cap=100)
FULL = MicroGrid(sizes=(10, 100, 1000, 10_000, 100_000), repeats=5, clients=10, per_value_cap=1000)


def contender_key(row: dict[str, Any]) -> str:
    """Stable name of a row: the scheme, plus its preset where it has one."""
    preset = row.get("params", {}).get("preset")
    return f"{row['scheme']}/{preset}" if preset else str(row["scheme"])


def row_label(row: dict[str, Any]) -> str:
    """Display name, telling baselines (``plain`` is both) from schemes."""
    return f"{contender_key(row)} (baseline)" if row.get("baseline") else contender_key(row)


def _measured_d(contender: Contender, d: int, cap: int) -> int:
    if not contender.per_value:
        return d
    return min(d, max(1, cap // 5) if contender.label == "phe-naive" else cap)


def _tolerance(contender: Contender, clients: int) -> float:
    """Largest error a correct sum of ``clients`` contributions can show."""
    quantizer = getattr(getattr(contender, "scheme", None), "quantizer", None)
    if quantizer is not None:  # K quantization half-steps, doubled for safety
        return max(clients * float(quantizer.step), 1e-6)
    if contender.label == "tenseal-nvflare":
        return 1e-3
    return 1e-6


def run_micro(
    grid: MicroGrid,
    *,
    key_bits: int = 2048,
    allow_insecure: bool = False,
    schemes: tuple[str, ...] | None = None,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure every contender on every size, repetitions interleaved.

    Returns
    -------
    dict
        ``micro`` and ``baselines`` lists of rows (``scheme``, ``params``, ``d``,
        ``measured_d``, ``{encrypt,serialize,aggregate,decrypt}_us_per_element`` with
        ``*_spread``, ``bytes_per_element``, ``keygen_s``, ``peak_mib``,
        ``max_abs_error``), and ``ratios`` (see :func:`ratios`).
    """
    ours = [
        c
        for c in scheme_contenders(key_bits, allow_insecure=allow_insecure)
        if schemes is None or c.label in schemes
    ]
    baselines = [
        BASELINES["phe-naive"](key_bits),
        BASELINES["tenseal-nvflare"](),
        BASELINES["plain"](),
    ]
    contenders = ours + baselines
    keygen = {}
    for c in contenders:
        keygen[id(c)], _ = timed(c.keygen)
    rng = np.random.default_rng(seed)
    for c in contenders:  # warm-up, untimed
        x = rng.uniform(-1, 1, 4)
        c.decrypt(c.aggregate([c.serialize(c.encrypt(x))] * 2))
    scheme_rows: list[dict[str, Any]] = []
    baseline_rows: list[dict[str, Any]] = []
    for d in grid.sizes:
        cells = {}
        for c in contenders:
            md = _measured_d(c, d, grid.per_value_cap)
            xs = [rng.uniform(-1, 1, md) for _ in range(grid.clients)]
            blobs = [c.serialize(c.encrypt(x)) for x in xs]
            cells[id(c)] = (md, xs, blobs, {m: [] for m in _METRICS}, [0.0], [0.0])
        for rep in range(grid.repeats):
            for c in contenders:
                if progress:
                    progress(f"d={d} rep {rep + 1}/{grid.repeats} {c.label}")
                md, xs, blobs, samples, peak, error = cells[id(c)]
                with PeakMemory() as memory:
                    t_enc, encrypted = timed(lambda c=c, x=xs[0]: c.encrypt(x))
                    t_ser, _ = timed(lambda c=c, e=encrypted: c.serialize(e))
                    t_agg, total = timed(lambda c=c, b=blobs: c.aggregate(b))
                    t_dec, values = timed(lambda c=c, t=total: c.decrypt(t))
                peak[0] = max(peak[0], memory.peak_mib)
                error[0] = max(error[0], float(np.max(np.abs(values - np.sum(xs, axis=0)))))
                for metric, seconds in zip(_METRICS, (t_enc, t_ser, t_agg, t_dec), strict=False):
                    samples[metric].append(seconds)
        for c in contenders:
            md, xs, blobs, samples, peak, error = cells[id(c)]
            if error[0] > _tolerance(c, grid.clients):
                raise AssertionError(f"{c.label} decrypted a wrong sum (error {error[0]:.3g})")
            row: dict[str, Any] = {
                "scheme": c.label,
                "params": dict(c.params),
                "d": d,
                "measured_d": md,
                "bytes_per_element": len(blobs[0]) / md,
                "keygen_s": keygen[id(c)],
                "peak_mib": peak[0],
                "max_abs_error": error[0],
                "repeats": grid.repeats,
                "baseline": c.baseline,
            }
            for metric in _METRICS:
                per = md * (grid.clients if metric == "aggregate" else 1)
                median, spread = median_spread(samples[metric])
                row[f"{metric}_us_per_element"] = 1e6 * median / per
                row[f"{metric}_us_spread"] = 1e6 * spread / per
            (baseline_rows if c.baseline else scheme_rows).append(row)
    return {
        "micro": scheme_rows,
        "baselines": baseline_rows,
        "ratios": ratios(scheme_rows, baseline_rows),
        "grid": {
            "sizes": list(grid.sizes),
            "repeats": grid.repeats,
            "clients": grid.clients,
            "per_value_cap": grid.per_value_cap,
        },
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def ratios(micro: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> dict[str, Any]:
    """Each scheme against each baseline at each size: baseline cost ÷ scheme cost.

    Above 1 means the scheme is faster (or smaller) than the baseline.

    Returns
    -------
    dict
        ``ratios[scheme][baseline][str(d)] = {"encrypt": r, "aggregate": r,
        "decrypt": r, "bytes": r}``.
    """
    by_size = {(b["scheme"], b["d"]): b for b in baselines}
    out: dict[str, Any] = {}
    for row in micro:
        key = contender_key(row)
        for (name, d), base in by_size.items():
            if d != row["d"]:
                continue
            cell = {
                m: base[f"{m}_us_per_element"] / row[f"{m}_us_per_element"]
                for m in ("encrypt", "aggregate", "decrypt")
            }
            cell["bytes"] = base["bytes_per_element"] / row["bytes_per_element"]
            out.setdefault(key, {}).setdefault(name, {})[str(d)] = cell
    return out
