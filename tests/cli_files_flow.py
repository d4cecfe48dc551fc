"""The file workflow driven through its commands only, in process or as separate processes.

A :class:`Flow` runs in one folder (the current directory) and plays every role
through the ``he-fed`` command line: ``in_process`` runs click's CliRunner,
``in_processes`` the installed ``he-fed`` entry point, one process per command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from he_fed.cli import main

from he_fed.experiment import ExperimentConfig, experiment_data, make_estimator

CLIENTS = ("hospital-a", "hospital-b", "hospital-c")
#: Options of every command that loads the 1024-bit test key.
INSECURE = ("--allow-insecure",)
KEYHOLDER = ("--secret-key", "keyholder/secret.key", *INSECURE)


@dataclass(frozen=True)
class Outcome:
    """A command's exit code and everything it printed (stdout, then stderr)."""

    exit_code: int
    output: str


Runner = Callable[[Sequence[Sequence[str]]], list[Outcome]]


def in_process(commands: Sequence[Sequence[str]]) -> list[Outcome]:
    """Run each command with click's CliRunner, one after another."""
    outcomes = []
    for args in commands:
        result = CliRunner().invoke(main, list(args))
        outcomes.append(Outcome(result.exit_code, result.output))
    return outcomes


def _entry_point() -> str:
    found = Path(sys.executable).with_name("he-fed")
    return str(found) if found.exists() else str(shutil.which("he-fed"))


def in_processes(commands: Sequence[Sequence[str]]) -> list[Outcome]:
    """Run the commands as separate ``he-fed`` processes, all at once (they are independent)."""
    env = {**os.environ, "COLUMNS": "100"}
    running = [
        subprocess.Popen(
            [_entry_point(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in commands
    ]
    outcomes = []
    for process in running:
        stdout, stderr = process.communicate(timeout=300)
        outcomes.append(Outcome(process.returncode, stdout + stderr))
    return outcomes


def experiment(rounds: int) -> ExperimentConfig:
    """The ``he-fed run`` experiment the flow reproduces: breast cancer over three clients."""
    return ExperimentConfig(clients=len(CLIENTS), rounds=rounds, key_bits=1024, allow_insecure=True)


def write_partitions(folder: Path, config: ExperimentConfig) -> tuple[int, int, float]:
    """Each client's share, as ``he-fed run`` deals it, as ``NAME.csv`` with a ``label`` column.

    Returns the plan ``he-fed run`` would use: ``(max_clients, max_weight, clip)``.
    Values are written with ``repr``, so the files hold the very same doubles.
    """
    data = experiment_data(config)
    sizes = []
    for index, name in enumerate(CLIENTS):
        X, y = data.client_data(index)
        sizes.append(len(y))
        header = [f"x{i}" for i in range(X.shape[1])] + ["label"]
        lines = [",".join(header)]
        lines += [
            ",".join([*(repr(float(v)) for v in row), str(label)])
            for row, label in zip(X, y, strict=True)
        ]
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    scheme = make_estimator(config, data.model).plan_scheme(sizes)
    return scheme.max_clients, scheme.max_weight, scheme.clip


class Flow:
    """Every role of one federation, each a command run by ``runner`` in the current folder."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def run(self, *commands: Sequence[str], ok: bool = True) -> list[Outcome]:
        """Run commands (at once, where the runner can); with ``ok``, each must succeed."""
        outcomes = self.runner([[str(a) for a in args] for args in commands])
        if ok:
            for args, outcome in zip(commands, outcomes, strict=True):
                assert outcome.exit_code == 0, f"he-fed {' '.join(args)}: {outcome.output}"
        return outcomes

    def setup(self, plan: tuple[int, int, float], *init: str) -> None:
        """Keys, the clients' identities and the federation file (``init``: more options)."""
        max_clients, max_weight, clip = plan
        self.run(
            ["keygen", "--out", "keyholder", "--key-bits", "1024", *INSECURE]
            + ["--max-clients", max_clients, "--max-weight", max_weight, "--clip", clip]
        )
        self.run(*(["identity", "--id", name, "--out", name] for name in CLIENTS))
        registered = [a for name in CLIENTS for a in ("--client", f"{name}/{name}.pub")]
        self.run(
            ["federation", "init", *KEYHOLDER, "--features", "30", "--classes", "0,1", *registered]
            + list(init)
        )

    def client_args(self, name: str, round_id: int) -> list[str]:
        """``he-fed client`` for ``name`` answering round ``round_id``'s ticket."""
        return [
            "client",
            f"round-{round_id}.ticket",
            "--federation",
            "federation.hefed",
            "--public-key",
            "keyholder/public.key",
            "--identity",
            f"{name}/{name}.id",
            "--data",
            f"{name}.csv",
            "--target",
            "label",
            "--out",
            f"{name}-{round_id}.update",
            *INSECURE,
        ]

    def aggregate_args(self, round_id: int, names: Sequence[str] = CLIENTS) -> list[str]:
        """``he-fed aggregate`` of ``names``' updates, applying the previous release first."""
        release = ["--release", f"round-{round_id - 1}.release"] if round_id else []
        return [
            "aggregate",
            *(f"{name}-{round_id}.update" for name in names),
            "--federation",
            "federation.hefed",
            "--key",
            "keyholder/aggregator.key",
            "--ticket",
            f"round-{round_id}.ticket",
            *release,
            "--out",
            f"round-{round_id}.aggregate",
            *INSECURE,
        ]

    def decrypt_args(self, round_id: int) -> list[str]:
        """``he-fed decrypt`` of round ``round_id``'s aggregate, with its JSON."""
        return [
            "decrypt",
            *KEYHOLDER,
            f"round-{round_id}.aggregate",
            "--out",
            f"round-{round_id}.release",
            "--json",
            f"round-{round_id}.json",
        ]

    def ticket(self, round_id: int) -> None:
        """The key holder signs round ``round_id``'s ticket."""
        self.run(["ticket", *KEYHOLDER, "--out", f"round-{round_id}.ticket"])

    def answer(self, round_id: int, names: Sequence[str] = CLIENTS) -> None:
        """The clients answer round ``round_id`` (at once, where the runner can)."""
        self.run(*(self.client_args(name, round_id) for name in names))

    def round(self, round_id: int) -> None:
        """A whole round: ticket, every client, the aggregate, the release."""
        self.ticket(round_id)
        self.answer(round_id)
        self.run(self.aggregate_args(round_id))
        self.run(self.decrypt_args(round_id))
