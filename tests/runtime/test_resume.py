"""Resumable runs: a crash at any point of a round resumes to the uninterrupted coefficients.

Crashes are made two ways here, both with the real roles and files: an exception
out of the estimator's callback (the run stops between the key holder's release
and the progress record), and a federation driven by hand that stops at the
chosen instruction, its objects dropped as a killed process drops them. Killing
a real ``he-fed run`` with SIGKILL is in ``test_resume_kill.py`` (slow).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat

import numpy as np
import pytest
from click.testing import CliRunner
from he_fed.cli import main
from sklearn.datasets import load_breast_cancer

from he_fed import FederatedLinearRegression, FederatedLogisticRegression
from he_fed.crypto import wire
from he_fed.exceptions import PolicyViolation, StateError
from he_fed.protocol import EncryptedAggregate, EncryptedUpdate, Task, decode, encode
from he_fed.runtime import InProcessExecutor, _sealed
from he_fed.runtime import checkpoint as files
from he_fed.runtime.resume import ResumableRun
from tests.conftest import FAST_SCHEMES

X, Y = load_breast_cancer(return_X_y=True)
GROUPS = np.arange(len(Y)) % 6  # 95 rows each: within the plan's max_weight
#: No dropouts: without a privacy budget a round a client sits out is refused
#: (he_fed.protocol.normalisers); the saved generator state is tested on its own below.
PARAMS = dict(rounds=4, local_epochs=2, min_clients=1)


class Crash(Exception):
    """Stands for the process dying."""


def _estimator(scheme="paillier-packed", checkpoint=None, **overrides):
    return FederatedLogisticRegression(
        scheme=FAST_SCHEMES[scheme], checkpoint=checkpoint, **{**PARAMS, **overrides}
    )


def _crash_after(k):
    def callback(entry):
        if entry.round == k:
            raise Crash

    return callback


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted run, packed Paillier."""
    return _estimator().fit(X, Y, groups=GROUPS)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-round checkpoint, for tests that only read it or are refused."""
    folder = tmp_path_factory.mktemp("finished")
    _estimator(checkpoint=folder, rounds=1).fit(X, Y, groups=GROUPS)
    return folder


def _fields(records):
    """What a record holds besides its measurements (timings differ between runs)."""
    return [(r.round, r.metric, r.loss, r.contributors, r.dropped, r.skipped) for r in records]


def test_a_run_stopped_after_its_release_resumes_to_the_same_coefficients(tmp_path, reference):
    # The callback raises after round 2's release is saved by the key holder but
    # before the progress records it: the resumed run completes round 2 from its
    # journal (the key holder hands back the release it saved, undecrypted).
    with pytest.raises(Crash):
        _estimator(checkpoint=tmp_path).fit(X, Y, groups=GROUPS, callback=_crash_after(2))
    seen = []
    resumed = _estimator(checkpoint=tmp_path).fit(X, Y, groups=GROUPS, callback=seen.append)
    assert np.array_equal(resumed.coef_, reference.coef_)
    assert np.array_equal(resumed.intercept_, reference.intercept_)
    assert [r.round for r in seen] == [2, 3, 4]
    assert _fields(resumed.history_) == _fields(reference.history_)
    # The key holder released each of 2 statistics rounds and 4 training rounds once.
    progress = files.peek_progress(tmp_path)
    assert (progress.releases, progress.training_rounds, progress.pending) == (6, 4, None)


def test_a_finished_checkpoint_gives_the_result_without_training_again(tmp_path, reference):
    first = _estimator(checkpoint=tmp_path).fit(X, Y, groups=GROUPS)
    generation = files.peek_progress(tmp_path).generation
    again = _estimator(checkpoint=tmp_path).fit(X, Y, groups=GROUPS)
    assert np.array_equal(first.coef_, reference.coef_)
    assert np.array_equal(again.coef_, reference.coef_)
    assert files.peek_progress(tmp_path).generation == generation
    assert _fields(again.history_) == _fields(reference.history_)


def _by_hand(tmp_path, estimator):
    """The federation the estimator's fit builds in ``tmp_path``, opened by hand."""
    from he_fed.protocol.spec import FederationSetup

    groups = GROUPS
    ids = np.unique(groups)
    rows = [groups == g for g in ids]
    partitions = [(X[r], Y[r]) for r in rows]
    setup = FederationSetup.from_partitions(
        partitions,
        scheme=FAST_SCHEMES["paillier-packed"],
        model=estimator.local_model(),
        local_epochs=PARAMS["local_epochs"],
        classes=np.unique(Y),
        min_clients=1,
        client_ids=[str(g) for g in ids],
    )
    return ResumableRun.open(tmp_path, "by hand", setup, partitions, executor=InProcessExecutor())


