"""No pickle or marshal anywhere in the package: every format is explicit."""

from __future__ import annotations

import ast
from pathlib import Path

import he_fed.cli

import he_fed

FORBIDDEN = {"pickle", "marshal", "dill", "cloudpickle", "shelve", "joblib"}


def test_the_package_never_imports_a_code_executing_serializer():
    # he_fed.cli lives in the top-level cli/ folder, mapped into the package.
    roots = [Path(he_fed.__file__).parent, Path(he_fed.cli.__file__).parent]
    offenders = []
    for root in roots:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module.split(".")[0]]
                offenders += [f"{path}:{node.lineno} {n}" for n in names if n in FORBIDDEN]
    assert sum(1 for root in roots for _ in root.rglob("*.py")) > 20
    assert offenders == []
