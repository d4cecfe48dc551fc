"""A real Flower deployment on loopback: one SuperLink, three client SuperNodes and one
key-holder SuperNode as separate processes, driven by ``flwr run`` on the shipped app;
then the same with TLS and SuperNode authentication, as README describes them; and
``flwr run`` on the same app with Flower's local simulation.

The test starts every process itself (each in its own process group), on free
ports of 127.0.0.1 only, with ``FLWR_HOME`` in a temporary folder, waits until all
four nodes have connected, and stops every process group it started, by PID, also
when the test fails. The coefficients must equal the in-process run's, bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from he_fed import ExperimentConfig, run_experiment
from he_fed.protocol import Identity
from he_fed.runtime.flower.app import keyholder_policy, write_app
from tests.runtime.tls_files import node_key, tls_files

#: Slow: each test starts a SuperLink and SuperNodes.
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CLIENTS = 3
RUN = {"clients": CLIENTS, "rounds": 2, "key_bits": 1024, "allow_insecure": True, "seed": 3}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _wait_for_text(paths: list[Path], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(text in p.read_text(errors="replace") for p in paths):
            return
        time.sleep(0.2)
    missing = [p.name for p in paths if text not in p.read_text(errors="replace")]
    raise AssertionError(f"{missing} never logged {text!r} within {timeout} s")


def _flower_env(home: Path) -> dict[str, str]:
    """The environment of Flower's tools: this venv's ``bin`` first on ``PATH``.

    Flower's tools start each other by name (the SuperLink starts
    ``flower-superlink``'s helpers, ``flwr run`` a local SuperLink), so the tests
    pass whether or not the venv is activated.
    """
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }


class _Processes:
    """Processes this test started, each the leader of its own process group."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = env
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> Path:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            self.started.append(
                subprocess.Popen(
                    [str(BIN / args[0]), *args[1:]],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                )
            )
        return log

    def stop_all(self) -> None:
        """SIGTERM each group, then SIGKILL whatever is left; reap the leaders."""
        for process in self.started:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.started:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def alive_groups(self) -> list[int]:
        alive = []
        for process in self.started:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                continue
            alive.append(process.pid)
        return alive


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[_Processes, dict[str, str]]]:
    home = tmp_path / "flwr-home"
    home.mkdir()
    env = _flower_env(home)
    processes = _Processes(tmp_path, env)
    try:
        yield processes, env
    finally:
        processes.stop_all()
        # Every group gone, grandchildren (SuperExec, ClientApp processes) included.
        deadline = time.monotonic() + 15
        while processes.alive_groups() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes.alive_groups() == []


def _connection(env: dict[str, str], name: str, link: int, root_certificates: Path | None) -> None:
    tls = f'root-certificates = "{root_certificates}"' if root_certificates else "insecure = true"
    (Path(env["FLWR_HOME"]) / "config.toml").write_text(
        f'[superlink]\ndefault = "{name}"\n\n'
        f'[superlink.{name}]\naddress = "127.0.0.1:{link}"\n{tls}\n'
    )


def _check_roles(logs: list[Path]) -> None:
    """Only the key-holder node generated keys and decrypted, and it never trained;
    the client nodes trained and never saw a key request."""
    keyholder_log = logs[-1].read_text(errors="replace")
    assert "Receiving: train.hefed_keygen" in keyholder_log
    assert "Receiving: train.hefed_decrypt" in keyholder_log
    assert "hefed_round" not in keyholder_log
    for log in logs[:-1]:
        text = log.read_text(errors="replace")
        assert "Receiving: train.hefed_round" in text
        assert "hefed_keygen" not in text and "hefed_decrypt" not in text