def test_a_round_in_flight_is_redone_under_a_new_round_id_never_decrypted(tmp_path):
    est = _estimator(dropout=0.0)
    run = _by_hand(tmp_path, est)
    run.train(1, on_round=lambda o: {"round": o.round})
    federation = run.federation
    # Round 3 (after two statistics rounds) is ticketed and journaled; the process
    # dies as its aggregate goes to the key holder.
    journaled = []
    federation.before_decrypt = lambda outcome, aggregate: (
        run._journal(outcome, aggregate),
        journaled.append(outcome.round),
        (_ for _ in ()).throw(Crash),
    )
    with pytest.raises(Crash):
        federation.run_round(Task.TRAIN)
    run.close()
    assert journaled == [3]
    resumed = _by_hand(tmp_path, est)
    assert resumed.resumed_from == 1
    ids = []
    resumed.train(3, on_round=lambda o: ids.append(o.round) or {"round": o.round})
    resumed.close()
    # Training rounds 2 and 3 ran as tickets 4 and 5; ticket 3 was never decrypted.
    assert ids == [4, 5]
    assert [r.round for r in resumed._store.releases] == [0, 1, 2, 4, 5]


def test_an_edited_progress_file_is_refused(tmp_path, finished):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    path = tmp_path / files.PROGRESS_FILE
    data = bytearray(path.read_bytes())
    data[-40] ^= 1  # inside the content, under the tag
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match="checkpoint"):
        _estimator(checkpoint=tmp_path, rounds=1).fit(X, Y, groups=GROUPS)


def test_a_progress_file_resealed_with_a_valid_checksum_is_refused(tmp_path, finished):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    path = tmp_path / files.PROGRESS_FILE
    fingerprint, content = _sealed.peek(path.read_bytes(), wire.Kind.RUN_PROGRESS, "p")
    forged = files.Progress.from_content(content)
    forged.training_rounds = 0  # an attacker's edit: the round "was never run"
    path.write_bytes(
        _sealed.seal(
            wire.Kind.RUN_PROGRESS, forged.to_content(), b"k" * 32, fingerprint=fingerprint
        )
    )
    with pytest.raises(StateError, match="does not verify"):
        _estimator(checkpoint=tmp_path, rounds=1).fit(X, Y, groups=GROUPS)


@pytest.mark.parametrize("older", [files.PROGRESS_FILE, files.STATE_FILE])
def test_a_rolled_back_file_is_refused(tmp_path, older):
    folder = tmp_path / "ck"
    with pytest.raises(Crash):
        _estimator(checkpoint=folder).fit(X, Y, groups=GROUPS, callback=_crash_after(1))
    # _crash_after(1) stops before round 1 is recorded; resume and stop after round 3.
    with pytest.raises(Crash):
        _estimator(checkpoint=folder).fit(X, Y, groups=GROUPS, callback=_crash_after(3))
    shutil.copy(folder / older, tmp_path / "old")
    _estimator(checkpoint=folder).fit(X, Y, groups=GROUPS)
    shutil.copy(tmp_path / "old", folder / older)
    with pytest.raises(StateError, match="rolled back"):
        _estimator(checkpoint=folder).fit(X, Y, groups=GROUPS)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"rounds": 5}, "rounds"),
        ({"scheme": "ckks"}, "scheme"),
        ({"random_state": 1}, "random_state"),
        ({"server_lr": 0.5}, "server_lr"),
    ],
)
def test_another_command_against_the_checkpoint_is_refused(finished, change, named):
    change = dict(change)
    scheme = change.pop("scheme", "paillier-packed")
    other = _estimator(scheme, checkpoint=finished, **{"rounds": 1, **change})
    with pytest.raises(StateError, match=rf"another run \({named} differs\)"):
        other.fit(X, Y, groups=GROUPS)


