"""Issue 17, "What a newcomer hit": each command as the newcomer typed it.

Every test runs the exact command (through click's CliRunner, or a real process
where the behaviour needs one: a closed pipe, a spawned worker) and asserts the
corrected behaviour, or a one-line error and a non-zero exit.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner
from he_fed.cli import main

from tests.test_cli import FAST

#: ``he-fed`` as a real process (the console script calls exactly this).
HE_FED = [sys.executable, "-c", "from he_fed.cli import main; main()"]
#: The quickest real run: no encryption, one round.
QUICK = ["--scheme", "plain", "--rounds", "1"]


def _one_line_error(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    assert text in result.output, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0, result.output


# Item 11: `he-fed run | head -1`.


def test_run_into_a_pipe_prints_the_title_first_not_an_empty_line():
    result = CliRunner().invoke(main, ["run", *QUICK])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("breast_cancer · logistic · plain")


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(tmp_path):
    for command in (
        ["run", *QUICK],
        ["run", "--quiet", *QUICK],
        ["keygen", "--out", str(tmp_path / "keys"), *FAST],
    ):
        process = subprocess.Popen(
            [*HE_FED, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        process.stdout.close()  # the reader is gone before he-fed writes a byte
        stderr = process.stderr.read()
        process.stderr.close()
        assert process.wait() == 0, stderr
        assert stderr == b""  # no traceback, no "Exception ignored", no "Broken pipe"
    assert (tmp_path / "keys" / "secret.key").exists()  # the work was done all the same


# -v and -vv.


def _he_fed_log(stderr: str, level: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{level} he_fed: ")]


def test_verbose_is_accepted_after_the_command_and_counts_across_both_places():
    runs = {
        "-v": ["-v", "run", *QUICK],
        "run -v": ["run", "-v", *QUICK],
        "-vv": ["-vv", "run", *QUICK],
        "-v run -v": ["-v", "run", "-v", *QUICK],
        "none": ["run", *QUICK],
    }
    stderr = {}
    for name, args in runs.items():
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        stderr[name] = result.stderr
    # -v: one INFO line per released round (two statistics rounds, one training round).
    for name in ("-v", "run -v"):
        assert len(_he_fed_log(stderr[name], "INFO")) == 3
        assert _he_fed_log(stderr[name], "DEBUG") == []
    # -vv: also one DEBUG line per client update (5 clients, 3 rounds).
    for name in ("-vv", "-v run -v"):
        assert len(_he_fed_log(stderr[name], "INFO")) == 3
        assert len(_he_fed_log(stderr[name], "DEBUG")) == 15
    assert stderr["none"] == ""


# Item 9: `he-fed -v run --dropout 0.8 --rounds 5` logged "round 6 skipped".


def test_logged_round_numbers_are_the_json_history_s(tmp_path):
    out = tmp_path / "run.json"
    args = ["-v", "run", "--dropout", "0.5", "--rounds", "5", "--json", str(out), *FAST]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rounds = json.loads(out.read_text())["rounds"]
    skipped = [int(n) for n in re.findall(r"train round (\d+) skipped", result.stderr)]
    released = [int(n) for n in re.findall(r"train round (\d+): \d+ of 5", result.stderr)]
    assert skipped == [r["round"] for r in rounds if r["skipped"]]
    assert released == [r["round"] for r in rounds if not r["skipped"]]
    assert skipped and released and sorted(skipped + released) == [1, 2, 3, 4, 5]


# Item 6: `--json /nonexistent/dir/x.json` trained for 7 s, then failed.


def test_a_json_path_in_a_missing_directory_is_refused_before_the_run(tmp_path):
    missing = tmp_path / "nonexistent" / "dir" / "x.json"
    result = CliRunner().invoke(main, ["run", "--json", str(missing), *FAST])
    _one_line_error(
        result,
        f"ConfigurationError: --json {missing}: the directory {missing.parent} does not exist",
    )
    # Before any work: the data set, which does not exist either, is never loaded.
    result = CliRunner().invoke(
        main,
        ["run", "--json", str(missing), "--dataset", str(tmp_path / "no.csv"), "--target", "y"],
    )
    _one_line_error(result, "--json")
    assert "no such CSV" not in result.output


def _a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return path


def test_every_bench_output_is_checked_before_the_benchmark(tmp_path):
    blocked = _a_file(tmp_path) / "sub"  # cannot be made: its parent is a file
    small = ["bench", "--sizes", "10", "--repeats", "1", "--no-macro", "--schemes", "plain"]
    for flag, path in (
        ("--json", blocked / "b.json"),
        ("--csv", blocked / "b.csv"),
        ("--markdown", blocked / "b.md"),
        ("--plot", blocked / "plots"),
    ):
        result = CliRunner().invoke(main, [*small, flag, str(path)])
        _one_line_error(result, f"ConfigurationError: {flag} {path}: {blocked.parent} is not a")
        assert "benchmark:" not in result.output  # nothing was measured


def test_keygen_checks_where_the_keys_go_before_making_them(tmp_path):
    blocked = _a_file(tmp_path) / "keys"
    result = CliRunner().invoke(main, ["keygen", "--out", str(blocked), *FAST])
    _one_line_error(result, f"--out {blocked}: {blocked.parent} is not a directory")
    out = tmp_path / "keys"
    made = CliRunner().invoke(main, ["keygen", "--out", str(out), *FAST])
    assert made.exit_code == 0, made.output
    # Existing files are refused before anything else (here: before the scheme, whose
    # 1024-bit key would be refused without --allow-insecure).
    again = CliRunner().invoke(main, ["keygen", "--out", str(out), "--key-bits", "1024"])
    assert again.exit_code == 1 and "pass --force to overwrite" in again.output


def test_flower_app_checks_its_directory_first(tmp_path):
    blocked = _a_file(tmp_path) / "app"
    result = CliRunner().invoke(main, ["flower-app", str(blocked)])
    _one_line_error(result, f"DIRECTORY {blocked}: {blocked.parent} is not a directory")


# Item 7: README's `processes` snippet, pasted into a script without the main guard.

_SCRIPT = """\
import numpy as np
from sklearn.datasets import load_breast_cancer
from he_fed import FederatedLogisticRegression

