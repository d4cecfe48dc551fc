"""Scale: the processes executor's speed-up, and 10 to 1,000 clients on every executor.

Three measurements, each of them the real ``run_experiment`` path:

* **Speed-up.** An encryption-dominated run (per-value 2048-bit Paillier, 50
  features, 40 clients) with the ``inprocess`` and ``processes`` executors,
  interleaved repetition by repetition in one process. Reported: the median
  training-round wall time of each, their ratio, the whole run with and
  without the worker start-up, and whether the coefficients are identical.
* **Grid.** The same comparison over rows per client × features × scheme, 10
  clients (training rows per client; a quarter more are held out for the test
  set), one local epoch per round, 2048-bit keys. Reported per cell: the median
  training-round wall time of each executor, their ratio (inprocess over
  processes, so above 1 means the pool is faster), and whether the coefficients
  are identical. Clients stay resident in the workers, so a data-heavy cell
  (500 rows × 2,000 features) ships each client's data once, not every round.
* **Macro rows.** K in {10, 100, 1000} clients, packed 2048-bit Paillier (the
  default scheme), logistic regression on 20 synthetic features, each executor
  (``inprocess``, ``processes``, ``flower`` on Flower's simulation engine). Each
  row runs in a fresh Python process while this one samples the memory of its
  whole process tree (workers, Ray's processes) every 0.25 s. Reported: median
  training-round wall time, executor start-up, peak memory (the sum of the
  processes' proportional set sizes, PSS, so shared pages count once), and
  whether every executor ended with the same coefficients.
* **Large rows.** The macro rows' federation at K = 10,000 (``--large-clients``),
  interleaved executor by executor, with fewer training rounds
  (:data:`LARGE_ROUNDS`, after the same two standardisation rounds), on
  ``inprocess`` and ``processes``: Flower's simulation engine is quadratic in the
  clients (``flower_profile.py``), so its rows are asked for apart, at fewer
  clients (``--large-clients 1000 3000 --large-executors inprocess flower``).
  Each row also records the machine's load
  average while it ran (the mean of the 1-minute figure, sampled with the memory),
  since the figures come from a shared machine.

Run::

    python benchmarks/scale.py --json benchmarks/results/scale.json \\
        --markdown benchmarks/results/scale.md

or the 10,000-client rows alone, kept beside the other parts of the committed file::

    python benchmarks/scale.py --only large --merge benchmarks/results/scale.json \\
        --json benchmarks/results/scale.json --markdown benchmarks/results/scale.md

or one part only, e.g. the data-heavy cell of the grid::

    python benchmarks/scale.py --only grid --grid-rows 500 --grid-features 2000 \\
        --grid-schemes paillier-packed --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from he_fed import ExperimentConfig, run_experiment
from he_fed.bench.report import write_outputs
from he_fed.experiment import environment

SPEEDUP = dict(
    dataset="synthetic-classification",
    samples=4000,
    features=50,
    clients=40,
    rounds=3,
    local_epochs=5,
    scheme="paillier",
    key_bits=2048,
    seed=0,
)
MACRO = dict(
    dataset="synthetic-classification",
    features=20,
    rounds=3,
    local_epochs=5,
    scheme="paillier-packed",
    key_bits=2048,
    seed=0,
)
GRID = dict(
    dataset="synthetic-classification",
    clients=10,
    rounds=3,
    local_epochs=1,
    key_bits=2048,
    seed=0,
)
GRID_ROWS = (50, 500)
GRID_FEATURES = (20, 2000)
GRID_SCHEMES = ("paillier-packed", "ckks")
#: Share of the samples held out for the test set (run_experiment's split).
_TEST_SHARE = 0.25
SAMPLES_PER_CLIENT = 40
CLIENT_COUNTS = (10, 100, 1000)
EXECUTORS = ("inprocess", "processes", "flower")
#: The large rows: clients, and training rounds (after the two standardisation rounds).
LARGE_CLIENTS = (10000,)
LARGE_ROUNDS = 1
#: Flower's simulation engine sweeps its queue in time quadratic in the clients
#: (``flower_profile.py``), so the large rows leave it out unless asked.
LARGE_EXECUTORS = ("inprocess", "processes")
_SAMPLE_S = 0.25


def _coef_digest(result: dict[str, Any]) -> str:
    final = result["final"]
    text = json.dumps([final["coef"], final["intercept"]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    rounds = [r["wall_s"] for r in result["rounds"]]
    return {
        "round_s": statistics.median(rounds),
        "rounds_s": rounds,
        "setup_rounds_s": [r["wall_s"] for r in result["setup"]["statistics"]],
        "startup_s": result["totals"]["startup_s"] or 0.0,
        "keygen_s": result["totals"]["keygen_s"],
        "total_s": result["totals"]["total_s"],
        "metric": result["final"]["metric"],
        "coef_digest": _coef_digest(result),
    }


def speedup(repeats: int) -> dict[str, Any]:
    """Inprocess against processes on an encryption-dominated run, interleaved."""
    runs: dict[str, list[dict[str, Any]]] = {"inprocess": [], "processes": []}
    for _ in range(repeats):
        for executor in runs:
            config = ExperimentConfig(**SPEEDUP, executor=executor)  # type: ignore[arg-type]
            runs[executor].append(_summary(run_experiment(config).to_dict()))
    out: dict[str, Any] = {"config": SPEEDUP, "repeats": repeats, "workers": os.cpu_count()}
    for executor, samples in runs.items():
        out[executor] = {
            "round_s": statistics.median(s["round_s"] for s in samples),
            "all_rounds_s": [r for s in samples for r in s["rounds_s"]],
            "run_s": statistics.median(s["total_s"] - s["startup_s"] for s in samples),
            "run_with_startup_s": statistics.median(s["total_s"] for s in samples),
            "startup_s": statistics.median(s["startup_s"] for s in samples),
            "setup_rounds_s": samples[0]["setup_rounds_s"],
            "coef_digests": sorted({s["coef_digest"] for s in samples}),
        }
    inp, proc = out["inprocess"], out["processes"]
    out["ratio_round"] = inp["round_s"] / proc["round_s"]
    out["ratio_run"] = inp["run_s"] / proc["run_s"]
    out["ratio_run_with_startup"] = inp["run_with_startup_s"] / proc["run_with_startup_s"]
    out["identical_coefficients"] = (
        inp["coef_digests"] == proc["coef_digests"] and len(inp["coef_digests"]) == 1
    )
    return out


def grid_cell(rows: int, features: int, scheme: str, repeats: int) -> dict[str, Any]:
    """Inprocess against processes for one (rows per client, features, scheme), interleaved."""
    samples = math.ceil(rows * GRID["clients"] / (1 - _TEST_SHARE))
    base = {**GRID, "samples": samples, "features": features, "scheme": scheme}
    runs: dict[str, list[dict[str, Any]]] = {"inprocess": [], "processes": []}
    for _ in range(repeats):
        for executor in runs:
            config = ExperimentConfig(**base, executor=executor)  # type: ignore[arg-type]
            runs[executor].append(_summary(run_experiment(config).to_dict()))
    cell: dict[str, Any] = {"rows": rows, "features": features, "scheme": scheme}
    for executor, got in runs.items():
        cell[executor] = {
            "round_s": statistics.median(r for s in got for r in s["rounds_s"]),
            "all_rounds_s": [r for s in got for r in s["rounds_s"]],
            "startup_s": statistics.median(s["startup_s"] for s in got),
            "coef_digests": sorted({s["coef_digest"] for s in got}),
        }
    inp, proc = cell["inprocess"], cell["processes"]
    cell["ratio_round"] = inp["round_s"] / proc["round_s"]
    cell["identical_coefficients"] = (
        inp["coef_digests"] == proc["coef_digests"] and len(inp["coef_digests"]) == 1
    )
    print(json.dumps(cell), flush=True)
    return cell


def grid(
    rows: tuple[int, ...], features: tuple[int, ...], schemes: tuple[str, ...], repeats: int
) -> list[dict[str, Any]]:
    """Every grid cell: scheme outer, then rows, then features."""
    return [grid_cell(r, f, scheme, repeats) for scheme in schemes for r in rows for f in features]


def _grid_table(cells: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scheme | rows per client | features | inprocess s per round | "
        "processes s per round | speed-up | same coefficients |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c['scheme']} | {c['rows']} | {c['features']} | "
            f"{c['inprocess']['round_s']:.2f} | {c['processes']['round_s']:.2f} | "
            f"{c['ratio_round']:.2f}× | {'yes' if c['identical_coefficients'] else 'NO'} |"
        )
    return lines


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _memory_kib(pids: list[int]) -> tuple[int, int]:
    """Summed PSS and RSS of ``pids`` in KiB (processes that vanished count zero)."""
    pss = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            continue
    return pss, rss


def macro_row(
    clients: int, executor: str, workdir: Path, rounds: int = MACRO["rounds"]
) -> dict[str, Any]:
    """One (K, executor) run in a fresh process, with its tree's peak memory.

    ``rounds`` training rounds follow the two standardisation rounds. The row also
    keeps the machine's 1-minute load average, sampled with the memory: its mean
    and its highest value while the run lasted.
    """
    out = workdir / f"{clients}-{executor}.json"
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    started = time.perf_counter()
    command = [sys.executable, __file__, "--child", str(clients), executor, str(out)]
    child = subprocess.Popen([*command, "--child-rounds", str(rounds)], env=env)
    peak_pss = peak_rss = peak_procs = 0
    loads: list[float] = []
    while child.poll() is None:
        pids = _tree(child.pid)
        pss, rss = _memory_kib(pids)
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        peak_procs = max(peak_procs, len(pids))
        loads.append(os.getloadavg()[0])
        time.sleep(_SAMPLE_S)
    if child.returncode != 0:
        raise SystemExit(f"{clients} clients on {executor} failed with {child.returncode}")
    result = json.loads(out.read_text())
    return {
        "clients": clients,
        "executor": executor,
        **_summary(result),
        "process_s": time.perf_counter() - started,
        "peak_pss_mib": peak_pss / 1024,
        "peak_rss_mib": peak_rss / 1024,
        "peak_processes": peak_procs,
        "training_rounds": rounds,
        "ended_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_mean": statistics.fmean(loads) if loads else os.getloadavg()[0],
        "load_max": max(loads, default=os.getloadavg()[0]),
    }


def _child(clients: int, executor: str, out: Path, rounds: int) -> None:
    config = ExperimentConfig(
        **{**MACRO, "rounds": rounds},  # type: ignore[arg-type]
        samples=SAMPLES_PER_CLIENT * clients,
        clients=clients,
        executor=executor,
    )
    out.write_text(run_experiment(config).to_json())


def macro(
    workdir: Path,
    counts: tuple[int, ...],
    rounds: int = MACRO["rounds"],
    executors: tuple[str, ...] = EXECUTORS,
) -> list[dict[str, Any]]:
    """Every (K, executor) row; K outer, so a row's neighbours share the machine's state."""
    rows = []
    for clients in counts:
        for executor in executors:
            rows.append(macro_row(clients, executor, workdir, rounds))
            print(json.dumps(rows[-1]), flush=True)
    for clients in counts:
        digests = {r["coef_digest"] for r in rows if r["clients"] == clients}
        for row in rows:
            if row["clients"] == clients:
                row["same_coefficients_as_every_executor"] = len(digests) == 1
    return rows


def _merge_large(
    kept: dict[str, Any] | None, head: dict[str, Any], rounds: int, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """The large part: ``rows``, plus the rows of ``kept`` (same rounds) they do not replace.

    Executors run one invocation at a time when their rows are measured apart
    (``--large-executors flower`` after the others); each row keeps its own load
    average, and the coefficients are compared across every row of a client count.
    """
    if kept is None or kept.get("rounds") != rounds:
        kept = {"rows": []}
    new = {(r["clients"], r["executor"]) for r in rows}
    merged = [r for r in kept["rows"] if (r["clients"], r["executor"]) not in new] + rows
    merged.sort(key=lambda r: (r["clients"], EXECUTORS.index(r["executor"])))
    for r in merged:
        digests = {o["coef_digest"] for o in merged if o["clients"] == r["clients"]}
        r["same_coefficients_as_every_executor"] = len(digests) == 1
    clients = sorted({r["clients"] for r in merged})
    return {**head, "clients": clients, "rounds": rounds, "rows": merged}


def _speedup_table(s: dict[str, Any], startup: str) -> list[str]:
    """Inprocess against processes; ``startup`` names the worker start-up row."""
    inp, proc = s["inprocess"], s["processes"]
    return [
        "| | inprocess | processes | speed-up |",
        "|---|---:|---:|---:|",
        f"| training round, wall s | {inp['round_s']:.2f} | "
        f"{proc['round_s']:.2f} | {s['ratio_round']:.2f}× |",
        f"| whole run without start-up, s | {inp['run_s']:.2f} | "
        f"{proc['run_s']:.2f} | {s['ratio_run']:.2f}× |",
        f"| whole run with start-up, s | {inp['run_with_startup_s']:.2f} | "
        f"{proc['run_with_startup_s']:.2f} | {s['ratio_run_with_startup']:.2f}× |",
        f"| {startup} | – | {proc['startup_s']:.2f} | |",
    ]


def _macro_table(result: dict[str, Any], *, processes: bool) -> list[str]:
    """Time per round and peak memory per (K, executor); ``processes`` adds their count."""
    extra = " processes |" if processes else ""
    lines = [
        "| clients | executor | s per round | vs inprocess | start-up s | peak memory MiB |"
        f"{extra} same coefficients |",
        "|---:|---|---:|---:|---:|---:|" + ("---:|" if processes else "") + "---|",
    ]
    base = {r["clients"]: r["round_s"] for r in result["macro"] if r["executor"] == "inprocess"}
    for r in result["macro"]:
        count = f" {r['peak_processes']} |" if processes else ""
        lines.append(
            f"| {r['clients']} | {r['executor']} | {r['round_s']:.2f} | "
            f"{base[r['clients']] / r['round_s']:.2f}× | {r['startup_s']:.1f} | "
            f"{r['peak_pss_mib']:.0f} |{count} "
            f"{'yes' if r['same_coefficients_as_every_executor'] else 'NO'} |"
        )
    return lines


def _large_table(result: dict[str, Any]) -> list[str]:
    """The large rows: time per round, memory, and the load the machine carried."""
    rows = result["large"]["rows"]
    base = {r["clients"]: r["round_s"] for r in rows if r["executor"] == "inprocess"}
    lines = [
        "| clients | executor | s per round | vs inprocess | standardisation rounds s | "
        "start-up s | peak memory MiB | processes | load average | same coefficients |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{base[r['clients']] / r['round_s']:.2f}×" if r["clients"] in base else "–"
        stats = " + ".join(f"{s:.1f}" for s in r["setup_rounds_s"])
        lines.append(
            f"| {r['clients']:,} | {r['executor']} | {r['round_s']:.1f} | {ratio} | {stats} | "
            f"{r['startup_s']:.1f} | {r['peak_pss_mib']:.0f} | {r['peak_processes']} | "
            f"{r['load_mean']:.1f} | "
            f"{'yes' if r['same_coefficients_as_every_executor'] else 'NO'} |"
        )
    return lines


def _large_intro(result: dict[str, Any]) -> str:
    """What the large rows measured, and on what machine state."""
    large = result["large"]
    env = large["environment"]
    return (
        f"{env['date']}: the federation above at {', '.join(f'{k:,}' for k in large['clients'])} "
        f"clients, {large['rounds']} training round(s) after the two standardisation rounds "
        "(s per round is their median), one run each, executors interleaved within each "
        "invocation of the script (each row's end time is in the JSON). The load average "
        "is the machine's mean 1-minute figure while the row ran, on 2 cores: other work "
        "shared the machine, so the seconds are high and a re-run on a quiet machine will "
        "lower them."
    )


def _counts(result: dict[str, Any]) -> list[int]:
    """Every client count measured, the large rows' included."""
    rows = result.get("macro", []) + result.get("large", {}).get("rows", [])
    return [r["clients"] for r in rows] or [0]


