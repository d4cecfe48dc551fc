"""The round driver: the three roles wired together, rounds run through an executor.

It lives above the roles and the transport, as Flower's ``Strategy.start`` does:
:mod:`he_fed.protocol` holds the roles and their messages, :mod:`he_fed.runtime`
the executors and this loop. The driver decides nothing the key holder has not
signed: each round starts from the key holder's ticket, and only the key holder
decides what is released.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from he_fed._validation import check_int
from he_fed.crypto import PublicKey, Scheme
from he_fed.exceptions import (
    ConfigurationError,
    HEFedError,
    PolicyViolation,
    ProtocolError,
    TrainingDiverged,
)
from he_fed.models import BaseGD
from he_fed.privacy import PrivacyBudget
from he_fed.protocol.aggregator import Aggregator
from he_fed.protocol.keyholder import KeyHolder
from he_fed.protocol.messages import Task
from he_fed.protocol.setup import build_aggregator, build_client, generate_keyholder
from he_fed.protocol.spec import ClientSpec, FederationSetup
from he_fed.runtime.base import ClientHandle, Executor, gather
from he_fed.runtime.council import LocalCouncil, generate_council
from he_fed.runtime.inprocess import InProcessExecutor

__all__ = ["PHASES", "Federation", "KeyHolderRole", "RoundOutcome"]

log = logging.getLogger("he_fed")

PHASES = ("train", "encrypt", "sign", "serialize", "aggregate", "decrypt")
CLIENT_PHASES = PHASES[:4]  #: timed by clients, which may keep them (Flower nodes do)


@dataclass(frozen=True)
class RoundOutcome:
    """What one round did, measured.

    Attributes
    ----------
    round : int
        Round id.
    task : Task
        What the round computed.
    contributors : tuple of str
        Clients whose updates were summed.
    failures : dict of str to str
        Clients that were asked but left out, with the reason.
    absent : tuple of str
        Clients not asked this round (dropouts).
    timings : dict of str to float or None
        Seconds per phase: ``train``, ``encrypt``, ``sign`` (commitment and signature)
        and ``serialize`` summed over clients (None if one kept them, as Flower nodes
        do), ``aggregate`` (load, verify, add) and ``decrypt`` (receipts, decryption).
    bytes_up : int
        Bytes uploaded per contributing client (the mean over them).
    bytes_down : int
        Bytes of the round start each client downloads.
    clipped : int or None
        Values clipped to the plan's bound over all clients (FedSGD: record gradient
        coordinates); None if a client kept its count (a Flower client node does).
    skipped : str or None
        Why the round changed nothing, if it did not.
    wall_s : float
        Wall-clock seconds of the whole round, from broadcast to applied aggregate
        (the phase timings are summed over clients, so they can exceed it when
        clients run in parallel).
    shares : tuple of two tuples of int, optional
        With threshold decryption: the share holders whose partial decryptions the
        release used, and those whose partials were refused.
    evaluation : RoundOutcome or None
        The evaluation round that scored this training round's model, if the plan
        evaluates (its release is the aggregator's ``model.evaluation``).
    """

    round: int
    task: Task
    contributors: tuple[str, ...]
    failures: dict[str, str]
    absent: tuple[str, ...]
    timings: dict[str, float | None]
    bytes_up: int
    bytes_down: int
    clipped: int | None
    skipped: str | None = None
    wall_s: float = 0.0
    shares: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    evaluation: RoundOutcome | None = None


def _left_out(failures: dict[str, str], absent: tuple[str, ...]) -> str:
    """``"; left out: a, b (why); c (not asked)"``: who was left out of a round, and why.

    Clients that give the same reason are listed together, so the line stays short
    when every client failed the same way. Empty when nobody was left out.
    """
    by_reason: dict[str, list[str]] = {}
    for client_id, why in failures.items():
        why = " ".join(why.replace(f"client {client_id!r}", "the client").split())
        by_reason.setdefault(why, []).append(client_id)
    parts = [f"{', '.join(ids)} ({why})" for why, ids in by_reason.items()]
    if absent:
        parts.append(f"{', '.join(absent)} (not asked: dropped out)")
    return f"; left out: {'; '.join(parts)}" if parts else ""


class KeyHolderRole(Protocol):
    """What the round logic needs of the key holder: a local
    :class:`~he_fed.protocol.keyholder.KeyHolder`, or a proxy that forwards the
    bytes to a key holder elsewhere (a Flower node)."""

    @property
    def min_clients(self) -> int:
        """The smallest cohort the key holder decrypts."""
        ...

    @property
    def identity_bytes(self) -> bytes:
        """The key holder's Ed25519 public key, which signs the round tickets."""
        ...

    @property
    def public_key(self) -> PublicKey:
        """The public key."""
        ...

    def public_key_bytes(self) -> bytes:
        """Encoded public key, for clients."""
        ...

    def aggregation_key_bytes(self) -> bytes:
        """Encoded aggregation material, for the aggregator."""
        ...

    def start_round(self, task: Task) -> bytes:
        """The signed ticket (an encoded :class:`RoundStart`) of the next round."""
        ...

    def decrypt_aggregate(self, data: bytes) -> bytes:
        """Encoded :class:`Aggregate` for an encoded :class:`EncryptedAggregate`."""
        ...


@dataclass
class Federation:
    """A key holder, an aggregator and clients, talking only through bytes.

    Build one with :meth:`create`, then :meth:`standardize` and :meth:`run_round`,
    or :meth:`train` to do both. The clients run wherever the ``executor`` puts
    them (see :mod:`he_fed.runtime`); the round logic only knows their names.
    """

    keyholder: KeyHolderRole
    aggregator: Aggregator
    clients: Sequence[ClientHandle]
    executor: Executor = field(default_factory=InProcessExecutor)
    keygen_s: float = 0.0
    #: Outcomes of the standardisation rounds, once run.
    setup_outcomes: list[RoundOutcome] = field(default_factory=list)
    #: Why training stopped before its last round (the key holder retired its key), if it did.
    stopped: str | None = None
    #: Called with the round so far and the encrypted aggregate just before the key
    #: holder is asked to decrypt it (a checkpoint journals the round there).
    before_decrypt: Callable[[RoundOutcome, bytes], None] | None = None
    #: Training rounds run so far: the number the estimators' ``history_`` gives each.
    training_rounds: int = field(default=0, init=False)

    @classmethod
    def create(
        cls,
        partitions: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        scheme: Scheme,
        model: BaseGD,
        local_epochs: int = 1,
        classes: np.ndarray | None = None,
        min_clients: int | None = None,
        server_lr: float = 1.0,
        standardize: bool = True,
        client_ids: Sequence[str] | None = None,
        executor: Executor | None = None,
        validation_split: float = 0.0,
        server_optimizer: str = "avg",
        privacy: PrivacyBudget | None = None,
    ) -> Federation:
        """Generate keys and hand each role the bytes it may hold.

        Parameters
        ----------
        partitions : sequence of (X_k, y_k)
            Each client's data.
        scheme : Scheme
            Scheme and encoding plan.
        model : LinearRegressionGD or LogisticRegressionGD
            Unfitted estimator with the clients' hyperparameters.
        local_epochs, classes, min_clients, server_lr, standardize
            See :class:`Client`, :class:`KeyHolder` and :class:`Aggregator`.
        client_ids : sequence of str, optional
            Names of the clients (default ``client-0``, ``client-1``, ...).
        executor : Executor, optional
            How clients are run (default in process, one after another).
        validation_split, server_optimizer
            See :class:`FederationSetup`.
        privacy : PrivacyBudget, optional
            The key holder's differential-privacy budget (see :mod:`he_fed.privacy`).
        """
        setup = FederationSetup.from_partitions(
            partitions,
            scheme=scheme,
            model=model,
            local_epochs=local_epochs,
            classes=classes,
            min_clients=min_clients,
            server_lr=server_lr,
            standardize=standardize,
            client_ids=client_ids,
            validation_split=validation_split,
            server_optimizer=server_optimizer,
            privacy=privacy,
        )
        return cls.from_setup(setup, partitions, executor=executor)

    @classmethod
    def from_setup(
        cls,
        setup: FederationSetup,
        partitions: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        executor: Executor | None = None,
    ) -> Federation:
        """Build all three roles here: keys, aggregator, and one client per partition.

        Parameters
        ----------
        setup : FederationSetup
            The federation's description.
        partitions : sequence of (X_k, y_k)
            Each client's data, in the order of ``setup.client_ids``.
        executor : Executor, optional
            How clients are run (default in process).
        """
        if len(partitions) != len(setup.client_ids):
            raise ConfigurationError(
                f"{len(partitions)} partitions for {len(setup.client_ids)} client ids"
            )
        t0 = time.perf_counter()
        keyholder: KeyHolder | LocalCouncil = (
            generate_keyholder(setup) if setup.threshold is None else generate_council(setup)
        )
        keygen_s = time.perf_counter() - t0
        pinned = keyholder.identity_bytes
        aggregator = build_aggregator(keyholder.aggregation_key_bytes(), pinned, setup)
        public = keyholder.public_key_bytes()
        clients = [
            build_client(ClientSpec(cid, X, y, public, setup.plan, keyholder=pinned))
            for cid, (X, y) in zip(setup.client_ids, partitions, strict=True)
        ]
        # Setup, in one trust domain: each client pins the key holder's identity, and
        # every client identity is registered with both parties before the first
        # ticket fixes the key holder's registry.
        for client in clients:
            keyholder.register(client.client_id, client.verify_key)
            aggregator.register(client.client_id, client.verify_key)
        return cls(keyholder, aggregator, clients, executor or InProcessExecutor(), keygen_s)

    def setup_bytes(self) -> dict[str, int]:
        """Sizes of the key material each role received."""
        return {
            "public_key": len(self.keyholder.public_key_bytes()),
            "aggregation_key": len(self.keyholder.aggregation_key_bytes()),
        }

    def run_round(
        self, task: Task = Task.TRAIN, *, participants: Iterable[str] | None = None
    ) -> RoundOutcome:
        """Run one round with every client, or only ``participants``.

        A client that fails, or whose update the aggregator rejects, is left out and
        logged; the round completes with the others. A round the key holder refuses
        for too small a cohort changes nothing and is reported as skipped.
        """
        round_started = time.perf_counter()
        task = Task(task)
        chosen = set(participants) if participants is not None else None
        asked = [c for c in self.clients if chosen is None or c.client_id in chosen]
        # Set membership: a list scan here made every round quadratic in the cohort.
        asked_ids = {c.client_id for c in asked}
        absent = tuple(c.client_id for c in self.clients if c.client_id not in asked_ids)
        start = self.aggregator.open_round(self.keyholder.start_round(task))
        if task is Task.TRAIN:
            self.training_rounds += 1
        # Logged as the result records it: training rounds from 1, whatever the ticket
        # ids (which count the statistics rounds too).
        name = (
            f"train round {self.training_rounds}" if task is Task.TRAIN else f"{task.value} round"
        )
        timings, failures, sizes = dict[str, float | None].fromkeys(PHASES, 0.0), {}, []
        counts: list[int | None] = []  # clipped per update; None: the client kept it
        answered = 0
        for result in gather(self.executor, asked, start):
            answered += 1
            if result.report is None:
                failures[result.client_id] = result.error or "failed"
                continue
            report = result.report
            for phase in CLIENT_PHASES:  # None once one client kept its seconds
                seconds, so_far = getattr(report, f"{phase}_s"), timings[phase]
                timings[phase] = None if seconds is None or so_far is None else so_far + seconds
            t0 = time.perf_counter()
            try:
                self.aggregator.add(report.update)
            except HEFedError as exc:
                log.warning("%s: update from %s rejected: %s", name, result.client_id, exc)
                failures[result.client_id] = f"rejected: {exc}"
                continue
            finally:
                timings["aggregate"] += time.perf_counter() - t0
            sizes.append(len(report.update))
            counts.append(report.clipped)
            log.debug("%s: update from %s added (%d bytes)", name, result.client_id, sizes[-1])
        if answered and len(failures) == answered and not self.aggregator.contributors:
            # Every client asked failed: a setting or a message they all refuse, not
            # dropouts. Skipping such rounds silently would "train" nothing.
            first = next(iter(failures.items()))
            raise ProtocolError(f"every client failed this round; {first[0]} said: {first[1]}")
        contributors = self.aggregator.contributors
        outcome = dict(
            round=self.aggregator.round,
            task=task,
            contributors=contributors,
            failures=failures,
            absent=absent,
            bytes_up=int(np.mean(sizes)) if sizes else 0,
            bytes_down=len(start),
            clipped=None if None in counts else sum(c or 0 for c in counts),
        )
        if len(contributors) < self.keyholder.min_clients:
            reason = (
                f"only {len(contributors)} contribution(s); the key holder requires "
                f"{self.keyholder.min_clients}{_left_out(failures, absent)}"
            )
            log.warning("%s skipped: %s", name, reason)
            wall = time.perf_counter() - round_started
            return RoundOutcome(timings=timings, skipped=reason, wall_s=wall, **outcome)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        encrypted = self.aggregator.finish_round()
        timings["aggregate"] += time.perf_counter() - t0
        if self.before_decrypt is not None:
            wall = time.perf_counter() - round_started
            so_far = RoundOutcome(timings=dict(timings), wall_s=wall, **outcome)  # type: ignore[arg-type]
            self.before_decrypt(so_far, encrypted)
        t0 = time.perf_counter()
        try:
            plain = self.keyholder.decrypt_aggregate(encrypted)
        except TrainingDiverged:
            raise
        except HEFedError as exc:
            # Refused (policy) or rejected (an out-of-range sum from a malicious
            # client, a tampered ciphertext): the round is lost, the run goes on.
            timings["decrypt"] += time.perf_counter() - t0
            log.warning("%s skipped: %s", name, exc)
            wall = time.perf_counter() - round_started
            return RoundOutcome(timings=timings, skipped=str(exc), wall_s=wall, **outcome)  # type: ignore[arg-type]
        timings["decrypt"] += time.perf_counter() - t0
        self.aggregator.apply(plain)
        shares = getattr(self.keyholder, "last_partials", None)
        if shares is not None:
            log.info("%s: partials of share holders %s used, %s refused", name, *shares)
        wall = time.perf_counter() - round_started
        log.info(
            "%s: %d of %d clients contributed, aggregate released (ticket %d, %.3f s)",
            name,
            len(contributors),
            len(self.clients),
            self.aggregator.round,
            wall,
        )
        return RoundOutcome(timings=timings, wall_s=wall, shares=shares, **outcome)  # type: ignore[arg-type]

    def standardize(self) -> list[RoundOutcome]:
        """Compute the global feature mean and scale from two encrypted sums.

        Raises
        ------
        PolicyViolation
            If either statistics round could not be decrypted.
        """
        outcomes = []
        for task in (Task.MAGNITUDE, Task.MOMENTS):
            outcome = self.run_round(task)
            if outcome.skipped:
                raise PolicyViolation(
                    f"standardisation failed in the {task.value} round: {outcome.skipped}"
                )
            outcomes.append(outcome)
        return outcomes

    def _plan_tables(self, rounds: int) -> None:
        """Size the key's one-time tables for the rounds ahead, if every role runs here.

        Each contribution is encrypted by its client, and its commitment proof made
        by the client and checked by the aggregator and by the key holder: in
        process, all through one table per key (see
        :meth:`~he_fed.crypto.PublicKey.expect_contributions`).
        """
        if not isinstance(self.executor, InProcessExecutor):
            return
        contributions = len(self.clients) * rounds
        key = self.keyholder.public_key
        key.expect_contributions(
            contributions, self.aggregator.plan.n_weights, proofs=3 * contributions
        )

    def train(
        self,
        rounds: int,
        *,
        dropout: float = 0.0,
        random_state: int | None = 0,
        on_round: Callable[[RoundOutcome], bool | None] | None = None,
        evaluate_every: int = 1,
    ) -> list[RoundOutcome]:
        """Run ``rounds`` training rounds (standardising first if the aggregator wants it).

        Parameters
        ----------
        rounds : int
            Number of training rounds.
        dropout : float, default=0.0
            Probability that a client sits out a training round (independently per
            round); every client scores the evaluation rounds. Without a privacy
            budget the key holder refuses a round from any cohort but its first
            release's, so such rounds are skipped.
        random_state : int or None
            Seed for the dropouts.
        on_round : callable, optional
            Called with each training round's outcome (which carries the outcome
            of the evaluation round that scored its model, if the plan evaluates);
            a true return value stops training (early stopping).
        evaluate_every : int, default=1
            If the plan evaluates: score every ``evaluate_every``-th training
            round's model, and the last round's.

        Returns
        -------
        list of RoundOutcome
            The training rounds (statistics rounds are in :attr:`setup_outcomes`).
            Fewer than ``rounds`` if the key holder stopped signing tickets; then
            :attr:`stopped` says why.
        """
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError("dropout must be in [0, 1)")
        if dropout and getattr(self.keyholder, "privacy", None) is None:
            log.warning(
                "without a privacy budget the key holder releases only its first cohort's "
                "rounds (he_fed.protocol.normalisers): rounds a client sits out are refused"
            )
        statistics = self.aggregator.plan.standardize and self.aggregator.center is None
        self._plan_tables(rounds + (2 if statistics else 0))
        if statistics:
            self.setup_outcomes = self.standardize()
        rng = np.random.default_rng(random_state)
        outcomes = []
        check_int("evaluate_every", evaluate_every, low=1)
        for index in range(1, rounds + 1):
            participants = None
            if dropout:
                participants = [c.client_id for c in self.clients if rng.random() >= dropout]
            try:
                outcome = self.run_round(Task.TRAIN, participants=participants)
                due = index % evaluate_every == 0 or index == rounds
                if self.aggregator.plan.evaluation is not None and due and not outcome.skipped:
                    # Every client scores: an evaluation is released only from the
                    # cohort that pinned its divisor (he_fed.protocol.normalisers).
                    scored = self.run_round(Task.EVALUATE)
                    outcome = dataclasses.replace(outcome, evaluation=scored)
            except PolicyViolation as exc:
                # The key holder signs no more tickets (it retired its key after
                # refusing too many aggregates): stop with the model so far.
                self.stopped = str(exc)
                log.warning("training stopped: %s", exc)
                break
            outcomes.append(outcome)
            if on_round is not None and on_round(outcome):
                break
        return outcomes