X, y = load_breast_cancer(return_X_y=True)
hospital = np.arange(len(y)) % 3
{guard}clf = FederatedLogisticRegression(executor="processes", workers=1, scheme="plain", rounds=1)
{indent}clf.fit(X, y, groups=hospital)
{indent}print(len(clf.history_))
"""


def test_a_script_without_the_main_guard_gets_one_error_naming_it(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT.format(guard="", indent=""))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert done.returncode == 1
    # One traceback, the script's own; none from the workers, no BrokenProcessPool.
    assert done.stderr.count("Traceback") == 1, done.stderr
    assert "bootstrapping" not in done.stderr and "BrokenProcessPool" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"he_fed.exceptions.MissingMainGuard: worker processes start by importing {script}, "
        'which trains again at import: put the training under if __name__ == "__main__": '
        "(the processes executor spawns its workers)"
    )
    # As README shows it, with the guard, the same script trains.
    script.write_text(_SCRIPT.format(guard='if __name__ == "__main__":\n    ', indent="    "))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "1\n", "")


# Item 10: `--samples 100000000` was killed by the kernel at 23.5 GB.


def test_a_data_set_larger_than_the_memory_is_refused_before_it_is_made(monkeypatch):
    from he_fed.data import _memory

    monkeypatch.setattr(_memory, "available_memory", lambda: 16 * 2**30)
    args = ["run", "--dataset", "synthetic-classification", "--samples", "100000000"]
    result = CliRunner().invoke(main, args)
    _one_line_error(
        result,
        "DatasetError: --samples 100,000,000 x --features 20 needs about 59.6 GiB at the "
        "run's peak (4 copies of 8-byte values), and 16.0 GiB are available; lower --samples "
        "or --features",
    )
    # 100,000 rows (61 MiB at the peak) fit.
    assert _memory.check_fits_in_memory(100_000, 20) is None


def test_a_petabyte_data_set_is_refused_on_any_machine():
    args = ["run", "--dataset", "synthetic-regression", "--samples", str(10**13)]
    result = CliRunner().invoke(main, args)
    _one_line_error(result, "DatasetError: --samples 10,000,000,000,000 x --features 20")


def test_running_out_of_memory_anyway_is_one_line(monkeypatch):
    """Where the system does not say how much memory is left, numpy's refusal is one line."""
    from he_fed.data import _memory

    monkeypatch.setattr(_memory, "available_memory", lambda: None)
    args = ["run", "--dataset", "synthetic-regression", "--samples", str(10**13)]
    result = CliRunner().invoke(main, args)
    _one_line_error(result, "out of memory; try fewer --samples, --features or --clients")


