"""Each benchmark script renders its committed results file into its committed table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = [
    "batch_verify",
    "ckks_large",
    "ckks_speed",
    "commitment_proof",
    "dp_repeats",
    "dp_sampled",
    "dp_tradeoff",
    "estimate_accuracy",
    "flower_profile",
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
        "## 10,000 clients",
    ]


def test_the_phe_example_uses_the_examples_split():
    data = _script("phe_example").example_data()
    assert data["X_train"].shape == (392, 11) and data["X_test"].shape == (50, 11)
    assert [b.stop - b.start for b in data["blocks"]] == [130, 130, 130]


def test_every_stage_the_phe_example_profiles_names_a_function_of_he_fed():
    # A renamed function would leave its stage at 0 % and the rest in "everything else".
    package = Path(__file__).parents[1] / "he_fed"
    defined = {
        f"{path.name}:{line.split('def ', 1)[1].split('(', 1)[0]}"
        for path in package.rglob("*.py")
        for line in path.read_text().splitlines()
        if line.lstrip().startswith("def ")
    }
    stages = _script("phe_example").STAGES
    needed = {name for _, names in stages for name in names}
    assert len(stages) == 21
    assert needed <= defined, needed - defined


def test_large_rows_measured_apart_merge_by_client_count_and_executor():
    scale = _script("scale")

    def row(clients, executor, digest):
        return {"clients": clients, "executor": executor, "coef_digest": digest}

    kept = {"rounds": 1, "rows": [row(10000, "processes", "a"), row(10000, "inprocess", "a")]}
    new = [row(10000, "inprocess", "b"), row(3000, "flower", "c")]
    merged = scale._merge_large(kept, {"clients": [3000]}, 1, new)
    assert [(r["clients"], r["executor"]) for r in merged["rows"]] == [
        (3000, "flower"),
        (10000, "inprocess"),
        (10000, "processes"),
    ]
    assert merged["clients"] == [3000, 10000]
    same = [r["same_coefficients_as_every_executor"] for r in merged["rows"]]
    assert same == [True, False, False]  # the new inprocess row disagrees with processes
    # Rows of another round count are not kept beside the new ones.
    assert scale._merge_large({**kept, "rounds": 2}, {}, 1, new)["clients"] == [3000, 10000]
    assert len(scale._merge_large({**kept, "rounds": 2}, {}, 1, new)["rows"]) == 2
