"""The benchmark harness and the estimator: arithmetic, schema, and the CLI on a tiny grid."""

from __future__ import annotations

import csv
import importlib
import json
import math
import time

import numpy as np
import pytest
from click.testing import CliRunner
from he_fed.cli import main

from he_fed.bench import MicroGrid, ThresholdGrid, ratios, run_micro, run_threshold
from he_fed.bench.estimate import estimate, load_calibration, units
from he_fed.bench.threshold import bench_scheme
from he_fed.crypto import CKKS, PackedPaillier, Paillier, Plain
from he_fed.exceptions import ConfigurationError


def _row(scheme, d, enc, agg, dec, size, **extra):
    return {
        "scheme": scheme,
        "d": d,
        "params": extra.pop("params", {}),
        "encrypt_us_per_element": enc,
        "aggregate_us_per_element": agg,
        "decrypt_us_per_element": dec,
        "bytes_per_element": size,
        **extra,
    }


def test_ratios_divide_baseline_cost_by_scheme_cost():
    micro = [
        _row("paillier-packed", 100, 10.0, 0.5, 40.0, 8.0),
        _row("ckks", 100, 2.0, 1.0, 1.0, 64.0, params={"preset": "aggregation-fast"}),
    ]
    baselines = [
        _row("phe-naive", 100, 10_000.0, 20.0, 3_000.0, 520.0),
        _row("phe-naive", 10, 1.0, 1.0, 1.0, 1.0),
    ]
    out = ratios(micro, baselines)
    assert out["paillier-packed"]["phe-naive"]["100"] == {
        "encrypt": 1000.0,
        "aggregate": 40.0,
        "decrypt": 75.0,
        "bytes": 65.0,
    }
    assert out["ckks/aggregation-fast"]["phe-naive"]["100"]["bytes"] == pytest.approx(520 / 64)
    assert "10" not in out["paillier-packed"]["phe-naive"]  # only same-size comparisons


def test_micro_result_has_the_documented_schema():
    grid = MicroGrid(sizes=(6,), repeats=1, clients=2, per_value_cap=5)
    result = run_micro(
        grid, key_bits=1024, allow_insecure=True, schemes=("plain", "paillier-packed")
    )
    fields = {
        "scheme",
        "params",
        "d",
        "encrypt_us_per_element",
        "aggregate_us_per_element",
        "decrypt_us_per_element",
        "bytes_per_element",
        "measured_d",
        "peak_mib",
    }
    assert {r["scheme"] for r in result["micro"]} == {"plain", "paillier-packed"}
    assert {r["scheme"] for r in result["baselines"]} == {"phe-naive", "tenseal-nvflare", "plain"}
    for row in result["micro"] + result["baselines"]:
        assert fields <= set(row)
        assert row["encrypt_us_per_element"] > 0 and row["bytes_per_element"] > 0
    assert set(result["ratios"]["paillier-packed"]) == {"phe-naive", "tenseal-nvflare", "plain"}
    json.dumps(result, allow_nan=False)


def test_units_count_ciphertexts_the_way_the_schemes_do():
    packed = PackedPaillier(key_bits=1024, allow_insecure=True, clip=1.0)
    assert units(packed, 39 * 3) == packed.ciphertexts_for(39 * 3) == 4
    assert units(Paillier(key_bits=1024, allow_insecure=True), 10) == 12  # and the blinding
    tail = CKKS().encoded_length(0)  # the weight and the binding commitment's blinding
    assert tail == 19  # 4096 per ciphertext; 18 blinding slots for 1,024 clients
    assert units(CKKS(), 4096 - tail) == 1 and units(CKKS(), 4097 - tail) == 2
    assert units(Plain(), 10) == 11


