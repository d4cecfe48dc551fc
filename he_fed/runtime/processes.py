"""The ``processes`` executor: clients train and encrypt in a pool of worker processes.

Local training and encryption are independent per client, so they spread over
cores; the aggregator and the key holder stay in the calling process, exactly as
with :class:`~he_fed.runtime.inprocess.InProcessExecutor`. Results are identical:
each client is rebuilt from the same data and plan and computes the same update,
and Paillier sums decrypt exactly whatever order they are added in.

How it works:

* **Spawn, not fork.** Workers start with the *spawn* method: forking a process
  that has started TenSEAL's or a pool's threads can deadlock.
* **Plain data only.** A task carries the encoded round start (bytes), the public
  key (bytes), the client plan (a dict of primitives) and a chunk of clients as
  ``(client_id, X, y)``. The worker builds its clients with
  :func:`he_fed.protocol.setup.build_client` and answers with bytes, floats and
  ints. No object of ours crosses the boundary.
* **Bounded memory.** ``workers`` processes, each holding only the chunk it is
  working on, its clients' updates, and one fixed-base encryption table per key
  (16 MiB for 2048-bit Paillier). At most ``workers + 1`` chunks are queued to
  the workers at a time. Workers never start encryption pools of their own
  (``HE_FED_ENCRYPT_WORKERS=1``), so the pool stays at ``workers`` processes.
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
import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from he_fed._validation import check_int
from he_fed.crypto._paillier_keys import WORKERS_ENV, usable_cores
from he_fed.exceptions import ConfigurationError, ExecutorError, HEFedError, MissingMainGuard
from he_fed.protocol.client import Client, ClientReport
from he_fed.runtime.base import ClientHandle, ClientResult

__all__ = ["ProcessesExecutor", "default_workers"]

log = logging.getLogger("he_fed")

#: Seconds a worker may take to start and import he-fed before the pool is abandoned.
STARTUP_TIMEOUT_S = 300.0
#: Chunks per worker and round: enough to even out uneven clients, few enough that
#: the per-task overhead stays small.
_CHUNKS_PER_WORKER = 4
#: Exit status of a worker that found itself re-running the script that started
#: it (no main guard): it leaves quietly and :meth:`ProcessesExecutor.start` says why.
_MAIN_GUARD_EXIT = 86
#: What a worker returns per client: (id, (last round answered, phase), the report's
#: record, None) on success, or (id, (last round answered, phase), None, error) on a
#: refused round.
_Row = tuple[str, tuple[int, int], "dict[str, Any] | None", "str | None"]


def default_workers() -> int:
    """Worker processes by default: the cores this process may use."""
    return usable_cores()


def _init_worker(barrier: Any, timeout: float) -> None:
    """Worker start-up: import everything a round needs, then wait for the others."""
    os.environ[WORKERS_ENV] = "1"  # no encryption pools inside a pool worker
    import he_fed.protocol.setup  # noqa: F401  (numpy, scikit-learn, gmpy2, TenSEAL)

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
    for process in processes:
        process.join(timeout=5.0)
    if not any(process.exitcode == _MAIN_GUARD_EXIT for process in processes):
        return None
    script = getattr(sys.modules.get("__main__"), "__file__", None) or "the main script"
    return MissingMainGuard(
        f"worker processes start by importing {script}, which trains again at import: "
        'put the training under if __name__ == "__main__": (the processes executor '
        "spawns its workers)"
    )


def _run_chunk(
    message: bytes,
    public_key: bytes,
    plan: dict[str, Any],
    chunk: list[tuple[str, np.ndarray, np.ndarray, bytes, bytes | None, tuple[int, int]]],
) -> list[_Row]:
    """Build each client of ``chunk`` from plain data and answer ``message``."""
    from he_fed.protocol.setup import build_client
    from he_fed.protocol.spec import ClientPlan, ClientSpec

    client_plan = ClientPlan.from_config(plan)
    rows: list[_Row] = []
    for client_id, X, y, keyholder, signing_key, (last_round, phase) in chunk:
        client = None
        try:
            spec = ClientSpec(
                client_id,
                X,
                y,
                public_key,
                client_plan,
                keyholder=keyholder,
                signing_key=signing_key,
                last_round=last_round,
                phase=phase,
            )
            client = build_client(spec)
            report = client.participate(message)
        except HEFedError as exc:
            answered = (last_round, phase) if client is None else (client.last_round, client.phase)
            rows.append((client_id, answered, None, str(exc)))
            continue
        rows.append((client_id, (client.last_round, client.phase), report.to_record(), None))
    return rows


class ProcessesExecutor:
    """Run clients' local training and encryption in a pool of worker processes.

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
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

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
            if self._pool is not None:
                return 0.0
            started = time.perf_counter()
            context = multiprocessing.get_context("spawn")
            barrier = context.Barrier(self.workers)
            pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(barrier, STARTUP_TIMEOUT_S),
            )
            # One task per worker; the barrier in the initializer keeps the first
            # workers busy until the last has started, so every one is spawned.
            futures = [pool.submit(_ready) for _ in range(self.workers)]
            # ProcessPoolExecutor keeps its processes to itself, and forgets them once
            # the pool breaks: take them now, while they start. Their exit statuses
            # say whether they left for want of the main guard.
            processes = list((getattr(pool, "_processes", None) or {}).values())
            try:
                for future in futures:
                    future.result(timeout=STARTUP_TIMEOUT_S)
            except (BrokenProcessPool, TimeoutError, OSError) as exc:
                pool.shutdown(wait=False, cancel_futures=True)
                missing_guard = _missing_guard(processes)
                if missing_guard is not None:
                    raise missing_guard from None
                raise ExecutorError(f"worker processes failed to start: {exc!r}") from None
            self._pool = pool
            self.startup_s = time.perf_counter() - started
            return self.startup_s

    def collect(self, clients: Sequence[ClientHandle], message: bytes) -> list[ClientResult]:
        """Hand ``message`` to every client, in worker processes, and gather the results.

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
        if not clients:
            return []
        specs = []
        for client in clients:
            if not isinstance(client, Client):
                raise ConfigurationError(
                    f"the processes executor runs Client objects, not {type(client).__name__}"
                )
            specs.append(client.spec())
        # Clients sharing a key and a plan (all of them, in a federation) share tasks.
        groups: dict[tuple[bytes, str], tuple[bytes, dict[str, Any], list[int]]] = {}
        for index, spec in enumerate(specs):
            plan = spec.plan.to_config()
            key = (spec.public_key, repr(sorted(plan.items())))
            groups.setdefault(key, (spec.public_key, plan, []))[2].append(index)
        self.start()
        assert self._pool is not None
        size = max(1, math.ceil(len(specs) / (self.workers * _CHUNKS_PER_WORKER)))
        tasks: list[tuple[list[int], Future[list[_Row]]]] = []
        try:
            for public_key, plan, indices in groups.values():
                for i in range(0, len(indices), size):
                    part = indices[i : i + size]
                    chunk = [
                        (
                            specs[j].client_id,
                            specs[j].X,
                            specs[j].y,
                            specs[j].keyholder,
                            specs[j].signing_key,
                            (specs[j].last_round, specs[j].phase),
                        )
                        for j in part
                    ]
                    future = self._pool.submit(_run_chunk, message, public_key, plan, chunk)
                    tasks.append((part, future))
            rows: dict[int, _Row] = {}
            for part, future in tasks:
                rows.update(zip(part, future.result(), strict=True))
        except BrokenProcessPool as exc:
            self.close()
            raise ExecutorError(f"a worker process died: {exc}") from None
        # A client's memory of the rounds it answered (an attempt counts) lives with
        # its object here; the worker that answered for it is stateless.
        for index, client in enumerate(clients):
            client.mark_answered(*rows[index][1])  # type: ignore[attr-defined]
        return [self._result(rows[i]) for i in range(len(specs))]

    @staticmethod
    def _result(row: _Row) -> ClientResult:
        client_id, _, record, error = row
        if record is None:
            log.warning("client %s failed this round: %s", client_id, error)
            return ClientResult(client_id, None, error)
        return ClientResult(client_id, ClientReport.from_record(record))

    def close(self) -> None:
        """Stop the workers. The executor starts a new pool if used again."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessesExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self._pool is not None else "stopped"
        return f"<ProcessesExecutor workers={self.workers} {state}>"
