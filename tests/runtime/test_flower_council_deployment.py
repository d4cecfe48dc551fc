"""A real Flower deployment on loopback with 3-of-5 share holders, one killed mid-run.

One SuperLink; three client SuperNodes, the first of which also holds share 1 (a
hospital that trains and holds a share); four share-holder SuperNodes (shares 2 to
5), each started with its own share file, policy, identity and the council pin;
driven by ``flwr run`` on the shipped app. Once the ServerApp reports round 1,
the node of share holder 2 is killed with SIGKILL. The run completes from holders 1,
3 and 4 (with 3 of 5 the quorum is 4, so one holder may be absent), reports which
shares took part, and its coefficients equal the in-process run's, bit for bit.
Processes are started and stopped as in test_flower_deployment.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from he_fed import ExperimentConfig, run_experiment
from he_fed.crypto.threshold import deal
from he_fed.protocol import Identity
from he_fed.protocol.council import council_pin
from he_fed.runtime.flower.app import keyholder_policy, write_app
from tests.crypto.threshold_fixtures import TEST_ONLY_PRIMES_1024
from tests.runtime.test_flower_deployment import (  # noqa: F401  (deployment is a fixture)
    BIN,
    _connection,
    _free_port,
    _signal_group,
    _wait_for_port,
    _wait_for_text,
    deployment,
)

pytestmark = pytest.mark.slow

CLIENTS = 3
RUN = {"clients": CLIENTS, "rounds": 3, "key_bits": 1024, "allow_insecure": True, "seed": 3}
KILLED = 2


def share_holder_configs(folder: Path, run: dict) -> tuple[list[str], list[str]]:
    """Client node configs (the first also holds share 1) and share-holder node configs
    (shares 2 to 5), each holder with its own files, as a deployment provisions them."""
    folder.mkdir(parents=True, exist_ok=True)
    policy = keyholder_policy(run, trust_on_first_use=True)
    policy.write(folder / "holder.json")
    keys = deal(policy.scheme, threshold=3, holders=5, primes=TEST_ONLY_PRIMES_1024)  # type: ignore[arg-type]
    identities = {share.index: Identity() for share in keys.shares}
    pin = council_pin(3, [identities[i].public_bytes for i in sorted(identities)])
    (folder / "council.pin").write_text(pin.hex())
    holders = {}
    for share in keys.shares:
        i = share.index
        (folder / f"share-{i}.key").write_bytes(share.to_bytes())
        (folder / f"holder{i}.id").write_text(identities[i].private_bytes().hex())
        holders[i] = (
            f"share-file='{folder / f'share-{i}.key'}' policy-file='{folder / 'holder.json'}' "
            f"identity-file='{folder / f'holder{i}.id'}' council-file='{folder / 'council.pin'}' "
            f"federation-file='{folder / f'holder-{i}.federation'}'"
        )
    clients = [
        f"partition-id={k} keyholder-identity='{pin.hex()}' round-file='{folder / f'c{k}.rounds'}'"
        for k in range(CLIENTS)
    ]
    clients[0] += " " + holders.pop(1)
    return clients, [holders[i] for i in sorted(holders)]


def test_a_share_holder_node_killed_mid_run_leaves_the_model_unchanged(deployment, tmp_path):  # noqa: F811
    processes, env = deployment
    link = _free_port()
    _connection(env, "loopback", link, None)
    result = tmp_path / "result.json"
    run = {**RUN, "threshold": "3/5"}
    clients, holders = share_holder_configs(tmp_path / "provisioned", run)
    app = write_app(
        tmp_path / "app",
        **run,
        out=str(result),
        nodes=len(clients) + len(holders),
        reply_timeout=90,
    ).parent
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
    logs = []
    for name, config in [
        *((f"client-{k}", c) for k, c in enumerate(clients)),
        *((f"holder-{i}", h) for i, h in enumerate(holders, start=2)),
    ]:
        args = ["--insecure", "--superlink", f"127.0.0.1:{link}", "--host", "127.0.0.1"]
        args += ["--port", str(_free_port()), "--node-config", config]
        logs.append(processes.start(name, "flower-supernode", *args))
    _wait_for_text(logs, "SuperNode ID", timeout=180)  # all seven nodes have connected

    out = (tmp_path / "flwr-run.log").open("w")
    flwr = subprocess.Popen(
        [str(BIN / "flwr"), "run", str(app), "loopback", "--stream"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Mid-run: once the ServerApp reports round 1 (its release used holder 2).
        _wait_for_text([tmp_path / "flwr-run.log"], "he-fed round 1:", timeout=900)
        victim = processes.started[1 + CLIENTS + KILLED - 2]  # after the SuperLink and clients
        _signal_group(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert flwr.wait(timeout=900) == 0, (tmp_path / "flwr-run.log").read_text()
    finally:
        if flwr.poll() is None:
            _signal_group(flwr.pid, signal.SIGKILL)
            flwr.wait(timeout=30)
        out.close()
    deployed = json.loads(result.read_text())

    inprocess = run_experiment(ExperimentConfig(**RUN)).to_dict()
    assert deployed["final"]["coef"] == inprocess["final"]["coef"]
    assert deployed["final"]["intercept"] == inprocess["final"]["intercept"]
    assert deployed["setup"]["council"] == {
        "threshold": 3,
        "holders": 5,
        "quorum": 4,
        "tolerated_absences": 1,
        "absent": [KILLED],
    }
    # Which shares took part: holders 1 to 3 in round 1; without holder 2 at the end
    # (round 2 may still have used holder 2's partial, if it died during round 2).
    shares = [r["shares"] for r in deployed["rounds"]]
    assert shares[0] == {"used": [1, 2, 3], "refused": []}
    assert shares[-1] == {"used": [1, 3, 4], "refused": []}
    assert all(s["refused"] == [] for s in shares)
    assert [r["contributors"] for r in deployed["rounds"]] == [CLIENTS] * 3
    # The pure share holders never trained; the clients that hold no share never
    # saw a share-holder message; the ServerApp never asked for a single key holder.
    for log in logs[CLIENTS:]:
        text = log.read_text(errors="replace")
        assert "hefed_round" not in text and "hefed_keygen" not in text
        assert "Receiving: train.hefed_share_ticket" in text
    for log in logs[1:CLIENTS]:
        assert "hefed_share" not in log.read_text(errors="replace")
    assert "Receiving: train.hefed_share_partial" in logs[0].read_text(errors="replace")