def test_estimate_predicts_exact_bytes_and_caches_its_calibration(tmp_path, monkeypatch):
    monkeypatch.setenv("HE_FED_CACHE_DIR", str(tmp_path))
    scheme = PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=4, max_weight=64)
    calibration = load_calibration(scheme)
    assert (tmp_path / "calibration.json").exists()
    again = load_calibration(scheme)
    assert again == calibration  # read back from the cache, not remeasured
    predicted = estimate(
        scheme, calibration, features=200, clients=4, rounds=3, samples_per_client=50
    )
    assert predicted.units == scheme.ciphertexts_for(201)
    assert predicted.total_s == pytest.approx(3 * predicted.time_per_round_s)
    # the byte count is a linear fit through exact sizes: check it against a real update
    import numpy as np

    from he_fed.federated import FederatedLogisticRegression

    X = np.random.default_rng(0).normal(size=(200, 200))
    y = (X[:, 0] > 0).astype(int)
    model = FederatedLogisticRegression(scheme=scheme, rounds=1, standardize=False)
    model.fit(X, y, np.arange(200) % 4)
    measured = model.history_[0].bytes_up
    assert abs(predicted.bytes_up_per_client - measured) <= 8  # client ids differ in length
    # a multinomial model sends one row of weights per class
    three = estimate(scheme, calibration, features=60, clients=4, rounds=1, classes=3)
    assert three.units == scheme.ciphertexts_for(3 * 61)
    y3 = np.digitize(X[:, 0], [-0.5, 0.5])
    model = FederatedLogisticRegression(scheme=scheme, rounds=1, standardize=False)
    model.fit(X[:, :60], y3, np.arange(200) % 4)
    assert model.coef_.shape == (3, 60)
    assert abs(three.bytes_up_per_client - model.history_[0].bytes_up) <= 8
    with pytest.raises(ConfigurationError, match="at least 2 classes"):
        estimate(scheme, calibration, features=6, clients=4, rounds=1, classes=1)


def flat_calibration(scheme, machine: str, created: str, bytes_per_unit: float):
    """A calibration of 1 ms per unit and phase, made in no time."""
    from he_fed.bench.estimate import Calibration

    line = [1e-3, 1e-3]
    return Calibration(
        scheme.name,
        scheme.params_text(),
        machine,
        "test",
        dict.fromkeys(("encrypt", "sign", "serialize"), line),
        line,
        [1e-3] * 4,
        [1e-3] * 4,
        line,
        line,
        [4_000.0, bytes_per_unit],
        line,
        line,
        [1e-3] * 4,
        created,
    )


def quick_calibration(scheme):
    """What ``calibrate`` would cache for ``scheme`` on this machine, made in no time: for
    tests of what is cached and when, not of the figures (a real calibration proves every
    value of every update, for minutes)."""
    module = importlib.import_module("he_fed.bench.estimate")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.") + str(time.perf_counter_ns())
    return flat_calibration(module.calibration_scheme(scheme), module._machine(), stamp, 300.0)


def test_bench_cli_on_a_tiny_grid_writes_every_output(tmp_path, monkeypatch):
    monkeypatch.setenv("HE_FED_CACHE_DIR", str(tmp_path / "cache"))
    # The estimate column's calibration proves every value of every update for minutes;
    # what this test checks is the outputs, so it gets one made in no time.
    monkeypatch.setattr(
        importlib.import_module("he_fed.bench.estimate"), "calibrate", quick_calibration
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "--sizes",
            "8",
            "--repeats",
            "1",
            "--clients",
            "2",
            "--features",
            "6",
            "--schemes",
            "plain,paillier-packed",
            "--key-bits",
            "1024",
            "--allow-insecure",
            "--json",
            str(out / "b.json"),
            "--csv",
            str(out / "b.csv"),
            "--markdown",
            str(out / "b.md"),
            "--plot",
            str(out / "plots"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "b.json").read_text())
    assert {"micro", "baselines", "ratios", "macro", "environment"} <= set(data)
    macro = {r["scheme"]: r for r in data["macro"]}
    assert macro["paillier-packed"]["measured"] and "estimate_error" in macro["paillier-packed"]
    assert macro["paillier-packed"]["overhead_vs_plain"] > 0
    with (out / "b.csv").open() as handle:
        kinds = {row["kind"] for row in csv.DictReader(handle)}
    assert kinds == {"micro", "baseline", "macro", "threshold"}
    # Threshold decryption: 3-of-5 in --quick, against one key holder in the same run.
    (council,) = data["threshold"]["rows"]
    assert (council["t"], council["n"], council["quorum"], council["ciphertexts"]) == (3, 5, 4, 2)
    markdown = (out / "b.md").read_text()
    assert "| 3 of 5 | 4 | one key holder decrypts (baseline) |" in markdown
    assert "| 3 of 5 | 4 | a releasing holder, in all |" in markdown
    assert "Key ceremony (3-of-5, two safe primes)" in markdown
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "accuracy_difference.png",
        "bytes_per_element.png",
        "overhead_vs_clients.png",
        "time_vs_d.png",
    ]
    assert "phe-naive (baseline)" in (out / "b.md").read_text()


