"""The round loop shared by the resumable runs, in process and on Flower.

:class:`JournaledRun` trains a federation round by round the way
:meth:`Federation.train <he_fed.runtime.federation.Federation.train>` does, and
calls its subclass's hooks around each round: ``_complete_journaled`` first (a
round the key holder released before a crash), ``_journal`` just before each
aggregate goes to the key holder, and ``_save`` after each round is applied.
Where those go (the run's checkpoint directory and its key-holder store, or the
ServerApp's checkpoint) is the subclass's business.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from he_fed.exceptions import ConfigurationError, PolicyViolation
from he_fed.protocol.messages import Task
from he_fed.protocol.spec import FederationSetup
from he_fed.runtime import checkpoint as files
from he_fed.runtime.federation import Federation, RoundOutcome

__all__ = ["JournaledRun", "check_checkpointable"]

log = logging.getLogger("he_fed")

_STATISTICS = (Task.MAGNITUDE, Task.MOMENTS)


def check_checkpointable(setup: FederationSetup) -> None:
    """Refuse to checkpoint a federation whose state a checkpoint does not keep.

    A checkpoint keeps one key holder's state, the aggregator's and the clients'
    progress. It does not keep share holders' states, a privacy budget, a server
    optimizer's moments or the evaluation rounds' results, so a resumed run would
    carry on without them: a private run, for one, would release without limit.

    Parameters
    ----------
    setup : FederationSetup
        The federation a checkpoint would hold.

    Raises
    ------
    ConfigurationError
        Naming each part of ``setup`` a checkpoint would drop.
    """
    dropped = [
        what
        for what, used in (
            ("threshold= (each share holder keeps its own state)", setup.threshold is not None),
            ("differential privacy (the budget spent)", setup.privacy is not None),
            ("federated evaluation", bool(setup.plan.validation_split)),
            (f"server_optimizer={setup.server_optimizer!r}", setup.server_optimizer != "avg"),
        )
        if used
    ]
    if dropped:
        raise ConfigurationError(
            f"checkpoint= with {', '.join(dropped)} is not supported yet: a checkpoint "
            "does not save that state, and a resumed run would go on without it"
        )


class JournaledRun:
    """A federation trained with a journal: the base of the resumable runs.

    Subclasses set :attr:`federation`, :attr:`history` and ``_progress`` (the
    last saved :class:`~he_fed.runtime.checkpoint.Progress`) and implement
    ``_save``, ``_journal`` and ``_complete_journaled``.
    """

    federation: Federation
    history: list[dict[str, Any]]
    _progress: files.Progress
    _rng: np.random.Generator | None

    def train(
        self,
        rounds: int,
        *,
        dropout: float = 0.0,
        random_state: int | None = 0,
        on_round: Callable[[RoundOutcome], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Run the rounds not yet done, saving after each; return the whole history.

        Parameters
        ----------
        rounds : int
            Training rounds of the whole run (those already done count).
        dropout : float, default=0.0
            Probability that a client sits out a round.
        random_state : int or None
            Seed for the dropouts (its generator's state is saved each round).
        on_round : callable
            Called with each training round's outcome once it is applied; returns
            the JSON-ready record the checkpoint keeps for it.

        Returns
        -------
        list of dict
            ``on_round``'s records of every training round, resumed ones included.
        """
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError("dropout must be in [0, 1)")
        federation = self.federation
        rng = np.random.default_rng(random_state)
        if self._progress.rng:
            rng.bit_generator.state = json.loads(self._progress.rng)
        self._rng = rng
        self._complete_journaled(on_round)
        federation.before_decrypt = self._journal
        try:
            for task in _STATISTICS[len(federation.setup_outcomes) :]:
                if not federation.aggregator.plan.standardize:
                    break
                outcome = federation.run_round(task)
                if outcome.skipped:
                    raise PolicyViolation(f"standardisation failed: {outcome.skipped}")
                federation.setup_outcomes.append(outcome)
                self._save(outcome.round)
            while federation.training_rounds < rounds and federation.stopped is None:
                participants = None
                if dropout:
                    participants = [
                        c.client_id for c in federation.clients if rng.random() >= dropout
                    ]
                try:
                    outcome = federation.run_round(Task.TRAIN, participants=participants)
                except PolicyViolation as exc:
                    federation.stopped = str(exc)
                    log.warning("training stopped: %s", exc)
                    self._save(self._progress.round_done)
                    break
                self.history.append(on_round(outcome))
                self._save(outcome.round)
        finally:
            federation.before_decrypt = None
        return self.history

    def _save(self, round_done: int) -> None:
        raise NotImplementedError

    def _journal(self, outcome: RoundOutcome, aggregate: bytes) -> None:
        raise NotImplementedError

    def _complete_journaled(self, on_round: Callable[[RoundOutcome], dict[str, Any]]) -> None:
        raise NotImplementedError
