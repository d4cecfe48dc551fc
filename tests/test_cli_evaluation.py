"""``he-fed run`` with federated validation, early stopping, candidates and server optimizers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from he_fed.cli import main

FAST = ["--key-bits", "1024", "--allow-insecure"]


def test_validation_split_and_early_stopping_report_the_global_figure_per_round(tmp_path):
    out = tmp_path / "result.json"
    args = ["run", "--dataset", "wine", "--rounds", "12", "--validation-split", "0.2"]
    args += ["--early-stopping", "5", "--lr", "0.1,0.5", "--server-optimizer", "avgm"]
    args += ["--server-lr", "0.5", "--json", str(out), *FAST]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rounds, final = data["rounds"], data["final"]
    assert all(isinstance(r["validation_loss"], float) for r in rounds)
    assert all(r["validation_bytes_up"] > 0 for r in rounds)
    best = final["best_round"]
    assert rounds[best - 1]["validation_loss"] == min(r["validation_loss"] for r in rounds)
    assert final["validation_loss"] == rounds[best - 1]["validation_loss"]
    assert final["metric"] == rounds[best - 1]["metric"]
    assert final["learning_rate"] in (0.1, 0.5)
    chosen = min(data["setup"]["selection"], key=lambda s: s["validation_loss"])
    assert chosen["learning_rate"] == final["learning_rate"]
    for text in (
        "federated validation, per round",
        "validation accuracy",
        f"{best} (kept)",
        f"lr {final['learning_rate']:g}",
    ):
        assert text in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--early-stopping", "5"], "set validation_split"),
        (["--validation-every", "7"], "set validation_split"),
        (["--lr", "0.1,fast"], "not a number or a comma-separated list"),
        (["--server-optimizer", "sgd"], "'sgd' is not one of"),
        (["--validation-split", "2"], "validation_split"),
    ],
)
def test_bad_adjustment_flags_are_one_line_errors(args, message):
    result = CliRunner().invoke(main, ["run", "--scheme", "plain", "--rounds", "1", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
