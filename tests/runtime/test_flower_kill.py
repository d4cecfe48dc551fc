"""A real loopback deployment whose key-holder SuperNode is killed (SIGKILL) mid-run.

One SuperLink, three client SuperNodes and a key-holder SuperNode with a
``state-file`` (and its secret key, identity and policy in files), as separate
processes, driven by ``flwr run`` on the shipped app. The key-holder node's
process group (the SuperNode and the ClientApp process handling the message) is
killed twice: as it receives train round 1's ticket request, and as its
restarted successor receives its first decryption request. Each time it is
restarted with the same node config; it joins as a new Flower node, and the
ServerApp asks it again once the SuperLink reports the old node unavailable
(Flower's heartbeat: up to 60 s per kill; about 8 minutes on a loaded 2-core
machine, hence slow).

The run loses no round and releases none twice: the history has every round
once, the coefficients equal the in-process run's bit for bit, and the state file
holds one release per round.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
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
    _free_port,
    _signal_group,
    _wait_for_port,
    _wait_for_text,
    deployment,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.slow

RUN = {"clients": CLIENTS, "rounds": 2, "key_bits": 1024, "allow_insecure": True, "seed": 3}


def _provision(folder: Path) -> tuple[list[str], str]:
    """Client node configs pinning the key holder, and the key holder's node config."""
    folder.mkdir(parents=True)
    identity = Identity()
    (folder / "keyholder.id").write_text(identity.private_bytes().hex())
    policy = keyholder_policy(RUN, trust_on_first_use=True)
    policy.write(folder / "keyholder.json")
    (folder / "secret.key").write_bytes(policy.scheme.keygen().secret.to_bytes())
    pin = identity.public_bytes.hex()
    clients = [
        f"partition-id={k} keyholder-identity='{pin}' round-file='{folder / f'c{k}.rounds'}'"
        for k in range(CLIENTS)
    ]
    keyholder = (
        f"role='keyholder' policy-file='{folder / 'keyholder.json'}' "
        f"identity-file='{folder / 'keyholder.id'}' secret-key-file='{folder / 'secret.key'}' "
        f"state-file='{folder / 'keyholder.state'}'"
    )
    return clients, keyholder


def _count(log: Path, text: str) -> int:
    return log.read_text(errors="replace").count(text)


def _wait_for_count(log: Path, text: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _count(log, text) < count:
        assert time.monotonic() < deadline, f"{log.name} never logged {text!r} {count} times"
        time.sleep(0.05)


def test_a_killed_and_restarted_key_holder_node_loses_no_round_and_releases_none_twice(
    deployment,  # noqa: F811
    tmp_path,
):
    processes, env = deployment
    link = _free_port()
    _connection(env, "loopback", link, None)
    result = tmp_path / "result.json"
    app = write_app(tmp_path / "app", **RUN, out=str(result)).parent
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
    logs.append(supernode("keyholder-0", keyholder))
    _wait_for_text(logs, "SuperNode ID", timeout=120)

    run = subprocess.Popen(
        [str(BIN / "flwr"), "run", str(app), "loopback", "--stream"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Kill 1: as the ticket of train round 1 (after the two statistics rounds) is asked.
        _wait_for_count(logs[-1], "Receiving: train.hefed_ticket", 3, timeout=300)
        _signal_group(processes.started[-1].pid, signal.SIGKILL)
        second = supernode("keyholder-1", keyholder)
        # Kill 2: the restarted node, as it is asked for its first decryption.
        _wait_for_count(second, "Receiving: train.hefed_decrypt", 1, timeout=300)
        _signal_group(processes.started[-1].pid, signal.SIGKILL)
        third = supernode("keyholder-2", keyholder)
        output, _ = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, output
    assert "he-fed done" in output, output

    deployed = json.loads(result.read_text())
    inprocess = run_experiment(ExperimentConfig(**RUN)).to_dict()
    assert deployed["final"]["coef"] == inprocess["final"]["coef"]
    assert deployed["final"]["intercept"] == inprocess["final"]["intercept"]
    assert [r["round"] for r in deployed["rounds"]] == [1, 2]
    assert [r["contributors"] for r in deployed["rounds"]] == [CLIENTS] * 2
    # The third node finished the run; the state file has one release per round it
    # decrypted: two statistics rounds and two training rounds, none twice.
    assert _count(third, "Receiving: train.hefed_decrypt") >= 1
    folder = tmp_path / "provisioned"
    policy = keyholder_policy(RUN, trust_on_first_use=True)
    keys = load_secret((folder / "secret.key").read_bytes(), allow_insecure=True)
    assert keys.public.scheme == policy.scheme
    identity = Identity.from_private_bytes(bytes.fromhex((folder / "keyholder.id").read_text()))
    with KeyHolderStore.open(folder / "keyholder.state", keys, identity) as store:
        released = [r.round for r in store.releases]
    assert len(released) == 4 and len(set(released)) == 4
