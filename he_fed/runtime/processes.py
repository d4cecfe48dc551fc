"""The ``processes`` executor: clients train and encrypt in a pool of worker processes.

Local training and encryption are independent per client, so they spread over
cores; the aggregator and the key holder stay in the calling process, exactly as
with :class:`~he_fed.runtime.inprocess.InProcessExecutor`. Results are identical:
each client is rebuilt from the same data and plan and computes the same update,
and Paillier sums decrypt exactly whatever order they are added in.

How it works:

* **Spawn, not fork.** Workers start with the *spawn* method: forking a process
  that has started TenSEAL's or a pool's threads can deadlock.
* **Clients stay resident.** Each worker owns a fixed set of clients for the
  executor's life (the whole fit). A client goes to the worker with the least
  data so far the first time it is asked; that first task carries its data, its
  plan, the public key and its signing key, and the worker builds the client
  once (:mod:`he_fed.runtime._resident`). Every later round sends each client one
  task on its worker: the encoded round start, a token and the rounds it answered.
  Data-heavy federations no longer ship ``X`` and ``y`` every round.
* **Results stream.** :meth:`ProcessesExecutor.stream` yields each client's result
  as soon as it is in, so the aggregator checks the first updates' proofs while
  the workers still prove the others.
* **Plain data only.** Tasks carry bytes, arrays, ints and dicts of primitives;
  workers answer with bytes, floats and ints. No object of ours crosses the
  boundary.
* **Bounded memory.** ``workers`` processes, each holding its own clients' data
  and state, their updates of the round, and one fixed-base encryption table per
  key (see :func:`he_fed.crypto._djn.fixed_base`). Workers never start encryption
  pools of their own (``HE_FED_ENCRYPT_WORKERS=1``), so the pool stays at
  ``workers`` processes, and run BLAS and OpenMP on one thread each. A client
  object that is garbage-collected here is dropped by its worker with the next
  task.
* **Scripts need the main guard.** A spawned worker imports the script that
  started it; a script that trains outside ``if __name__ == "__main__":`` would
  train again in every worker. Such a worker leaves quietly, and the script gets
  one :class:`~he_fed.exceptions.MissingMainGuard` naming the guard, instead of
  ``BrokenProcessPool`` and a bootstrapping traceback per worker.
* **Start-up is paid once and measured.** :meth:`ProcessesExecutor.start` spawns
  every worker and waits until each has imported he-fed; :attr:`startup_s` is
  that wall time. Each worker builds its fixed-base table on its first
  encryption, inside the first round.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from he_fed._validation import check_int
from he_fed.crypto._paillier_keys import WORKERS_ENV, usable_cores
from he_fed.exceptions import ConfigurationError, ExecutorError, MissingMainGuard
from he_fed.protocol.client import Client, ClientReport
from he_fed.runtime import _resident
from he_fed.runtime.base import ClientHandle, ClientResult

__all__ = ["ProcessesExecutor", "default_workers"]

log = logging.getLogger("he_fed")

#: Seconds a worker may take to start and import he-fed before the pool is abandoned.
STARTUP_TIMEOUT_S = 300.0
#: Exit status of a worker that found itself re-running the script that started
#: it (no main guard): it leaves quietly and :meth:`ProcessesExecutor.start` says why.
_MAIN_GUARD_EXIT = 86
#: Clients a round has out at once, the one being read included: enough to keep
#: every worker busy, few enough that answers waiting to be checked stay small (a
#: 10,000-client statistics round's answers, all waiting, took over 1 GB).
IN_FLIGHT = 256
_CLOSED = "the processes executor was closed during the round"

_Member = tuple[Client, int, tuple[int, str, Any, Any]]
_Task = tuple[Client, int, "Future[list[_resident.Row]]"]


def default_workers() -> int:
    """Worker processes by default: the cores this process may use."""
    return usable_cores()


#: The worker's limit on its numerical libraries' threads, kept for its lifetime.
_THREAD_LIMITS: list[Any] = []


def _init_worker(barrier: Any, timeout: float) -> None:
    """Worker start-up: import everything a round needs, then wait for the others."""
    os.environ[WORKERS_ENV] = "1"  # no encryption pools inside a pool worker
    # threadpoolctl comes with scikit-learn.
    from threadpoolctl import threadpool_limits

    import he_fed.protocol.setup  # noqa: F401  (numpy, scikit-learn, gmpy2, TenSEAL)

    # One BLAS/OpenMP thread per worker, set once every library is loaded: the
    # workers already fill the cores, and OpenBLAS threads that spin between calls
    # took CPU from the other workers' encryptions (clients' work per round was 2-4
    # times their in-process time).
    _THREAD_LIMITS.append(threadpool_limits(limits=1))
    barrier.wait(timeout)


def _ready() -> int:
    return os.getpid()


def _importing_main() -> bool:
    """Whether this is a spawned process still importing the script that started it.

    multiprocessing marks the current process ``_inheriting`` while a spawned child
    imports its parent's main module; its own check on it
    (``multiprocessing.spawn._check_not_importing_main``) raises a RuntimeError
    whose traceback every worker would print.
    """
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _missing_guard(processes: list[Any]) -> MissingMainGuard | None:
    """The error to raise if a worker of a broken pool left for want of the main guard."""
    deadline = time.monotonic() + 5.0
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    # The pool's own thread may reap a worker between our wait and our read, and
    # sets its exit status a moment later: poll until every status is known.
    while any(p.exitcode is None for p in processes) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not any(process.exitcode == _MAIN_GUARD_EXIT for process in processes):
        return None
    script = getattr(sys.modules.get("__main__"), "__file__", None) or "the main script"
    return MissingMainGuard(
        f"worker processes start by importing {script}, which trains again at import: "
        'put the training under if __name__ == "__main__": (the processes executor '
        "spawns its workers)"
    )


class ProcessesExecutor:
    """Run clients' local training and encryption in a pool of worker processes.

    Each worker keeps the clients it was first given for the executor's life and
    receives their data once (see the module notes).

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: the cores this process may use).

    Attributes
    ----------
    startup_s : float or None
        Wall-clock seconds :meth:`start` took to spawn the workers and import
        he-fed in each; None before the pool starts.

    Examples
    --------
    >>> from he_fed import FederatedLogisticRegression
    >>> clf = FederatedLogisticRegression(executor="processes")  # doctest: +SKIP
    """

    name = "processes"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None:
            check_int("workers", workers, low=1)
        self.workers = workers or default_workers()
        self.startup_s: float | None = None
        # One single-process pool per worker, so that a task reaches the worker
        # that holds its clients.
        self._pools: list[ProcessPoolExecutor] | None = None
        self._lock = threading.Lock()
        self._reset_homes()

    def _reset_homes(self) -> None:
        """Forget where clients live (the workers that held them are gone)."""
        #: Client object -> (worker index, token); weak, so a dropped client is forgotten.
        self._homes: weakref.WeakKeyDictionary[Client, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )
        #: Tokens whose worker confirmed it holds the client.
        self._resident: set[int] = set()
        #: Per worker, tokens of clients garbage-collected here, to drop there.
        self._forgotten: list[list[int]] = [[] for _ in range(self.workers)]
        #: Per worker, the data (``X.size``) of the clients it owns.
        self._load = [0] * self.workers
        self._next_token = 0

    def start(self) -> float:
        """Spawn the workers and wait until every one has imported he-fed.

        Returns
        -------
        float
            :attr:`startup_s`, the seconds it took (0 if already started).

        Raises
        ------
        ExecutorError
            If a worker failed to start within ``STARTUP_TIMEOUT_S``.
        MissingMainGuard
            If the workers could not start because the script that started them
            trains outside ``if __name__ == "__main__":``.
        """
        if _importing_main():
            # A worker re-running its parent's unguarded script: leave without a
            # traceback; the parent reports the missing guard, once.
            raise SystemExit(_MAIN_GUARD_EXIT)
        with self._lock:
            if self._pools is not None:
                return 0.0
            started = time.perf_counter()
            context = multiprocessing.get_context("spawn")
            barrier = context.Barrier(self.workers)
            pools = [
                ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=context,
                    initializer=_init_worker,
                    initargs=(barrier, STARTUP_TIMEOUT_S),
                )
                for _ in range(self.workers)
            ]
            # One task per worker; the barrier in the initializer keeps the first
            # workers busy until the last has started, so every one is spawned.
            futures = [pool.submit(_ready) for pool in pools]
            # ProcessPoolExecutor keeps its processes to itself, and forgets them once
            # the pool breaks: take them now, while they start. Their exit statuses
            # say whether they left for want of the main guard.
            processes = [
                process
                for pool in pools
                for process in (getattr(pool, "_processes", None) or {}).values()
            ]
            try:
                for future in futures:
                    future.result(timeout=STARTUP_TIMEOUT_S)
            except (BrokenProcessPool, TimeoutError, OSError) as exc:
                for pool in pools:
                    pool.shutdown(wait=False, cancel_futures=True)
                missing_guard = _missing_guard(processes)
                if missing_guard is not None:
                    raise missing_guard from None
                raise ExecutorError(f"worker processes failed to start: {exc!r}") from None
            self._pools = pools
            self._reset_homes()
            self.startup_s = time.perf_counter() - started
            return self.startup_s

    def _home(self, client: Client) -> tuple[int, int, _resident.Arrival | None]:
        """The worker and token of ``client``, and its data if that worker lacks it.

        Raises
        ------
        ConfigurationError
            If the client's model cannot be described as plain data.
        """
        home = self._homes.get(client)
        if home is not None and home[1] in self._resident:
            return home[0], home[1], None
        spec = client.spec()
        arrival = (
            spec.client_id,
            spec.X,
            spec.y,
            spec.public_key,
            spec.plan.to_config(),
            spec.keyholder,
            spec.signing_key,
        )
        if home is None:
            # The worker with the least data so far; ties go to the lowest index.
            worker = min(range(self.workers), key=lambda w: (self._load[w], w))
            self._load[worker] += int(spec.X.size)
            home = (worker, self._next_token)
            self._next_token += 1
            self._homes[client] = home
            weakref.finalize(client, self._forgotten[worker].append, home[1])
        return home[0], home[1], arrival

    def collect(self, clients: Sequence[ClientHandle], message: bytes) -> list[ClientResult]:
        """Hand ``message`` to every client, in its worker process, and gather the results.

        Results come back in the order of ``clients``. A client that fails with an
        :class:`~he_fed.exceptions.HEFedError` is reported with its error.

        Raises
        ------
        ConfigurationError
            If a client is not a :class:`~he_fed.protocol.client.Client`, or its
            model cannot be described as plain data.
        ExecutorError
            If a worker process died.
        """
        return list(self.stream(clients, message))

    def stream(self, clients: Sequence[ClientHandle], message: bytes) -> Iterator[ClientResult]:
        """As :meth:`collect`, yielding each result, in order, as soon as it is in.

        Every client is one task on its worker, so the caller checks the first
        updates while the workers still make the others; at most
        :data:`IN_FLIGHT` are out at once, the one being read included. Raises as
        :meth:`collect` (``ConfigurationError`` before any task starts).
        """
        if not clients:
            return iter(())
        for client in clients:
            if not isinstance(client, Client):
                raise ConfigurationError(
                    f"the processes executor runs Client objects, not {type(client).__name__}"
                )
        self.start()
        pools = self._pools
        assert pools is not None
        members: deque[_Member] = deque()
        for client in clients:
            assert isinstance(client, Client)
            worker, token, arrival = self._home(client)
            state = (client.last_round, client.phase)
            members.append((client, worker, (token, client.client_id, state, arrival)))
        tasks: deque[_Task] = deque()
        self._hand_out(pools, message, members, tasks)
        return self._gathered(pools, message, members, tasks)

    def _hand_out(
        self,
        pools: list[ProcessPoolExecutor],
        message: bytes,
        members: deque[_Member],
        tasks: deque[_Task],
    ) -> None:
        """Submit clients from ``members`` until :data:`IN_FLIGHT` are in ``tasks``.

        Only to ``pools``, the workers the round started on: tokens and homes belong
        to them, so a round that outlives them (closed, or closed and restarted)
        ends there.
        """
        try:
            while members and len(tasks) < max(IN_FLIGHT, 1):
                if self._pools is not pools:
                    raise ExecutorError(_CLOSED)
                client, worker, member = members.popleft()
                dropped, self._forgotten[worker][:] = list(self._forgotten[worker]), []
                task = pools[worker].submit(_resident.answer_round, message, [member], dropped)
                tasks.append((client, member[0], task))
        except BrokenProcessPool as exc:
            raise self._died(pools, exc) from None

    def _died(self, pools: list[ProcessPoolExecutor], exc: BrokenProcessPool) -> ExecutorError:
        """The error for a dead worker of ``pools``, closing them if they are running now."""
        if self._pools is not pools:
            return ExecutorError(_CLOSED)
        self.close()
        return ExecutorError(f"a worker process died: {exc}")

    def _gathered(
        self,
        pools: list[ProcessPoolExecutor],
        message: bytes,
        members: deque[_Member],
        tasks: deque[_Task],
    ) -> Iterator[ClientResult]:
        # Each answer leaves the queue as it is read, so only the answers not yet
        # checked are held, never the round's. The next client is handed out before
        # an answer is read, so a failure to hand it out loses no answer already in.
        while True:
            self._hand_out(pools, message, members, tasks)
            if not tasks:
                return
            client, token, future = tasks.popleft()
            try:
                (row,) = future.result()
            except BrokenProcessPool as exc:
                raise self._died(pools, exc) from None
            except CancelledError:
                raise ExecutorError(_CLOSED) from None
            del future
            if self._pools is not pools:
                raise ExecutorError(_CLOSED)
            _, answered, _, _, resident = row
            if resident:
                self._resident.add(token)
            else:
                self._resident.discard(token)
            # The executor's record follows the worker's (an attempt counts), so a
            # client answered here or in process later keeps its memory of rounds.
            client.mark_answered(*answered)  # type: ignore[attr-defined]
            yield self._result(row)

    def residents(self) -> list[dict[str, int]]:
        """What each worker holds, asked of the workers themselves.

        Returns
        -------
        list of dict of str to int
            Per worker, the ids of the clients it holds, each with how many times
            its data reached that worker (1 when it was sent once). Empty if the
            pool is not running.
        """
        if self._pools is None:
            return []
        return [pool.submit(_resident.held).result() for pool in self._pools]

    @staticmethod
    def _result(row: _resident.Row) -> ClientResult:
        client_id, _, record, error, _ = row
        if record is None:
            log.warning("client %s failed this round: %s", client_id, error)
            return ClientResult(client_id, None, error)
        return ClientResult(client_id, ClientReport.from_record(record))

    def close(self) -> None:
        """Stop the workers. The executor starts a new pool if used again."""
        with self._lock:
            pools, self._pools = self._pools, None
        for pool in pools or []:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessesExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self._pools is not None else "stopped"
        return f"<ProcessesExecutor workers={self.workers} {state}>"
