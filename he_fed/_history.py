"""What the estimators record per round: typed until the JSON edge.

Private: :class:`RoundRecord` is re-exported by :mod:`he_fed.federated`, whose
estimators keep one per training round in ``history_`` (and one per
standardisation round in ``setup_["statistics"]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from he_fed.runtime.federation import RoundOutcome

__all__ = ["RoundRecord"]


@dataclass(frozen=True)
class RoundRecord:
    """One round as the estimator saw it.

    Attributes
    ----------
    round : int
        The training round, from 1 (0 for a standardisation round).
    metric, loss : float
        On ``eval_set``, else the training data (NaN for a standardisation round).
    timings : dict of str to float
        Seconds per phase (``train``, ``encrypt``, ``sign``, ``serialize``,
        ``aggregate``, ``decrypt``), summed over clients.
    bytes_up, bytes_down : int
        Bytes sent and received per client.
    contributors : int
        Clients whose update was aggregated.
    dropped : tuple of str
        Clients that sat out or failed, sorted.
    failures : dict of str to str
        Why each failed client failed.
    clipped : int
        Values clipped before encryption, over all clients.
    skipped : str or None
        Why the round released no aggregate, if it did not.
    wall_s : float
        The round's wall-clock time.
    epsilon : float or None
        A private run's ``epsilon`` spent after this round (None without DP).
    """

    round: int
    metric: float
    loss: float
    timings: dict[str, float]
    bytes_up: int
    bytes_down: int
    contributors: int
    dropped: tuple[str, ...]
    failures: dict[str, str]
    clipped: int
    skipped: str | None
    wall_s: float
    epsilon: float | None = None

    @classmethod
    def from_outcome(
        cls, index: int, outcome: RoundOutcome, metric: float, loss: float
    ) -> RoundRecord:
        """The record of a federation's round ``outcome``, numbered ``index``."""
        return cls(
            round=index,
            metric=metric,
            loss=loss,
            timings=dict(outcome.timings),
            bytes_up=outcome.bytes_up,
            bytes_down=outcome.bytes_down,
            contributors=len(outcome.contributors),
            dropped=tuple(sorted([*outcome.absent, *outcome.failures])),
            failures=dict(outcome.failures),
            clipped=outcome.clipped,
            skipped=outcome.skipped,
            wall_s=outcome.wall_s,
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data, for JSON (``dropped`` as a list)."""
        data = dataclasses.asdict(self)
        data["dropped"] = list(self.dropped)
        if self.epsilon is None:
            del data["epsilon"]  # runs without DP write the JSON they always wrote
        return data