def test_threshold_rows_divide_each_step_by_the_key_holders_decryption():
    grid = ThresholdGrid(councils=((2, 3),), ciphertexts=1, repeats=1, keygen_repeats=1)
    result = run_threshold(grid, key_bits=1024, allow_insecure=True)
    slots = bench_scheme(1024, True).layout.slots
    assert result["values_per_ciphertext"] == slots == 31
    (row,) = result["rows"]
    assert (row["t"], row["n"], row["quorum"], row["ciphertexts"]) == (2, 3, 3, 1)
    ms = {s: row[f"{s}_ms_per_ciphertext"] for s in ("decrypt", "partial", "verify", "combine")}
    assert row["holder_ms_per_ciphertext"] == pytest.approx(
        ms["partial"] + ms["verify"] + ms["combine"]  # t - 1 = 1 verification
    )
    for step in ("partial", "verify", "combine", "holder"):
        per_ct = row[f"{step}_ms_per_ciphertext"]
        assert row["over_decrypt"][step] == pytest.approx(per_ct / ms["decrypt"])
        assert row[f"{step}_us_per_value"] == pytest.approx(1e3 * per_ct / slots)
    # A partial is a value mod n^2 (256 bytes at 1024 bits) and its proof, per ciphertext.
    assert row["partial_bytes_per_ciphertext"] > 256
    kg = result["keygen"]
    assert (kg["t"], kg["n"]) == (2, 3)
    assert kg["dealer_over_single"] == pytest.approx(kg["dealer_s"] / kg["single_s"])


def test_bench_skips_threshold_rows_when_asked_or_without_paillier(tmp_path):
    for flags in (["--no-threshold", "--schemes", "paillier-packed"], ["--schemes", "plain"]):
        out = tmp_path / f"{len(flags)}.json"
        args = ["bench", "--sizes", "4", "--repeats", "1", "--no-macro", *flags]
        args += ["--key-bits", "1024", "--allow-insecure", "--json", str(out)]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "threshold" not in json.loads(out.read_text())
        assert "Threshold decryption" not in result.output