def test_other_data_against_the_checkpoint_is_refused(finished):
    with pytest.raises(StateError, match=r"\(data differs\)"):
        _estimator(checkpoint=finished, rounds=1).fit(X[:-3], Y[:-3], groups=GROUPS[:-3])


def test_the_checkpoint_keeps_secrets_private_and_nothing_pickled(finished):
    tmp_path = finished
    for name in (files.SECRETS_FILE, files.STATE_FILE, files.PROGRESS_FILE):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
        assert b"\x80\x04" not in (tmp_path / name).read_bytes()[:2]  # no pickle header
    # The progress holds no secret: none of the secrets file's key bytes appear in it.
    secrets = files.read_secrets(tmp_path, allow_insecure=True)
    progress = (tmp_path / files.PROGRESS_FILE).read_bytes()
    assert secrets.identity.private_bytes() not in progress
    assert all(i.private_bytes() not in progress for i in secrets.clients.values())


def test_inspect_says_the_checkpoint_secrets_are_secret(finished):
    shown = CliRunner().invoke(main, ["inspect", str(finished / files.SECRETS_FILE)])
    assert "YES (a checkpoint's secret key and signing identities" in shown.output
    shown = CliRunner().invoke(main, ["inspect", str(finished / files.PROGRESS_FILE)])
    assert "no secret" in shown.output