def _flwr_run(env: dict[str, str], app: Path, connection: str, result: Path) -> dict:
    run = subprocess.run(
        [str(BIN / "flwr"), "run", str(app), connection, "--stream"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert result.exists(), f"the ServerApp wrote no result:\n{run.stdout}\n{run.stderr}"
    assert "he-fed done" in run.stdout
    return json.loads(result.read_text())


def node_configs(folder: Path, run: dict) -> list[str]:
    """Client nodes that pinned the key holder's identity, and a key-holder node with
    its own policy file, identity, secret key and state file, as a deployment
    provisions them (a deployed key-holder node refuses keygen without state-file)."""
    folder.mkdir(parents=True, exist_ok=True)
    identity = Identity()
    (folder / "keyholder.id").write_text(identity.private_bytes().hex())
    policy = keyholder_policy(run, trust_on_first_use=True)
    policy.write(folder / "keyholder.json")
    (folder / "secret.key").write_bytes(policy.scheme.keygen().secret.to_bytes())
    pin = identity.public_bytes.hex()
    clients = [
        f"partition-id={k} keyholder-identity='{pin}' round-file='{folder / f'c{k}.rounds'}'"
        for k in range(CLIENTS)
    ]
    return [
        *clients,
        f"role='keyholder' policy-file='{folder / 'keyholder.json'}' "
        f"identity-file='{folder / 'keyholder.id'}' secret-key-file='{folder / 'secret.key'}' "
        f"state-file='{folder / 'keyholder.state'}'",
    ]


def test_a_loopback_deployment_trains_the_inprocess_model(deployment, tmp_path):
    processes, env = deployment
    link = _free_port()
    _connection(env, "loopback", link, None)
    result = tmp_path / "result.json"
    app = write_app(tmp_path / "app", **RUN, out=str(result)).parent

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
    logs = [
        processes.start(
            f"supernode-{i}",
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
        for i, config in enumerate(node_configs(tmp_path / "provisioned", RUN))
    ]
    _wait_for_text(logs, "SuperNode ID", timeout=120)  # all four nodes have connected

    deployed = _flwr_run(env, app, "loopback", result)
    inprocess = run_experiment(ExperimentConfig(**RUN)).to_dict()
    assert deployed["final"]["coef"] == inprocess["final"]["coef"]
    assert deployed["final"]["intercept"] == inprocess["final"]["intercept"]
    assert deployed["setup"]["executor"] == "flower"
    assert [r["contributors"] for r in deployed["rounds"]] == [CLIENTS] * 2
    _check_roles(logs)
    assert (tmp_path / "provisioned" / "keyholder.state").exists()  # the federation, on disk


def test_tls_and_supernode_authentication_as_the_readme_describes(deployment, tmp_path):
    processes, env = deployment
    ca, cert, key = tls_files(tmp_path / "tls")
    link = _free_port()
    _connection(env, "secure", link, ca)
    result = tmp_path / "result.json"
    run = {**RUN, "rounds": 1}
    app = write_app(tmp_path / "app", **run, out=str(result)).parent

    processes.start(
        "superlink",
        "flower-superlink",
        "--ssl-ca-certfile",
        str(ca),
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(link),
    )
    _wait_for_port(link, timeout=90)
    configs = node_configs(tmp_path / "provisioned", run)
    node_keys = [node_key(tmp_path / "tls", f"node-{i}") for i in range(len(configs))]
    for public in node_keys:
        register = subprocess.run(
            [str(BIN / "flwr"), "supernode", "register", str(public.with_suffix(".pub")), "secure"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert register.returncode == 0, register.stdout + register.stderr
    logs = [
        processes.start(
            f"supernode-{i}",
            "flower-supernode",
            "--root-certificates",
            str(ca),
            "--auth-supernode-private-key",
            str(private),
            "--superlink",
            f"127.0.0.1:{link}",
            "--host",
            "127.0.0.1",
            "--port",
            str(_free_port()),
            "--node-config",
            config,
        )
        for i, (private, config) in enumerate(zip(node_keys, configs, strict=True))
    ]
    # A node whose key was never registered, and one without TLS, are turned away.
    strangers = [
        processes.start(
            "stranger",
            "flower-supernode",
            "--root-certificates",
            str(ca),
            "--auth-supernode-private-key",
            str(node_key(tmp_path / "tls", "stranger")),
            "--superlink",
            f"127.0.0.1:{link}",
            "--host",
            "127.0.0.1",
            "--port",
            str(_free_port()),
            "--node-config",
            "partition-id=0",
        ),
        processes.start(
            "plaintext",
            "flower-supernode",
            "--insecure",
            "--superlink",
            f"127.0.0.1:{link}",
            "--host",
            "127.0.0.1",
            "--port",
            str(_free_port()),
            "--node-config",
            "partition-id=0",
        ),
    ]
    _wait_for_text(logs, "SuperNode ID", timeout=120)

    deployed = _flwr_run(env, app, "secure", result)
    inprocess = run_experiment(ExperimentConfig(**run)).to_dict()
    assert deployed["final"]["coef"] == inprocess["final"]["coef"]
    _check_roles(logs)
    for log in strangers:
        text = log.read_text(errors="replace")
        assert "Connection attempt failed" in text and "SuperNode ID" not in text


def _local_superlinks(flwr_home: Path) -> list[int]:
    """PIDs of the local SuperLink ``flwr run`` started for this FLWR_HOME (it outlives it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "flower-superlink" in command and str(flwr_home) in command:
            pids.append(int(entry.name))
    return pids


def test_flwr_run_simulates_the_shipped_app(tmp_path):
    home = tmp_path / "flwr-home"
    env = _flower_env(home)
    result = tmp_path / "result.json"
    run = {**RUN, "rounds": 1}
    app = write_app(tmp_path / "app", **run, out=str(result)).parent
    try:
        done = subprocess.run(
            [
                str(BIN / "flwr"),
                "run",
                str(app),
                "--stream",
                "--federation-config",
                f"num-supernodes={CLIENTS + 1}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "he-fed done" in done.stdout, done.stdout + done.stderr
        simulated = json.loads(result.read_text())
    finally:
        for pid in _local_superlinks(home):  # started by flwr run for this test only
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    inprocess = run_experiment(ExperimentConfig(**run)).to_dict()
    assert simulated["final"]["coef"] == inprocess["final"]["coef"]
    deadline = time.monotonic() + 15
    while _local_superlinks(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _local_superlinks(home) == []