# Flags that were silently ignored: refused when the user expects an effect on the
# result, a warning when only the speed would change.


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["run", "--alpha", "0.1"],
            "--alpha sets the concentration of --partition dirichlet, and the partition is "
            "iid; add --partition dirichlet",
        ),
        (
            ["run", "--samples", "500"],
            "--samples sizes the synthetic datasets (synthetic_classification, "
            "synthetic_regression); breast_cancer has a size of its own",
        ),
        (["run", "--dataset", "wine", "--features", "5"], "--features sizes the synthetic"),
        (
            ["run", "--target", "label"],
            "--target names the column to predict in a CSV file; breast_cancer is built in "
            "and has its own target",
        ),
        (
            ["run", "--dataset", "synthetic-regression", "--target", "y"],
            "synthetic_regression is built in",
        ),
        (
            ["run", "--scheme", "ckks", "--key-bits", "4096"],
            "--key-bits sets the Paillier modulus, and --scheme ckks has none; its "
            "parameters are --ckks-preset",
        ),
        (["run", "--scheme", "plain", "--key-bits", "1024"], "--scheme plain has none"),
        (
            ["run", "--ckks-preset", "compat-nvflare"],
            "--ckks-preset applies to --scheme ckks, not paillier-packed",
        ),
        (["estimate", "--scheme", "ckks", "--key-bits", "3072"], "--scheme ckks has none"),
        (["keygen", "--scheme", "ckks", "--key-bits", "3072", "--out", "k"], "has none"),
    ],
)
def test_a_flag_that_would_change_nothing_the_user_expects_is_refused(
    command, message, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # keygen would write ./k
    result = CliRunner().invoke(main, command)
    _one_line_error(result, message)
    assert result.output.startswith("Error: ConfigurationError: ")
    assert not (tmp_path / "k").exists()


def test_alpha_given_as_its_default_still_counts_and_works_with_dirichlet():
    refused = CliRunner().invoke(main, ["run", "--alpha", "0.5", *QUICK])
    _one_line_error(refused, "--alpha sets the concentration")
    args = ["run", "--partition", "dirichlet", "--alpha", "0.5", "--quiet", *QUICK]
    assert CliRunner().invoke(main, args).exit_code == 0


def test_samples_and_features_size_a_synthetic_dataset(tmp_path):
    out = tmp_path / "run.json"
    args = ["run", "--dataset", "synthetic-classification", "--samples", "200"]
    args += ["--features", "4", "--json", str(out), "--quiet", *QUICK]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    dataset = json.loads(out.read_text())["dataset"]
    assert (dataset["n_features"], dataset["n_train"] + dataset["n_test"]) == (4, 200)


def test_workers_with_the_inprocess_executor_is_a_warning_and_the_run_goes_on():
    result = CliRunner().invoke(main, ["run", "--workers", "2", "--quiet", *QUICK])
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "Warning: --workers has no effect with --executor inprocess (clients run one after "
        "another in this process); use --executor processes to spread them\n"
    )
    assert result.stdout.startswith("accuracy=")


# Dataset names: `breast-cancer` was refused while `synthetic-classification` had hyphens.


def test_every_dataset_name_is_accepted_with_hyphens_or_underscores(tmp_path):
    from he_fed.data import BUILTIN_DATASETS

    for canonical in BUILTIN_DATASETS:
        for spelling in {canonical, canonical.replace("_", "-"), canonical.upper()}:
            out = tmp_path / f"{spelling}.json"
            args = ["run", "--dataset", spelling, "--json", str(out), "--quiet", *QUICK]
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, (spelling, result.output)
            assert json.loads(out.read_text())["dataset"]["name"] == canonical


