"""``he-fed keygen --threshold``: the dealer's ceremony as files."""

from __future__ import annotations

import json

import gmpy2
import pytest
from click.testing import CliRunner
from he_fed.cli import main

from he_fed.crypto import load_public
from he_fed.crypto.threshold import load_share, load_verification
from he_fed.protocol.council import parse_council
from he_fed.protocol.receipts import Identity

FAST = ["--key-bits", "512", "--allow-insecure", "--max-clients", "8"]


def test_keygen_threshold_writes_shares_and_never_the_factorisation(tmp_path):
    out = tmp_path / "keys"
    args = ["keygen", "--threshold", "3/5", "--out", str(out), *FAST]
    # Unprotected shares, so that the scan below reads every byte in the clear.
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "aggregator.key",
        "council.pin",
        "holder-1.identity",
        "holder-2.identity",
        "holder-3.identity",
        "holder-4.identity",
        "holder-5.identity",
        "public.key",
        "share-1.key",
        "share-2.key",
        "share-3.key",
        "share-4.key",
        "share-5.key",
        "verification.key",
    ]
    public = load_public((out / "public.key").read_bytes(), allow_insecure=True)
    assert public.fingerprint.hex()[:16] in result.output
    assert "candidates tested" in result.output  # progress (stderr, mixed in by the runner)
    vk = load_verification((out / "verification.key").read_bytes(), public)
    assert vk.fingerprint.hex()[:16] in result.output
    for i in range(1, 6):
        path = out / f"share-{i}.key"
        assert path.stat().st_mode & 0o777 == 0o600
        share = load_share(path.read_bytes(), allow_insecure=True)
        assert share.index == i and share.verification.fingerprint == vk.fingerprint
    # The files a Flower deployment's nodes take: each holder's identity (secret, hex
    # as its node's identity-file reads it) and the pin naming all five, in order.
    identities = []
    for i in range(1, 6):
        path = out / f"holder-{i}.identity"
        assert path.stat().st_mode & 0o777 == 0o600
        identities.append(Identity.from_private_bytes(bytes.fromhex(path.read_text())))
    pin = bytes.fromhex((out / "council.pin").read_text())
    assert parse_council(pin) == (3, tuple(identity.public_bytes for identity in identities))
    assert "keyholder-identity" in result.output
    # No file holds a factor of n (256-bit primes: 32 bytes) at any offset, either byte order.
    n = int(public.n)
    blob = b"".join(p.read_bytes() for p in out.iterdir())
    for window in range(len(blob) - 31):
        chunk = blob[window : window + 32]
        for order in ("big", "little"):
            assert gmpy2.gcd(int.from_bytes(chunk, order), n) in (1, n)
    inspected = CliRunner().invoke(main, ["inspect", str(out / "share-2.key")])
    assert "YES, a threshold key share (not encrypted)" in inspected.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "--force" in again.output


def test_keygen_threshold_refuses_ckks_and_bad_counts_in_one_line(tmp_path):
    for extra, text in (
        (["--scheme", "ckks", "--threshold", "3/5"], "needs a Paillier scheme"),
        (["--threshold", "5/3", *FAST], "threshold"),
        (["--threshold", "3"], "not t/n"),
    ):
        result = CliRunner().invoke(main, ["keygen", "--out", str(tmp_path / "k"), *extra])
        assert result.exit_code != 0
        assert text in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def _run(tmp_path, name, *extra, whole=False):
    out = tmp_path / f"{name}.json"
    args = ["run", "--rounds", "2", "--key-bits", "1024", "--allow-insecure", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--json", str(out), *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    return data if whole else data["final"]


def test_run_with_three_of_five_share_holders_trains_the_single_key_holders_model(tmp_path):
    single = _run(tmp_path, "single")
    data = _run(tmp_path, "shared", "--threshold", "3/5", whole=True)
    assert data["setup"]["council"] == {
        "threshold": 3,
        "holders": 5,
        "quorum": 4,
        "tolerated_absences": 1,
        "absent": [],
    }
    shared = data["final"]
    assert shared["coef"] == single["coef"]
    assert shared["intercept"] == single["intercept"]
    assert shared["metric"] == single["metric"]


def test_run_threshold_refuses_ckks_in_one_line():
    for extra, text in ((["--scheme", "ckks"], "needs a Paillier scheme"),):
        result = CliRunner().invoke(main, ["run", "--threshold", "3/5", *extra])
        assert result.exit_code != 0
        assert text in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_run_threshold_warns_when_its_quorum_leaves_no_holder_free_to_be_absent():
    # CKKS is refused after the warnings: the test needs no run.
    result = CliRunner().invoke(main, ["run", "--threshold", "3/4", "--scheme", "ckks"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert (
        "Warning: --threshold 3/4: every round needs a quorum of 4 of 4 share holders, so "
        "none may be absent" in result.output
    )
    tolerant = CliRunner().invoke(main, ["run", "--threshold", "3/5", "--scheme", "ckks"])
    assert "Warning" not in tolerant.output


@pytest.mark.slow
def test_run_with_share_holders_on_processes_trains_the_same_model(tmp_path):
    single = _run(tmp_path, "single")
    shared = _run(tmp_path, "processes", "--threshold", "2/3", "--executor", "processes")
    assert shared["coef"] == single["coef"]
    assert shared["intercept"] == single["intercept"]