def test_estimate_cli_prints_a_prediction(tmp_path, monkeypatch):
    """What the command prints and the units it counts; calibrating is tested above.

    A calibration of CKKS at these sizes takes minutes of binding commitments and
    proofs, so the command gets a fixed one (1 ms per unit and phase, 70 KB a unit).
    """
    import importlib

    command = importlib.import_module("he_fed.cli.estimate")  # the module, not the command

    def fixed(scheme, *, refresh=False, announce=None):
        return flat_calibration(scheme, "test machine", "now", 70_000.0)

    monkeypatch.setattr(command, "load_calibration", fixed)
    monkeypatch.setenv("HE_FED_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(
        main,
        ["estimate", "--scheme", "ckks", "--features", "5000", "--clients", "3", "--rounds", "4"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "time per round" in result.output and "bytes up / client" in result.output
    assert "2 ciphertext units" in result.output  # 5001 values + weight, 4096 per ciphertext
    assert "calibrated now on test machine" in result.output
    result = CliRunner().invoke(
        main,
        ["estimate", "--scheme", "ckks", "--features", "5000", "--classes", "3"],
        catch_exceptions=False,
    )
    assert "5000 features, 3 classes" in result.output
    assert "4 ciphertext units" in result.output  # 3 rows of 5001 values + weight


@pytest.mark.parametrize("scheme", [PackedPaillier(), Paillier(), CKKS()], ids=str)
def test_an_estimate_of_a_billion_features_counts_bytes_without_building_the_update(
    scheme, monkeypatch
):
    """``he-fed estimate --features 1e9`` built the range proof's layout of every value
    (a generator hashed into the group each: 69 s at a million CKKS values) and
    encoded an 8 GB ticket. Both now come from one value's layout and the empty
    ticket, and equal the whole computation wherever that can run."""
    module = importlib.import_module("he_fed.bench.estimate")
    from he_fed.crypto import _value_range, _weight_range
    from he_fed.protocol.messages import RoundStart, Task, encode

    for size in (1, 7, 300):
        layout = module._layout(scheme, size)
        proof = _value_range.proof_size(layout)
        assert (
            module._proof_bytes(scheme, size)
            == _weight_range.linked_size(scheme.max_weight) + proof
        )
        bits, values = _value_range.bit_count(layout), len(layout.spans)
        assert module._proof_work(scheme, size) == bits / math.log2(values + 1)
        for statistics in (0, 30):
            stats = np.zeros(statistics)
            weights = np.zeros(size)
            ticket = RoundStart(
                bytes(16), 1, Task.TRAIN, bytes(32), weights, stats, stats, bytes(32), bytes(64)
            )
            assert RoundStart.encoded_size(size, statistics) == len(encode(ticket))
    built = module._layout

    def one_value_only(plan, size):
        assert size == 1, f"built the layout of {size} values"
        return built(plan, size)

    monkeypatch.setattr(module, "_layout", one_value_only)
    calibration = flat_calibration(scheme, "test machine", "now", 70_000.0)
    billion = estimate(scheme, calibration, features=10**9, clients=3, rounds=2, standardize=True)
    assert billion.bytes_down_per_client == RoundStart.encoded_size(10**9 + 1, 10**9)
    assert billion.bytes_up_per_client > 10**9 and math.isfinite(billion.total_s)


def test_committed_estimates_are_within_55_percent_of_the_measured_runs():
    """Every encrypted configuration within 55% (README renders the real figures).

    The run committed with the proofs and binding commitments (2026-11-30, a
    shared machine with other work on it) has a median error of 12% and a largest
    of 51% (CKKS fast, 10 clients at 100,000 features); the one before it, also
    busy, 8% and 50%; the one before that, on a quiet machine, 25%.
    The unencrypted baseline's smallest rounds last a few milliseconds, where a
    millisecond of noise is tens of percent (158% in the committed run, whose
    machine was busy); it is held to 200%, and README reports encrypted runs only.
    """
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "bench.json"
    data = json.loads(path.read_text())
    assert data["mode"] == "full"
    measured = [r for r in data["macro"] if r["measured"]]
    assert len(measured) >= 40
    encrypted = [r for r in measured if r["scheme"] != "plain"]
    worst = max(encrypted, key=lambda r: abs(r["estimate_error"]))
    assert abs(worst["estimate_error"]) <= 0.55, worst
    assert max(abs(r["estimate_error"]) for r in measured if r["scheme"] == "plain") <= 2.0
    # every scheme of the quick grid appears in the committed micro table
    assert {r["scheme"] for r in data["micro"]} == {"plain", "paillier", "paillier-packed", "ckks"}


@pytest.mark.slow
def test_estimate_with_run_defaults_predicts_the_bytes_of_he_fed_run(tmp_path, monkeypatch):
    """Full strength: `he-fed estimate` and `he-fed run`, both with their defaults.

    The run is also the test that `he-fed run` alone is 2048-bit packed Paillier on
    breast_cancer across 5 clients, near scikit-learn's accuracy.
    """
    import json
    import re

    monkeypatch.setenv("HE_FED_CACHE_DIR", str(tmp_path))
    out = tmp_path / "run.json"
    CliRunner().invoke(main, ["run", "--quiet", "--json", str(out)], catch_exceptions=False)
    data = json.loads(out.read_text())
    assert data["config"]["scheme"] == "paillier-packed"
    assert data["config"]["key_bits"] == data["setup"]["params"]["key_bits"] == 2048
    assert data["config"]["clients"] == 5 and data["dataset"]["name"] == "breast_cancer"
    assert data["final"]["metric"] >= data["final"]["reference_metric"] - 0.015
    last = data["rounds"][-1]
    estimated = CliRunner().invoke(main, ["estimate"], catch_exceptions=False)
    assert estimated.stderr.startswith("calibrating paillier-packed for these keys")
    predicted = estimated.stdout
    up = int(re.search(r"bytes up / client\s+([\d,]+)", predicted)[1].replace(",", ""))
    down = int(re.search(r"bytes down / client\s+([\d,]+)", predicted)[1].replace(",", ""))
    assert abs(up - last["bytes_up"]) <= 8  # a linear fit through exact sizes
    assert down == last["bytes_down"]


def test_process_memory_reads_proc_self_status_in_mib():
    from pathlib import Path

    from he_fed.bench.measure import process_memory_mib, reset_peak_memory

    status = Path("/proc/self/status")
    if not status.exists():  # not Linux
        assert process_memory_mib("VmRSS") is None and reset_peak_memory() is False
        return
    assert process_memory_mib("NoSuchField") is None
    # VmExe, the program's text, does not change while the test runs.
    line = next(line for line in status.read_text().splitlines() if line.startswith("VmExe:"))
    assert process_memory_mib("VmExe") == int(line.split()[1]) / 1024
    assert reset_peak_memory() is True


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sizes", "-5"], "Invalid value for --sizes: expected comma-separated positive"),
        (["--features", "0"], "Invalid value for --features: expected comma-separated"),
        (["--repeats", "0"], "Invalid value for '--repeats': 0 is not in the range x>=1"),
        (["--schemes", "nope"], "Invalid value for --schemes: unknown scheme(s) 'nope'"),
    ],
)
def test_bench_refuses_a_grid_it_cannot_measure_before_measuring(flags, message):
    """numpy's negative dimensions, statistics' 'no samples', an IndexError in the
    report and scikit-learn's InvalidParameterError came out instead (an audit)."""
    result = CliRunner().invoke(main, ["bench", "--no-threshold", *flags])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