def test_a_folder_with_other_files_is_not_taken_for_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StateError, match="not a checkpoint"):
        _estimator(checkpoint=tmp_path, rounds=1).fit(X, Y, groups=GROUPS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_ckks_resumes_within_its_tolerance(tmp_path):
    from sklearn.datasets import load_diabetes

    Xd, yd = load_diabetes(return_X_y=True)
    groups = np.arange(len(yd)) % 4

    def make(checkpoint=None):
        return FederatedLinearRegression(
            scheme=FAST_SCHEMES["ckks"], rounds=3, local_epochs=2, checkpoint=checkpoint
        )

    reference = make().fit(Xd, yd, groups=groups)
    with pytest.raises(Crash):
        make(tmp_path).fit(Xd, yd, groups=groups, callback=_crash_after(1))
    resumed = make(tmp_path).fit(Xd, yd, groups=groups)
    assert np.allclose(resumed.coef_, reference.coef_, rtol=0, atol=1e-4)
    assert [r.round for r in resumed.history_] == [1, 2, 3]


def test_he_fed_run_says_it_resumes_and_writes_each_round_once(tmp_path):
    folder, out = tmp_path / "ck", tmp_path / "result.json"
    args = [
        "run",
        "--key-bits",
        "1024",
        "--allow-insecure",
        "--rounds",
        "3",
        "--local-epochs",
        "1",
        "--clients",
        "3",
        "--checkpoint",
        str(folder),
    ]
    first = CliRunner().invoke(main, [*args, "--quiet"])
    assert first.exit_code == 0, first.output
    assert "resuming" not in first.output
    # The same command again: everything is in the checkpoint (a kill mid-run is
    # resumed the same way; tests/runtime/test_resume_kill.py kills one).
    again = CliRunner().invoke(main, [*args, "--json", str(out)])
    assert again.exit_code == 0, again.output
    assert again.stderr.splitlines()[-1] == f"resumed from round 3 of 3 ({folder})"
    rounds = json.loads(out.read_text())["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    other = CliRunner().invoke(main, [*args[:-2], "--seed", "1", *args[-2:]])
    assert other.exit_code != 0
    assert other.output.count("\n") == 1
    assert "another run (random_state differs)" in other.output


def test_a_run_killed_before_its_first_round_draws_the_dropouts_of_its_seed(tmp_path):
    est = _estimator()

    def dropouts(folder, *, restart):
        run = _by_hand(folder, est)
        if restart:  # the process died right after setting up the checkpoint
            run.close()
            run = _by_hand(folder, est)
        absent = []
        run.train(4, dropout=0.5, random_state=3, on_round=lambda o: absent.append(o.absent) or {})
        run.close()
        return absent

    assert dropouts(tmp_path / "a", restart=True) == dropouts(tmp_path / "b", restart=False)


@pytest.mark.slow
def test_the_processes_executor_resumes_to_the_same_coefficients(tmp_path, reference):
    params = dict(checkpoint=tmp_path, executor="processes", workers=1)
    with pytest.raises(Crash):
        _estimator(**params).fit(X, Y, groups=GROUPS, callback=_crash_after(2))
    resumed = _estimator(**params).fit(X, Y, groups=GROUPS)
    assert np.array_equal(resumed.coef_, reference.coef_)
    assert _fields(resumed.history_) == _fields(reference.history_)


def test_a_round_the_key_holder_refused_before_a_crash_is_recorded_as_skipped(tmp_path):
    run = _by_hand(tmp_path, _estimator())
    record = lambda o: {"round": o.round, "skipped": o.skipped}  # noqa: E731
    run.train(1, on_round=record)
    federation, aggregator = run.federation, run.federation.aggregator
    # Round 3 by hand, as run_round plays it, until the key holder refuses the
    # aggregate: its receipts are the three clients', its ciphertext two updates' sum.
    start = aggregator.open_round(federation.keyholder.start_round(Task.TRAIN))
    federation.training_rounds += 1
    updates = [c.participate(start).update for c in federation.clients[:3]]
    for update in updates:
        aggregator.add(update)
    honest = decode(aggregator.finish_round(), EncryptedAggregate)
    vectors = [aggregator.key.load_vector(decode(u, EncryptedUpdate).vector) for u in updates]
    forged = encode(dataclasses.replace(honest, vector=(vectors[0] + vectors[1]).to_bytes()))
    outcome = files.outcome_from_dict(
        {
            "round": 3,
            "task": "train",
            "contributors": [c.client_id for c in federation.clients[:3]],
            "failures": {},
            "absent": [c.client_id for c in federation.clients[3:]],
            "timings": {},
            "bytes_up": 0,
            "bytes_down": 0,
            "clipped": 0,
            "skipped": None,
            "wall_s": 0.0,
        }
    )
    run._journal(outcome, forged)
    with pytest.raises(PolicyViolation, match="sums 2 contributions"):
        run._store.decrypt_aggregate(forged)  # the round is used up, and saved so
    run.close()  # the process dies before the progress records the refusal

    resumed = _by_hand(tmp_path, _estimator())
    done = resumed.train(3, on_round=record)
    resumed.close()
    assert done[1] == {
        "round": 3,
        "skipped": "the key holder refused the aggregate (recorded before a crash)",
    }
    assert [entry["round"] for entry in done] == [2, 3, 4]
    assert done[2]["skipped"] is None


def test_a_whole_directory_copied_back_restarts_from_its_round(tmp_path, reference):
    # All three files agree, so nothing is refused: the run redoes the rounds after
    # the copy's, and ends where the uninterrupted run ends (DESIGN, "Resumable runs").
    folder = tmp_path / "ck"
    with pytest.raises(Crash):
        _estimator(checkpoint=folder).fit(X, Y, groups=GROUPS, callback=_crash_after(3))
    shutil.copytree(folder, tmp_path / "copy")
    _estimator(checkpoint=folder).fit(X, Y, groups=GROUPS)
    shutil.rmtree(folder)
    shutil.copytree(tmp_path / "copy", folder)
    seen = []
    again = _estimator(checkpoint=folder).fit(X, Y, groups=GROUPS, callback=seen.append)
    assert [r.round for r in seen] == [3, 4]
    assert np.array_equal(again.coef_, reference.coef_)


def _setup_with(**options):
    """Three clients of :mod:`tests.protocol.private_harness`, and ``options``; with
    ``private``, a budget for two releases."""
    from he_fed.models import LogisticRegressionGD
    from he_fed.privacy import private_setup
    from he_fed.protocol.spec import FederationSetup
    from tests.protocol.private_harness import N_FEATURES, data

    sizes = (30, 50, 20)
    partitions = [data(i, n) for i, n in enumerate(sizes)]
    if options.pop("private", False):
        scheme, budget = private_setup(
            "paillier-packed",
            key_bits=1024,
            allow_insecure=True,
            n_clients=3,
            max_rows=max(sizes),
            size=N_FEATURES + 1,
            target_epsilon=1.0,
            delta=1e-5,
            rounds=2,
            level="record",
            clip=1.0,
            min_cohort=2,
            normaliser=sum(sizes),
        )
        options.update(scheme=scheme, privacy=budget)
    setup = FederationSetup.from_partitions(
        partitions,
        **{"scheme": FAST_SCHEMES["paillier-packed"], **options},
        model=LogisticRegressionGD(learning_rate=0.5),
        classes=np.array([0, 1]),
        min_clients=2,
        standardize=False,
    )
    return setup, partitions


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"private": True}, "differential privacy (the budget spent)"),
        ({"threshold": (2, 3)}, "threshold= (each share holder keeps its own state)"),
        ({"validation_split": 0.2}, "federated evaluation"),
        ({"server_optimizer": "adam"}, "server_optimizer='adam'"),
    ],
)
def test_a_checkpointed_run_refuses_what_its_checkpoint_would_drop(tmp_path, options, named):
    """A checkpoint keeps one key holder's state and nothing of a budget, a council,
    an optimizer's moments or evaluation; a run that needs one is refused before
    anything is written, on every executor (the control is the next test)."""
    from he_fed.exceptions import ConfigurationError
    from he_fed.runtime.resume import run_resumable

    setup, partitions = _setup_with(**options)
    for executor in ("inprocess", "flower"):
        with pytest.raises(ConfigurationError, match=re.escape(named)):
            run_resumable(tmp_path / "run", "by hand", executor, setup, partitions, lambda r: r)
    with pytest.raises(ConfigurationError, match="a checkpoint does not save that state"):
        ResumableRun.open(
            tmp_path / "run", "by hand", setup, partitions, executor=InProcessExecutor()
        )
    from he_fed.runtime.flower.resume import FlowerResumableRun

    unused = object()  # refused before the executor is used
    with pytest.raises(ConfigurationError, match="a checkpoint does not save that state"):
        FlowerResumableRun.open(tmp_path / "run", "by hand", setup, unused)  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_without_the_refusal_a_checkpointed_private_run_releases_past_its_budget(
    tmp_path, monkeypatch
):
    """Why the refusal: the checkpoint's key holder is built without the budget.

    The same setup, with a budget for two releases and asked for five rounds, stops
    after two in process and, with the refusal patched out, releases all five from
    a checkpoint (found by an audit of every path that rebuilds a role).
    """
    import dataclasses

    from he_fed.runtime import resume, run_federation

    setup, partitions = _setup_with(private=True)

    def five(federation):
        federation.train(5)
        return federation.training_rounds, federation.keyholder.privacy.released

    assert run_federation("inprocess", setup, partitions, five) == (2, 2)
    monkeypatch.setattr(resume, "check_checkpointable", lambda setup: None)
    fresh = dataclasses.replace(setup, privacy=dataclasses.replace(setup.privacy))
    with ResumableRun.open(
        tmp_path, "by hand", fresh, partitions, executor=InProcessExecutor()
    ) as run:
        assert run._store.keyholder.privacy is None
        run.train(5, on_round=lambda o: {"round": o.round})
        assert run.federation.training_rounds == len(run._store.releases) == 5
