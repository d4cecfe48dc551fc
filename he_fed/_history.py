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
    timings : dict of str to float or None
        Seconds per phase (``train``, ``encrypt``, ``sign``, ``serialize``,
        ``aggregate``, ``decrypt``), summed over clients; a client phase is None
        where the clients kept their seconds (Flower client nodes do).
    bytes_up, bytes_down : int
        Bytes sent and received per client.
    contributors : int
        Clients whose update was aggregated.
    dropped : tuple of str
        Clients that sat out or failed, sorted.
    failures : dict of str to str
        Why each failed client failed.
    clipped : int or None
        Values clipped before encryption, over all clients (for FedSGD, record
        gradient coordinates), the evaluation round's included (a regression's
        validation MSE beyond ``4096`` in standardised units is clamped there, so
        the released loss is a lower bound); None where the clients keep it
        (Flower).
    skipped : str or None
        Why the round released no aggregate, if it did not.
    wall_s : float
        The round's wall-clock time.
    validation_metric, validation_loss : float
        The global validation figures of this round's model (accuracy and log
        loss, or R² and MSE), as the key holder released them from the clients'
        encrypted evaluation; NaN when the run does not evaluate or the
        evaluation round was skipped.
    validation_bytes_up : int
        Bytes each client uploaded for the evaluation round (0 without one).
    epsilon : float or None
        A private run's ``epsilon`` spent after this round (None without DP).
    shares : tuple of two tuples of int, or None
        With threshold decryption: the share holders whose partial decryptions
        the release combined, and those whose partials were refused (None with a
        single key holder).
    """

    round: int
    metric: float
    loss: float
    timings: dict[str, float | None]
    bytes_up: int
    bytes_down: int
    contributors: int
    dropped: tuple[str, ...]
    failures: dict[str, str]
    clipped: int | None
    skipped: str | None
    wall_s: float
    validation_metric: float = float("nan")
    validation_loss: float = float("nan")
    validation_bytes_up: int = 0
    epsilon: float | None = None
    shares: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    @classmethod
    def from_outcome(
        cls,
        index: int,
        outcome: RoundOutcome,
        metric: float,
        loss: float,
        validation: tuple[float, float] = (float("nan"), float("nan")),
    ) -> RoundRecord:
        """The record of a federation's round ``outcome``, numbered ``index``.

        ``validation`` holds the global validation metric and loss, if released.
        """
        scored = outcome.evaluation
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
            clipped=_total(outcome.clipped, None if scored is None else scored.clipped),
            skipped=outcome.skipped,
            wall_s=outcome.wall_s,
            validation_metric=validation[0],
            validation_loss=validation[1],
            validation_bytes_up=0 if scored is None else scored.bytes_up,
            shares=outcome.shares,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundRecord:
        """The record whose :meth:`to_dict` gave ``data``."""
        fields = dict(data)
        fields["dropped"] = tuple(fields["dropped"])
        if fields.get("shares") is not None:
            fields["shares"] = (tuple(fields["shares"]["used"]), tuple(fields["shares"]["refused"]))
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data, for JSON (``dropped`` as a list)."""
        data = dataclasses.asdict(self)
        data["dropped"] = list(self.dropped)
        if self.epsilon is None:
            del data["epsilon"]  # runs without DP write the JSON they always wrote
        if self.shares is None:
            del data["shares"]  # nor do runs with a single key holder
        else:
            data["shares"] = {"used": list(self.shares[0]), "refused": list(self.shares[1])}
        return data


def _total(trained: int | None, scored: int | None) -> int | None:
    """Clipped values of a training round and of the evaluation that scored it."""
    if trained is None:
        return None
    return trained + (scored or 0)
