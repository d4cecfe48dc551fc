"""The file workflow: every role a command, every arrow a file, the same model as he-fed run."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from he_fed.experiment import run_experiment
from he_fed.protocol import EncryptedUpdate, decode, encode
from tests.cli_files_flow import (
    CLIENTS,
    KEYHOLDER,
    Flow,
    experiment,
    in_process,
    in_processes,
    write_partitions,
)


@pytest.fixture
def flow(tmp_path, monkeypatch):
    """A federation of three hospitals set up in tmp_path, driven in process."""
    monkeypatch.chdir(tmp_path)
    flow = Flow(in_process)
    flow.setup(write_partitions(tmp_path, experiment(rounds=1)))
    return flow


@pytest.fixture
def flow_of_two(tmp_path, monkeypatch):
    """Three hospitals, of which two make a cohort (``--min-clients 2``)."""
    monkeypatch.chdir(tmp_path)
    flow = Flow(in_process)
    flow.setup(write_partitions(tmp_path, experiment(rounds=1)), "--min-clients", "2")
    return flow


def _final(path):
    record = json.loads(path.read_text())
    return record["coef"], record["intercept"]


def _one_line_error(outcome, *fragments):
    assert outcome.exit_code == 1, outcome.output
    assert "Traceback" not in outcome.output
    assert outcome.output.strip().count("\n") == 0, outcome.output
    for fragment in fragments:
        assert fragment in outcome.output, outcome.output


@pytest.mark.parametrize("spelling", [None, {"0": "0.0", "1": "1.00"}])
def test_the_commands_train_exactly_the_model_he_fed_run_trains(flow, tmp_path, spelling):
    """However a client's file spells the classes ``0,1`` (``1.00`` is the class ``1``),
    it holds the plan's own labels, so its plan's digest is the one its tickets name."""
    if spelling is not None:
        path = tmp_path / "hospital-a.csv"
        head, *rows = path.read_text(encoding="utf-8").splitlines()
        rows = [row.rpartition(",")[0] + "," + spelling[row.rpartition(",")[2]] for row in rows]
        path.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
    for round_id in range(4):  # the two statistics rounds, then two training rounds
        flow.round(round_id)
    expected = run_experiment(experiment(rounds=2)).final
    coef, intercept = _final(tmp_path / "round-3.json")
    assert coef == np.asarray(expected["coef"]).tolist()
    assert intercept == expected["intercept"]
    assert json.loads((tmp_path / "round-3.json").read_text())["contributors"] == 3


def test_classes_that_name_one_number_twice_are_refused(flow):
    [outcome] = flow.run(
        ["federation", "init", *KEYHOLDER, "--features", "30", "--classes", "1,1.0", "--force"]
        + [a for name in CLIENTS for a in ("--client", f"{name}/{name}.pub")],
        ok=False,
    )
    _one_line_error(outcome, "--model logistic needs --classes")


def test_a_federation_its_clients_could_never_train_is_refused_at_init(flow, tmp_path):
    """A seed past 2**32 was signed into the federation file, and every client then
    refused every ticket; one registered client made a federation whose first ticket
    was refused (an audit). Both are refused before the state is replaced."""
    state = (tmp_path / "keyholder" / "keyholder.state").read_bytes()
    init = ["federation", "init", *KEYHOLDER, "--features", "30", "--classes", "0,1", "--force"]
    everyone = [a for name in CLIENTS for a in ("--client", f"{name}/{name}.pub")]
    [outcome] = flow.run([*init, *everyone, "--seed", str(2**40)], ok=False)
    _one_line_error(outcome, "--seed must be an integer in [0, 4294967295]")
    [outcome] = flow.run([*init, *everyone[:2]], ok=False)
    _one_line_error(outcome, "1 client(s) cannot make the default minimum cohort of 2")
    assert (tmp_path / "keyholder" / "keyholder.state").read_bytes() == state


def test_a_client_whose_file_holds_another_label_is_refused(flow, tmp_path):
    path = tmp_path / "hospital-a.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(",1\n", ",yes\n", 1), encoding="utf-8")
    flow.ticket(0)
    [outcome] = flow.run(flow.client_args("hospital-a", 0), ok=False)
    _one_line_error(outcome, "ConfigurationError", "labels ['yes'] that are not the federation's")


def test_a_tampered_update_is_refused_and_named(flow_of_two, tmp_path):
    flow = flow_of_two
    flow.round(0)
    flow.ticket(1)
    flow.answer(1)
    state = (tmp_path / "keyholder" / "aggregator.state").read_bytes()
    flipped = bytearray((tmp_path / "hospital-c-1.update").read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    (tmp_path / "hospital-c-1.update").write_bytes(bytes(flipped))
    [outcome] = flow.run(flow.aggregate_args(1), ok=False)
    _one_line_error(
        outcome, "refused 1 of 3 update(s), nothing written", "hospital-c-1.update", "checksum"
    )
    assert not (tmp_path / "round-1.aggregate").exists()
    assert (tmp_path / "keyholder" / "aggregator.state").read_bytes() == state

    # A well-formed forgery: hospital-b's ciphertext re-labelled as hospital-c's.
    b = decode((tmp_path / "hospital-b-1.update").read_bytes(), EncryptedUpdate)
    forged = dataclasses.replace(b, client_id="hospital-c")
    (tmp_path / "hospital-c-1.update").write_bytes(encode(forged))
    [outcome] = flow.run(flow.aggregate_args(1), ok=False)
    _one_line_error(outcome, "hospital-c-1.update (InvalidSignature")

    [outcome] = flow.run([*flow.aggregate_args(1), "--drop-refused"])
    assert "summed 2 updates (hospital-a, hospital-b)" in outcome.output
    assert "refused hospital-c-1.update (InvalidSignature" in outcome.output


def test_a_released_round_is_not_decrypted_again_for_another_cohort(flow_of_two, tmp_path):
    flow = flow_of_two
    flow.round(0)
    flow.ticket(1)
    flow.answer(1)
    before = (tmp_path / "keyholder" / "aggregator.state").read_bytes()
    flow.run(flow.aggregate_args(1))
    flow.run(flow.decrypt_args(1))
    release = (tmp_path / "round-1.release").read_bytes()
    # Given the same aggregate again, the key holder writes the same release.
    (tmp_path / "round-1.release").unlink()
    flow.run(flow.decrypt_args(1))
    assert (tmp_path / "round-1.release").read_bytes() == release
    # The aggregator sums the round again without the victim (it holds every update).
    (tmp_path / "keyholder" / "aggregator.state").write_bytes(before)
    flow.run(flow.aggregate_args(1, names=CLIENTS[:2]))
    [outcome] = flow.run(flow.decrypt_args(1), ok=False)
    _one_line_error(outcome, "PolicyViolation", "not the open round")


def test_a_client_answers_each_round_once(flow, tmp_path):
    flow.ticket(0)
    flow.answer(0)
    update = (tmp_path / "hospital-a-0.update").read_bytes()
    [outcome] = flow.run(flow.client_args("hospital-a", 0), ok=False)
    _one_line_error(outcome, "ProtocolError", "already answered round 0")
    assert (tmp_path / "hospital-a-0.update").read_bytes() == update


def test_an_edited_state_file_refuses_to_start(flow, tmp_path):
    flow.round(0)
    for path, command in (
        (tmp_path / "keyholder" / "keyholder.state", ["ticket", *KEYHOLDER, "--out", "t"]),
        (tmp_path / "hospital-a" / "hospital-a.state", flow.client_args("hospital-a", 0)),
    ):
        data = bytearray(path.read_bytes())
        data[-1] ^= 0x01
        path.write_bytes(bytes(data))
        [outcome] = flow.run(command, ok=False)
        _one_line_error(outcome, "StateError", str(path.relative_to(tmp_path)))


def test_a_rolled_back_key_holder_state_is_caught_by_a_newer_round(flow, tmp_path):
    flow.round(0)
    state = tmp_path / "keyholder" / "keyholder.state"
    shutil.copy(state, tmp_path / "old.state")
    flow.ticket(1)
    flow.answer(1)
    flow.run(flow.aggregate_args(1))
    shutil.copy(tmp_path / "old.state", state)
    [outcome] = flow.run(flow.decrypt_args(1), ok=False)
    _one_line_error(outcome, "StateError", "rolled back")
    assert not (tmp_path / "round-1.release").exists()


def test_a_client_refuses_a_key_holder_it_did_not_pin(flow, tmp_path):
    flow.ticket(0)
    [outcome] = flow.run([*flow.client_args("hospital-a", 0), "--keyholder", "ab" * 32], ok=False)
    _one_line_error(outcome, "InvalidSignature", "--keyholder")


def test_inspect_describes_every_file(flow, tmp_path):
    flow.round(0)
    files = {
        "keyholder/keyholder.id": ("signing key", "YES"),
        "hospital-a/hospital-a.pub": ("verify key", "no secret"),
        "federation.hefed": ("federation", "signature verifies"),
        "round-0.ticket": ("round start", "task          magnitude"),
        "hospital-a-0.update": ("update", "client        hospital-a"),
        "round-0.aggregate": ("encrypted aggregate", "hospital-a, hospital-b, hospital-c"),
        "round-0.release": ("release", "contributors  3"),
        "keyholder/keyholder.state": ("keyholder store", "released      1 round(s)"),
        "hospital-a/hospital-a.state": ("client state", "last round    0"),
        "keyholder/aggregator.state": ("aggregator state", "to release    round 0 (magnitude)"),
    }
    [outcome] = flow.run(["inspect", *files])
    for name, (kind, fact) in files.items():
        section = outcome.output.split(name + "\n", 1)[1].split("  bytes", 1)[0]
        assert f"kind          {kind}\n" in section
        assert fact in section, (name, section)


@pytest.mark.slow
def test_three_clients_two_rounds_in_separate_processes(tmp_path, monkeypatch):
    """The real entry point, one process per command; clients answer at the same time.

    Two training rounds, not five: every command is a process that imports he-fed,
    and five rounds took 221 s of CI's time.
    """
    monkeypatch.chdir(tmp_path)
    flow = Flow(in_processes)
    flow.setup(write_partitions(tmp_path, experiment(rounds=2)))
    for round_id in range(4):  # two statistics rounds, then two training rounds
        flow.round(round_id)
    [ran] = flow.run(
        ["run", "--clients", "3", "--rounds", "2", "--key-bits", "1024", "--allow-insecure"]
        + ["--json", "run.json", "--quiet"]
    )
    expected = json.loads((tmp_path / "run.json").read_text())["final"]
    assert _final(tmp_path / "round-3.json") == (expected["coef"], expected["intercept"])

    flow.ticket(4)
    flow.answer(4)
    flipped = bytearray((tmp_path / "hospital-b-4.update").read_bytes())
    flipped[-100] ^= 0x01
    (tmp_path / "hospital-b-4.update").write_bytes(bytes(flipped))
    [outcome] = flow.run(flow.aggregate_args(4), ok=False)
    _one_line_error(outcome, "refused 1 of 3", "hospital-b-4.update")


def test_a_passphrase_protected_key_holder_runs_its_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KH_PASSPHRASE", "correct horse")
    flow = Flow(in_process)
    locked = ("--secret-key", "keyholder/secret.key", "--passphrase-env", "KH_PASSPHRASE")
    flow.run(
        ["keygen", "--out", "keyholder", "--key-bits", "1024", "--allow-insecure"]
        + ["--max-clients", "3", "--passphrase-env", "KH_PASSPHRASE"],
        ["identity", "--id", "hospital-a", "--out", "hospital-a"],
        ["identity", "--id", "hospital-b", "--out", "hospital-b"],
    )
    flow.run(
        ["federation", "init", *locked, "--allow-insecure", "--features", "2", "--model"]
        + ["linear", "--client", "hospital-a/hospital-a.pub", "--client"]
        + ["hospital-b/hospital-b.pub"]
    )
    [outcome] = flow.run(["ticket", *locked, "--allow-insecure", "--out", "round-0.ticket"])
    assert outcome.output == "round 0 (magnitude) ticket -> round-0.ticket\n"
    monkeypatch.setenv("KH_PASSPHRASE", "wrong")
    [outcome] = flow.run(["ticket", *locked, "--allow-insecure", "--out", "x"], ok=False)
    _one_line_error(outcome, "InvalidPassphrase")


@pytest.mark.parametrize("threshold", [[], ["--threshold", "2/3"]])
def test_an_empty_passphrase_is_refused_before_any_key_file_is_written(
    tmp_path, monkeypatch, threshold
):
    """An empty ``--passphrase-file`` used to fail only at the secret's encryption,
    after public.key and aggregator.key were written: a half-made key folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("\n")
    monkeypatch.setenv("EMPTY", "")
    keygen = ["keygen", "--key-bits", "1024", "--allow-insecure", *threshold]
    for source, named in (
        (["--passphrase-file", "empty.txt"], "passphrase file empty.txt is empty"),
        (["--passphrase-env", "EMPTY"], "environment variable EMPTY is empty or unset"),
    ):
        [outcome] = Flow(in_process).run([*keygen, "--out", "keys", *source], ok=False)
        assert outcome.exit_code == 2 and named in outcome.output
        assert not (tmp_path / "keys").exists()


