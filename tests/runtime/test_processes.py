"""The processes executor: same results as in process, spawned workers, nothing left behind."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from threadpoolctl import threadpool_info

from he_fed import FederatedLogisticRegression
from he_fed.crypto import PackedPaillier
from he_fed.exceptions import ConfigurationError, ExecutorError
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import Client, EncryptedUpdate, Identity, decode
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime import (
    Federation,
    InProcessExecutor,
    ProcessesExecutor,
    processes,
    run_federation,
)
from tests.conftest import keys_for
from tests.protocol.harness import plan_digest, ticket


@pytest.fixture(scope="module")
def executor():
    with ProcessesExecutor(workers=2) as pool:
        pool.start()
        yield pool


@pytest.mark.parametrize("scheme", ["paillier", "paillier-packed"])
def test_processes_give_the_inprocess_coefficients_bit_for_bit(scheme):
    X, y = load_breast_cancer(return_X_y=True)
    groups = np.arange(len(y)) % 4
    fits = {
        name: FederatedLogisticRegression(
            scheme=scheme, key_bits=1024, allow_insecure=True, rounds=3, executor=name, workers=2
        ).fit(X, y, groups=groups)
        for name in ("inprocess", "processes")
    }
    np.testing.assert_array_equal(fits["processes"].coef_, fits["inprocess"].coef_)
    np.testing.assert_array_equal(fits["processes"].intercept_, fits["inprocess"].intercept_)
    assert fits["processes"].setup_["executor"] == "processes"
    assert fits["processes"].setup_["startup_s"] > 0
    assert [h.contributors for h in fits["processes"].history_] == [4, 4, 4]


def _workers_of(pool: ProcessesExecutor) -> list[multiprocessing.Process]:
    """The processes ``pool.start()`` spawns (other tests' pools may be running too)."""
    before = {p.pid for p in multiprocessing.active_children()}
    pool.start()
    return [p for p in multiprocessing.active_children() if p.pid not in before]


def test_workers_are_spawned_not_forked_and_all_stop_on_close():
    pool = ProcessesExecutor(workers=2)
    try:
        children = _workers_of(pool)
        assert pool.startup_s > 0
        assert len(children) == 2
        assert all(type(c).__name__ == "SpawnProcess" for c in children)
        # Workers keep their numerical libraries to one thread each: spinning BLAS
        # threads took the other workers' CPU.
        for worker in pool._pools:
            libraries = worker.submit(threadpool_info).result()
            assert libraries and {lib["num_threads"] for lib in libraries} == {1}
        # Workers never start encryption pools of their own.
        assert [p.submit(os.getenv, "HE_FED_ENCRYPT_WORKERS").result() for p in pool._pools] == [
            "1",
            "1",
        ]
    finally:
        pool.close()
    assert not any(c.is_alive() for c in children)


KEYHOLDER = Identity()
PUBLIC = keys_for("paillier").public


def _start() -> bytes:
    plan = plan_digest(model=LogisticRegressionGD(random_state=0), local_epochs=1)
    return ticket(KEYHOLDER, 0, np.zeros(4), key=PUBLIC, plan=plan)


def _clients(widths: list[int]) -> list[Client]:
    rng = np.random.default_rng(0)
    public = keys_for("paillier").public.to_bytes()
    clients = []
    for i, d in enumerate(widths):
        X = rng.normal(size=(20, d))
        model = LogisticRegressionGD(random_state=0)
        labels = (X[:, 0] > 0).astype(int)
        clients.append(
            Client(
                f"c{i}",
                X,
                labels,
                public,
                keyholder=KEYHOLDER.public_bytes,
                model=model,
                classes=np.array([0, 1]),
                allow_insecure=True,
            )
        )
    return clients


def test_a_refusing_client_is_reported_in_order_and_the_others_go_on(executor):
    clients = _clients([3, 4, 3])  # the middle client disagrees on the model size
    start = _start()
    got = executor.collect(clients, start)
    expected = InProcessExecutor().collect(_clients([3, 4, 3]), start)
    assert [r.client_id for r in got] == ["c0", "c1", "c2"]
    assert [r.error for r in got] == [r.error for r in expected]
    assert got[1].report is None and "weight vector of 4, not 5" in got[1].error
    assert got[0].report is not None and got[2].report is not None
    # Each client's memory of the rounds it answered lives with its object here.
    assert [c.last_round for c in clients] == [0, 0, 0]  # a failed attempt counts too
    assert executor.collect(clients[:1], start)[0].error.startswith("client 'c0' already")


def test_only_clients_with_a_portable_model_exist_to_be_sent_to_a_worker(executor):
    # A client's plan must have a digest for tickets to name, so a model that cannot
    # travel as plain data is refused when the client is made, not in a worker.
    (client,) = _clients([3])
    with pytest.raises(ConfigurationError, match="random_state"):
        Client(
            "c",
            client._X,
            client._y,
            keys_for("paillier").public.to_bytes(),
            keyholder=KEYHOLDER.public_bytes,
            model=LogisticRegressionGD(random_state=np.random.RandomState(1)),
            allow_insecure=True,
        )
    with pytest.raises(ConfigurationError, match="Client objects"):
        executor.collect(["c0"], _start())  # type: ignore[list-item]


def test_a_dead_worker_is_an_executor_error_not_a_hang():
    pool = ProcessesExecutor(workers=2)
    try:
        children = _workers_of(pool)
        os.kill(children[0].pid, signal.SIGKILL)
        start = _start()
        with pytest.raises(ExecutorError, match="died"):
            pool.collect(_clients([3, 3, 3, 3]), start)
    finally:
        pool.close()
    assert not any(c.is_alive() for c in children)


def test_worker_counts_are_checked():
    with pytest.raises(ConfigurationError, match="workers"):
        ProcessesExecutor(workers=0)


def test_clients_stay_resident_and_receive_their_data_once():
    rng = np.random.default_rng(4)
    parts = []
    for n in (30, 20, 25, 15, 10):
        X = rng.normal(size=(n, 3))
        parts.append((X, (X @ [1.0, -1.0, 0.5] > 0).astype(int)))
    scheme = PackedPaillier(key_bits=1024, allow_insecure=True, max_clients=8, max_weight=32)
    setup = FederationSetup.from_partitions(
        parts, scheme=scheme, model=LogisticRegressionGD(learning_rate=0.5, random_state=0)
    )

    def train(federation):
        federation.train(3, dropout=0.3, random_state=1)  # two statistics rounds first
        return federation.aggregator.raw_model()

    expected = run_federation("inprocess", setup, parts, train)
    pool = ProcessesExecutor(workers=2)
    try:
        pool.start()
        federation = Federation.from_setup(setup, parts, executor=pool)
        coef, intercept = train(federation)
        held = pool.residents()
    finally:
        pool.close()
    np.testing.assert_array_equal(coef, expected[0])
    np.testing.assert_array_equal(intercept, expected[1])
    # Five rounds, yet each client's data reached exactly one worker exactly once,
    # and the owners split the rows evenly: 30 + 15 + 10 against 20 + 25.
    assert held == [
        {"client-0": 1, "client-3": 1, "client-4": 1},
        {"client-1": 1, "client-2": 1},
    ]
    assert pool.residents() == []


@pytest.mark.parametrize(("in_flight", "ahead"), [(1, [0] * 5), (2, [1, 1, 1, 1, 0])])
def test_a_round_hands_out_at_most_in_flight_clients_ahead_of_the_reader(
    monkeypatch, in_flight, ahead
):
    """Answers wait in the main process until checked: a bounded queue bounds them."""
    monkeypatch.setattr(processes, "IN_FLIGHT", in_flight)
    start = _start()
    pool = ProcessesExecutor(workers=2)
    submitted = []
    try:
        pool.start()
        for worker in pool._pools:
            submit = worker.submit
            worker.submit = lambda *a, submit=submit: submitted.append(1) or submit(*a)
        waiting, got = [], []
        for result in pool.stream(_clients([3] * 5), start):
            got.append(result)
            waiting.append(len(submitted) - len(got))
    finally:
        pool.close()
    assert waiting == ahead  # [4, 3, 2, 1, 0] when the round was handed out at once
    expected = InProcessExecutor().collect(_clients([3] * 5), start)
    assert [r.client_id for r in got] == [f"c{i}" for i in range(5)]
    assert all(r.report is not None for r in got)  # every client answered
    assert [r.error for r in got] == [r.error for r in expected] == [None] * 5


def test_a_round_that_outlives_its_workers_ends_with_an_executor_error(monkeypatch):
    """Closed mid-round, or closed and restarted: no answer is read from, or handed
    to, workers the round did not start on (red team 32: a restarted pool took the
    old round's clients under its own tokens, and later clients answered as them)."""
    monkeypatch.setattr(processes, "IN_FLIGHT", 2)
    start = _start()
    pool = ProcessesExecutor(workers=2)
    try:
        old = pool.stream(_clients([3] * 6), start)
        next(old)
        pool.close()
        restarted = pool.collect(_clients([3]), start)  # the same executor starts again
        assert [r.client_id for r in restarted] == ["c0"] and restarted[0].error is None
        with pytest.raises(ExecutorError, match="closed during the round"):
            list(old)
        later = _clients([3] * 5)
        for result in pool.stream(later[1:], start):
            assert result.error is None
            assert decode(result.report.update, EncryptedUpdate).client_id == result.client_id
        # Closed with every client handed out: an executor error, not CancelledError.
        monkeypatch.setattr(processes, "IN_FLIGHT", 256)
        partly = pool.stream(_clients([3] * 4), start)
        next(partly)
        pool.close()
        with pytest.raises(ExecutorError, match="closed during the round"):
            list(partly)
        # An old round whose worker died does not close the workers running now.
        stale = pool.stream(_clients([3] * 4), start)
        dying = pool._pools[0]
        os.kill(next(iter(dying._processes.values())).pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not dying._broken and time.monotonic() < deadline:  # its futures fail
            time.sleep(0.05)
        pool.close()
        running = pool.stream(_clients([3] * 4), start)
        assert next(running).client_id == "c0"
        with pytest.raises(ExecutorError, match="closed during the round"):
            list(stale)
        assert pool.residents() != []  # still running: [] once closed
        assert [r.client_id for r in running] == ["c1", "c2", "c3"]
    finally:
        pool.close()
