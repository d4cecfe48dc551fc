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
    "dp_sampled",
    "dp_tradeoff",
    "optimizers",
    "paillier_speed",
    "scale",
    "threshold",
]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.mark.parametrize("name", SCRIPTS)
def test_markdown_of_the_committed_json_is_the_committed_markdown(name):
    script = _script(name)
    result = json.loads((BENCHMARKS / "results" / f"{name}.json").read_text(encoding="utf-8"))
    committed = (BENCHMARKS / "results" / f"{name}.md").read_text(encoding="utf-8")
    assert script.markdown(result) == committed


def test_the_scale_grid_renders_one_row_per_cell_with_its_ratio():
    scale = _script("scale")
    result = json.loads((BENCHMARKS / "results" / "scale.json").read_text(encoding="utf-8"))
    timing = {"round_s": 0.5, "coef_digests": ["a"]}
    cell = {"rows": 500, "features": 2000, "scheme": "paillier-packed", "ratio_round": 1.6}
    cell |= {"inprocess": {**timing, "round_s": 0.8}, "processes": timing}
    cell["identical_coefficients"] = True
    grid = {"grid": [cell], "grid_config": scale.GRID, "grid_repeats": 3}
    text = scale.markdown({**result, **grid})
    assert "| paillier-packed | 500 | 2000 | 0.80 | 0.50 | 1.60× | yes |" in text.splitlines()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## The processes executor against inprocess",
        "## The processes executor over a grid",
        "## Time per round and peak memory",
    ]


def test_the_phe_example_uses_the_examples_split():
    data = _script("phe_example").example_data()
    assert data["X_train"].shape == (392, 11) and data["X_test"].shape == (50, 11)
    assert [b.stop - b.start for b in data["blocks"]] == [130, 130, 130]