def _large_section(result: dict[str, Any]) -> list[str]:
    """The large rows' section, for results that have them."""
    if not result.get("large"):
        return []
    heading = f"## {max(result['large']['clients']):,} clients"
    return ["", heading, "", _large_intro(result), "", *_large_table(result)]


def headline(result: dict[str, Any]) -> list[str]:
    """Both tables, briefly (what README shows)."""
    s, m = result["speedup"], result["macro_config"]
    c = s["config"]
    return [
        f"`processes` against `inprocess`, {c['clients']} clients, per-value "
        f"{c['key_bits']}-bit Paillier, {c['features']} features (encryption dominates), "
        f"{s['workers']} workers, medians of {s['repeats']} interleaved runs:",
        "",
        *_speedup_table(s, "worker start-up (spawn and imports), s"),
        "",
        f"Identical coefficients: {'yes' if s['identical_coefficients'] else 'NO'}. "
        "Time per round and peak memory (summed PSS of the whole process tree) for packed "
        f"{m['key_bits']}-bit Paillier, logistic regression on {m['features']} synthetic "
        "features:",
        "",
        *_macro_table(result, processes=False),
        *(["", _large_intro(result), "", *_large_table(result)] if result.get("large") else []),
    ]


def _grid_section(result: dict[str, Any]) -> list[str]:
    """The grid's table, for results that have one."""
    if not result.get("grid"):
        return []
    g = result["grid_config"]
    return [
        "## The processes executor over a grid",
        "",
        f"{g['clients']} clients with resident data, {g['rounds']} training rounds of "
        f"{g['local_epochs']} local epoch after the two standardisation rounds, "
        f"{g['key_bits']}-bit keys, {result['speedup']['workers']} workers; medians of "
        f"the training rounds of {result['grid_repeats']} interleaved repetitions. "
        "Speed-up is inprocess over processes per round; start-up is excluded.",
        "",
        *_grid_table(result["grid"]),
        "",
    ]


