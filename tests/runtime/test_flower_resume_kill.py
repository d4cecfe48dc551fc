"""A real loopback deployment whose ServerApp is killed (SIGKILL) mid-run, then run again.

One SuperLink, three client SuperNodes (each with its ``identity-file``) and a
key-holder SuperNode with a ``state-file``, as separate processes, driven by
``flwr run`` on the shipped app with run config ``checkpoint``. The ServerApp's
process (the SuperLink's ``flwr-serverapp`` child) is killed as the key-holder
node receives train round 2's decryption request. Flower cannot restart that
run, so a second ``flwr run`` with the same run configuration is the restart:
a new run, whose nodes have empty node states, over the same disks.

The second run resumes: every round once in the history, the in-process
coefficients bit for bit, and one release per round in the key holder's state
file, none twice. Several minutes on a loaded 2-core machine, hence slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from he_fed import ExperimentConfig, run_experiment
from he_fed.crypto import load_secret
from he_fed.protocol import Identity
from he_fed.runtime.flower.app import keyholder_policy, write_app
from he_fed.runtime.keyholder_store import KeyHolderStore
from tests.runtime.test_flower_deployment import (
    BIN,
    CLIENTS,
    _connection,
    _flwr_run,
    _free_port,
    _wait_for_port,
    _wait_for_text,
    deployment,  # noqa: F401 - the fixture
)
from tests.runtime.test_flower_kill import _wait_for_count

pytestmark = pytest.mark.slow

RUN = {"clients": CLIENTS, "rounds": 3, "key_bits": 1024, "allow_insecure": True, "seed": 3}


def _provision(folder: Path) -> tuple[list[str], str]:
    """Client node configs (pinned key holder, own identity-file), and the key holder's."""
    folder.mkdir(parents=True)
    identity = Identity()
    (folder / "keyholder.id").write_text(identity.private_bytes().hex())
    policy = keyholder_policy(RUN, trust_on_first_use=True)
    policy.write(folder / "keyholder.json")
    (folder / "secret.key").write_bytes(policy.scheme.keygen().secret.to_bytes())
    pin = identity.public_bytes.hex()
    clients = []
    for k in range(CLIENTS):
        (folder / f"client{k}.id").write_text(Identity().private_bytes().hex())
        clients.append(
            f"partition-id={k} keyholder-identity='{pin}' "
            f"identity-file='{folder / f'client{k}.id'}'"
        )
    keyholder = (
        f"role='keyholder' policy-file='{folder / 'keyholder.json'}' "
        f"identity-file='{folder / 'keyholder.id'}' secret-key-file='{folder / 'secret.key'}' "
        f"state-file='{folder / 'keyholder.state'}'"
    )
    return clients, keyholder


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _server_app_pids(superlink: int) -> list[int]:
    """The ``flwr-serverapp`` processes under the SuperLink this test started."""
    pids, todo = [], [superlink]
    while todo:
        for child in _children(todo.pop()):
            todo.append(child)
            try:
                command = (Path("/proc") / str(child) / "cmdline").read_bytes()
            except OSError:
                continue
            if b"flwr-serverapp" in command:
                pids.append(child)
    return pids


def test_a_killed_server_app_resumes_in_the_next_run_to_the_same_coefficients(
    deployment,  # noqa: F811
    tmp_path,
):
    processes, env = deployment
    link = _free_port()
    _connection(env, "loopback", link, None)
    result = tmp_path / "result.json"
    checkpoint = tmp_path / "server-checkpoint"
    app = write_app(tmp_path / "app", **RUN, out=str(result), checkpoint=str(checkpoint)).parent
    clients, keyholder = _provision(tmp_path / "provisioned")
    processes.start(
        "superlink",
        "flower-superlink",
        "--insecure",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(link),
    )
    _wait_for_port(link, timeout=90)

    def supernode(name: str, config: str) -> Path:
        return processes.start(
            name,
            "flower-supernode",
            "--insecure",
            "--superlink",
            f"127.0.0.1:{link}",
            "--host",
            "127.0.0.1",
            "--port",
            str(_free_port()),
            "--node-config",
            config,
        )

    logs = [supernode(f"supernode-{i}", config) for i, config in enumerate(clients)]
    logs.append(supernode("keyholder", keyholder))
    _wait_for_text(logs, "SuperNode ID", timeout=120)

    first = subprocess.Popen(
        [str(BIN / "flwr"), "run", str(app), "loopback", "--stream"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Two statistics rounds and train round 1 decrypted; kill as train round 2's comes.
        _wait_for_count(logs[-1], "Receiving: train.hefed_decrypt", 4, timeout=600)
        killed = _server_app_pids(processes.started[0].pid)
        assert killed, "no flwr-serverapp process under the SuperLink"
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
    finally:
        first.wait(timeout=120)
    assert not result.exists()  # the first run never finished

    resumed = _flwr_run(env, app, "loopback", result)  # the same command, a new run
    inprocess = run_experiment(ExperimentConfig(**RUN)).to_dict()
    assert resumed["final"]["coef"] == inprocess["final"]["coef"]
    assert resumed["final"]["intercept"] == inprocess["final"]["intercept"]
    assert [r["round"] for r in resumed["rounds"]] == [1, 2, 3]
    assert [r["contributors"] for r in resumed["rounds"]] == [CLIENTS] * 3
    assert "Receiving: train.hefed_reopen" in logs[-1].read_text(errors="replace")
    folder = tmp_path / "provisioned"
    keys = load_secret((folder / "secret.key").read_bytes(), allow_insecure=True)
    identity = Identity.from_private_bytes(bytes.fromhex((folder / "keyholder.id").read_text()))
    with KeyHolderStore.open(folder / "keyholder.state", keys, identity) as store:
        released = [r.round for r in store.releases]
    assert len(released) == 5 and len(set(released)) == 5  # two statistics, three train
