"""Each benchmark script renders its committed results file into its committed table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = [
    "ckks_large",
    "ckks_speed",
    "commitment_proof",
    "dp_repeats",
    "dp_tradeoff",
    "optimizers",
    "paillier_speed",
    "scale",
    "threshold",
]


@pytest.mark.parametrize("name", SCRIPTS)
def test_markdown_of_the_committed_json_is_the_committed_markdown(name):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result = json.loads((BENCHMARKS / "results" / f"{name}.json").read_text(encoding="utf-8"))
    committed = (BENCHMARKS / "results" / f"{name}.md").read_text(encoding="utf-8")
    assert script.markdown(result) == committed