def markdown(result: dict[str, Any]) -> str:
    """The committed tables, from a result dict."""
    env = result["environment"]
    s = result["speedup"]
    c = s["config"]
    lines = [
        f"# Scale: executors from 10 to {max(_counts(result)):,} clients",
        "",
        f"{env['date']} · {env['cpu']} · {env['cpu_count']} cores · Python {env['python']} · "
        f"flwr {env['packages'].get('flwr')} · ray {env['packages'].get('ray')}. One run of "
        "each row on a shared machine; ratios compare runs made in the same session.",
        "",
        "## The processes executor against inprocess",
        "",
        f"{c['clients']} clients, per-value {c['key_bits']}-bit Paillier, {c['features']} "
        f"features, {c['rounds']} rounds of {c['local_epochs']} local epochs: encryption "
        f"dominates. Medians of {s['repeats']} interleaved repetitions, {s['workers']} workers.",
        "",
        *_speedup_table(s, "worker start-up, s"),
        "",
        f"Identical coefficients: {'yes' if s['identical_coefficients'] else 'NO'}.",
        "",
        *_grid_section(result),
        "## Time per round and peak memory",
        "",
        f"Packed {MACRO['key_bits']}-bit Paillier, logistic regression on "
        f"{MACRO['features']} synthetic features, {SAMPLES_PER_CLIENT} samples per client "
        f"(75% for training), {MACRO['rounds']} training rounds after the two "
        "standardisation rounds. Peak memory is the summed PSS of the run's whole process "
        "tree (workers, Ray's processes).",
        "",
        *_macro_table(result, processes=True),
        *_large_section(result),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENT_COUNTS))
    parser.add_argument(
        "--only", choices=("speedup", "grid", "macro", "large"), help="run one measurement only"
    )
    parser.add_argument("--large-clients", type=int, nargs="+", default=list(LARGE_CLIENTS))
    parser.add_argument("--large-rounds", type=int, default=LARGE_ROUNDS)
    parser.add_argument("--large-executors", nargs="+", default=list(LARGE_EXECUTORS))
    parser.add_argument(
        "--merge",
        type=Path,
        help="with --only, keep the other parts of this results file and rewrite its markdown",
    )
    parser.add_argument("--grid-rows", type=int, nargs="+", default=list(GRID_ROWS))
    parser.add_argument("--grid-features", type=int, nargs="+", default=list(GRID_FEATURES))
    parser.add_argument("--grid-schemes", nargs="+", default=list(GRID_SCHEMES))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/he-fed-scale"))
    parser.add_argument(
        "--child", nargs=3, metavar=("CLIENTS", "EXECUTOR", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--child-rounds", type=int, default=MACRO["rounds"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(int(args.child[0]), args.child[1], Path(args.child[2]), args.child_rounds)
        return None
    args.workdir.mkdir(parents=True, exist_ok=True)
    every = {"speedup", "grid", "macro", "large"}
    wanted = {args.only} if args.only else every
    result: dict[str, Any] = {"benchmark": "scale", "environment": environment()}
    if args.merge:
        result = json.loads(args.merge.read_text(encoding="utf-8"))
    if "speedup" in wanted:
        result["speedup"] = speedup(args.repeats)
    if "grid" in wanted:
        result["grid_config"] = GRID
        result["grid_repeats"] = args.repeats
        result["grid"] = grid(
            tuple(args.grid_rows),
            tuple(args.grid_features),
            tuple(args.grid_schemes),
            args.repeats,
        )
    if "macro" in wanted:
        result["macro_config"] = {**MACRO, "samples_per_client": SAMPLES_PER_CLIENT}
        result["macro"] = macro(args.workdir, tuple(args.clients))
    if "large" in wanted:
        rows = macro(
            args.workdir, tuple(args.large_clients), args.large_rounds, tuple(args.large_executors)
        )
        result["large"] = _merge_large(
            result.get("large") if args.merge else None,
            {"environment": environment(), "clients": args.large_clients},
            args.large_rounds,
            rows,
        )
    if args.merge or wanted == every:
        text = markdown(result)
        print(text)
        write_outputs(result, text, args.json, args.markdown)
        return result
    # A partial run prints its tables and writes its JSON, never the committed file's
    # markdown (which needs every part).
    text = "\n".join(_grid_table(result["grid"])) if "grid" in result else ""
    print(text or json.dumps(result, indent=1))
    write_outputs(result, text, args.json, None)
    return result


if __name__ == "__main__":
    main()
