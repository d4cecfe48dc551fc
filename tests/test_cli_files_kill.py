"""A client or the aggregator killed with SIGKILL at its worst moment, in the file workflow.

The worst moment of either is between saving its state and writing its output:
the state says the round is done, the output never left. The command runs in a
real process whose profile hook (set there only, no change to he-fed) sends it
SIGKILL as its first file rename returns, which is its state's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from he_fed.experiment import run_experiment
from tests.cli_files_flow import CLIENTS, Flow, experiment, in_process, write_partitions

pytestmark = pytest.mark.slow

_KILLED_AFTER_ITS_STATE = textwrap.dedent(
    """
    import os, signal, sys
    from he_fed.cli import main

    def kill(frame, event, arg):
        if event == "c_return" and arg is os.replace:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(kill)
    main(args=sys.argv[1:], prog_name="he-fed")
    """
)


@pytest.fixture
def flow(tmp_path, monkeypatch):
    """Three hospitals in tmp_path, two of which make a cohort, past the two
    statistics rounds (a killed client leaves the others a cohort to sum)."""
    monkeypatch.chdir(tmp_path)
    flow = Flow(in_process)
    flow.setup(write_partitions(tmp_path, experiment(rounds=1)), "--min-clients", "2")
    flow.round(0)
    flow.round(1)
    return flow


def _killed(args):
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_ITS_STATE, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    return done


def _without_release(args):
    at = args.index("--release")
    return args[:at] + args[at + 2 :]


def _released(path):
    return json.loads(path.read_text())


def test_a_killed_client_loses_the_round_only(flow, tmp_path):
    flow.ticket(2)
    _killed(flow.client_args("hospital-a", 2))
    assert not (tmp_path / "hospital-a-2.update").exists()
    # Its state says it answered round 2, so it does not answer it twice.
    [again] = flow.run(flow.client_args("hospital-a", 2), ok=False)
    assert "already answered round 2" in again.output
    flow.answer(2, CLIENTS[1:])
    flow.run(flow.aggregate_args(2, CLIENTS[1:]))
    # Without a privacy budget the key holder releases only its first cohort's rounds
    # (he_fed.protocol.normalisers): the two others' aggregate is refused undecrypted.
    [refused] = flow.run(flow.decrypt_args(2), ok=False)
    assert "must come from the federation's cohort" in refused.output
    assert not (tmp_path / "round-2.json").exists()
    flow.ticket(3)  # the next ticket: it answers again, and the round is released
    flow.answer(3)
    flow.run(_without_release(flow.aggregate_args(3)))
    flow.run(flow.decrypt_args(3))
    assert _released(tmp_path / "round-3.json")["contributors"] == 3


def test_a_killed_aggregator_loses_the_open_round_and_the_clients_resend(flow, tmp_path):
    flow.ticket(2)
    flow.answer(2)
    _killed(flow.aggregate_args(2))
    assert not (tmp_path / "round-2.aggregate").exists()
    # Its state has round 1's release applied and round 2 open: the same ticket is refused.
    [again] = flow.run(_without_release(flow.aggregate_args(2)), ok=False)
    assert "ticket for round 2 is not newer than 2" in again.output
    # The key holder's next ticket starts the round over (round 2 is never
    # decrypted), and every client answers it.
    flow.ticket(3)
    flow.answer(3)
    flow.run(_without_release(flow.aggregate_args(3)))
    flow.run(flow.decrypt_args(3))
    released = _released(tmp_path / "round-3.json")
    assert released["contributors"] == 3
    # Nothing else was lost: the model is he-fed run's after one training round.
    expected = run_experiment(experiment(rounds=1)).final
    assert released["coef"] == np.asarray(expected["coef"]).tolist()
    assert released["intercept"] == expected["intercept"]
