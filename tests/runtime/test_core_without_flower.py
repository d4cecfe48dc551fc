"""Flower is optional: the core package and the CLI never import it."""

from __future__ import annotations

import subprocess
import sys


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