def test_the_aggregator_state_of_another_federation_is_refused(flow, tmp_path):
    flow.round(0)
    flow.run(
        ["federation", "init", *KEYHOLDER, "--features", "30", "--classes", "0,1", "--force"]
        + [a for name in CLIENTS for a in ("--client", f"{name}/{name}.pub")]
    )
    flow.ticket(0)
    [outcome] = flow.run(
        ["aggregate", "--federation", "federation.hefed", "--key", "keyholder/aggregator.key"]
        + ["--release", "round-0.release", "--allow-insecure"],
        ok=False,
    )
    _one_line_error(outcome, "StateError", "belongs to federation")
    [outcome] = flow.run(flow.client_args("hospital-a", 0), ok=False)
    _one_line_error(outcome, "ConfigurationError", "a new federation needs a new --state")


def _out_in_a_missing_folder(args):
    at = args.index("--out")
    return [*args[: at + 1], "missing/" + args[at + 1], *args[at + 2 :]]


def test_an_output_in_a_missing_folder_is_refused_before_any_state_changes(flow, tmp_path):
    """A typo in ``--out`` used to be found after the role saved its state: the
    aggregator's sum of every update, a client's answer to its round, a ticket's
    round number were spent and nothing written (an audit). Each command now
    refuses first, and the same command with the right path then works."""

    def files():
        return {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def unchanged(step):
        before = files()
        [outcome] = flow.run(_out_in_a_missing_folder(step), ok=False)
        _one_line_error(outcome, "--out missing/", "the directory missing does not exist")
        assert files() == before  # no state saved, no file written
        flow.run(step)

    unchanged(["ticket", *KEYHOLDER, "--out", "round-0.ticket"])
    for name in CLIENTS:
        unchanged(flow.client_args(name, 0))
    unchanged(flow.aggregate_args(0))
    unchanged(flow.decrypt_args(0))
    assert json.loads((tmp_path / "round-0.json").read_text())["round"] == 0


def test_a_corrupted_input_file_is_named(flow, tmp_path):
    """A flipped bit in a key, identity, federation file, ticket or aggregate said only
    "checksum mismatch" (an audit), leaving the user to guess which file it was."""

    def refused_when_flipped(path: str, args: list[str]) -> None:
        good = (tmp_path / path).read_bytes()
        flipped = bytearray(good)
        flipped[len(flipped) // 2] ^= 0x01
        (tmp_path / path).write_bytes(bytes(flipped))
        [outcome] = flow.run(args, ok=False)
        _one_line_error(outcome, "MalformedMessage", path)
        (tmp_path / path).write_bytes(good)

    flow.ticket(0)
    refused_when_flipped("keyholder/secret.key", ["ticket", *KEYHOLDER, "--out", "round-1.ticket"])
    refused_when_flipped("keyholder/keyholder.id", ["ticket", *KEYHOLDER, "--out", "x.ticket"])
    for path in ("federation.hefed", "hospital-a/hospital-a.id", "keyholder/public.key"):
        refused_when_flipped(path, flow.client_args("hospital-a", 0))
    refused_when_flipped("round-0.ticket", flow.client_args("hospital-a", 0))
    flow.answer(0)
    refused_when_flipped("keyholder/aggregator.key", flow.aggregate_args(0))
    refused_when_flipped("round-0.ticket", flow.aggregate_args(0))
    flow.run(flow.aggregate_args(0))
    refused_when_flipped("round-0.aggregate", flow.decrypt_args(0))
    flow.run(flow.decrypt_args(0))  # nothing was spent by the refusals
