"""Kill ``he-fed run --checkpoint DIR`` with SIGKILL, again and again; rerun it each time.

The final coefficients equal an uninterrupted run's bit for bit (packed Paillier),
and the JSON history holds every round once. Kills land after a chosen round has
been recorded, plus a random delay, so they fall anywhere in the next round:
between a ticket and its journal, between the journal and the release, or between
the release and the progress record.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from he_fed.experiment import ExperimentConfig, run_experiment
from he_fed.runtime.checkpoint import peek_progress

pytestmark = pytest.mark.slow

HE_FED = [sys.executable, "-c", "from he_fed.cli import main; main()"]
CONFIG = dict(key_bits=1024, allow_insecure=True, clients=4, rounds=8, dropout=0.2, seed=3)
ARGS = [
    "run",
    "--key-bits",
    "1024",
    "--allow-insecure",
    "--clients",
    "4",
    "--rounds",
    "8",
    "--dropout",
    "0.2",
    "--seed",
    "3",
    "--quiet",
]


def _kill_after(command, folder, done, delay):
    """Start ``command``; SIGKILL it ``delay`` s after ``done`` training rounds are saved."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        progress = peek_progress(folder)
        if progress is not None and progress.training_rounds >= done:
            break
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return process.returncode, progress.training_rounds if progress else None


def test_a_run_killed_at_random_rounds_resumes_to_the_uninterrupted_coefficients(tmp_path):
    reference = run_experiment(ExperimentConfig(**CONFIG))
    folder, out = tmp_path / "ck", tmp_path / "result.json"
    command = [*HE_FED, *ARGS, "--checkpoint", str(folder), "--json", str(out)]
    chooser = random.Random(18)
    killed = []
    for done in sorted(chooser.sample(range(1, 7), 3)):
        code, seen = _kill_after(command, folder, done, chooser.uniform(0.0, 0.3))
        killed.append(code)
        assert seen is not None and seen >= done
    assert killed == [-signal.SIGKILL] * 3
    assert not out.exists()  # no run got to its end
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "resumed from round " in finished.stderr
    result, expected = json.loads(out.read_text()), reference.to_dict()
    assert result["final"]["coef"] == expected["final"]["coef"]
    assert result["final"]["intercept"] == expected["final"]["intercept"]
    assert [r["round"] for r in result["rounds"]] == list(range(1, 9))
    assert [r["contributors"] for r in result["rounds"]] == [
        r.contributors for r in reference.rounds
    ]
    assert [r["metric"] for r in result["rounds"]] == [r.metric for r in reference.rounds]