def test_help_shows_one_spelling_of_each_dataset():
    result = CliRunner().invoke(main, ["run", "--help"], terminal_width=200)
    assert (
        "One of breast_cancer, diabetes, wine, digits, synthetic_classification, "
        "synthetic_regression (- or _ alike), or a path to a .csv or .tsv file." in result.output
    )
    assert "synthetic-" not in result.output


# `--clients 1` failed without suggesting `--min-clients 1`.


def test_one_client_is_told_to_lower_min_clients_and_then_runs():
    result = CliRunner().invoke(main, ["run", "--clients", "1", *QUICK])
    _one_line_error(
        result,
        "ConfigurationError: 1 client(s) registered, but the key holder decrypts cohorts of "
        "at least 2; to run anyway, lower min_clients to 1 (CLI: --min-clients 1)",
    )
    args = ["run", "--clients", "1", "--min-clients", "1", "--quiet", *QUICK]
    assert CliRunner().invoke(main, args).exit_code == 0


# `he-fed estimate` recalibrated for every new --clients or --samples-per-client.


def test_estimate_calibrates_once_per_scheme_and_key_whatever_the_run(tmp_path, monkeypatch):
    from tests.test_bench import quick_calibration as _quick_calibration

    monkeypatch.setenv("HE_FED_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(
        importlib.import_module("he_fed.bench.estimate"), "calibrate", _quick_calibration
    )
    cache = tmp_path / "calibration.json"
    packed = ["--scheme", "paillier-packed", *FAST]
    runs = [
        packed,
        [*packed, "--clients", "50"],
        [*packed, "--samples-per-client", "5000"],
        [*packed, "--clients", "7", "--samples-per-client", "3", "--clip", "1.5"],
    ]
    stamps, announced = set(), []
    for args in runs:
        result = CliRunner().invoke(main, ["estimate", *args])
        assert result.exit_code == 0, result.output
        stamps.add(re.search(r"\(calibrated (\S+) on ", result.stdout).group(1))
        announced.append(result.stderr)
        assert len(json.loads(cache.read_text())) == 1  # one calibration, reused
    assert len(stamps) == 1
    # Calibrating takes minutes, so it says so, on standard error, and only then.
    assert announced[0] == (
        "calibrating paillier-packed for these keys on this machine: "
        f"minutes, once; cached in {cache}\n"
    )
    assert announced[1:] == ["", "", ""]
    # Another key size is another calibration.
    args = ["estimate", "--scheme", "paillier-packed", "--key-bits", "1280", "--allow-insecure"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(json.loads(cache.read_text())) == 2


# keygen's default --max-weight 1 refused every contribution weighted by its sample count.


def test_keygen_says_which_weights_its_keys_allow_and_the_refusal_says_how_to_fix_it(tmp_path):
    import numpy as np

    from he_fed.crypto import load_public
    from he_fed.exceptions import EncodingOverflowError

    help_text = CliRunner().invoke(main, ["keygen", "--help"], terminal_width=400).output
    assert "the default 1 allows unweighted sums only" in " ".join(help_text.split())
    out = tmp_path / "keys"
    made = CliRunner().invoke(main, ["keygen", "--out", str(out), *FAST])
    assert made.exit_code == 0, made.output
    assert (
        "  plan: sums of up to 1024 contributions of weight up to 1, values clipped at 4 "
        "(--max-clients, --max-weight, --clip)\n" in made.output
    )
    public = load_public((out / "public.key").read_bytes(), allow_insecure=True)
    with pytest.raises(EncodingOverflowError) as refused:
        public.encrypt(np.zeros(3), weight=30)  # a client of 30 rows
    assert str(refused.value) == (
        "weight 30 is outside [1, 1], the weights this key's plan allows; make keys whose "
        "plan allows it (max_weight; CLI: he-fed keygen --max-weight 32)"
    )
    # Keys made as the message says take the weight.
    again = tmp_path / "weighted"
    made = CliRunner().invoke(main, ["keygen", "--out", str(again), "--max-weight", "32", *FAST])
    assert made.exit_code == 0, made.output
    weighted = load_public((again / "public.key").read_bytes(), allow_insecure=True)
    assert weighted.encrypt(np.zeros(3), weight=30) is not None
