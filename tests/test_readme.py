"""README's figures come from the committed benchmark results, and its commands are real."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _updater():
    spec = importlib.util.spec_from_file_location(
        "update_readme", ROOT / "benchmarks" / "update_readme.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_readme_tables_match_the_committed_results():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _updater().render(readme) == readme, "run python benchmarks/update_readme.py"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install . && he-fed run" in readme
    assert 'pip install -e ".[test]" && pytest' in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -e ".[test]" && pytest' in ci


def test_the_chinese_readme_gives_the_same_commands_and_sections():
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    for command in ("pip install . && he-fed run", 'pip install -e ".[test]" && pytest'):
        assert command in english and command in chinese
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in notebooks:
        assert name in english and name in chinese


def test_the_worked_example_shows_what_he_fed_run_prints():
    """Accuracy, loss, bytes and key sizes are deterministic; only the times vary."""
    from click.testing import CliRunner
    from he_fed.cli import main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("$ he-fed run\n", 1)[1].split("time per phase", 1)[0]
    shown = [line for line in example.splitlines() if line.strip()]
    assert len(shown) >= 8 and "0.9580" in example
    result = CliRunner().invoke(main, ["run"], catch_exceptions=False, terminal_width=100)
    assert result.exit_code == 0
    printed = result.output.splitlines()
    assert [line for line in shown if line not in printed] == []
    phases = readme.split("time per phase", 1)[1].split("```", 1)[0]
    for phase in (
        "local training",
        "encode + encrypt",
        "commit, sign, prove",
        "serialize",
        "aggregate",
        "decrypt",
        "key generation",
        "wall clock",
    ):
        assert phase in phases and phase in result.output
