"""Flower is optional: the core package and the CLI never import it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import he_fed.cli

import he_fed


def test_importing_he_fed_and_its_cli_does_not_import_flower_or_ray():
    code = (
        "import sys, he_fed, he_fed.runtime, he_fed.cli, he_fed.experiment\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('flwr', 'ray'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_flower_the_flower_executor_says_how_to_get_it():
    # A meta path hook that hides flwr, as in an install without the extra.
    code = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'flwr':\n"
        "            raise ImportError('No module named ' + repr(name))\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from he_fed import ExperimentConfig, run_experiment\n"
        "from he_fed.exceptions import ConfigurationError\n"
        "try:\n"
        "    run_experiment(ExperimentConfig(scheme='plain', rounds=1, executor='flower'))\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert 'pip install "he-fed[flower]"' in done.stdout


def test_only_he_fed_runtime_flower_imports_flower():
    roots = [Path(he_fed.__file__).parent, Path(he_fed.cli.__file__).parent]
    flower = Path(he_fed.__file__).parent / "runtime" / "flower"
    offenders = []
    for root in roots:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module.split(".")[0]]
                if {"flwr", "ray"} & set(names) and flower not in path.parents:
                    offenders.append(f"{path}:{node.lineno}")
    assert offenders == []
