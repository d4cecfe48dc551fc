"""The command line through click's CliRunner."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from he_fed.cli import main

from he_fed.exceptions import ConfigurationError

FAST = ["--key-bits", "1024", "--allow-insecure"]


def test_run_prints_the_result_table_and_writes_json(tmp_path):
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        main, ["run", "--rounds", "3", "--json", str(out), *FAST], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    for text in (
        "final test accuracy",
        "local training",
        "encode + encrypt",
        "decrypt",
        "uploaded per client per round",
        "3 rounds",
    ):
        assert text in result.output
    data = json.loads(out.read_text())
    assert data["final"]["metric_name"] == "accuracy"
    assert len(data["rounds"]) == 3
    assert data["config"]["key_bits"] == 1024


def test_quiet_prints_one_line():
    result = CliRunner().invoke(main, ["run", "--scheme", "plain", "--rounds", "2", "--quiet"])
    assert result.exit_code == 0
    assert result.output.count("\n") == 1 and result.output.startswith("accuracy=")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mnist"], "unknown dataset"),
        (["--key-bits", "1024"], "InsecureParameters"),
        (["--clients", "2", "--min-clients", "3"], "min_clients"),
        (["--dataset", "diabetes", "--model", "logistic"], "regression dataset"),
        (["--dataset", "/nope.csv", "--target", "y"], "no such CSV"),
    ],
)
def test_library_errors_are_one_line_without_traceback(args, message):
    result = CliRunner().invoke(main, ["run", "--rounds", "1", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


def test_non_numeric_csv_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,0\nx,4,1\n5,6,0\n")
    result = CliRunner().invoke(main, ["run", "--dataset", str(path), "--target", "y"])
    assert result.exit_code != 0
    assert "not a number" in result.output


def test_keygen_writes_separate_files_and_inspect_tells_them_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("HE_FED_TEST_PASSPHRASE", "s3cret")
    out = tmp_path / "keys"
    result = CliRunner().invoke(
        main,
        [
            "keygen",
            "--scheme",
            "paillier-packed",
            "--out",
            str(out),
            *FAST,
            "--passphrase-env",
            "HE_FED_TEST_PASSPHRASE",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    secret = out / "secret.key"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert (out / "public.key").exists() and (out / "aggregator.key").exists()
    inspected = CliRunner().invoke(main, ["inspect", str(out / "public.key"), str(secret)])
    assert inspected.exit_code == 0
    public_part, secret_part = inspected.output.split(str(secret))
    assert "no secret" in public_part and "paillier-packed" in public_part
    assert "YES (passphrase-protected)" in secret_part
    from he_fed.crypto import load_secret

    keys = load_secret(secret.read_bytes(), passphrase="s3cret", allow_insecure=True)
    assert keys.public.to_bytes() == (out / "public.key").read_bytes()
    again = CliRunner().invoke(main, ["keygen", "--out", str(out), *FAST])
    assert again.exit_code != 0 and "--force" in again.output


def test_inspect_describes_messages_and_refuses_a_corrupt_key_file(tmp_path):
    from tests.protocol.harness import open_round, roles

    keyholder, aggregator, clients = roles("paillier")
    start = open_round(keyholder, aggregator)
    update = tmp_path / "update.bin"
    update.write_bytes(clients[0].participate(start).update)
    result = CliRunner().invoke(main, ["inspect", str(update)])
    assert result.exit_code == 0
    assert "update" in result.output
    assert "client        c0" in result.output and "no secret" in result.output
    corrupt = tmp_path / "corrupt.key"
    data = bytearray(keyholder.public_key_bytes())
    data[40] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["inspect", str(corrupt)])
    assert result.exit_code != 0
    assert "MalformedMessage" in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


def test_a_file_larger_than_any_he_fed_file_is_refused_not_read_forever(tmp_path, monkeypatch):
    """``he-fed inspect /dev/zero`` read until memory ran out; every command reads
    its inputs through one capped reader (1 GiB, lowered here to 64 KiB)."""
    from he_fed.cli import _roles

    monkeypatch.setattr(_roles, "MAX_INPUT_BYTES", 1 << 16)
    sparse = tmp_path / "sparse.bin"
    with sparse.open("wb") as handle:
        handle.truncate((1 << 16) + 1)
    inputs = [sparse, *(["/dev/zero"] * os.path.exists("/dev/zero"))]
    for path in inputs:
        result = CliRunner().invoke(main, ["inspect", str(path)])
        assert result.exit_code == 1
        assert f"file {path} holds more than" in result.output and "Traceback" not in result.output
    # A ticket read by a client command goes through the same reader.
    with pytest.raises(ConfigurationError, match="ticket .*sparse.bin holds more than"):
        _roles.read_input(sparse, "ticket")
    assert _roles.read_input(_write(tmp_path / "small", b"x" * (1 << 16)), "t") == b"x" * (1 << 16)


def _write(path, data):
    path.write_bytes(data)
    return path


def test_executor_processes_gives_the_inprocess_coefficients(tmp_path):
    coefs = {}
    for executor in ("inprocess", "processes"):
        out = tmp_path / f"{executor}.json"
        args = [
            "run",
            "--scheme",
            "paillier",
            "--rounds",
            "2",
            "--executor",
            executor,
            "--workers",
            "2",
            "--json",
            str(out),
            "--quiet",
            *FAST,
        ]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        assert data["config"]["executor"] == executor
        coefs[executor] = (data["final"]["coef"], data["final"]["intercept"])
    assert coefs["processes"] == coefs["inprocess"]


def test_an_unknown_executor_is_a_one_line_error():
    result = CliRunner().invoke(main, ["run", "--executor", "spark"])
    assert result.exit_code == 2 and "Invalid value for '--executor'" in result.output


def test_flower_app_writes_the_app(tmp_path):
    result = CliRunner().invoke(main, ["flower-app", str(tmp_path / "app")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "app" / "pyproject.toml").read_text()
    assert 'serverapp = "he_fed.runtime.flower.app:server"' in text


def test_flower_app_provisions_the_key_holder_and_prints_the_pin(tmp_path):
    from he_fed.crypto import load_secret
    from he_fed.protocol import Identity
    from he_fed.runtime.flower import KeyHolderPolicy

    app = tmp_path / "app"
    settings = ["--set", "clients=3", "--set", "key_bits=1024", "--set", "allow_insecure=true"]
    settings += ["--set", "rounds=7"]
    result = CliRunner().invoke(main, ["flower-app", str(app), *settings, "--provision"])
    assert result.exit_code == 0, result.output
    policy = KeyHolderPolicy.read(app / "keyholder.json")
    assert policy.scheme.max_clients == 3 and policy.plan.n_features == 30
    # Two statistics rounds, seven training rounds and four spare tickets, no more.
    assert policy.max_tickets == 2 + 7 + 4
    assert "signs at most 13 tickets for its federation" in result.output
    identity = Identity.from_private_bytes(bytes.fromhex((app / "keyholder.id").read_text()))
    assert (app / "keyholder.id").stat().st_mode & 0o777 == 0o600
    assert f"keyholder-identity='{identity.public_bytes.hex()}'" in result.output
    # Red team 53: a deployed client node needs a round file.
    assert "round-file='client-K.rounds'" in result.output
    # A deployed key-holder node needs a state-file, and with it a secret-key-file.
    keys = load_secret((app / "secret.key").read_bytes(), allow_insecure=True)
    assert keys.public.scheme == policy.scheme
    assert (app / "secret.key").stat().st_mode & 0o777 == 0o600
    assert f"secret-key-file='{app / 'secret.key'}'" in result.output
    assert f"state-file='{app / 'keyholder.state'}'" in result.output
    assert not (app / "keyholder.state").exists()
    # A run config the policy refuses writes nothing and says why in one line.
    refused = CliRunner().invoke(
        main, ["flower-app", str(tmp_path / "other"), "--set", "key_bits=1024", "--provision"]
    )
    assert refused.exit_code == 1 and "InsecureParameters" in refused.output
    assert refused.output.strip().count("\n") == 0 and not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "-1"], "learning_rate"),
        (["--lr", "0"], "learning_rate"),
        (["--lr", "nan"], "learning_rate"),
        (["--batch-size", "0"], "batch_size"),
        (["--l2", "-1"], "alpha"),
        (["--l2", "nan"], "alpha"),
    ],
)
def test_bad_training_settings_are_one_line_errors_before_any_work(flags, message):
    """Refused up front: a client-side failure in every round would 'train' nothing."""
    result = CliRunner().invoke(main, ["run", "--rounds", "1", *flags])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


def test_a_round_every_client_fails_is_an_error_not_a_silent_skip():
    from he_fed.exceptions import ProtocolError
    from he_fed.protocol import Identity
    from he_fed.runtime import Federation
    from tests.protocol.harness import client, roles

    keyholder, aggregator, registered = roles("plain")
    stranger = Identity().public_bytes  # every client pinned another key holder
    clients = [
        client(keyholder, f"c{i}", i, 20, keyholder=stranger, identity=old._identity)
        for i, old in enumerate(registered)
    ]
    federation = Federation(keyholder, aggregator, clients)
    with pytest.raises(ProtocolError, match="every client failed"):
        federation.run_round()


@pytest.mark.parametrize(
    "flag", ["--features", "--clients", "--rounds", "--samples-per-client", "--local-epochs"]
)
def test_estimate_refuses_zero_counts(flag):
    result = CliRunner().invoke(main, ["estimate", flag, "0"])
    assert result.exit_code == 2 and "0 is not in the range x>=1" in result.output


def test_a_csv_saved_with_a_byte_order_mark_finds_its_target_column(tmp_path):
    path = tmp_path / "excel.csv"
    rows = "".join(f"{i},{i % 3},{i % 2}\n" for i in range(12))
    path.write_bytes(b"\xef\xbb\xbf" + f"a,b,target\n{rows}".encode())
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--dataset",
            str(path),
            "--target",
            "target",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--scheme",
            "plain",
        ],
    )
    assert result.exit_code == 0, result.output


def test_a_run_whose_every_round_was_skipped_fails_and_keeps_its_json(tmp_path):
    """With --dropout 0.99 every cohort fell below the minimum, and the run printed the
    untrained model's accuracy and exited 0 (an audit). It now exits 1, saying why,
    after writing its JSON; one released round is enough to succeed."""
    out = tmp_path / "run.json"
    flags = ["run", "--scheme", "plain", "--rounds", "3", "--quiet", "--json", str(out)]
    result = CliRunner().invoke(main, [*flags, "--dropout", "0.99"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: no round released an aggregate: all 3 were skipped")
    assert [r["skipped"] is not None for r in json.loads(out.read_text())["rounds"]] == [True] * 3
    result = CliRunner().invoke(main, flags)
    assert result.exit_code == 0, result.output
